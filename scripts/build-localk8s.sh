#!/usr/bin/env bash
# Builds the local engine's helper, bin/clustermgmt-localk8s, from localk8s/
# (a Go module: etcd, kube-apiserver, kube-scheduler, kube-controller-manager
# and a node simulator in one process). Needs Go and the Go module proxy only.
#
# Usage: scripts/build-localk8s.sh [--force]
#   Skips the build when the binary is newer than every source file.
#   Environment: GO (go command), LOCALK8S_BUILD_FLAGS (extra go build flags).
set -euo pipefail

# Pinned versions; they must match localk8s/go.mod.
KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.6.16

# shellcheck source=scripts/go-helper.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-helper.sh"
go_helper_init localk8s 9 "$@"
SRC="$ROOT/localk8s"
OUT="$ROOT/bin/clustermgmt-localk8s"

# Check that go.mod pins what this script says.
for pin in "k8s.io/kubernetes $KUBERNETES_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION"; do
  if ! grep -Eq "^[[:space:]]*${pin// /[[:space:]]+}([[:space:]]|$)" "$SRC/go.mod"; then
    say "localk8s/go.mod does not require $pin; update the pins in $0 and go.mod together"
    exit 1
  fi
done

if [[ $FORCE -eq 0 && -x "$OUT" ]]; then
  newer="$(find "$SRC" "$0" -type f \( -name '*.go' -o -name go.mod -o -name go.sum -o -name 'build-localk8s.sh' \) \
    -newer "$OUT" -print -quit)"
  if [[ -z "$newer" ]]; then
    say "bin/clustermgmt-localk8s is up to date ($("$OUT" --version 2>/dev/null || echo '?')); use --force to rebuild"
    exit 0
  fi
  say "rebuilding: $newer changed"
fi

mkdir -p "$ROOT/bin"
cd "$SRC"
say "using $("$GO" version)"
say "downloading modules (k8s.io/kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION)"
"$GO" mod download

total="$("$GO" list -deps . 2>/dev/null | wc -l | tr -d ' ')"
minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

say "compiling (${total} packages; a cold build takes several minutes)"
start=$SECONDS
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# go build -v names each package as it compiles it; show a running count.
"$GO" build -v -trimpath -buildvcs=false -ldflags "$ldflags" ${LOCALK8S_BUILD_FLAGS:-} -o "$tmp" . 2>&1 |
  awk -v total="$total" '
    /^[#]|: |^go: / { print; fflush(); next }   # errors and go messages pass through
    { n++; if (n % 50 == 0) { printf "build-localk8s: compiled %d packages (of at most %d)\n", n, total; fflush() } }
    END { printf "build-localk8s: compiled %d packages\n", n }' >&2
status=${PIPESTATUS[0]}
if [[ $status -ne 0 || ! -s "$tmp" ]]; then
  say "go build failed (exit $status)"
  exit 1
fi
mv -f "$tmp" "$OUT"
trap - EXIT
say "built bin/clustermgmt-localk8s ($("$OUT" --version)) in $((SECONDS - start))s"
