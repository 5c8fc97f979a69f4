//! What the operator reads off a Kafka pod: its role, its ordinal, whether it is ready.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::names::{KAFKA_CONTAINER, LABEL_COMPONENT, Role};

/// The pod's role, from its component label; None for pods that run no Kafka node.
pub fn role(pod: &Pod) -> Option<Role> {
    match pod.labels().get(LABEL_COMPONENT).map(String::as_str) {
        Some("broker") => Some(Role::Broker),
        Some("controller") => Some(Role::Controller),
        _ => None,
    }
}

/// The StatefulSet ordinal at the end of the pod's name.
pub fn ordinal(pod: &Pod) -> Option<i32> {
    pod.name_any().rsplit('-').next()?.parse().ok()
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Whether the pod's Kafka container is running (started and not exited). A pod that is
/// Pending, or whose container waits (being created, in CrashLoopBackOff, pulling its image)
/// or has exited, runs no Kafka.
pub fn kafka_running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == KAFKA_CONTAINER))
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn reads_role_ordinal_and_readiness() {
        let p = pod("metadata:
  name: kafka-controller-12
  labels: {app.kubernetes.io/component: controller}
status:
  conditions: [{type: Ready, status: 'True'}]
");
        assert_eq!(role(&p), Some(Role::Controller));
        assert_eq!(ordinal(&p), Some(12));
        assert!(is_ready(&p));
        assert!(!kafka_running(&p));
        let crash_looping = pod("metadata: {name: kafka-1}
status:
  containerStatuses:
    - {name: kafka, image: x, imageID: '', ready: false, restartCount: 5, state: {waiting: {reason: CrashLoopBackOff}}}
    - {name: jmx-exporter, image: x, imageID: '', ready: true, restartCount: 0, state: {running: {}}}
");
        assert!(!kafka_running(&crash_looping));
        let running = pod("metadata: {name: kafka-1}
status:
  containerStatuses:
    - {name: kafka, image: x, imageID: '', ready: false, restartCount: 0, state: {running: {}}}
");
        assert!(kafka_running(&running));
        let p = pod(
            "metadata: {name: kafka-exporter}\nstatus:\n  conditions: [{type: Ready, status: 'False'}]\n",
        );
        assert_eq!((role(&p), ordinal(&p), is_ready(&p)), (None, None, false));
    }
}
