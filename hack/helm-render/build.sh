#!/usr/bin/env bash
# Builds hack/helm-render (a stand-in for `helm template`) from Debian's Go packages in GOPATH
# mode: golang-go, golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev (hack/setup.sh
# installs them). Usage: hack/helm-render/build.sh OUTPUT_BINARY
# The source is linked into a private GOPATH so nothing is written under /usr/share/gocode.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: $0 OUTPUT_BINARY}
command -v go >/dev/null || { echo "helm-render: Go is missing: run hack/setup.sh (installs golang-go)" >&2; exit 1; }
for pkg in github.com/Masterminds/sprig sigs.k8s.io/yaml; do
  [ -d "/usr/share/gocode/src/$pkg" ] || { echo "helm-render: Go package $pkg is missing under /usr/share/gocode: run hack/setup.sh" >&2; exit 1; }
done
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/umlmon.io"
ln -s "$here" "$gopath/src/umlmon.io/helm-render"
cd "$gopath/src/umlmon.io/helm-render"
mkdir -p "$(dirname "$out")"
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= \
  go build -o "$out.tmp.$$" . && mv "$out.tmp.$$" "$out"
