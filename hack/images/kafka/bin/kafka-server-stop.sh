#!/bin/bash
# Asks every Kafka node of this container to shut down cleanly (SIGTERM), as a preStop hook can.
# Without procps: the processes are found by their command line under /proc.
stopped=0
for cmdline in /proc/[0-9]*/cmdline; do
  pid=${cmdline#/proc/}
  pid=${pid%/cmdline}
  if tr '\0' ' ' <"$cmdline" 2>/dev/null | grep -q ' kafka\.Kafka '; then
    kill -TERM "$pid" && stopped=$((stopped + 1))
  fi
done
if [ "$stopped" -eq 0 ]; then
  echo "no Kafka server to stop" >&2
  exit 1
fi
