#!/usr/bin/env bash
# Builds the container images the testbed's node runs, as docker-archive tarballs (what
# `docker save` writes) that `ctr -n k8s.io images import` takes, into <cache>/images (see
# hack/cache.sh): no registry is reachable, so every image a pod names is built here.
#   pause      PAUSE_IMAGE, containerd's sandbox image (hack/images/pause.c, static)
#   kafka      apache/kafka:<KAFKA_VERSION>: the official image's layout (Kafka under /opt/kafka
#              with its bin/ scripts, user appuser, uid 1000) on a Debian JRE; the same for
#              KAFKA_ZK_VERSION (kafka-zookeeper-mode) or any version (kafka:VERSION)
#   cp-kafka   confluentinc/cp-kafka:latest, what that tag is (Confluent Platform 8: Kafka 4,
#              KRaft only): the Confluent Platform layout (tools on the PATH without .sh, jars in
#              /usr/share/java/kafka) with the jars of KAFKA_VERSION
#   cp-kafka-zookeeper-mode
#              confluentinc/cp-kafka:<CP_ZK_TAG>: the same layout with the jars of KAFKA_ZK_VERSION
#   zookeeper  zookeeper:<ZOOKEEPER_VERSION>: the official image's layout and ZOO_* variables
#   jmx-exporter
#              bitnamilegacy/jmx-exporter:<JMX_EXPORTER_VERSION>, the brokers' JMX exporter
#              sidecar: Bitnami's layout (java -jar jmx_prometheus_standalone.jar in
#              /opt/bitnami/jmx-exporter, uid 1001) around the exporter's collector from Maven
#   operator   kafka-operator:<crate version>: `cargo build --release -p kafka-operator` on a
#              distroless-like Debian base (libc6, libgcc-s1, CA certificates; user 65532)
# Usage: hack/build-images.sh [pause|kafka|kafka-zookeeper-mode|kafka:VERSION|cp-kafka|cp-kafka-zookeeper-mode|zookeeper|jmx-exporter|operator]...
#        (default: pause, kafka, cp-kafka, cp-kafka-zookeeper-mode, zookeeper, jmx-exporter and
#        operator)
#        hack/build-images.sh --archive REF               prints where REF's archive is
# The Debian root filesystems come from the machine's own apt sources (mmdebstrap, see
# hack/node-deps.sh), each built once and shared by every image on it. Idempotent: an image
# whose inputs have not changed is not rebuilt (the operator's is rebuilt when its binary is).
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/versions.sh
source "$root/hack/versions.sh"
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"

images="$cache/images"
base="$images/base"
mkdir -p "$base"

# The archive of an image reference; testbed/src/node.rs computes the same name.
archive() { echo "$images/${1//[\/:]/_}.tar"; }

if [[ "${1:-}" == "--archive" ]]; then
  archive "$2"
  exit 0
fi

# One build at a time, even when several test binaries start at once.
exec 9>"$images/.lock"
flock 9
# Work directories of a build that failed or was killed.
trap 'rm -rf "$images"/.stage.* "$images"/.pause.* "$images"/.kafka.* "$images"/.jmx.* "$images"/.operator.*' EXIT
rm -rf "$images"/.stage.* "$images"/.pause.* "$images"/.kafka.* "$images"/.jmx.* "$images"/.operator.*

arch=$(dpkg --print-architecture)
operator_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)

# The machine's own apt sources, passed to mmdebstrap as files so that no mirror is named here.
apt_sources() {
  local files=()
  shopt -s nullglob
  files=(/etc/apt/sources.list.d/*.sources)
  if ((${#files[@]} == 0)) && [[ -s /etc/apt/sources.list ]]; then
    files=(/etc/apt/sources.list)
  fi
  shopt -u nullglob
  if ((${#files[@]} == 0)); then
    echo "no apt sources on this machine (/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list); the images' Debian root filesystems are built from them" >&2
    exit 1
  fi
  printf '%s\n' "${files[@]}"
}

# A Debian root filesystem tarball, built once: base_rootfs NAME VARIANT PACKAGES [HOOK...]
base_rootfs() {
  local name=$1 variant=$2 packages=$3
  shift 3
  local out="$base/$name.tar"
  local want="suite=$DEBIAN_SUITE variant=$variant packages=$packages"
  if [[ -f "$out" && "$(cat "$out.stamp" 2>/dev/null)" == "$want" ]]; then
    return
  fi
  command -v mmdebstrap >/dev/null || {
    echo "mmdebstrap is missing: run hack/node-deps.sh" >&2
    exit 1
  }
  echo "building the Debian $DEBIAN_SUITE root filesystem $name ($packages)" >&2
  local sources=()
  mapfile -t sources < <(apt_sources)
  local hooks=()
  for h in "$@"; do hooks+=(--customize-hook="$h"); done
  mmdebstrap --quiet --mode=root --variant="$variant" --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --setup-hook='mkdir -p "$1"/usr/share/man/man1' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "${hooks[@]}" \
    "$DEBIAN_SUITE" "$out.part.tar" "${sources[@]}"
  mv "$out.part.tar" "$out"
  echo "$want" >"$out.stamp"
}

# Writes the docker-archive of REF: docker_archive REF CONFIG_JSON LAYER_TAR...
# CONFIG_JSON is the image config's "config" object (User, Env, Entrypoint, Cmd, ...).
docker_archive() {
  local ref=$1 config=$2
  shift 2
  local out stage
  out=$(archive "$ref")
  stage=$(mktemp -d "$images/.stage.XXXXXX")
  local diff_ids="" layers="" files=()
  for layer in "$@"; do
    local sum
    sum=$(sha256sum "$layer" | cut -d' ' -f1)
    mkdir -p "$stage/$sum"
    ln "$layer" "$stage/$sum/layer.tar" 2>/dev/null || cp "$layer" "$stage/$sum/layer.tar"
    diff_ids+="${diff_ids:+,}\"sha256:$sum\""
    layers+="${layers:+,}\"$sum/layer.tar\""
    files+=("$sum/layer.tar")
  done
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$arch" "$config" "$diff_ids" >"$stage/config.json"
  local config_sum
  config_sum=$(sha256sum "$stage/config.json" | cut -d' ' -f1)
  mv "$stage/config.json" "$stage/$config_sum.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]' "$config_sum" "$ref" "$layers" \
    >"$stage/manifest.json"
  tar -C "$stage" -cf "$out.tmp" manifest.json "$config_sum.json" "${files[@]}"
  mv "$out.tmp" "$out"
  rm -rf "$stage"
  echo "image $ref in $out" >&2
}

# A layer tarball of directory DIR, the same bytes for the same content (sorted, fixed times),
# so an unchanged layer keeps its digest and containerd keeps it once.
layer_of() {
  local dir=$1 out=$2
  chmod 0755 "$dir"
  tar -C "$dir" --sort=name --mtime=@0 --numeric-owner -cf "$out" .
}

# Whether REF's archive was built from inputs described by WANT; records WANT otherwise.
up_to_date() {
  local out
  out=$(archive "$1")
  [[ -f "$out" && "$(cat "$out.stamp" 2>/dev/null)" == "$2" ]]
}
stamp() { echo "$2" >"$(archive "$1").stamp"; }

build_pause() {
  local ref=$PAUSE_IMAGE src="$root/hack/images/pause.c"
  local want
  want="pause.c=$(sha256sum "$src" | cut -d' ' -f1)"
  up_to_date "$ref" "$want" && return
  local work
  work=$(mktemp -d "$images/.pause.XXXXXX")
  mkdir -p "$work/root"
  gcc -static -Os -s -o "$work/root/pause" "$src"
  layer_of "$work/root" "$work/layer.tar"
  docker_archive "$ref" '{"Entrypoint":["/pause"],"User":"65535:65535"}' "$work/layer.tar"
  stamp "$ref" "$want"
  rm -rf "$work"
}

# The Java images (Kafka, cp-kafka, ZooKeeper) share this base.
jre_base() {
  base_rootfs "debian-$DEBIAN_SUITE-$KAFKA_IMAGE_JRE" essential "$KAFKA_IMAGE_JRE,bash,ca-certificates"
}
jre_base_tar() { echo "$base/debian-$DEBIAN_SUITE-$KAFKA_IMAGE_JRE.tar"; }

# The command-line tools of Kafka's distribution and the classes they run, first match wins
# (Kafka moved several tools between packages over its releases).
kafka_tools=(
  "kafka-storage kafka.tools.StorageTool"
  "kafka-topics org.apache.kafka.tools.TopicCommand kafka.admin.TopicCommand"
  "kafka-console-producer org.apache.kafka.tools.ConsoleProducer kafka.tools.ConsoleProducer"
  "kafka-console-consumer org.apache.kafka.tools.consumer.ConsoleConsumer kafka.tools.ConsoleConsumer"
  "kafka-consumer-groups org.apache.kafka.tools.consumer.group.ConsumerGroupCommand kafka.admin.ConsumerGroupCommand"
  "kafka-configs org.apache.kafka.tools.ConfigCommand kafka.admin.ConfigCommand"
  "kafka-reassign-partitions org.apache.kafka.tools.reassign.ReassignPartitionsCommand kafka.admin.ReassignPartitionsCommand"
  "kafka-leader-election org.apache.kafka.tools.LeaderElectionCommand kafka.admin.LeaderElectionCommand"
  "kafka-log-dirs org.apache.kafka.tools.LogDirsCommand kafka.admin.LogDirsCommand"
  "kafka-metadata-quorum org.apache.kafka.tools.MetadataQuorumCommand"
  "kafka-features org.apache.kafka.tools.FeatureCommand kafka.admin.FeatureCommand"
  "kafka-cluster org.apache.kafka.tools.ClusterTool kafka.tools.ClusterTool"
  "kafka-broker-api-versions org.apache.kafka.tools.BrokerApiVersionsCommand kafka.admin.BrokerApiVersionsCommand"
  "kafka-acls org.apache.kafka.tools.AclCommand kafka.admin.AclCommand"
  "kafka-delete-records org.apache.kafka.tools.DeleteRecordsCommand kafka.admin.DeleteRecordsCommand"
  "kafka-transactions org.apache.kafka.tools.TransactionsCommand"
  "kafka-get-offsets org.apache.kafka.tools.GetOffsetShell kafka.tools.GetOffsetShell"
  "kafka-dump-log org.apache.kafka.tools.DumpLogSegments kafka.tools.DumpLogSegments"
  "kafka-verifiable-producer org.apache.kafka.tools.VerifiableProducer"
  "kafka-verifiable-consumer org.apache.kafka.tools.VerifiableConsumer"
  "kafka-producer-perf-test org.apache.kafka.tools.ProducerPerformance"
  "kafka-consumer-perf-test org.apache.kafka.tools.ConsumerPerformance kafka.tools.ConsumerPerformance"
)

# The image's user (uid 1000, in a group of its own, as the official images have it: appuser for
# Kafka, zookeeper for ZooKeeper), added to the users of the JRE base: image_user ROOT JRE_TAR NAME
image_user() {
  local r=$1 jre=$2 name=$3
  mkdir -p "$r/etc"
  tar -xOf "$jre" ./etc/passwd >"$r/etc/passwd"
  tar -xOf "$jre" ./etc/group >"$r/etc/group"
  echo "$name:x:1000:1000::/home/$name:/bin/bash" >>"$r/etc/passwd"
  echo "$name:x:1000:" >>"$r/etc/group"
  chmod 0644 "$r/etc/passwd" "$r/etc/group"
}

# The jars of Maven dependencies, fetched once into LIBS with everything they need at run time:
# maven_libs LIBS WHAT DEPENDENCIES_XML [PARENT_XML] (a parent pom supplies the versions left out).
maven_libs() {
  local libs=$1 what=$2 dependencies=$3 parent=${4:-}
  [[ -f "$libs/.complete" ]] && return
  rm -rf "$libs"
  mkdir -p "$libs"
  local pom="$libs/../pom.xml"
  printf '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion><groupId>kafkaoperator.testbed</groupId><artifactId>libs</artifactId><version>1</version><packaging>pom</packaging>%s<dependencies>%s</dependencies></project>\n' \
    "$parent" "$dependencies" >"$pom"
  echo "fetching the $what jars" >&2
  mvn -q -B -f "$pom" -Dmaven.repo.local="$cache/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs"
  touch "$libs/.complete"
}
dependency() { printf '<dependency><groupId>%s</groupId><artifactId>%s</artifactId>%s</dependency>' "$1" "$2" "${3:+<version>$3</version>}"; }

# The end of every image's build: its root filesystem WORK/root as one layer over BASE_TAR, the
# archive with CONFIG_JSON, the stamp of its inputs WANT; the work directory removed:
# finish_image REF WANT WORK BASE_TAR CONFIG_JSON
finish_image() {
  local ref=$1 want=$2 work=$3 base_tar=$4 config=$5
  layer_of "$work/root" "$work/layer.tar"
  docker_archive "$ref" "$config" "$base_tar" "$work/layer.tar"
  stamp "$ref" "$want"
  rm -rf "$work"
}

# One script per tool, running the class this Kafka version has:
# kafka_tools_into LIBS BIN_DIR SUFFIX (".sh" in the Apache layout, "" in Confluent's)
kafka_tools_into() {
  local libs=$1 bin=$2 suffix=$3
  local classes
  classes=$(for j in "$libs"/*.jar; do unzip -Z1 "$j" 2>/dev/null; done | sed -n 's/\.class$//p' | tr / .)
  local line tool class found
  for line in "${kafka_tools[@]}"; do
    read -r tool classes_wanted <<<"$line"
    found=
    for class in $classes_wanted; do
      if grep -qxF "$class" <<<"$classes"; then found=$class; break; fi
    done
    [[ -n "$found" ]] || continue
    printf '#!/bin/bash\n# %s: runs %s of this Kafka installation.\nexec "$(dirname "$0")/kafka-run-class%s" %s "$@"\n' \
      "$tool" "$found" "$suffix" "$found" >"$bin/$tool$suffix"
  done
}

# What a Kafka image's inputs are, for up_to_date: kafka_want LIBS JRE_TAR
kafka_want() {
  echo "base=$(cat "$2.stamp") libs=$(ls "$1" | sha256sum | cut -c1-16) scripts=$(
    cd "$root/hack/images" && find kafka zookeeper -type f | sort | xargs sha256sum | sha256sum | cut -c1-16
  ) builder=$(sha256sum "$0" | cut -c1-16)"
}

jre_home() {
  local java_home="/usr/lib/jvm/java-${KAFKA_IMAGE_JRE#openjdk-}"
  echo "${java_home%-jre-headless}-openjdk-$arch"
}

build_kafka() {
  local version=$1 ref="apache/kafka:$1"
  "$root/hack/fetch-kafka.sh" "$version"
  local libs="$cache/kafka/$version/libs"
  jre_base
  local jre want
  jre=$(jre_base_tar)
  want=$(kafka_want "$libs" "$jre")
  up_to_date "$ref" "$want" && return

  echo "building image $ref" >&2
  local work
  work=$(mktemp -d "$images/.kafka.XXXXXX")
  local r="$work/root"
  mkdir -p "$r"
  image_user "$r" "$jre" appuser
  install -d -o 1000 -g 1000 "$r/opt/kafka" "$r/opt/kafka/bin" "$r/opt/kafka/config" \
    "$r/opt/kafka/libs" "$r/home/appuser" "$r/mnt/shared/config" "$r/usr/logs"
  install -d -o 1000 -g 0 -m 0775 "$r/var/lib/kafka" "$r/var/lib/kafka/data" "$r/etc/kafka" \
    "$r/etc/kafka/secrets" "$r/etc/kafka/docker"
  cp "$libs"/*.jar "$r/opt/kafka/libs/"
  cp "$root/hack/images/kafka/bin/"* "$r/opt/kafka/bin/"
  cp "$root/hack/images/kafka/config/"* "$r/opt/kafka/config/"
  cp "$root/hack/images/kafka/docker/run" "$r/etc/kafka/docker/run"
  kafka_tools_into "$libs" "$r/opt/kafka/bin" .sh
  chown -R 1000:1000 "$r/opt/kafka"
  chmod 0755 "$r/opt/kafka/bin/"* "$r/etc/kafka/docker/run"
  chmod -R a+rX "$r/opt/kafka"

  finish_image "$ref" "$want" "$work" "$jre" "$(printf '{"User":"appuser","WorkingDir":"/","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","JAVA_HOME=%s","KAFKA_VERSION=%s"],"Cmd":["/etc/kafka/docker/run"],"ExposedPorts":{"9092/tcp":{}},"Volumes":{"/etc/kafka/secrets":{},"/var/lib/kafka/data":{},"/mnt/shared/config":{}}}' "$(jre_home)" "$version")"
}

# confluentinc/cp-kafka:TAG with the Confluent Platform layout: the tools on the PATH without
# the .sh suffix (/usr/bin/kafka-*), the jars in /usr/share/java/kafka, the configuration in
# /etc/kafka, logs in /var/log/kafka, user appuser (uid 1000), the same VOLUMEs. Its Kafka is
# Apache Kafka of the same line: build_cp_kafka TAG KAFKA_VERSION
build_cp_kafka() {
  local tag=$1 version=$2 ref="confluentinc/cp-kafka:$1"
  "$root/hack/fetch-kafka.sh" "$version"
  local libs="$cache/kafka/$version/libs"
  jre_base
  local jre want
  jre=$(jre_base_tar)
  want="$(kafka_want "$libs" "$jre") kafka=$version"
  up_to_date "$ref" "$want" && return

  echo "building image $ref (Kafka $version)" >&2
  local work
  work=$(mktemp -d "$images/.kafka.XXXXXX")
  local r="$work/root"
  mkdir -p "$r"
  image_user "$r" "$jre" appuser
  install -d "$r/usr/bin" "$r/usr/share/java/kafka" "$r/etc/confluent/docker"
  install -d -o 1000 -g 1000 "$r/home/appuser" "$r/etc/kafka" "$r/var/log/kafka" \
    "$r/var/lib/kafka" "$r/var/lib/kafka/data" "$r/etc/kafka/secrets"
  cp "$libs"/*.jar "$r/usr/share/java/kafka/"
  cp "$root/hack/images/kafka/config/"* "$r/etc/kafka/"
  local script
  for script in "$root/hack/images/kafka/bin/"*.sh; do
    sed -e 's|^libs=.*|libs=/usr/share/java/kafka|' -e 's|^config=.*|config=/etc/kafka|' \
      -e 's|^logs=.*|logs=/var/log/kafka|' -e 's|kafka-run-class\.sh|kafka-run-class|g' \
      "$script" >"$r/usr/bin/$(basename "$script" .sh)"
  done
  kafka_tools_into "$libs" "$r/usr/bin" ""
  printf '#!/bin/bash\n# The image'"'"'s default command, which configures Kafka from KAFKA_* variables in\n# Confluent'"'"'s images; the operator'"'"'s pods run the start script of their ConfigMap instead.\necho "this image runs Kafka from a start script: kafka-server-start /etc/kafka/server.properties" >&2\nexit 1\n' \
    >"$r/etc/confluent/docker/run"
  chmod 0755 "$r/usr/bin/"* "$r/etc/confluent/docker/run"
  chmod -R a+rX "$r/usr/share/java/kafka" "$r/etc/kafka"

  finish_image "$ref" "$want" "$work" "$jre" "$(printf '{"User":"appuser","WorkingDir":"/home/appuser","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","JAVA_HOME=%s","COMPONENT=kafka"],"Cmd":["/etc/confluent/docker/run"],"ExposedPorts":{"9092/tcp":{}},"Volumes":{"/etc/kafka/secrets":{},"/var/lib/kafka/data":{}}}' "$(jre_home)")"
}

# zookeeper:VERSION with the official image's layout: ZooKeeper under
# /apache-zookeeper-VERSION-bin (its bin/ on the PATH), configuration in /conf written from ZOO_*
# variables by /docker-entrypoint.sh when none is mounted, data in /data and /datalog, user
# zookeeper (uid 1000). The jars come from Maven (the server and what it needs at run time).
build_zookeeper() {
  local version=$1 ref="zookeeper:$1"
  local libs="$cache/zookeeper/$version/lib" dependencies dep
  # The server, and what it loads at run time that its pom marks "provided" (the release
  # tarball's lib/ ships them): metrics, snappy, the admin server's Jetty and Jackson, the CLI's
  # parsers. Versions come from ZooKeeper's own parent pom.
  dependencies=$(dependency org.apache.zookeeper zookeeper "$version")
  for dep in io.dropwizard.metrics:metrics-core org.xerial.snappy:snappy-java \
    org.eclipse.jetty:jetty-server org.eclipse.jetty:jetty-servlet org.eclipse.jetty:jetty-client \
    com.fasterxml.jackson.core:jackson-databind commons-cli:commons-cli jline:jline; do
    dependencies+=$(dependency "${dep%%:*}" "${dep#*:}")
  done
  maven_libs "$libs" "ZooKeeper $version" "$dependencies" \
    "$(printf '<parent><groupId>org.apache.zookeeper</groupId><artifactId>parent</artifactId><version>%s</version><relativePath/></parent>' "$version")"
  jre_base
  local jre want
  jre=$(jre_base_tar)
  want="$(kafka_want "$libs" "$jre") zookeeper=$version"
  up_to_date "$ref" "$want" && return

  echo "building image $ref" >&2
  local work
  work=$(mktemp -d "$images/.kafka.XXXXXX")
  local r="$work/root" dist="apache-zookeeper-$version-bin"
  image_user "$r" "$jre" zookeeper
  install -d "$r/$dist/bin" "$r/$dist/lib"
  install -d -o 1000 -g 1000 "$r/conf" "$r/data" "$r/datalog" "$r/logs" "$r/home/zookeeper"
  cp "$libs"/*.jar "$r/$dist/lib/"
  install -m 0755 "$root/hack/images/zookeeper/zkServer.sh" "$r/$dist/bin/zkServer.sh"
  install -m 0755 "$root/hack/images/zookeeper/docker-entrypoint.sh" "$r/docker-entrypoint.sh"
  install -m 0644 -o 1000 -g 1000 "$root/hack/images/zookeeper/logback.xml" "$r/conf/logback.xml"
  chmod -R a+rX "$r/$dist"

  finish_image "$ref" "$want" "$work" "$jre" "$(printf '{"User":"zookeeper","WorkingDir":"/%s","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/%s/bin","JAVA_HOME=%s","ZOO_CONF_DIR=/conf","ZOO_DATA_DIR=/data","ZOO_DATA_LOG_DIR=/datalog","ZOO_LOG_DIR=/logs","ZOO_TICK_TIME=2000","ZOO_INIT_LIMIT=5","ZOO_SYNC_LIMIT=2","ZOO_AUTOPURGE_PURGEINTERVAL=0","ZOO_AUTOPURGE_SNAPRETAINCOUNT=3","ZOO_MAX_CLIENT_CNXNS=60","ZOO_STANDALONE_ENABLED=true","ZOO_ADMINSERVER_ENABLED=true","ZOOCFGDIR=/conf"],"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["zkServer.sh","start-foreground"],"ExposedPorts":{"2181/tcp":{},"2888/tcp":{},"3888/tcp":{},"8080/tcp":{}},"Volumes":{"/data":{},"/datalog":{},"/logs":{}}}' "$dist" "$dist" "$(jre_home)")"
}

# bitnamilegacy/jmx-exporter:VERSION with the Bitnami image's layout and behaviour: its entrypoint
# runs `java -jar jmx_prometheus_standalone.jar` in /opt/bitnami/jmx-exporter with the container's
# arguments ([HOST:]PORT CONFIG, as the operator's sidecar passes them), as uid 1001, the JRE
# under /opt/bitnami/java. jmx_exporter releases since 1.1.0 publish only the collector on Maven
# Central (the standalone jar is a GitHub release asset), so the jar is put together here: the
# collector of VERSION and the client_java HTTP server it is released with, from Maven, and our
# own launcher of the standalone's HTTP mode (below), in one jar whose Main-Class is the launcher.
# The scraping of JMX and the rules are the collector's own.
build_jmx_exporter() {
  local version=$1 metrics=$2 ref="bitnamilegacy/jmx-exporter:$1"
  local libs="$cache/jmx-exporter/$version/lib"
  maven_libs "$libs" "JMX exporter $version collector" \
    "$(dependency io.prometheus.jmx collector "$version")$(dependency io.prometheus prometheus-metrics-exporter-httpserver "$metrics")"
  jre_base
  local jre want
  jre=$(jre_base_tar)
  want="base=$(cat "$jre.stamp") libs=$(ls "$libs" | sha256sum | cut -c1-16) builder=$(sha256sum "$0" | cut -c1-16)"
  up_to_date "$ref" "$want" && return

  echo "building image $ref" >&2
  local work
  work=$(mktemp -d "$images/.jmx.XXXXXX")
  local r="$work/root" classes="$work/classes" home=/opt/bitnami/jmx-exporter
  mkdir -p "$r$home" "$r/opt/bitnami" "$classes" "$work/src"
  # The launcher: the standalone exporter's HTTP mode, with its arguments. The configuration's
  # `httpServer` (TLS, authentication) and `openTelemetry` sections belong to parts of the
  # release that are not on Maven; a configuration that has them is refused rather than served
  # without them.
  cat >"$work/src/Standalone.java" <<'JAVA'
package kafkaoperator.testbed.jmxexporter;

import io.prometheus.jmx.BuildInfoMetrics;
import io.prometheus.jmx.JmxCollector;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetAddress;
import java.util.Map;
import org.yaml.snakeyaml.Yaml;

/** java -jar jmx_prometheus_standalone.jar [HOSTNAME:]PORT CONFIG: /metrics on PORT. */
public final class Standalone {
    private Standalone() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println(
                    "usage: java -jar jmx_prometheus_standalone.jar [HOSTNAME:]<PORT> <YAML configuration file>");
            System.exit(1);
        }
        String host = "0.0.0.0";
        String port = args[0];
        int colon = port.lastIndexOf(':');
        if (colon >= 0) {
            host = port.substring(0, colon);
            port = port.substring(colon + 1);
        }
        File config = new File(args[1]);
        try (InputStream in = new FileInputStream(config)) {
            Object yaml = new Yaml().load(in);
            if (yaml instanceof Map) {
                for (String section : new String[] {"httpServer", "openTelemetry"}) {
                    if (((Map<?, ?>) yaml).containsKey(section)) {
                        System.err.println(
                                config + ": `" + section + "` is not supported by this build of the exporter");
                        System.exit(1);
                    }
                }
            }
        }
        PrometheusRegistry registry = PrometheusRegistry.defaultRegistry;
        new BuildInfoMetrics().register(registry);
        new JmxCollector(config, JmxCollector.Mode.STANDALONE).register(registry);
        HTTPServer.builder()
                .inetAddress(InetAddress.getByName(host))
                .port(Integer.parseInt(port))
                .registry(registry)
                .buildAndStart();
        System.out.println("JMX exporter serving /metrics on " + host + ":" + port + " from " + config);
        Thread.currentThread().join();
    }
}
JAVA
  # One jar, as the release's is shaded: the libraries' classes (their manifests and snakeyaml's
  # Java 9 module descriptor dropped; no other path is in two of them) and the launcher.
  local jar
  for jar in "$libs"/*.jar; do unzip -q -o "$jar" -d "$classes"; done
  rm -f "$classes/META-INF/MANIFEST.MF"
  find "$classes" -name module-info.class -delete
  javac --release 17 -nowarn -cp "$classes" -d "$classes" "$work/src/Standalone.java"
  # The release's title and version, which jmx_exporter_build_info reports.
  printf 'Implementation-Title: jmx_prometheus_standalone\nImplementation-Version: %s\n' "$version" >"$work/manifest"
  jar --create --file "$r$home/jmx_prometheus_standalone.jar" --date=1980-01-02T00:00:00Z \
    --manifest "$work/manifest" --main-class kafkaoperator.testbed.jmxexporter.Standalone -C "$classes" .
  chmod 0644 "$r$home/jmx_prometheus_standalone.jar"
  # Bitnami's JRE is /opt/bitnami/java; here it is the base's, under that name too.
  ln -s "$(jre_home)" "$r/opt/bitnami/java"
  # `java -jar` finds the launcher by the manifest's Main-Class, with every class it needs in
  # the jar: without arguments it prints its usage.
  local usage
  usage=$(java -jar "$r$home/jmx_prometheus_standalone.jar" 2>&1 || true)
  if ! grep -q '^usage: java -jar jmx_prometheus_standalone.jar' <<<"$usage"; then
    echo "java -jar jmx_prometheus_standalone.jar does not start the launcher: $usage" >&2
    exit 1
  fi

  finish_image "$ref" "$want" "$work" "$jre" "$(printf '{"User":"1001","WorkingDir":"%s","Env":["PATH=/opt/bitnami/java/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","JAVA_HOME=/opt/bitnami/java","APP_VERSION=%s","BITNAMI_APP_NAME=jmx-exporter"],"Entrypoint":["java","-jar","jmx_prometheus_standalone.jar"],"ExposedPorts":{"5556/tcp":{}}}' "$home" "$version")"
}

# The base of the operator's image: what a distroless "cc" image holds (the C runtime and CA
# certificates), extracted without a shell or package manager, and zlib, which the operator's
# binary links (librdkafka's compression; distroless's cc-debian12 carries it too). Its users and CA bundle come with the operator's layer.
cc_base() {
  base_rootfs "debian-$DEBIAN_SUITE-cc" extract "libc6,libgcc-s1,zlib1g,ca-certificates,netbase,tzdata"
}
cc_base_tar() { echo "$base/debian-$DEBIAN_SUITE-cc.tar"; }

build_operator() {
  local ref="kafka-operator:$operator_version"
  echo "building the operator (cargo build --release -p kafka-operator)" >&2
  # The image's release build has a target directory in the cache, shared by every clone of
  # this machine (CI builds in a fresh one): the dependencies, librdkafka among them, are
  # compiled once, and cargo's lock on the directory serialises builds that start together.
  local target="$cache/cargo/target"
  (cd "$root" && CARGO_TARGET_DIR="$target" cargo build --quiet --release --locked -p kafka-operator --bin kafka-operator)
  local binary="$target/release/kafka-operator"
  cc_base
  local cc
  cc=$(cc_base_tar)
  local want
  want="base=$(cat "$cc.stamp") binary=$(sha256sum "$binary" | cut -c1-16) builder=$(sha256sum "$0" | cut -c1-16)"
  up_to_date "$ref" "$want" && return

  local work
  work=$(mktemp -d "$images/.operator.XXXXXX")
  local r="$work/root"
  install -D -m 0755 "$binary" "$r/usr/local/bin/kafka-operator"
  strip "$r/usr/local/bin/kafka-operator" 2>/dev/null || true
  # What distroless adds to its packages: users root and nonroot (65532), a CA bundle (the
  # package's maintainer script, which extraction does not run, would have made it), /tmp.
  mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/home/nonroot" "$r/root"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$r/etc/group"
  tar -xOf "$cc" --wildcards './usr/share/ca-certificates/mozilla/*.crt' >"$r/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$r/etc/passwd" "$r/etc/group" "$r/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
  chown 65532:65532 "$r/home/nonroot"
  finish_image "$ref" "$want" "$work" "$cc" '{"User":"65532:65532","WorkingDir":"/home/nonroot","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Entrypoint":["/usr/local/bin/kafka-operator"],"Cmd":["run","--metrics-addr","0.0.0.0:8080"]}'
}

wanted=("$@")
((${#wanted[@]} > 0)) || wanted=(pause kafka cp-kafka cp-kafka-zookeeper-mode zookeeper jmx-exporter operator)
for image in "${wanted[@]}"; do
  case "$image" in
    pause) build_pause ;;
    kafka) build_kafka "$KAFKA_VERSION" ;;
    # The default image of ZooKeeper mode (the last Kafka line that had it); built on demand.
    kafka-zookeeper-mode) build_kafka "$KAFKA_ZK_VERSION" ;;
    kafka:*) build_kafka "${image#kafka:}" ;;
    # The original example's image: Confluent Platform 8 runs Kafka 4.
    cp-kafka) build_cp_kafka latest "$KAFKA_VERSION" ;;
    # What an unpinned confluentinc/cp-kafka runs in ZooKeeper mode (the operator's
    # CONFLUENT_ZOOKEEPER_MODE_TAG), on the Kafka line of that release.
    cp-kafka-zookeeper-mode) build_cp_kafka "$CP_ZK_TAG" "$KAFKA_ZK_VERSION" ;;
    zookeeper) build_zookeeper "$ZOOKEEPER_VERSION" ;;
    # The brokers' JMX exporter sidecar (the operator's DEFAULT_JMX_EXPORTER_IMAGE).
    jmx-exporter) build_jmx_exporter "$JMX_EXPORTER_VERSION" "$JMX_EXPORTER_METRICS_VERSION" ;;
    operator) build_operator ;;
    *)
      echo "unknown image $image (known: pause, kafka, kafka-zookeeper-mode, kafka:VERSION, cp-kafka, cp-kafka-zookeeper-mode, zookeeper, jmx-exporter, operator)" >&2
      exit 1
      ;;
  esac
done
