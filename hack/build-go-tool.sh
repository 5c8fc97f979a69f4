#!/usr/bin/env bash
# Builds a Go tool the testbed's node runs from Go modules, at the version pinned in
# hack/versions.sh, into <cache>/<tool>/<version>/bin (see hack/cache.sh):
#   coredns  the node's cluster DNS (COREDNS_VERSION)
#   crane    go-containerregistry's registry and its client (CRANE_VERSION): the node's image
#            registry, which serves the images Kubernetes pulls on every start (`:latest`)
# Usage: hack/build-go-tool.sh coredns|crane
# Idempotent: a binary of the pinned version that is already there is not rebuilt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/versions.sh
source "$root/hack/versions.sh"
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"

tool=${1:?usage: hack/build-go-tool.sh coredns|crane}
case "$tool" in
  coredns)
    module=github.com/coredns/coredns package=$module version=$COREDNS_VERSION check=-version
    ;;
  crane)
    module=github.com/google/go-containerregistry
    package=$module/cmd/crane version=$CRANE_VERSION check=version
    ;;
  *)
    echo "unknown tool $tool (known: coredns, crane)" >&2
    exit 2
    ;;
esac

dir="$cache/$tool/$version"
bin="$dir/bin"
stamp="$bin/.version"
want="$tool=$version"
mkdir -p "$bin"
# One build at a time, even when several test binaries start at once.
exec 9>"$cache/$tool/.lock"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$bin/$tool" ]]; then
  exit 0
fi

export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/build"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

# A wrapper module requiring the pinned release: `go install pkg@version` would do too, but the
# wrapper keeps the resolved dependency versions (go.sum) next to the binary for a later look.
work="$dir/wrapper"
mkdir -p "$work"
cat >"$work/go.mod" <<EOM
module kafkaoperator.local/$tool-testbed

go 1.24

require $module $version
EOM
cat >"$work/tools.go" <<EOM
//go:build tools

package tools

import _ "$package"
EOM

echo "building $tool $version" >&2
(
  cd "$work"
  go mod tidy -e >/dev/null 2>&1 || true
  go build -ldflags "-s -w" -o "$bin/$tool" "$package"
)
"$bin/$tool" "$check" >/dev/null
echo "$want" >"$stamp"
echo "$tool in $bin" >&2
