//! How the controller reaches each cluster's Kafka: one admin client per cluster, cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::Cluster;
use crate::kafka::{KafkaAdmin, KafkaClient, KafkaClientConfig, KafkaError};
use crate::resources::names::{self, CLIENT_PORT, Role};

/// Brokers the bootstrap list names (more would only slow down a failing connect).
const BOOTSTRAP_BROKERS: i32 = 3;

/// A cluster's admin client and the bootstrap addresses it was made for.
type CachedClient = (Vec<String>, Arc<KafkaClient>);

/// Admin clients per cluster. By default a cluster is reached through its brokers' pod DNS
/// names; `bootstrap_overrides` replaces them for clusters the operator reaches another way
/// (from outside the Kubernetes network, or the local testbed's brokers).
pub struct KafkaConnector {
    bootstrap_overrides: BTreeMap<String, Vec<String>>,
    timeout: Duration,
    clients: Mutex<HashMap<String, CachedClient>>,
}

impl KafkaConnector {
    /// `bootstrap_overrides` maps `namespace/name` to `host:port` addresses.
    pub fn new(bootstrap_overrides: BTreeMap<String, Vec<String>>, timeout: Duration) -> Self {
        KafkaConnector {
            bootstrap_overrides,
            timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Addresses the operator bootstraps from for `cluster`.
    pub fn bootstrap(&self, cluster: &Cluster) -> Vec<String> {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        if let Some(addresses) = self.bootstrap_overrides.get(&key) {
            return addresses.clone();
        }
        (0..cluster.broker_count.min(BOOTSTRAP_BROKERS))
            .map(|i| {
                format!(
                    "{}:{CLIENT_PORT}",
                    names::pod_host(&cluster.name, &cluster.namespace, Role::Broker, i)
                )
            })
            .collect()
    }

    /// The admin client of `cluster` (created on first use; librdkafka connects lazily).
    pub fn admin(&self, cluster: &Cluster) -> Result<Arc<dyn KafkaAdmin>, KafkaError> {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        let bootstrap = self.bootstrap(cluster);
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| KafkaError::Client("admin client cache poisoned".into()))?;
        if let Some((addresses, client)) = clients.get(&key)
            && *addresses == bootstrap
        {
            return Ok(client.clone());
        }
        let client = Arc::new(KafkaClient::new(
            KafkaClientConfig::new(bootstrap.clone()).with_timeout(self.timeout),
        )?);
        clients.insert(key, (bootstrap, client.clone()));
        Ok(client)
    }

    /// Drops the cached client of a deleted cluster.
    pub fn forget(&self, namespace: &str, name: &str) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(&format!("{namespace}/{name}"));
        }
    }
}

/// Parses `namespace/name=host:port[,host:port...]`.
pub fn parse_bootstrap_override(s: &str) -> Result<(String, Vec<String>), String> {
    let (cluster, addresses) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected namespace/name=host:port[,host:port]"))?;
    if cluster.split('/').count() != 2 || cluster.starts_with('/') || cluster.ends_with('/') {
        return Err(format!("{cluster:?}: expected namespace/name"));
    }
    let addresses: Vec<String> = addresses
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if addresses.is_empty() || addresses.iter().any(|a| !a.contains(':')) {
        return Err(format!("{s:?}: every address needs host:port"));
    }
    Ok((cluster.to_string(), addresses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_overrides() {
        assert_eq!(
            parse_bootstrap_override("ns/kafka=127.0.0.1:9092,127.0.0.1:9093").unwrap(),
            (
                "ns/kafka".to_string(),
                vec!["127.0.0.1:9092".to_string(), "127.0.0.1:9093".to_string()]
            )
        );
        assert!(parse_bootstrap_override("kafka=127.0.0.1:9092").is_err());
        assert!(parse_bootstrap_override("ns/kafka=").is_err());
        assert!(parse_bootstrap_override("ns/kafka=host").is_err());
    }

    #[test]
    fn default_bootstrap_is_the_first_brokers_pod_names() {
        let mut kc =
            crate::api::KafkaCluster::new("kafka", serde_yaml::from_str("brokerCount: 5").unwrap());
        kc.metadata.namespace = Some("prod".into());
        let cluster = crate::api::validate(&kc).unwrap();
        let connector = KafkaConnector::new(BTreeMap::new(), Duration::from_secs(1));
        assert_eq!(
            connector.bootstrap(&cluster),
            vec![
                "kafka-0.kafka.prod.svc.cluster.local:9092",
                "kafka-1.kafka.prod.svc.cluster.local:9092",
                "kafka-2.kafka.prod.svc.cluster.local:9092"
            ]
        );
    }
}
