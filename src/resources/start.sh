#!/bin/sh
# Starts one Kafka node from the configuration the operator rendered into the ConfigMap.
# Usage: start.sh broker|controller
# Environment: POD_NAME (from the downward API), NODE_ID_BASE, KAFKA_CLUSTER_ID (KRaft only).
set -eu

role="$1"
ordinal="${POD_NAME##*-}"
NODE_ID=$((NODE_ID_BASE + ordinal))

# The official apache/kafka image keeps Kafka under /opt/kafka; Confluent images put the same
# tools on the PATH without the .sh suffix.
if [ -x /opt/kafka/bin/kafka-server-start.sh ]; then
  server_start=/opt/kafka/bin/kafka-server-start.sh
  storage_tool=/opt/kafka/bin/kafka-storage.sh
elif command -v kafka-server-start >/dev/null 2>&1; then
  server_start=kafka-server-start
  storage_tool=kafka-storage
else
  echo "start.sh: no Kafka installation found in this image (looked for /opt/kafka/bin and kafka-server-start on PATH)" >&2
  exit 1
fi

work=/tmp/kafka-operator
mkdir -p "$work" /var/lib/kafka/data
sed -e "s|\${NODE_ID}|$NODE_ID|g" -e "s|\${POD_NAME}|$POD_NAME|g" \
  "/etc/kafka-operator/$role.properties" >"$work/server.properties"

# Kafka's scripts write their own logs next to the installation by default, which is read-only.
export LOG_DIR=/tmp/kafka-logs

if [ -n "${KAFKA_CLUSTER_ID:-}" ]; then
  # Formats a new log directory with the cluster's id; an existing one is left alone, and a
  # directory of another cluster makes the node refuse to start rather than mix data.
  "$storage_tool" format --cluster-id "$KAFKA_CLUSTER_ID" --config "$work/server.properties" --ignore-formatted
fi

echo "start.sh: starting $role $POD_NAME as node $NODE_ID"
exec "$server_start" "$work/server.properties"
