#!/usr/bin/env bash
# Record the real API-server traffic behind tests/data/kube-identity/: two runs of the
# kube-apiserver harness (../shared/kube) standing for two clusters, each with impersonation
# (kubectl --as), a forbidden request made as someone else, and the same ConfigMap
# ops/settings changed to different values in each, so that tests can check identities,
# per-cluster object history and time order on traffic the API server really wrote.
#
#   scripts/record-identity-traffic.sh            # writes tests/data/kube-identity/*.log.gz
#
# Needs the harness built (bash ../shared/kube/build.sh). The audit log (--audit-log-path) is
# recorded: it is event for event what the webhook receives (../shared/kube/README.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
KUBE=${KUBE:-$HERE/../shared/kube}
OUT=$HERE/tests/data/kube-identity
mkdir -p "$OUT"
POLICY=$(mktemp /tmp/auditsink-record-policy-XXXXXX.yaml)
# ConfigMaps with their bodies (object history diffs them), the API server's own start-up
# traffic left out (it is most of a fresh server's log), everything else as metadata.
cat > "$POLICY" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  users: ["system:apiserver"]
- level: RequestResponse
  resources: [{group: "", resources: ["configmaps"]}]
- level: Metadata
YAML

run() {  # cluster-name colour-1 colour-2 apiserver-port etcd-port
  local name=$1 first=$2 second=$3 state
  state=$(mktemp -d /tmp/auditsink-record-XXXXXX)
  "$KUBE/up.sh" --state "$state" --no-webhook --policy "$POLICY" --apiserver-port "$4" --etcd-port "$5" >/dev/null
  # shellcheck disable=SC1091
  source "$state/env.sh"
  local k=("$KUBECTL" --cache-dir="$state/kubectl-cache")
  "${k[@]}" create namespace ops
  # mallory may manage ConfigMaps in ops; admin acts as mallory (admin is system:masters,
  # which may impersonate anyone).
  "${k[@]}" -n ops create role cm-editor --verb=get,list,create,update,patch,delete \
    --resource=configmaps
  "${k[@]}" -n ops create rolebinding mallory-cm --role=cm-editor --user=mallory
  "${k[@]}" --as=mallory -n ops create configmap settings --from-literal=colour="$first"
  "${k[@]}" --as=mallory -n ops get configmaps -o name
  "${k[@]}" --as=mallory -n ops patch configmap settings --type=merge \
    -p "{\"data\":{\"colour\":\"$second\"}}"
  "${k[@]}" --as=mallory -n ops get secrets || true          # forbidden: 403 as mallory
  "${k[@]}" --as=mallory --as-group=system:masters get namespaces -o name
  "${k[@]}" -n ops get configmap settings -o name              # admin as itself
  "${k[@]}" --kubeconfig "$state/alice.kubeconfig" -n ops get configmaps || true  # 403
  "$KUBE/down.sh" --state "$state" >/dev/null
  gzip -9 -n -c "$state/audit.log" > "$OUT/$name.log.gz"
  rm -rf "$state"
}

run cluster-a blue green 17443 24790
run cluster-b red yellow 17543 24890
rm -f "$POLICY"
ls -l "$OUT"
