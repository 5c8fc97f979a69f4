//! Long-running work against Kafka, as resumable steps whose state lives in the KafkaCluster
//! status (or in Kafka itself): topic reconciliation, changing the broker count without losing
//! data, rolling restarts that keep every partition in sync, and broker settings changed live.

pub mod batch;
pub mod broker_config;
#[cfg(test)]
mod model_tests;
pub mod roll;
pub mod scale;
pub mod topics;
