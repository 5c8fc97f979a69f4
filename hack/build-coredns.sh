#!/usr/bin/env bash
# Builds CoreDNS, the testbed node's cluster DNS, from Go modules at the version pinned in
# hack/versions.sh, into <cache>/coredns/<version>/bin (see hack/cache.sh).
# Idempotent: a binary of the pinned version that is already there is not rebuilt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/versions.sh
source "$root/hack/versions.sh"
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"

dir="$cache/coredns/$COREDNS_VERSION"
bin="$dir/bin"
stamp="$bin/.version"
want="coredns=$COREDNS_VERSION"
mkdir -p "$bin"
# One build at a time, even when several test binaries start at once.
exec 9>"$cache/coredns/.lock"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$bin/coredns" ]]; then
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
module kafkaoperator.local/coredns-testbed

go 1.24

require github.com/coredns/coredns $COREDNS_VERSION
EOM
cat >"$work/tools.go" <<'EOM'
//go:build tools

package tools

import _ "github.com/coredns/coredns"
EOM

echo "building CoreDNS $COREDNS_VERSION" >&2
(
  cd "$work"
  go mod tidy -e >/dev/null 2>&1 || true
  go build -ldflags "-s -w" -o "$bin/coredns" github.com/coredns/coredns
)
"$bin/coredns" -version >/dev/null
echo "$want" >"$stamp"
echo "CoreDNS in $bin" >&2
