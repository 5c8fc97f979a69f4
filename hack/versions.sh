# Pinned versions of everything the testbed fetches. Sourced by the hack/ scripts.
# KAFKA_VERSION must match DEFAULT_KAFKA_VERSION in src/api (the default broker image).
KUBERNETES_VERSION=v1.34.2
ETCD_VERSION=v3.6.14
KAFKA_VERSION=4.3.2
# ZooKeeper-mode tests need the last Kafka line that still had ZooKeeper.
KAFKA_ZK_VERSION=3.9.2
ZOOKEEPER_VERSION=3.8.4
# What an unpinned confluentinc/cp-kafka runs in ZooKeeper mode: the last Confluent Platform
# release with ZooKeeper (CONFLUENT_ZOOKEEPER_MODE_TAG in src/api/validate.rs).
CP_ZK_TAG=7.9.11
# The JMX exporter sidecar's image, bitnamilegacy/jmx-exporter:<JMX_EXPORTER_VERSION>
# (DEFAULT_JMX_EXPORTER_IMAGE in src/api/validate.rs), and the client_java release that
# jmx_exporter release builds on (its parent pom's prometheus.metrics.version).
JMX_EXPORTER_VERSION=1.1.0
JMX_EXPORTER_METRICS_VERSION=1.3.4
# The node's cluster DNS (hack/build-go-tool.sh coredns).
COREDNS_VERSION=v1.15.0
# The Debian release the images' root filesystems come from (from the machine's own apt
# sources, hack/build-images.sh), and the JRE the Kafka images run on.
DEBIAN_SUITE=bookworm
KAFKA_IMAGE_JRE=openjdk-17-jre-headless
# containerd's sandbox image; the testbed builds it (hack/images/pause.c).
PAUSE_IMAGE=kafka-operator-testbed/pause:1
# The node's image registry and its client, go-containerregistry's crane (hack/build-go-tool.sh
# crane): it serves the images Kubernetes pulls on every start, such as confluentinc/cp-kafka:latest.
CRANE_VERSION=v0.22.1
