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

# shellcheck source=scripts/go-helper.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-helper.sh"
go_helper_init opa 10 "$@"
OUT="$ROOT/bin/opa"

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
