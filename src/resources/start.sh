#!/bin/sh
# Starts one Kafka node from the configuration the operator rendered into the ConfigMap.
# Usage: start.sh broker|controller
# Environment: POD_NAME (from the downward API), NODE_ID_BASE, KAFKA_CLUSTER_ID (KRaft only).
# Optional: KAFKA_OPERATOR_CONFIG_DIR (where the ConfigMap is mounted, default
# /etc/kafka-operator), KAFKA_OPERATOR_WORK_DIR (scratch space, default /tmp/kafka-operator),
# LOG_DIR (Kafka's own log files, default /tmp/kafka-logs), KAFKA_OPERATOR_RACK_FILE (brokers of
# a rack-aware cluster: a downward-API file the operator fills with the rack of the pod's node).
set -eu

role="$1"
ordinal="${POD_NAME##*-}"
NODE_ID=$((NODE_ID_BASE + ordinal))
config_dir="${KAFKA_OPERATOR_CONFIG_DIR:-/etc/kafka-operator}"
work="${KAFKA_OPERATOR_WORK_DIR:-/tmp/kafka-operator}"

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

mkdir -p "$work"
sed -e "s|\${NODE_ID}|$NODE_ID|g" -e "s|\${POD_NAME}|$POD_NAME|g" \
  "$config_dir/$role.properties" >"$work/server.properties"

if [ -n "${KAFKA_OPERATOR_RACK_FILE:-}" ]; then
  # The operator writes the rack once the pod is on a node that has the rack label; the
  # kubelet then refreshes the file. A broker never starts without its rack.
  waited=0
  until [ -s "$KAFKA_OPERATOR_RACK_FILE" ]; do
    if [ $((waited % 30)) = 0 ]; then
      echo "start.sh: waiting for the operator to write this pod's rack (the zone of its node) into $KAFKA_OPERATOR_RACK_FILE"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  rack=$(cat "$KAFKA_OPERATOR_RACK_FILE")
  echo "broker.rack=$rack" >>"$work/server.properties"
  echo "start.sh: rack $rack"
fi

# Kafka's scripts write their own logs next to the installation by default, which is read-only.
export LOG_DIR="${LOG_DIR:-/tmp/kafka-logs}"

if [ -n "${KAFKA_CLUSTER_ID:-}" ]; then
  # A log directory of another Kafka cluster (a volume kept from a deleted KafkaCluster, say)
  # must not be started into this one: refuse with what to do instead.
  log_dirs=$(sed -n -e 's/^log\.dirs=//p' -e 's/^metadata\.log\.dir=//p' "$work/server.properties" | tr ',' ' ')
  unformatted=0
  for dir in $log_dirs; do
    if [ ! -f "$dir/meta.properties" ]; then
      unformatted=1
      continue
    fi
    found=$(sed -n 's/^cluster\.id=//p' "$dir/meta.properties")
    if [ -n "$found" ] && [ "$found" != "$KAFKA_CLUSTER_ID" ]; then
      echo "start.sh: $dir holds data of Kafka cluster $found, but this KafkaCluster's cluster id is $KAFKA_CLUSTER_ID." >&2
      echo "start.sh: to keep that data, set spec.clusterId: $found in the KafkaCluster; to discard it, delete this pod's PersistentVolumeClaim. Nothing was changed." >&2
      exit 1
    fi
  done
  # Formats a new log directory with the cluster's id; an existing one is left alone (as the
  # tool's --ignore-formatted would, without starting a JVM for it on every restart).
  if [ "$unformatted" = 1 ]; then
    "$storage_tool" format --cluster-id "$KAFKA_CLUSTER_ID" --config "$work/server.properties" --ignore-formatted
  fi
fi

echo "start.sh: starting $role $POD_NAME as node $NODE_ID"
exec "$server_start" "$work/server.properties"
