//! Pure builders of every Kubernetes object a Kafka cluster needs. No I/O: a validated
//! [`Cluster`] in, objects out.

pub mod config;
pub mod configmap;
pub mod names;
pub mod pdb;
pub mod pods;
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
    /// The settings the pods' template is keyed on, when they differ from the spec's by
    /// settings applied live (`status.brokerConfig.startup`); None keys it on the spec's.
    pub startup: Option<config::Properties>,
}

/// Builds every object of a cluster.
pub fn build(cluster: &Cluster, inputs: &BuildInputs) -> Objects {
    // Defaults sized by the broker count (internal topics' replication) follow the brokers that
    // run, not the count asked for: a refused or pending scale-down changes no configuration and
    // restarts no broker.
    let running = Cluster {
        broker_count: inputs.broker_replicas,
        ..cluster.clone()
    };
    let data = configmap::config_data(&running);
    let keyed = match &inputs.startup {
        Some(startup) => configmap::keyed_data(&running, startup),
        None => data.clone(),
    };
    let hash_of = |role: Role| {
        let keys: &[&str] = match role {
            Role::Broker => &["broker.properties", "start.sh", "jmx-exporter.yaml"],
            Role::Controller => &["controller.properties", "start.sh"],
        };
        let subset: BTreeMap<String, String> = keyed
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;
    use crate::api::validate;

    fn cluster(spec: &str) -> Cluster {
        let mut kc = KafkaCluster::new("kafka", serde_yaml::from_str(spec).unwrap());
        kc.metadata.namespace = Some("prod".into());
        kc.metadata.uid = Some("uid-1".into());
        validate(&kc).unwrap()
    }

    fn objects_started_with(
        spec: &str,
        replicas: i32,
        startup: Option<config::Properties>,
    ) -> Objects {
        build(
            &cluster(spec),
            &BuildInputs {
                broker_replicas: replicas,
                cluster_id: Some("AAAAAAAAAAAAAAAAAAAAAA".into()),
                startup,
            },
        )
    }

    fn objects(spec: &str, replicas: i32) -> Objects {
        objects_started_with(spec, replicas, None)
    }

    fn hash(o: &Objects, i: usize) -> String {
        o.statefulsets[i]
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[statefulset::CONFIG_HASH_ANNOTATION]
            .clone()
    }

    fn pod_spec(sts: &StatefulSet) -> &PodSpec {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn kafka_container(sts: &StatefulSet) -> &Container {
        &sts.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
        c.env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)?
            .value
            .as_deref()
    }

    #[test]
    fn kraft_cluster_has_controllers_first_and_brokers_last() {
        let o = objects("brokerCount: 3", 3);
        let names: Vec<_> = o
            .statefulsets
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["kafka-controller", "kafka"]);
        let controllers = &o.statefulsets[0];
        assert_eq!(controllers.spec.as_ref().unwrap().replicas, Some(3));
        assert_eq!(
            env(kafka_container(controllers), "NODE_ID_BASE"),
            Some("9000")
        );
        let brokers = &o.statefulsets[1];
        let c = kafka_container(brokers);
        assert_eq!(env(c, "KAFKA_CLUSTER_ID"), Some("AAAAAAAAAAAAAAAAAAAAAA"));
        assert_eq!(env(c, "NODE_ID_BASE"), Some("0"));
        assert_eq!(c.image.as_deref(), Some(crate::api::DEFAULT_IMAGE));
        assert_eq!(
            c.command.as_ref().unwrap(),
            &["sh", "/etc/kafka-operator/start.sh", "broker"]
        );
        let spec = brokers.spec.as_ref().unwrap();
        assert_eq!(spec.service_name.as_deref(), Some("kafka"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        // Volumes of scaled-away brokers are the operator's to delete, after a drain.
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .unwrap();
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        let owner = &brokers.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("KafkaCluster", "uid-1", Some(true))
        );
        let names: Vec<_> = o
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "kafka",
                "kafka-controllers",
                "kafka-broker-0",
                "kafka-broker-1",
                "kafka-broker-2"
            ]
        );
        assert_eq!(o.disruption_budgets.len(), 2);
    }

    #[test]
    fn zookeeper_mode_has_no_controllers_and_no_cluster_id() {
        let o = objects("brokerCount: 2\nzookeeperConnect: zk:2181", 2);
        assert_eq!(o.statefulsets.len(), 1);
        assert_eq!(o.disruption_budgets.len(), 1);
        let c = kafka_container(&o.statefulsets[0]);
        assert_eq!(env(c, "KAFKA_CLUSTER_ID"), None);
        assert!(
            !o.config_map
                .data
                .as_ref()
                .unwrap()
                .contains_key("controller.properties")
        );
        assert_eq!(o.services.len(), 3);
    }

    #[test]
    fn storage_follows_storage_class() {
        let o = objects(
            "brokerCount: 1\nstorageClass: fast\nresources: {diskSpace: 200Gi}",
            1,
        );
        let spec = o.statefulsets[1].spec.as_ref().unwrap();
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "200Gi"
        );
        let o = objects("brokerCount: 1\nstorageClass: emptyDir", 1);
        let spec = o.statefulsets[1].spec.as_ref().unwrap();
        assert!(spec.volume_claim_templates.is_none());
        let volumes = spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v.name == "data" && v.empty_dir.is_some())
        );
    }

    #[test]
    fn rack_aware_brokers_read_their_rack_from_the_pod_and_spread_over_racks() {
        let zone = "topology.kubernetes.io/zone";
        let o = objects(&format!("brokerCount: 3\nrack:\n  topologyKey: {zone}"), 3);
        for sts in &o.statefulsets {
            let pod = pod_spec(sts);
            let spread = pod.topology_spread_constraints.as_ref().unwrap();
            assert_eq!(spread.len(), 1);
            assert_eq!(spread[0].topology_key, zone);
            assert_eq!(spread[0].max_skew, 1);
            assert_eq!(spread[0].when_unsatisfiable, "DoNotSchedule");
            // It counts the pods of this StatefulSet: the role's own pods.
            let template = sts
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap();
            let labels = template.labels.as_ref().unwrap();
            let selector = spread[0].label_selector.as_ref().unwrap();
            let selector = selector.match_labels.as_ref().unwrap();
            assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
            assert_eq!(
                selector.get(names::LABEL_COMPONENT),
                labels.get(names::LABEL_COMPONENT)
            );
        }
        // Only brokers have a rack: the controllers' pods read nothing.
        let controller = kafka_container(&o.statefulsets[0]);
        assert_eq!(env(controller, "KAFKA_OPERATOR_RACK_FILE"), None);
        let broker_pod = pod_spec(&o.statefulsets[1]);
        let broker = &broker_pod.containers[0];
        assert_eq!(
            env(broker, "KAFKA_OPERATOR_RACK_FILE"),
            Some("/etc/kafka-operator-pod/rack")
        );
        let mount = broker
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/etc/kafka-operator-pod")
            .unwrap();
        let volume = broker_pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap();
        let file = &volume
            .downward_api
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .unwrap()[0];
        assert_eq!(file.path, "rack");
        assert_eq!(
            file.field_ref.as_ref().unwrap().field_path,
            "metadata.annotations['krallistic.github.com/rack']"
        );
        // Without rack awareness, nothing of it.
        let o = objects("brokerCount: 3", 3);
        let pod = pod_spec(&o.statefulsets[1]);
        assert!(pod.topology_spread_constraints.is_none());
        assert_eq!(env(&pod.containers[0], "KAFKA_OPERATOR_RACK_FILE"), None);
    }

    #[test]
    fn jmx_sidecar_exports_broker_metrics() {
        let o = objects("brokerCount: 1\njmxSidecar: true", 1);
        let pod = pod_spec(&o.statefulsets[1]);
        assert_eq!(pod.containers.len(), 2);
        let exporter = &pod.containers[1];
        assert_eq!(exporter.name, "jmx-exporter");
        assert_eq!(
            exporter.args.as_ref().unwrap(),
            &["5556", "/etc/kafka-operator/jmx-exporter.yaml"]
        );
        assert_eq!(env(&pod.containers[0], "JMX_PORT"), Some("9999"));
        let config = &o.config_map.data.as_ref().unwrap()["jmx-exporter.yaml"];
        assert!(config.starts_with("hostPort: 127.0.0.1:9999\n"), "{config}");
        assert!(config.contains("kafka_server_$1_$2"), "{config}");
        let headless = &o.services[0];
        let ports = headless.spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert!(ports.iter().any(|p| p.port == 5556));
        // Without the sidecar, no JMX port is opened.
        let o = objects("brokerCount: 1", 1);
        assert_eq!(env(kafka_container(&o.statefulsets[1]), "JMX_PORT"), None);
    }

    #[test]
    fn configuration_changes_change_the_template_hash_of_the_role_concerned() {
        let a = objects("brokerCount: 3", 3);
        let b = objects("brokerCount: 3\nkafkaOptions: {logRetentionHours: 12}", 3);
        assert_ne!(hash(&a, 1), hash(&b, 1));
        // Same spec, same hash: an operator restart rolls nothing.
        assert_eq!(hash(&a, 1), hash(&objects("brokerCount: 3", 3), 1));
        // A broker count change alone does not restart the controllers.
        assert_eq!(hash(&a, 0), hash(&objects("brokerCount: 3", 4), 0));
        // A scale-down asked for but not carried out yet (the StatefulSet still runs 3)
        // restarts nothing, even where the count sizes internal topics' defaults.
        let asked = objects("brokerCount: 2", 3);
        assert_eq!(hash(&a, 0), hash(&asked, 0));
        assert_eq!(hash(&a, 1), hash(&asked, 1));
    }

    #[test]
    fn settings_applied_live_leave_the_template_as_the_pods_started_with_it() {
        let before = "brokerCount: 3\nkafkaOptions: {logRetentionHours: 168}";
        let after = "brokerCount: 3\nkafkaOptions: {logRetentionHours: 200}";
        let startup = config::settings(&cluster(before));
        // Keyed on the settings the spec renders: the same hash as with no record at all, so
        // an operator that starts keeping the record rolls nothing.
        assert_eq!(
            hash(&objects_started_with(before, 3, Some(startup.clone())), 1),
            hash(&objects(before, 3), 1)
        );
        let live = objects_started_with(after, 3, Some(startup));
        for role in [0, 1] {
            assert_eq!(hash(&live, role), hash(&objects(before, 3), role));
        }
        // The pods still get the spec's value when they start.
        assert!(
            live.config_map.data.as_ref().unwrap()["broker.properties"]
                .contains("log.retention.hours=200\n")
        );
        assert_ne!(hash(&objects(after, 3), 1), hash(&objects(before, 3), 1));
    }

    #[test]
    fn pods_run_restricted() {
        let o = objects("brokerCount: 1\nminimumGracePeriod: 600", 1);
        let pod = pod_spec(&o.statefulsets[1]);
        let sc = pod.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.termination_grace_period_seconds, Some(600));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        let csc = c.security_context.as_ref().unwrap();
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        assert_eq!(
            csc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL"]
        );
        assert!(
            c.startup_probe.is_some() && c.readiness_probe.is_some() && c.liveness_probe.is_some()
        );
    }
}
