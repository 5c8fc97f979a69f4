//! Local stand-ins for the real thing, used by the tests, the benchmarks and the operator's
//! local mode: a real Kubernetes control plane and real Kafka brokers as processes on loopback.

pub mod kafka;
pub mod kube;
pub mod kubelet;
pub mod local;
pub mod node;
pub mod process;
