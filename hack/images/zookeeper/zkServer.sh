#!/bin/bash
# Runs a ZooKeeper server of this installation in the foreground (the only way a container
# runs it): zkServer.sh start-foreground [zoo.cfg]
#   ZOOCFGDIR   where zoo.cfg and logback.xml are (default: the installation's conf/)
#   JVMFLAGS    JVM options (heap and the like); SERVER_JVMFLAGS too
#   ZOO_LOG_DIR where the server writes its files besides the console (default /logs)
#   JAVA_HOME   the JRE (default: java on the PATH)
set -e
home=$(cd "$(dirname "$0")/.." && pwd)
conf_dir=${ZOOCFGDIR:-$home/conf}
case "${1:-}" in
  start-foreground) ;;
  *)
    echo "usage: $0 start-foreground [config file]" >&2
    exit 1
    ;;
esac
config=${2:-$conf_dir/zoo.cfg}
java=java
if [[ -n "${JAVA_HOME:-}" ]]; then
  java="$JAVA_HOME/bin/java"
fi
# The word splitting of the option variables is wanted: each holds several JVM flags.
# shellcheck disable=SC2086
exec "$java" -Dzookeeper.log.dir="${ZOO_LOG_DIR:-/logs}" \
  -Dlogback.configurationFile="file:$conf_dir/logback.xml" \
  -XX:+HeapDumpOnOutOfMemoryError -XX:OnOutOfMemoryError='kill -9 %p' \
  ${JVMFLAGS:-} ${SERVER_JVMFLAGS:-} -cp "$home/lib/*:$conf_dir" \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$config"
