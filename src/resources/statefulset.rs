//! The broker and controller StatefulSets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, TCPSocketAction, Toleration, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::validate::CONTROLLER_NODE_ID_BASE;
use crate::api::{Cluster, Mode, NodeResources, RetentionPolicy, Storage};

use super::names::{
    self, CLIENT_PORT, CONFIG_DIR, CONTROLLER_PORT, DATA_DIR, DATA_VOLUME, JMX_PORT, METRICS_PORT,
    REPLICATION_PORT, Role, SCRATCH_DIR,
};
use super::owner_reference;

/// Annotation on the pod template carrying a hash of the rendered configuration, so a
/// configuration change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "krallistic.github.com/config-hash";

/// The downward-API volume of a rack-aware broker pod.
const POD_INFO_VOLUME: &str = "pod-info";

/// Kafka images run as this user; volumes are group-owned by it.
const KAFKA_UID: i64 = 1000;

/// Inputs of a StatefulSet that do not come from the spec.
pub struct StatefulSetInputs<'a> {
    /// Replicas the StatefulSet should have now (during a drain, more than the spec asks).
    pub replicas: i32,
    /// KRaft cluster id the log directories are formatted with.
    pub cluster_id: Option<&'a str>,
    /// Hash of the rendered configuration.
    pub config_hash: &'a str,
}

/// The broker StatefulSet.
pub fn broker_statefulset(cluster: &Cluster, inputs: &StatefulSetInputs) -> StatefulSet {
    let mut ports = vec![
        container_port("client", CLIENT_PORT),
        container_port("replication", REPLICATION_PORT),
    ];
    let mut env = Vec::new();
    let mut sidecars = Vec::new();
    if let Some(jmx) = &cluster.jmx_exporter {
        // The broker serves JMX on the pod's loopback only; the exporter is the one way in.
        env.push(plain_env("JMX_PORT", &JMX_PORT.to_string()));
        env.push(plain_env(
            "KAFKA_JMX_OPTS",
            &format!(
                "-Dcom.sun.management.jmxremote -Dcom.sun.management.jmxremote.authenticate=false \
                 -Dcom.sun.management.jmxremote.ssl=false -Dcom.sun.management.jmxremote.host=127.0.0.1 \
                 -Djava.rmi.server.hostname=127.0.0.1 -Dcom.sun.management.jmxremote.rmi.port={JMX_PORT}"
            ),
        ));
        sidecars.push(jmx_exporter_container(&jmx.image));
        ports.push(container_port("jmx", JMX_PORT));
    }
    build(
        cluster,
        Role::Broker,
        &cluster.broker,
        ports,
        env,
        sidecars,
        inputs,
    )
}

/// The KRaft controller StatefulSet; None in ZooKeeper mode.
pub fn controller_statefulset(
    cluster: &Cluster,
    inputs: &StatefulSetInputs,
) -> Option<StatefulSet> {
    let Mode::Kraft {
        controllers,
        resources,
    } = &cluster.mode
    else {
        return None;
    };
    let inputs = StatefulSetInputs {
        replicas: *controllers,
        ..*inputs
    };
    Some(build(
        cluster,
        Role::Controller,
        resources,
        vec![container_port("controller", CONTROLLER_PORT)],
        Vec::new(),
        Vec::new(),
        &inputs,
    ))
}

fn build(
    cluster: &Cluster,
    role: Role,
    resources: &NodeResources,
    ports: Vec<ContainerPort>,
    extra_env: Vec<EnvVar>,
    sidecars: Vec<Container>,
    inputs: &StatefulSetInputs,
) -> StatefulSet {
    let name = names::statefulset(&cluster.name, role);
    let selector = names::statefulset_selector(&cluster.name, role);
    let pod_labels = names::role_labels(cluster, role);
    let probe_port = match role {
        Role::Broker => CLIENT_PORT,
        Role::Controller => CONTROLLER_PORT,
    };

    let mut env = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        plain_env(
            "NODE_ID_BASE",
            &match role {
                Role::Broker => 0,
                Role::Controller => CONTROLLER_NODE_ID_BASE,
            }
            .to_string(),
        ),
        plain_env(
            "KAFKA_HEAP_OPTS",
            &format!("-Xms{0}m -Xmx{0}m", resources.heap_bytes / (1024 * 1024)),
        ),
    ];
    if cluster.is_kraft()
        && let Some(id) = inputs.cluster_id
    {
        env.push(plain_env("KAFKA_CLUSTER_ID", id));
    }
    env.extend(extra_env);
    let rack_aware_broker = role == Role::Broker && cluster.rack_topology_key.is_some();
    if rack_aware_broker {
        env.push(plain_env(
            "KAFKA_OPERATOR_RACK_FILE",
            &format!("{}/{}", names::POD_INFO_DIR, names::RACK_FILE),
        ));
    }

    let mut volume_mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "scratch".into(),
            mount_path: SCRATCH_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        },
    ];
    if rack_aware_broker {
        volume_mounts.push(VolumeMount {
            name: POD_INFO_VOLUME.into(),
            mount_path: names::POD_INFO_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    volume_mounts.sort_by(|a, b| a.name.cmp(&b.name));

    let kafka = Container {
        name: names::KAFKA_CONTAINER.into(),
        image: Some(cluster.image.clone()),
        command: Some(vec![
            "sh".into(),
            format!("{CONFIG_DIR}/start.sh"),
            role.as_str().into(),
        ]),
        env: Some(env),
        ports: Some(ports),
        resources: Some(resource_requirements(resources)),
        // A node replaying a large log after an unclean stop can take many minutes to open its
        // listener; the startup probe gives it that time (30 minutes) without weakening
        // liveness later. Probed every 5 s, so that a restarted node counts as started and
        // ready within seconds of opening its listener (a roll waits for each in turn); a
        // node is unready after 30 s without an answer.
        startup_probe: Some(tcp_probe(probe_port, 5, 360)),
        readiness_probe: Some(tcp_probe(probe_port, 5, 6)),
        liveness_probe: Some(tcp_probe(probe_port, 20, 6)),
        volume_mounts: Some(volume_mounts),
        security_context: Some(container_security_context()),
        ..Default::default()
    };
    let mut containers = vec![kafka];
    containers.extend(sidecars);

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&cluster.name),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    if rack_aware_broker {
        volumes.push(Volume {
            name: POD_INFO_VOLUME.into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: names::RACK_FILE.into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{}']", names::RACK_ANNOTATION),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let mut claim_templates = None;
    match &cluster.storage {
        Storage::Ephemeral => volumes.push(Volume {
            name: DATA_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(resources.disk.clone())),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Storage::Persistent { class } => {
            claim_templates = Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(DATA_VOLUME.into()),
                    labels: Some(names::role_labels(cluster, role)),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity(resources.disk.clone()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        }
    }

    let grace = cluster.grace_period_seconds;
    let pod = PodSpec {
        containers,
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(grace),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(KAFKA_UID),
            run_as_group: Some(KAFKA_UID),
            fs_group: Some(KAFKA_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        affinity: Some(spread_over_nodes(&names::pod_selector(&cluster.name, role))),
        topology_spread_constraints: cluster.rack_topology_key.as_ref().map(|key| {
            vec![spread_over_racks(
                key,
                &names::pod_selector(&cluster.name, role),
            )]
        }),
        // How long a node may be unreachable before the pod is evicted elsewhere: evicting a
        // broker too early only moves the problem, and with local volumes it cannot move.
        tolerations: Some(
            [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ]
            .into_iter()
            .map(|key| Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(grace.max(300)),
                ..Default::default()
            })
            .collect(),
        ),
        node_selector: (!cluster.node_selector.is_empty()).then(|| cluster.node_selector.clone()),
        ..Default::default()
    };

    StatefulSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(cluster.namespace.clone()),
            labels: Some(names::role_labels(cluster, role)),
            owner_references: owner_reference(cluster).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(inputs.replicas),
            service_name: Some(names::headless_service(&cluster.name, role)),
            // Kafka nodes find each other by themselves; starting them one by one only slows a
            // cold start and can deadlock a controller quorum waiting for a majority.
            pod_management_policy: Some("Parallel".into()),
            // The operator restarts pods itself, one at a time and only when every partition
            // stays in sync (operations::roll); a RollingUpdate would only look at readiness.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            // Volumes of removed brokers are deleted by the operator after their drain is
            // verified, never by the StatefulSet controller on a plain scale-down.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some(
                        match cluster.pvc_retention.when_deleted {
                            RetentionPolicy::Retain => "Retain",
                            RetentionPolicy::Delete => "Delete",
                        }
                        .into(),
                    ),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some({
                        let mut annotations = BTreeMap::from([(
                            CONFIG_HASH_ANNOTATION.to_string(),
                            inputs.config_hash.to_string(),
                        )]);
                        if let Some(restart) = &cluster.restart {
                            annotations.insert(names::RESTART_ANNOTATION.into(), restart.clone());
                        }
                        annotations
                    }),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: claim_templates,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn jmx_exporter_container(image: &str) -> Container {
    Container {
        name: "jmx-exporter".into(),
        image: Some(image.into()),
        args: Some(vec![
            METRICS_PORT.to_string(),
            format!("{CONFIG_DIR}/jmx-exporter.yaml"),
        ]),
        ports: Some(vec![container_port("metrics", METRICS_PORT)]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("50m".into())),
                ("memory".into(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("256Mi".into()),
            )])),
            ..Default::default()
        }),
        readiness_probe: Some(tcp_probe(METRICS_PORT, 10, 3)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "scratch".into(),
                mount_path: SCRATCH_DIR.into(),
                ..Default::default()
            },
        ]),
        security_context: Some(container_security_context()),
        ..Default::default()
    }
}

fn resource_requirements(res: &NodeResources) -> ResourceRequirements {
    // Memory request = limit: the heap is sized from it, and the page cache Kafka relies on
    // should not be reclaimed from under a broker by a noisy neighbour.
    let mut limits = BTreeMap::from([("memory".to_string(), Quantity(res.memory.clone()))]);
    if let Some(cpu) = &res.cpu_limit {
        limits.insert("cpu".into(), Quantity(cpu.clone()));
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(res.cpu.clone())),
            ("memory".into(), Quantity(res.memory.clone())),
        ])),
        limits: Some(limits),
        ..Default::default()
    }
}

fn spread_over_nodes(selector: &BTreeMap<String, String>) -> Affinity {
    // Preferred rather than required, so a small or single-node cluster still schedules.
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector.clone()),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pods of a role spread evenly over the values of the rack label: no rack holds two more than
/// another, and a pod waits for a node rather than break that (a broker placed in a crowded rack
/// would make the planner's rack-aware placement impossible). Nodes without the label take no
/// pods.
fn spread_over_racks(key: &str, selector: &BTreeMap<String, String>) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: "DoNotSchedule".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tcp_probe(port: u16, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}
