//! PodDisruptionBudgets: voluntary disruptions (node drains) take one Kafka node at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::Cluster;

use super::names::{self, Role};
use super::owner_reference;

pub fn pod_disruption_budget(cluster: &Cluster, role: Role) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(names::pod_disruption_budget(&cluster.name, role)),
            namespace: Some(cluster.namespace.clone()),
            labels: Some(names::role_labels(cluster, role)),
            owner_references: owner_reference(cluster).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names::pod_selector(&cluster.name, role)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
