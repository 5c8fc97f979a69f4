# Where the testbed keeps heavy, version-pinned artefacts (Go builds, Kafka jars, images): outside
# the clone, so a fresh clone on the same machine reuses them. Sourced by the hack/ scripts.
# KAFKA_OPERATOR_CACHE overrides it; src/testbed/process.rs computes the same path.
if [[ -n "${KAFKA_OPERATOR_CACHE:-}" ]]; then
  cache="$KAFKA_OPERATOR_CACHE"
elif [[ -n "${HOME:-}" ]]; then
  cache="$HOME/.cache/kafka-operator"
else
  cache="$root/.cache"
fi
mkdir -p "$cache"
