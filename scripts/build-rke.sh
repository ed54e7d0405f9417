#!/usr/bin/env bash
# Builds the pinned rke binary (RKE1, github.com/rancher/rke) into bin/rke from
# the Go module proxy. rke's go.mod has replace directives, which `go install
# module@version` refuses, so the module is downloaded, copied to a writable
# build dir (.cache/tools/) and built there with its own go.mod.
#
# Usage: scripts/build-rke.sh [--force]
#   Skips the build when bin/rke already reports the pinned version.
#   Environment: GO (go command).
set -euo pipefail

RKE_MODULE=github.com/rancher/rke
RKE_VERSION=v1.8.6   # newest v1.8.x the Go module proxy serves

# shellcheck source=scripts/go-helper.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-helper.sh"
go_helper_init rke 10 "$@"
OUT="$ROOT/bin/rke"
BUILD="$ROOT/.cache/tools/rke-$RKE_VERSION"

if [[ $FORCE -eq 0 && -x "$OUT" && "$OUT" -nt "$0" ]] &&
   [[ "$("$OUT" --version 2>/dev/null)" == *" $RKE_VERSION" ]]; then
  say "bin/rke is up to date ($RKE_VERSION); use --force to rebuild"
  exit 0
fi

start=$SECONDS
say "using $("$GO" version)"
say "downloading $RKE_MODULE@$RKE_VERSION from the module proxy"
# Outside any module so that no go.mod of this repository is involved.
json="$(cd / && GOFLAGS=-mod=mod "$GO" mod download -json "$RKE_MODULE@$RKE_VERSION")"
src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
if [[ -z "$src" || ! -f "$src/go.mod" ]]; then
  say "module download failed:"; echo "$json" >&2; exit 1
fi

say "copying the module to ${BUILD#"$ROOT"/} (the module cache is read-only)"
rm -rf "$BUILD"
mkdir -p "$BUILD"
cp -R "$src/." "$BUILD/"
chmod -R u+w "$BUILD"

cd "$BUILD"
mod_flag=-mod=mod
[[ -d vendor ]] && mod_flag=-mod=vendor
say "downloading rke's dependencies"
GOFLAGS=$mod_flag "$GO" mod download
say "compiling rke $RKE_VERSION (a cold build takes a few minutes)"
mkdir -p "$ROOT/bin"
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT
CGO_ENABLED=0 GOFLAGS=$mod_flag "$GO" build -trimpath -buildvcs=false \
  -ldflags "-s -w -X main.VERSION=$RKE_VERSION" -o "$tmp" .
mv -f "$tmp" "$OUT"
trap - EXIT
say "built bin/rke ($("$OUT" --version)) in $((SECONDS - start))s"
