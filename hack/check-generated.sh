#!/usr/bin/env bash
# Fails when the committed CRD or install bundle differ from what the code generates.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/hack/update-generated.sh"
if ! git diff --exit-code -- crds deploy; then
  echo "crds/ or deploy/ are out of date: run hack/update-generated.sh and commit the result" >&2
  exit 1
fi
