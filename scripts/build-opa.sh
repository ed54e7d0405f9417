#!/usr/bin/env bash
# Builds the pinned Open Policy Agent binary (github.com/open-policy-agent/opa)
# into bin/opa with `go install module@version` from the Go module proxy (the
# module has no replace directives). Built without cgo, so without the
# optional Wasm engine; Rego evaluation and the REST API are complete.
#
# Usage: scripts/build-opa.sh [--force]
#   Skips the build when bin/opa already reports the pinned version.
#   Environment: GO (go command).
set -euo pipefail

OPA_MODULE=github.com/open-policy-agent/opa
OPA_VERSION=v1.22.3

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bin/opa"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-opa: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { printf 'build-opa: %s\n' "$*" >&2; }

GO="${GO:-}"
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO=go
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else say "Go is not installed (set GO=/path/to/go)"; exit 1
  fi
fi

if [[ $FORCE -eq 0 && -x "$OUT" && "$OUT" -nt "$0" ]] &&
   "$OUT" version 2>/dev/null | grep -qx "Version: ${OPA_VERSION#v}"; then
  say "bin/opa is up to date ($OPA_VERSION); use --force to rebuild"
  exit 0
fi

start=$SECONDS
say "using $("$GO" version)"
say "building $OPA_MODULE@$OPA_VERSION (a cold build takes a few minutes)"
mkdir -p "$ROOT/bin"
gobin="$(mktemp -d "$ROOT/bin/.opa-build.XXXXXX")"
trap 'rm -rf "$gobin"' EXIT
# Outside any module so that no go.mod of this repository is involved.
(cd / && CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS= "$GO" install -trimpath -ldflags "-s -w" "$OPA_MODULE@$OPA_VERSION")
mv -f "$gobin/opa" "$OUT"
say "built bin/opa ($("$OUT" version | head -n 1)) in $((SECONDS - start))s"
