#!/usr/bin/env bash
# Fetches the Apache Kafka jars the tests run brokers from (Maven Central, through the machine's
# Maven settings) into <cache>/kafka/<version>/libs (see hack/cache.sh). Usage: hack/fetch-kafka.sh [version]
# Without a version: the pinned KRaft version and the ZooKeeper-mode version.
# Idempotent: a complete libs folder is not fetched again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/versions.sh
source "$root/hack/versions.sh"
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"

mkdir -p "$cache/kafka"
# One fetch at a time, even when several test binaries start at once.
exec 9>"$cache/kafka/.lock"
flock 9

fetch() {
  local version=$1
  local dir="$cache/kafka/$version"
  if [[ -f "$dir/.complete" ]]; then
    return
  fi
  mkdir -p "$dir"
  cat >"$dir/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kafkaoperator.testbed</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  echo "fetching Kafka $version jars" >&2
  mvn -q -B -f "$dir/pom.xml" -Dmaven.repo.local="$cache/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs"
  cat >"$dir/log4j2.properties" <<'EOF'
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
  touch "$dir/.complete"
}

if (($# > 0)); then
  for v in "$@"; do fetch "$v"; done
else
  fetch "$KAFKA_VERSION"
  fetch "$KAFKA_ZK_VERSION"
fi
