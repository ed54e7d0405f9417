#!/usr/bin/env bash
# Builds the pinned Helm CLI (helm.sh/helm/v3) into bin/helm with `go install
# module@version` from the Go module proxy (the module has no replace
# directives); the add-on runner (src/addons/helm.c) drives it. The version and
# the default Kubernetes version of `helm template` are set through ldflags as
# Helm's own Makefile does, so `helm version --short` reports the pin.
#
# Usage: scripts/build-helm.sh [--force]
#   Skips the build when bin/helm already reports the pinned version.
#   Environment: GO (go command).
set -euo pipefail

HELM_MODULE=helm.sh/helm/v3
HELM_VERSION=v3.22.0

# shellcheck source=scripts/go-helper.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-helper.sh"
go_helper_init helm 10 "$@"
OUT="$ROOT/bin/helm"

if [[ $FORCE -eq 0 && -x "$OUT" && "$OUT" -nt "$0" ]] &&
   [[ "$("$OUT" version --short 2>/dev/null)" == "$HELM_VERSION" ]]; then
  say "bin/helm is up to date ($HELM_VERSION); use --force to rebuild"
  exit 0
fi

start=$SECONDS
say "using $("$GO" version)"
# The module's go.mod gives the client-go version, from which Helm's Makefile
# derives the default Kubernetes version (client-go v0.N -> Kubernetes 1.N).
json="$(cd / && GOFLAGS= "$GO" mod download -json "$HELM_MODULE@$HELM_VERSION")"
src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
if [[ -z "$src" || ! -f "$src/go.mod" ]]; then
  say "module download failed:"; echo "$json" >&2; exit 1
fi
k8s_minor="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$src/go.mod" | head -n 1)"
if [[ -z "$k8s_minor" ]]; then
  say "cannot read the client-go version from $HELM_MODULE's go.mod"; exit 1
fi

ldflags="-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION"
ldflags+=" -X $HELM_MODULE/internal/version.gitTreeState=clean"
for pkg in pkg/chartutil pkg/lint/rules; do
  ldflags+=" -X $HELM_MODULE/$pkg.k8sVersionMajor=1 -X $HELM_MODULE/$pkg.k8sVersionMinor=$k8s_minor"
done

say "building $HELM_MODULE@$HELM_VERSION (a cold build takes a few minutes)"
mkdir -p "$ROOT/bin"
gobin="$(mktemp -d "$ROOT/bin/.helm-build.XXXXXX")"
trap 'rm -rf "$gobin"' EXIT
# Outside any module so that no go.mod of this repository is involved.
(cd / && CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS= "$GO" install -trimpath -ldflags "$ldflags" \
  "$HELM_MODULE/cmd/helm@$HELM_VERSION")
mv -f "$gobin/helm" "$OUT"
say "built bin/helm ($("$OUT" version --short)) in $((SECONDS - start))s"
