#!/bin/bash
# Starts a Kafka node (broker, controller or both) from a properties file; SIGTERM makes it shut
# down cleanly (a broker moves its leaderships away first).
# Usage: kafka-server-start.sh server.properties [--override property=value]...
if [ $# -lt 1 ]; then
  echo "usage: $0 server.properties [--override property=value]..." >&2
  exit 1
fi
bin=$(dirname "$0")
# The installation's configuration and logs (the Confluent layout's image sets /etc/kafka and
# /var/log/kafka here).
config=$bin/../config
logs=$bin/../logs
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
export KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$config/log4j2.properties -Dlog4j.configuration=file:$config/log4j.properties}
export LOG_DIR=${LOG_DIR:-$logs}
export KAFKA_GC_LOG_OPTS=${KAFKA_GC_LOG_OPTS:--Xlog:gc*:file=$LOG_DIR/kafkaServer-gc.log:time,tags:filecount=10,filesize=100M}
exec "$bin/kafka-run-class.sh" kafka.Kafka "$@"
