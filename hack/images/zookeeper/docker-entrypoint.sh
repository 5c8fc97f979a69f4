#!/bin/bash
# The image's entrypoint, as the official zookeeper image's: when no zoo.cfg is in ZOO_CONF_DIR
# (a mounted one wins), writes one from the ZOO_* variables; writes ZOO_MY_ID to the data
# directory's myid when there is none; then runs the command (zkServer.sh start-foreground).
#   ZOO_SERVERS     the ensemble, "server.1=host:2888:3888;2181 server.2=..." (default: this node)
#   ZOO_MY_ID       this node's id (default 1)
#   ZOO_4LW_COMMANDS_WHITELIST, ZOO_CFG_EXTRA (more lines, space separated), and the timing and
#   limits variables of the image's environment (ZOO_TICK_TIME, ZOO_INIT_LIMIT, ...)
set -e

config="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f "$config" ]]; then
  {
    echo "dataDir=$ZOO_DATA_DIR"
    echo "dataLogDir=$ZOO_DATA_LOG_DIR"
    echo "tickTime=$ZOO_TICK_TIME"
    echo "initLimit=$ZOO_INIT_LIMIT"
    echo "syncLimit=$ZOO_SYNC_LIMIT"
    echo "autopurge.snapRetainCount=$ZOO_AUTOPURGE_SNAPRETAINCOUNT"
    echo "autopurge.purgeInterval=$ZOO_AUTOPURGE_PURGEINTERVAL"
    echo "maxClientCnxns=$ZOO_MAX_CLIENT_CNXNS"
    echo "standaloneEnabled=$ZOO_STANDALONE_ENABLED"
    echo "admin.enableServer=$ZOO_ADMINSERVER_ENABLED"
    if [[ -n "${ZOO_4LW_COMMANDS_WHITELIST:-}" ]]; then
      echo "4lw.commands.whitelist=$ZOO_4LW_COMMANDS_WHITELIST"
    fi
    for server in ${ZOO_SERVERS:-server.1=localhost:2888:3888;2181}; do
      echo "$server"
    done
    for line in ${ZOO_CFG_EXTRA:-}; do
      echo "$line"
    done
  } >"$config"
fi

if [[ ! -f "$ZOO_DATA_DIR/myid" ]]; then
  echo "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
fi

exec "$@"
