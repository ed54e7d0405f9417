#!/usr/bin/env bash
# Smoke test of clustermgmt-localk8s against a real cluster it starts:
# nodes Ready, a Deployment's pods Running, a Service's endpoints, a Job
# completing, TokenRequest, a node made NotReady and back, a restart that
# keeps the data and changes the node count, and a clean stop.
#
# Usage: localk8s/smoke.sh [path/to/clustermgmt-localk8s]
#   Needs kubectl (Debian: apt-get install kubernetes-client). Builds the
#   binary with scripts/build-localk8s.sh when it is missing. Prints one line
#   per check and "N passed, N failed" at the end; exits non-zero on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/bin/clustermgmt-localk8s}"
NAME=smoke
NODES=3

if ! command -v kubectl >/dev/null 2>&1; then
  echo "smoke: kubectl is required (Debian: apt-get install kubernetes-client)" >&2
  exit 2
fi
if [[ ! -x "$BIN" ]]; then
  "$ROOT/scripts/build-localk8s.sh"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/localk8s-smoke.XXXXXX")"
DATA="$WORK/data"
LOG="$WORK/localk8s.log"
PID=""
passed=0
failed=0

cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  if [[ $failed -gt 0 ]]; then
    echo "smoke: last lines of the helper's log:" >&2
    tail -n 40 "$LOG" >&2 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { # check "description" command...
  local what="$1"; shift
  if "$@" >"$WORK/out" 2>&1; then ok "$what"; else not_ok "$what"; sed 's/^/    /' "$WORK/out" | tail -n 20; fi
}
k() { kubectl --kubeconfig "$DATA/admin.kubeconfig" "$@"; }

# retry SECONDS command...: run until it succeeds or the time is up.
retry() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [[ $SECONDS -lt $deadline ]] || return 1
    sleep 0.5
  done
}

start() { # start NODES
  "$BIN" --data-dir "$DATA" --name "$NAME" --nodes "$1" >>"$LOG" 2>&1 &
  PID=$!
  local deadline=$((SECONDS + 180))
  until [[ -f "$DATA/ready.json" ]]; do
    if ! kill -0 "$PID" 2>/dev/null; then echo "helper exited"; return 1; fi
    [[ $SECONDS -lt $deadline ]] || { echo "not ready after 180s"; return 1; }
    sleep 0.2
  done
}

stop() {
  kill -TERM "$PID"
  local deadline=$((SECONDS + 60))
  while kill -0 "$PID" 2>/dev/null; do
    [[ $SECONDS -lt $deadline ]] || { echo "still running 60s after SIGTERM"; return 1; }
    sleep 0.2
  done
  wait "$PID" 2>/dev/null || { echo "exit status $?"; return 1; }
  PID=""
  [[ ! -e "$DATA/ready.json" ]] || { echo "ready.json left behind"; return 1; }
}

ready_nodes() { # ready_nodes N: exactly N nodes, all Ready
  local out
  out="$(k get nodes --no-headers)" || return 1
  [[ "$(grep -c . <<<"$out")" -eq "$1" ]] && ! grep -qv ' Ready ' <<<"$out"
}

running_pods() { # running_pods NAMESPACE SELECTOR N: N pods Running, ready, with an IP
  local out
  out="$(k -n "$1" get pods -l "$2" --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.status.podIP} {.status.containerStatuses[0].ready}{"\n"}{end}')" || return 1
  [[ "$(grep -Ec '^10\.[0-9.]+ true$' <<<"$out")" -eq "$3" ]]
}

pod_count() { # pod_count NAMESPACE SELECTOR N
  local out
  out="$(k -n "$1" get pods -l "$2" --no-headers 2>/dev/null)" || return 1
  [[ "$(grep -c . <<<"$out")" -eq "$3" ]]
}

endpoints() { # endpoints NAMESPACE SERVICE N: the service's slices list N addresses
  local out
  out="$(k -n "$1" get endpointslices -l "kubernetes.io/service-name=$2" \
    -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]}{"\n"}{end}')" || return 1
  [[ "$(grep -c . <<<"$out")" -eq "$3" ]]
}

ready_file() {
  grep -q '"endpoint": "https://127.0.0.1:' "$DATA/ready.json" &&
    grep -q "\"kubeconfig\": \"$DATA/admin.kubeconfig\"" "$DATA/ready.json" &&
    grep -q "\"pid\": $PID" "$DATA/ready.json" &&
    grep -q '"version": "v1\.' "$DATA/ready.json"
}

modes() {
  [[ "$(stat -c %a "$DATA/admin.kubeconfig")" == 600 && "$(stat -c %a "$DATA/pki")" == 700 &&
     "$(stat -c %a "$DATA/pki/ca.key")" == 600 && "$(stat -c %a "$DATA/pki/sa.key")" == 600 ]]
}

node_status() { # node_status NODE True|False
  [[ "$(k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == "$2" ]]
}

token_works() {
  local token
  token="$(k -n smoke create token demo --duration=10m)" || return 1
  [[ "$token" == *.*.* ]] || return 1
  # The token authenticates as the service account.
  kubectl --server "$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')" \
    --certificate-authority "$DATA/pki/ca.crt" --token "$token" auth whoami -o jsonpath='{.status.userInfo.username}' |
    grep -qx 'system:serviceaccount:smoke:demo'
}

echo "smoke: starting $BIN with $NODES nodes in $DATA"
check "cluster starts and writes ready.json" start "$NODES"
check "ready.json names endpoint, kubeconfig, pid and version" ready_file
check "kubeconfig 0600, pki dir 0700, keys 0600" modes
check "$NODES nodes Ready" retry 30 ready_nodes "$NODES"
check "node leases renewed in kube-node-lease" retry 30 k -n kube-node-lease get lease "$NAME-node-0"
check "namespace created" k create namespace smoke
check "deployment created" k -n smoke create deployment web --image=registry.example/web:1 --replicas=2
check "2 deployment pods Running and ready" retry 60 running_pods smoke app=web 2
check "deployment reports 2 available replicas" \
  k -n smoke wait deployment/web --for=jsonpath='{.status.availableReplicas}'=2 --timeout=60s
check "service created" k -n smoke expose deployment web --port=80
check "service gets 2 endpoints" retry 30 endpoints smoke web 2
check "job created" k -n smoke create job once --image=registry.example/once:1
check "job completes" k -n smoke wait job/once --for=condition=Complete --timeout=60s
check "service account created" k -n smoke create serviceaccount demo
check "kubectl create token works and the token authenticates" token_works
check "annotate a node not-ready" k annotate node "$NAME-node-1" localk8s.cratekube.io/not-ready=true
check "node reports Ready=False" retry 30 node_status "$NAME-node-1" False
check "remove the annotation" k annotate node "$NAME-node-1" localk8s.cratekube.io/not-ready-
check "node reports Ready=True" retry 30 node_status "$NAME-node-1" True
check "scale the deployment down to 1" k -n smoke scale deployment web --replicas=1
check "the extra pod is deleted" retry 30 pod_count smoke app=web 1
port="$(sed -n 's/.*"endpoint": "https:\/\/127.0.0.1:\([0-9]*\)".*/\1/p' "$DATA/ready.json")"
check "SIGTERM stops it cleanly and removes ready.json" stop

echo "smoke: restarting with 2 nodes"
check "restart with the same data dir" start 2
check "same port after restart" grep -q "\"endpoint\": \"https://127.0.0.1:$port\"" "$DATA/ready.json"
check "2 nodes Ready, the third removed" retry 30 ready_nodes 2
check "deployment survived the restart" k -n smoke get deployment web
check "service account survived the restart" k -n smoke get serviceaccount demo
check "token still works after restart (same signing key)" token_works
check "SIGTERM stops it cleanly again" stop

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
