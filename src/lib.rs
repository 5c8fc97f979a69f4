//! kafka-operator: a Kubernetes operator for Apache Kafka.
//!
//! Data flows one way through a reconcile: observe -> validate -> build (pure) -> apply -> status.
//! - [`api`]: the `KafkaCluster` custom resource, its defaults and validation.
//! - [`resources`]: pure builders of every Kubernetes object a cluster needs.
//! - [`kafka`]: the `KafkaAdmin` trait, the only way the operator talks to Kafka.
//! - [`planner`]: pure, deterministic partition reassignment planning.
//! - [`operations`]: long-running work (scale-down drain, scale-up rebalance) as resumable state
//!   machines whose state lives in the KafkaCluster status.
//! - [`controller`]: the kube-rs controller that ties them together.

pub mod api;
pub mod controller;
pub mod kafka;
pub mod metrics;
pub mod operations;
pub mod planner;
pub mod resources;
