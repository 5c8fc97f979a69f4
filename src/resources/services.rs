//! Services: headless ones that give pods stable DNS names, and one per broker.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::Cluster;

use super::names::{
    self, CLIENT_PORT, CONTROLLER_PORT, LABEL_COMPONENT, LABEL_POD_NAME, METRICS_PORT,
    REPLICATION_PORT, Role,
};
use super::owner_reference;

/// Component label of the per-broker Services, so the ones of removed brokers can be found.
pub const BROKER_SERVICE_COMPONENT: &str = "broker-service";

/// Headless Service of a role. It publishes not-ready pods: brokers and controllers must find
/// each other before any of them is ready.
pub fn headless_service(cluster: &Cluster, role: Role) -> Service {
    let mut ports = match role {
        Role::Broker => vec![
            service_port("client", CLIENT_PORT),
            service_port("replication", REPLICATION_PORT),
        ],
        Role::Controller => vec![service_port("controller", CONTROLLER_PORT)],
    };
    if role == Role::Broker && cluster.jmx_exporter.is_some() {
        ports.push(service_port("metrics", METRICS_PORT));
    }
    Service {
        metadata: metadata(
            cluster,
            names::headless_service(&cluster.name, role),
            names::role_labels(cluster, role),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::pod_selector(&cluster.name, role)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Service of one broker, selecting its pod by name (as in the original project).
pub fn broker_service(cluster: &Cluster, ordinal: i32) -> Service {
    let mut labels = names::cluster_labels(cluster);
    labels.insert(LABEL_COMPONENT.into(), BROKER_SERVICE_COMPONENT.into());
    Service {
        metadata: metadata(
            cluster,
            names::broker_service(&cluster.name, ordinal),
            labels,
        ),
        spec: Some(ServiceSpec {
            type_: Some(cluster.broker_service_type.as_str().into()),
            selector: Some({
                let mut selector = names::pod_selector(&cluster.name, Role::Broker);
                selector.insert(
                    LABEL_POD_NAME.to_string(),
                    names::pod(&cluster.name, Role::Broker, ordinal),
                );
                selector
            }),
            ports: Some(vec![service_port("client", CLIENT_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn metadata(cluster: &Cluster, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels),
        owner_references: owner_reference(cluster).map(|o| vec![o]),
        ..Default::default()
    }
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port.into(),
        target_port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}
