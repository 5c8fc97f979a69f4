//! Rack awareness: each broker pod of a rack-aware cluster gets the rack of its node written on
//! it (the [`RACK_ANNOTATION`]), which the pod reads through the downward API as its
//! `broker.rack`. Kubernetes has no default-on downward-API route to node labels, and giving
//! every broker pod API access to read its node would give every broker a token; the operator
//! already watches the pods, so it reads the node (once per node and round) and writes the
//! annotation once, when the pod is scheduled.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::resources::names::{FIELD_MANAGER, RACK_ANNOTATION, Role};
use crate::resources::pods;

use super::Result;

/// Broker pods that are on a node but have no rack yet: their broker waits for it.
pub fn pending(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| pods::role(p) == Some(Role::Broker))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| node_name(p).is_some())
        .filter(|p| {
            p.annotations()
                .get(RACK_ANNOTATION)
                .is_none_or(|r| r.is_empty())
        })
        .collect()
}

/// The rack of `node`: the value of its `key` label, if it has a non-empty one.
pub fn rack_of(node: &Node, key: &str) -> Option<String> {
    node.labels().get(key).filter(|r| !r.is_empty()).cloned()
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Writes the rack of each pending pod's node on it. Returns, for each pod whose node has no
/// rack label (or is gone), what the user has to do: the pod waits for it.
pub async fn assign(
    client: &Client,
    namespace: &str,
    key: &str,
    broker_pods: &[Pod],
) -> Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut racks: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for pod in pending(broker_pods) {
        let Some(node) = node_name(pod) else {
            continue;
        };
        if !racks.contains_key(node) {
            let rack = nodes.get_opt(node).await?.and_then(|n| rack_of(&n, key));
            racks.insert(node.to_string(), rack);
        }
        match &racks[node] {
            Some(rack) => {
                let patch = json!({"metadata": {"annotations": {RACK_ANNOTATION: rack}}});
                pod_api
                    .patch(
                        &pod.name_any(),
                        &PatchParams::apply(FIELD_MANAGER),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                tracing::info!(namespace, pod = %pod.name_any(), node, rack = %rack, "broker rack written on its pod");
            }
            None => problems.push(format!(
                "broker pod {pod} is on node {node}, which has no {key} label, so its broker cannot know its rack and waits: label the node (kubectl label node {node} {key}=<rack>) or delete the pod to have it scheduled on a node that has the label",
                pod = pod.name_any()
            )),
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use crate::resources::names::LABEL_COMPONENT;

    fn pod(name: &str, component: &str, node: Option<&str>, rack: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(LABEL_COMPONENT.into(), component.into())])),
                annotations: rack.map(|r| BTreeMap::from([(RACK_ANNOTATION.into(), r.into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_scheduled_broker_pods_without_a_rack_wait_for_one() {
        let mut leaving = pod("kafka-4", "broker", Some("n1"), None);
        leaving.metadata.deletion_timestamp = Some(Time(Default::default()));
        let pods = vec![
            pod("kafka-0", "broker", Some("n1"), None),
            pod("kafka-1", "broker", Some("n2"), Some("zone-b")),
            pod("kafka-2", "broker", None, None),
            pod("kafka-3", "broker", Some("n3"), Some("")),
            pod("kafka-controller-0", "controller", Some("n1"), None),
            leaving,
        ];
        let names: Vec<String> = pending(&pods).iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["kafka-0", "kafka-3"]);
    }

    #[test]
    fn a_node_rack_is_its_label_value_when_it_has_one() {
        let node = |labels: &[(&str, &str)]| Node {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        let key = "topology.kubernetes.io/zone";
        assert_eq!(
            rack_of(&node(&[(key, "zone-a")]), key).as_deref(),
            Some("zone-a")
        );
        assert_eq!(rack_of(&node(&[(key, "")]), key), None);
        assert_eq!(
            rack_of(&node(&[("kubernetes.io/hostname", "n1")]), key),
            None
        );
    }
}
