#!/bin/bash
# Record tests/data/rules/audit.log.gz: the API server's own audit log of ../shared/kube's
# scenario.sh followed by rules-scenario.sh, at Request level (pods at RequestResponse: the
# rules read request bodies and the created pod's name), every stage kept. The policy presets
# are replayed over it by tests/setup/test_presets_feed_rules.py.
#   tests/e2e/record-rules-trace.sh [STATE_DIR]      (needs the harness built: build.sh)
# The harness's kube-apiserver (Go 1.19, vendored reflect2 1.0.1) corrupts memory now and then
# when it encodes maps (json-iterator's sorted map keys); a run with any panic is discarded.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KUBE=${KUBE:-$HERE/../../../shared/kube}
STATE=${1:-$(mktemp -d /tmp/auditsink-record.XXXXXX)}
OUT=$HERE/../data/rules/audit.log.gz
cat > "$STATE.policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: RequestResponse
  resources: [{group: "", resources: ["pods"]}]
- level: Request
YAML
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for attempt in 1 2 3 4 5; do
  "$KUBE/up.sh" --state "$STATE" --no-webhook --apiserver-port "$(port)" --etcd-port "$(port)" \
    --policy "$STATE.policy.yaml" -- --allow-privileged=true --feature-gates=EphemeralContainers=true >/dev/null
  ok=1
  "$KUBE/scenario.sh" --state "$STATE" >/dev/null 2>&1 || ok=0
  "$HERE/rules-scenario.sh" --state "$STATE" >"$STATE/rules-scenario.out" 2>&1 || ok=0
  "$KUBE/down.sh" --state "$STATE" >/dev/null 2>&1 || ok=0
  # The ephemeral container step is last and known to leave reflect2 panics behind it.
  panics=$(python3 - "$STATE/audit.log" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
cut = next((i for i, e in enumerate(events) if e.get("objectRef", {}).get("subresource") == "ephemeralcontainers"), len(events))
print(sum(e["stage"] == "Panic" for e in events[:cut]))
PY
)
  if [ "$ok" = 1 ] && [ "$panics" = 0 ]; then
    gzip -9 -n -c "$STATE/audit.log" > "$OUT"
    echo "recorded $(wc -l < "$STATE/audit.log") events into $OUT (attempt $attempt)"
    exit 0
  fi
  echo "attempt $attempt discarded: ok=$ok, $panics panics before the last step" >&2
  tail -3 "$STATE/rules-scenario.out" >&2
done
exit 1
