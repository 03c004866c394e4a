#!/bin/bash
# Real API calls that should raise every built-in rule of auditsink, against a running
# ../shared/kube harness (after its own scenario.sh). The API server needs
# --allow-privileged=true and --feature-gates=EphemeralContainers=true (1.20: alpha).
#   tests/e2e/rules-scenario.sh --state DIR
# Each step is named after the rule it is meant to raise. Calls the harness cannot complete
# (no kubelet) still reach the API server and are audited; they do not fail the script.
set -uo pipefail
STATE=${STATE:-/tmp/kubeharness}
while [ $# -gt 0 ]; do
  case "$1" in
    --state) STATE=$2; shift 2;;
    *) echo "rules-scenario.sh: unknown option $1" >&2; exit 2;;
  esac
done
# shellcheck disable=SC1091
source "$STATE/env.sh"
NS=rules
CACHE="--cache-dir=$STATE/kubectl-cache"
K() { "$KUBECTL" "$CACHE" "$@"; }
fails=0
must() { echo "+ $*"; "$@" >/dev/null || { echo "rules-scenario.sh: FAILED: $*" >&2; fails=$((fails + 1)); }; }
may() { echo "+ $*"; "$@" >/dev/null 2>&1 || true; }
# curl as admin (token) or anonymously, against the harness API server
# (not curl's own User-Agent: for curl the API server pretty-prints, and in the harness's build,
# Go 1.19 with the vendored reflect2 1.0.1, that path corrupts memory when an object holds a map:
# later requests panic, or the API server dies with "fatal error: fault")
api() { curl -sS -A rules-scenario -o /dev/null -w '%{http_code}' --cacert "$STATE/pki/ca.crt" "$@"; }
admin() { api -H "Authorization: Bearer harness-admin-token" "$@"; }
create() { K create -f - ; }
pod() { # name namespace extra-spec-json
  printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","namespace":"%s"},"spec":{%s"containers":[{"name":"c","image":"nginx:1.25"%s}]}}' "$1" "$2" "$3" "${4:-}"
}

must K create namespace "$NS"
# CSR Approved
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=eve" \
  -keyout "$STATE/eve.key" -out "$STATE/eve.csr" 2>/dev/null
must create < <(printf '{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":"eve"},"spec":{"request":"%s","signerName":"kubernetes.io/kube-apiserver-client","usages":["client auth"]}}' "$(base64 -w0 < "$STATE/eve.csr")")
must K certificate approve eve
# Admission Webhook Configuration Changed (for a resource that does not exist)
must create <<'YAML'
{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration",
 "metadata":{"name":"example-policy"},
 "webhooks":[{"name":"example-policy.example.com","admissionReviewVersions":["v1"],
   "sideEffects":"None","failurePolicy":"Ignore",
   "clientConfig":{"url":"https://127.0.0.1:9/validate"},
   "rules":[{"apiGroups":["example.com"],"apiVersions":["v1"],"operations":["CREATE"],
             "resources":["widgets"]}]}]}
YAML
must K delete validatingwebhookconfiguration example-policy
# Privileged Pod Created / Host Network / Host PID / Host IPC / Sensitive Host Path Mounted
must create < <(pod privileged "$NS" "" ',"securityContext":{"privileged":true}')
must create < <(pod hostnet "$NS" '"hostNetwork":true,')
must create < <(pod hostpid "$NS" '"hostPID":true,')
must create < <(pod hostipc "$NS" '"hostIPC":true,')
must create < <(pod hostpath "$NS" '"volumes":[{"name":"etc","hostPath":{"path":"/etc"}}],')
# Pod Created in Kube Namespace (and nothing else about the pod)
must create < <(pod intruder kube-system "")
must create < <(pod web "$NS" "")
# Pod Exec or Attach / Pod Port-Forward: the API server answers the upgrade itself (no node)
may K -n "$NS" exec web -- id
may K -n "$NS" attach web
echo "+ port-forward (SPDY upgrade)"
admin -X POST -H "Connection: Upgrade" -H "Upgrade: SPDY/3.1" \
  -H "X-Stream-Protocol-Version: portforward.k8s.io" \
  "$HARNESS_API/api/v1/namespaces/$NS/pods/web/portforward?ports=80" >/dev/null || true
# Cluster-Admin Binding Created
must K create clusterrolebinding eve-admin --clusterrole=cluster-admin --user=eve
# Wildcard Role Created / Write-Privileged Role Created / Pod Exec Role Created
must K -n "$NS" create role everything --verb='*' --resource=pods
must K -n "$NS" create role writer --verb=create,update --resource=configmaps
must K -n "$NS" create role shell --verb=create --resource=pods/exec
# System Role Modified or Deleted
must K annotate clusterrole system:discovery example.com/touched=yes
# ConfigMap With Credentials
must K -n "$NS" create configmap cloud --from-literal=aws_access_key_id=AKIAIOSFODNN7EXAMPLE
# Anonymous Request Allowed: someone let system:anonymous list namespaces
must K create clusterrole ns-reader --verb=list --resource=namespaces
must K create clusterrolebinding anonymous-ns-reader --clusterrole=ns-reader --user=system:anonymous
# NodePort Service Created
must K -n "$NS" create service nodeport web --tcp=80:80
# Ingress Without TLS Created
must K -n "$NS" create ingress web --rule="web.example.com/*=web:80"
# Kube Namespace Modified
must K -n kube-system create configmap intruder --from-literal=x=y
# (read 20 times below: Secret Read Burst)
must K -n "$NS" create secret generic token --from-literal=token=hunter2
# K8s Resource Deleted
must K -n "$NS" delete configmap cloud
must K delete clusterrolebinding eve-admin
# Secret Read Burst: 20 reads of one secret by admin within a minute
echo "+ 20 secret reads"
for _ in $(seq 1 20); do admin "$HARNESS_API/api/v1/namespaces/$NS/secrets/token" >/dev/null; done
# Repeated Access Denied: 10 refused requests (a wrong token: 401) from 127.0.0.1
echo "+ 10 refused requests"
for _ in $(seq 1 10); do api -H "Authorization: Bearer not-a-token" "$HARNESS_API/api/v1/namespaces" >/dev/null; done
echo "+ anonymous list namespaces"
code=$(api "$HARNESS_API/api/v1/namespaces")
[ "$code" = 200 ] || { echo "rules-scenario.sh: anonymous list: HTTP $code" >&2; fails=$((fails + 1)); }
# Privileged Identity Impersonated: a read, which a policy cannot tell from any other read
must K --as=system:admin --as-group=system:masters -n "$NS" get pods
# Ephemeral Container Added (1.20: PUT an EphemeralContainers object). Last on purpose: it
# succeeds, but the same reflect2 bug has then made the API server answer 500 to requests.
echo "+ ephemeral container"
code=$(admin -X PUT -H "Content-Type: application/json" \
  "$HARNESS_API/api/v1/namespaces/$NS/pods/web/ephemeralcontainers" \
  --data '{"apiVersion":"v1","kind":"EphemeralContainers","metadata":{"name":"web","namespace":"'"$NS"'"},"ephemeralContainers":[{"name":"debugger","image":"busybox:1.36","stdin":true,"tty":true,"terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}]}')
[ "$code" = 200 ] || { echo "rules-scenario.sh: ephemeral container: HTTP $code" >&2; fails=$((fails + 1)); }
echo "rules-scenario.sh: done, $fails unexpected failure(s)"
exit $((fails > 0))
