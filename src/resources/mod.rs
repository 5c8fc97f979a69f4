//! Pure builders of every Kubernetes object a Kafka cluster needs. No I/O: a validated
//! [`Cluster`] in, objects out.

pub mod config;
pub mod configmap;
pub mod names;
pub mod pdb;
pub mod services;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::api::{Cluster, KafkaCluster};
use names::Role;
use statefulset::StatefulSetInputs;

/// Everything a cluster consists of, in the order it is applied: configuration and Services
/// first, StatefulSets last, so pods start once with their final configuration.
#[derive(Clone, Debug)]
pub struct Objects {
    pub config_map: ConfigMap,
    pub services: Vec<Service>,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// The controller StatefulSet (KRaft) comes before the brokers'.
    pub statefulsets: Vec<StatefulSet>,
}

/// What the builders need beyond the spec.
#[derive(Clone, Debug)]
pub struct BuildInputs {
    /// Brokers the broker StatefulSet should run now.
    pub broker_replicas: i32,
    /// KRaft cluster id (from the status; chosen once).
    pub cluster_id: Option<String>,
}

/// Builds every object of a cluster.
pub fn build(cluster: &Cluster, inputs: &BuildInputs) -> Objects {
    let data = configmap::config_data(cluster);
    let hash_of = |role: Role| {
        let keys: &[&str] = match role {
            Role::Broker => &["broker.properties", "start.sh", "jmx-exporter.yaml"],
            Role::Controller => &["controller.properties", "start.sh"],
        };
        let subset: BTreeMap<String, String> = data
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        configmap::config_hash(&subset)
    };
    let broker_hash = hash_of(Role::Broker);
    let controller_hash = hash_of(Role::Controller);

    let mut services = vec![services::headless_service(cluster, Role::Broker)];
    if cluster.is_kraft() {
        services.push(services::headless_service(cluster, Role::Controller));
    }
    services.extend((0..inputs.broker_replicas).map(|i| services::broker_service(cluster, i)));

    let mut disruption_budgets = vec![pdb::pod_disruption_budget(cluster, Role::Broker)];
    let mut statefulsets = Vec::new();
    if let Some(sts) = statefulset::controller_statefulset(
        cluster,
        &StatefulSetInputs {
            replicas: 0,
            cluster_id: inputs.cluster_id.as_deref(),
            config_hash: &controller_hash,
        },
    ) {
        disruption_budgets.push(pdb::pod_disruption_budget(cluster, Role::Controller));
        statefulsets.push(sts);
    }
    statefulsets.push(statefulset::broker_statefulset(
        cluster,
        &StatefulSetInputs {
            replicas: inputs.broker_replicas,
            cluster_id: inputs.cluster_id.as_deref(),
            config_hash: &broker_hash,
        },
    ));

    Objects {
        config_map: configmap::config_map(cluster, data),
        services,
        disruption_budgets,
        statefulsets,
    }
}

/// Owner reference to the KafkaCluster, so Kubernetes deletes what the operator made with it.
pub fn owner_reference(cluster: &Cluster) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: KafkaCluster::api_version(&()).into_owned(),
        kind: KafkaCluster::kind(&()).into_owned(),
        name: cluster.name.clone(),
        uid: cluster.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}
