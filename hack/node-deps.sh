#!/usr/bin/env bash
# Installs, from the machine's Debian packages, what the testbed's real node runs on: the
# container runtime (containerd, runc), the CNI plugins, the tools the kubelet and kube-proxy call
# (iptables, conntrack, mount/nsenter), and what hack/build-images.sh uses: mmdebstrap, which
# builds the images' root filesystems from the machine's own apt sources, gcc with the static C
# library for the pause program, unzip to read the Kafka jars.
# Idempotent: installs only what is missing, and prints nothing when everything is there.
set -euo pipefail

packages=(containerd runc containernetworking-plugins iptables conntrack iproute2 util-linux mount
  mmdebstrap gcc libc6-dev unzip)

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done
((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
  echo "the testbed's node needs these Debian packages: ${missing[*]}; run hack/node-deps.sh as root (or apt-get install them)" >&2
  exit 1
fi
echo "installing node packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet; refresh them once if the install cannot find one.
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's containerd package is not started here (no init system runs it); the testbed starts its
# own containerd with its own socket and directories, so a system-wide one would not be used anyway.
