#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, and the integration tests against a real
# kube-apiserver and real Kafka brokers (both brought up locally; built or fetched on first use
# into the cache outside the clone, see hack/cache.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Each step says when it starts, in seconds since the suite began.
step() { printf '\n== [%ss] %s\n' "$SECONDS" "$*"; }

step "testbed: Kubernetes, Kafka jars, the node's packages, CoreDNS, crane and images (cached in ${KAFKA_OPERATOR_CACHE:-~/.cache/kafka-operator})"
hack/build-k8s.sh
hack/fetch-kafka.sh
hack/node-deps.sh
hack/build-go-tool.sh coredns
hack/build-go-tool.sh crane
hack/build-images.sh

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated files (CRD, install bundle)"
hack/check-generated.sh

step "tests"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"

step "done"
