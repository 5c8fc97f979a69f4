#!/usr/bin/env bash
# Builds the Kubernetes the integration tests run against from Go modules: the control plane
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl), the node (kubelet,
# kube-proxy) and etcd, into <cache>/k8s/<version>/bin (see hack/cache.sh).
# Idempotent: a binary of the pinned version that is already there is not rebuilt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/versions.sh
source "$root/hack/versions.sh"

# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"
bin="$cache/k8s/$KUBERNETES_VERSION-etcd-$ETCD_VERSION/bin"
stamp="$bin/.version"
want="kubernetes=$KUBERNETES_VERSION etcd=$ETCD_VERSION"
mkdir -p "$bin" "$cache/k8s"
# One build at a time, even when several test binaries start at once.
exec 9>"$cache/k8s/.lock-$KUBERNETES_VERSION"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
  && [[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -x "$bin/kube-controller-manager" && -x "$bin/etcd" ]] \
  && [[ -x "$bin/kubelet" && -x "$bin/kube-scheduler" && -x "$bin/kube-proxy" ]]; then
  exit 0
fi

export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/build"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

k8s_minor=${KUBERNETES_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
staging_version="v0.${KUBERNETES_VERSION#v1.}"

# k8s.io/kubernetes replaces its staging modules with local paths; a wrapper module points each
# of them at its published twin so the commands build from the module proxy.
work="$cache/k8s/wrapper-$KUBERNETES_VERSION"
mkdir -p "$work"
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)
if ((k8s_minor >= 36)); then staging+=(cri-streaming streaming); fi

{
  echo "module kafkaoperator.local/k8s-testbed"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  for m in "${staging[@]}"; do
    echo "replace k8s.io/$m => k8s.io/$m $staging_version"
  done
} >"$work/go.mod"
cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
EOF

echo "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy $KUBERNETES_VERSION (first build takes a while)" >&2
(
  cd "$work"
  go mod tidy -e >/dev/null 2>&1 || true
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
  go build -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy
)

echo "building etcd $ETCD_VERSION" >&2
etcd_work="$cache/k8s/etcd-wrapper-$ETCD_VERSION"
mkdir -p "$etcd_work"
cat >"$etcd_work/go.mod" <<EOF
module kafkaoperator.local/etcd-testbed

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
cat >"$etcd_work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
(
  cd "$etcd_work"
  go mod tidy -e >/dev/null 2>&1 || true
  go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
)

echo "$want" >"$stamp"
echo "control plane binaries in $bin" >&2
