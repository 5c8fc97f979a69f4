//! Long-running work against Kafka, as resumable steps whose state lives in the KafkaCluster
//! status: topic reconciliation and changing the broker count without losing data.

pub mod batch;
pub mod scale;
pub mod topics;
