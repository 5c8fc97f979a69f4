//! The `KafkaCluster` custom resource (`krallistic.github.com/v1`): spec, status, validation.
//! No I/O.

pub mod quantity;
mod spec;
mod status;
pub mod validate;

pub use spec::*;
pub use status::*;
pub use validate::{
    Cluster, ImageFlavor, Mode, NodeResources, SpecError, SpecWarning, Storage, validate,
};

/// The Kafka version the operator is tested with; its official image is the default.
/// `hack/versions.sh` pins the same version for the test brokers.
pub const KAFKA_VERSION: &str = "4.3.2";
/// Default broker image in KRaft mode.
pub const DEFAULT_IMAGE: &str = "apache/kafka:4.3.2";
/// Default broker image in ZooKeeper mode: the last Kafka line that supports ZooKeeper.
pub const DEFAULT_ZOOKEEPER_MODE_IMAGE: &str = "apache/kafka:3.9.2";
