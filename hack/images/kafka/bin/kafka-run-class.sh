#!/bin/bash
# Runs a Java class of this Kafka installation with every jar of libs/ on the classpath.
# The JVM options come from the variables Kafka's own scripts read, so a pod configured for the
# official image behaves the same here:
#   KAFKA_HEAP_OPTS             heap (default -Xmx256M; kafka-server-start.sh sets -Xmx1G -Xms1G)
#   KAFKA_JVM_PERFORMANCE_OPTS  GC and JIT flags (default G1 with short pauses)
#   KAFKA_GC_LOG_OPTS           GC log (set by kafka-server-start.sh)
#   KAFKA_LOG4J_OPTS            logging configuration (default: config/tools-log4j*.properties)
#   JMX_PORT, KAFKA_JMX_OPTS    remote JMX, on JMX_PORT when it is set
#   KAFKA_OPTS, EXTRA_CLASSPATH anything else
#   LOG_DIR                     where log files go (default <installation>/logs; a server on a
#                               read-only root filesystem needs LOG_DIR elsewhere)
#   JAVA_HOME                   the JRE (default: java on the PATH)
set -e
if [ $# -lt 1 ]; then
  echo "usage: $0 [-name NAME] class [options]" >&2
  exit 1
fi
# Where this installation keeps its jars, configuration and logs (the Confluent layout's image
# sets /usr/share/java/kafka, /etc/kafka and /var/log/kafka here).
base=$(cd "$(dirname "$0")/.." && pwd)
libs=$base/libs
config=$base/config
logs=$base/logs

LOG_DIR=${LOG_DIR:-$logs}
# Only servers write log files; a tool run on a read-only root filesystem still works.
if ! mkdir -p "$LOG_DIR" 2>/dev/null; then
  echo "kafka-run-class.sh: cannot create LOG_DIR $LOG_DIR (set LOG_DIR to a writable directory for log files)" >&2
fi

heap=${KAFKA_HEAP_OPTS:--Xmx256M}
performance=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
# Both logging systems are configured: Kafka 4 logs through log4j 2, the 3.x line through log4j 1.
log4j=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$config/tools-log4j2.properties -Dlog4j.configuration=file:$config/tools-log4j.properties}
jmx=
if [ -n "${JMX_PORT:-}" ]; then
  jmx="${KAFKA_JMX_OPTS:--Dcom.sun.management.jmxremote -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false} -Dcom.sun.management.jmxremote.port=$JMX_PORT"
fi
classpath="$libs/*"
if [ -n "${EXTRA_CLASSPATH:-}" ]; then
  classpath="$classpath:$EXTRA_CLASSPATH"
fi
java=java
if [ -n "${JAVA_HOME:-}" ]; then
  java="$JAVA_HOME/bin/java"
fi

# The word splitting of the option variables is wanted: each holds several JVM flags.
# shellcheck disable=SC2086
exec "$java" $heap $performance ${KAFKA_GC_LOG_OPTS:-} $jmx $log4j "-Dkafka.logs.dir=$LOG_DIR" \
  ${KAFKA_OPTS:-} -cp "$classpath" "$@"
