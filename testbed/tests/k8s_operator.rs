//! The operator against a real kube-apiserver (with kube-controller-manager), running under the
//! RBAC of `deploy/kafka-operator.yaml`. One control plane for all tests of this file; each
//! test has a namespace of its own.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use kafka_operator::api::{KafkaCluster, Phase};
use kafka_operator::resources::statefulset::CONFIG_HASH_ANNOTATION;
use kafka_operator_testbed::process::project_root;
use support::kube::{ForeignRelease, Operator, eventually, kubectl, namespace, reconciled};

const TIMEOUT: Duration = Duration::from_secs(60);

fn example(file: &str) -> String {
    std::fs::read_to_string(project_root().join("examples").join(file)).expect("example")
}

async fn apply(ns: &str, yaml: &str) {
    let (ok, _, err) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(yaml)).await;
    assert!(ok, "kubectl apply failed: {err}");
}

async fn statefulset(client: &Client, ns: &str, name: &str) -> StatefulSet {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually(&format!("StatefulSet {name}"), TIMEOUT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten() }
    })
    .await
}

fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().unwrap().replicas.unwrap()
}

fn condition(kc: &KafkaCluster, type_: &str) -> (String, String, String) {
    let c = kc
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no condition {type_}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn events(ns: &str) -> String {
    let (_, out, _) = kubectl(
        &[
            "get",
            "events",
            "-n",
            ns,
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ],
        None,
    )
    .await;
    out
}

#[tokio::test]
async fn original_example_produces_the_expected_objects() {
    let ns = "original-example";
    let client = namespace(ns).await;
    let operator = Operator::start(ns).await;
    apply(ns, &example("kafka-cluster.yaml")).await;
    let kc = reconciled(&client, ns, "test-cluster-1").await;

    // Broker StatefulSet, as the original named it: pods test-cluster-1-0..2.
    let sts = statefulset(&client, ns, "test-cluster-1").await;
    assert_eq!(replicas(&sts), 3);
    let spec = sts.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    let kafka = &pod.containers[0];
    // `cp-kafka:latest` is Kafka 4, which has no ZooKeeper mode: the brokers run the last
    // Confluent Platform release that has it.
    assert_eq!(kafka.image.as_deref(), Some("confluentinc/cp-kafka:7.9.11"));
    assert_eq!(pod.termination_grace_period_seconds, Some(1200));
    assert!(
        pod.tolerations
            .as_ref()
            .unwrap()
            .iter()
            .all(|t| t.toleration_seconds == Some(1200))
    );
    let res = kafka.resources.as_ref().unwrap();
    assert_eq!(res.limits.as_ref().unwrap()["cpu"].0, "1");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "1Gi");
    let env = kafka.env.as_ref().unwrap();
    let heap = env.iter().find(|e| e.name == "KAFKA_HEAP_OPTS").unwrap();
    assert_eq!(heap.value.as_deref(), Some("-Xms512m -Xmx512m"));
    // ZooKeeper mode: no KRaft cluster id, no controllers.
    assert!(env.iter().all(|e| e.name != "KAFKA_CLUSTER_ID"));
    // storageClass: emptyDir, sized by diskSpace.
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        data.empty_dir
            .as_ref()
            .unwrap()
            .size_limit
            .as_ref()
            .unwrap()
            .0,
        "50G"
    );
    assert!(spec.volume_claim_templates.is_none());
    // jmxSidecar: false.
    assert_eq!(pod.containers.len(), 1);
    let sec = kafka.security_context.as_ref().unwrap();
    assert_eq!(sec.read_only_root_filesystem, Some(true));
    assert_eq!(sec.allow_privilege_escalation, Some(false));
    assert!(kafka.readiness_probe.is_some() && kafka.liveness_probe.is_some());
    assert!(pod.affinity.as_ref().unwrap().pod_anti_affinity.is_some());

    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    assert!(
        statefulsets
            .get_opt("test-cluster-1-controller")
            .await
            .unwrap()
            .is_none()
    );

    // Services: headless + one per broker, as in the original.
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = services
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.name_any())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "test-cluster-1",
            "test-cluster-1-broker-0",
            "test-cluster-1-broker-1",
            "test-cluster-1-broker-2"
        ]
    );
    let headless = services.get("test-cluster-1").await.unwrap();
    let hs = headless.spec.unwrap();
    assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
    assert_eq!(hs.publish_not_ready_addresses, Some(true));

    // Configuration: every option of the original spec is rendered.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = cms.get("test-cluster-1-config").await.unwrap();
    let props = &cm.data.as_ref().unwrap()["broker.properties"];
    for line in [
        "zookeeper.connect=zk-headless.default.svc.cluster.local",
        "log.retention.hours=24",
        "auto.create.topics.enable=false",
        "compression.type=gzip",
        "leader.imbalance.per.broker.percentage=10",
        "leader.imbalance.check.interval.seconds=600",
        "broker.id=${NODE_ID}",
    ] {
        assert!(
            props.lines().any(|l| l == line),
            "missing {line} in\n{props}"
        );
    }
    assert!(cm.data.as_ref().unwrap().contains_key("start.sh"));

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let pdb = pdbs.get("test-cluster-1").await.unwrap();
    assert_eq!(
        pdb.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    // Everything is owned by the KafkaCluster.
    let uid = kc.metadata.uid.clone().unwrap();
    for owners in [
        sts.metadata.owner_references.clone(),
        cm.metadata.owner_references.clone(),
        headless.metadata.owner_references.clone(),
    ] {
        assert_eq!(owners.unwrap()[0].uid, uid);
    }

    // Status and events: no pod can run here, so the cluster is still being created; the
    // image the brokers run instead of the spec's is worth a warning.
    let status = kc.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(Phase::Creating));
    assert_eq!(status.brokers, 3);
    assert_eq!(condition(&kc, "Ready").0, "False");
    assert!(
        kc.finalizers()
            .iter()
            .any(|f| f == "krallistic.github.com/cleanup")
    );
    let ev = eventually("events", TIMEOUT, || async {
        let ev = events(ns).await;
        (ev.contains("Created") && ev.contains("ImageResolved")).then_some(ev)
    })
    .await;
    assert!(
        ev.contains("the brokers run confluentinc/cp-kafka:7.9.11"),
        "{ev}"
    );

    // kubectl get kafkacluster prints the columns users expect.
    let (ok, out, _) = kubectl(&["get", "kafkacluster", "-n", ns], None).await;
    assert!(ok);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "BROKERS", "READY", "PHASE", "AGE"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["test-cluster-1", "3", "0", "Creating"]);
    // and by its short name.
    let (ok, _, _) = kubectl(&["get", "kc", "-n", ns], None).await;
    assert!(ok);

    assert_eq!(operator.failures(), "", "reconcile failures");
}

#[tokio::test]
async fn kraft_cluster_scales_up_refuses_to_shrink_and_rerenders_config() {
    let ns = "kraft-scaling";
    let client = namespace(ns).await;
    let operator = Operator::start(ns).await;
    apply(ns, &example("kraft-cluster.yaml")).await;
    let kc = reconciled(&client, ns, "kafka").await;
    let cluster_id = kc.status.as_ref().unwrap().cluster_id.clone().unwrap();

    // KRaft: a controller quorum of 3 and a stable cluster id in every pod.
    let controllers = statefulset(&client, ns, "kafka-controller").await;
    assert_eq!(replicas(&controllers), 3);
    let brokers = statefulset(&client, ns, "kafka").await;
    let env = brokers
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    let id = env.iter().find(|e| e.name == "KAFKA_CLUSTER_ID").unwrap();
    assert_eq!(id.value.as_deref(), Some(cluster_id.as_str()));
    let claims = brokers
        .spec
        .as_ref()
        .unwrap()
        .volume_claim_templates
        .clone()
        .unwrap();
    assert_eq!(
        claims[0]
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "100Gi"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let data = cms.get("kafka-config").await.unwrap().data.unwrap();
    assert!(
        data["broker.properties"].contains(
            "controller.quorum.voters=9000@kafka-controller-0.kafka-controllers.kraft-scaling.svc.cluster.local:9093,"
        ),
        "{}",
        data["broker.properties"]
    );
    assert!(data["controller.properties"].contains("process.roles=controller"));

    // Scale up with `kubectl scale` (the scale subresource): the StatefulSet grows and each new
    // broker gets its Service.
    let (ok, _, err) = kubectl(
        &["scale", "-n", ns, "kafkacluster/kafka", "--replicas=5"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let kc = reconciled(&client, ns, "kafka").await;
    assert_eq!(replicas(&statefulset(&client, ns, "kafka").await), 5);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    assert!(services.get_opt("kafka-broker-4").await.unwrap().is_some());
    assert_eq!(kc.status.as_ref().unwrap().brokers, 5);
    // The cluster id never changes.
    assert_eq!(
        kc.status.as_ref().unwrap().cluster_id.as_ref(),
        Some(&cluster_id)
    );

    // Scale down: the brokers may hold data, so the StatefulSet keeps them and the status says why.
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    api.patch(
        "kafka",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"brokerCount": 3}})),
    )
    .await
    .unwrap();
    let kc = reconciled(&client, ns, "kafka").await;
    assert_eq!(replicas(&statefulset(&client, ns, "kafka").await), 5);
    let (status, reason, message) = condition(&kc, "ScaleDownBlocked");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ScaleDownBlocked")
    );
    assert!(message.contains("3, 4"), "{message}");
    assert_eq!(kc.status.as_ref().unwrap().phase, Some(Phase::Blocked));
    assert!(services.get_opt("kafka-broker-4").await.unwrap().is_some());
    eventually("ScaleDownBlocked event", TIMEOUT, || async {
        events(ns).await.contains("ScaleDownBlocked").then_some(())
    })
    .await;

    // A spec change re-renders the configuration and rolls the brokers (new template hash).
    let hash_before = template_hash(&statefulset(&client, ns, "kafka").await);
    // The StatefulSet controller writes its revision once it has seen the current generation.
    let revision_before = eventually(
        "the StatefulSet controller to set a revision",
        TIMEOUT,
        || async {
            let sts = statefulset(&client, ns, "kafka").await;
            let status = sts.status?;
            (status.observed_generation == sts.metadata.generation)
                .then_some(status.update_revision)
                .flatten()
        },
    )
    .await;
    api.patch(
        "kafka",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"kafkaOptions": {"logRetentionHours": 72}}})),
    )
    .await
    .unwrap();
    reconciled(&client, ns, "kafka").await;
    let data = cms.get("kafka-config").await.unwrap().data.unwrap();
    assert!(data["broker.properties"].contains("log.retention.hours=72\n"));
    let hash_after = template_hash(&statefulset(&client, ns, "kafka").await);
    assert_ne!(hash_before, hash_after);
    eventually("ConfigurationChanged event", TIMEOUT, || async {
        events(ns)
            .await
            .contains("ConfigurationChanged")
            .then_some(())
    })
    .await;
    // The StatefulSets leave restarts to the operator (OnDelete), which restarts the pods one
    // at a time (here none is ready, so none holds the roll back) until all run the new template.
    let spec = statefulset(&client, ns, "kafka").await.spec.unwrap();
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually(
        "every broker pod to run the new template",
        Duration::from_secs(120),
        || {
            let (pods, statefulsets) = (pods.clone(), statefulsets.clone());
            let revision_before = revision_before.clone();
            async move {
                let revision = statefulsets
                    .get("kafka")
                    .await
                    .ok()?
                    .status?
                    .update_revision
                    .filter(|r| *r != revision_before)?;
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/component=broker"))
                    .await
                    .ok()?;
                let current = list.items.iter().filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.labels().get("controller-revision-hash") == Some(&revision)
                });
                (current.count() == 5).then_some(())
            }
        },
    )
    .await;
    eventually(
        "a Restarting event for each broker pod",
        TIMEOUT,
        || async {
            let restarts = events(ns).await;
            (0..5)
                .all(|b| restarts.contains(&format!("restarting pod kafka-{b} ")))
                .then_some(())
        },
    )
    .await;

    // Kept volumes of an earlier cluster are adopted through spec.clusterId: every pod gets
    // that id, status.clusterId follows, and an event says so. (No broker is ready here, so no
    // running Kafka could report another id.)
    let adopted = "Q2x1c3RlckJlZm9yZU5vdw";
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    clusters
        .patch(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"clusterId": adopted}})),
        )
        .await
        .unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually(
        "every pod template to carry the adopted cluster id",
        TIMEOUT,
        || {
            let statefulsets = statefulsets.clone();
            async move {
                for name in ["kafka", "kafka-controller"] {
                    let sts = statefulsets.get(name).await.ok()?;
                    let env = sts.spec?.template.spec?.containers.first()?.env.clone()?;
                    let id = env.iter().find(|e| e.name == "KAFKA_CLUSTER_ID")?;
                    if id.value.as_deref() != Some(adopted) {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    let kc = reconciled(&client, ns, "kafka").await;
    assert_eq!(
        kc.status.as_ref().unwrap().cluster_id.as_deref(),
        Some(adopted)
    );
    eventually("a ClusterIdAdopted event", TIMEOUT, || async {
        events(ns).await.contains("ClusterIdAdopted").then_some(())
    })
    .await;

    // A hand edit of an owned object is undone.
    statefulsets
        .patch(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually(
        "the operator to restore the broker replicas",
        TIMEOUT,
        || {
            let statefulsets = statefulsets.clone();
            async move {
                let sts = statefulsets.get("kafka").await.ok()?;
                (replicas(&sts) == 5).then_some(())
            }
        },
    )
    .await;

    assert_eq!(operator.failures(), "", "reconcile failures");
}

fn template_hash(sts: &StatefulSet) -> String {
    sts.spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

#[tokio::test]
async fn the_pause_annotation_stops_every_action_and_the_restart_annotation_rolls() {
    let ns = "pausing";
    let client = namespace(ns).await;
    let operator = Operator::start(ns).await;
    apply(
        ns,
        "apiVersion: krallistic.github.com/v1\nkind: KafkaCluster\nmetadata: {name: calm}\nspec:\n  brokerCount: 2\n  controllers: {replicas: 1}\n",
    )
    .await;
    reconciled(&client, ns, "calm").await;
    let annotate = |value: &str| {
        let arg = format!("krallistic.github.com/pause-reconciliation={value}");
        async move {
            let (ok, _, err) = kubectl(
                &[
                    "annotate",
                    "--overwrite",
                    "-n",
                    ns,
                    "kafkacluster/calm",
                    &arg,
                ],
                None,
            )
            .await;
            assert!(ok, "{err}");
        }
    };
    annotate("true").await;
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    eventually("the Paused phase", TIMEOUT, || {
        let api = api.clone();
        async move {
            let kc = api.get("calm").await.ok()?;
            (kc.status?.phase == Some(Phase::Paused)).then_some(())
        }
    })
    .await;
    let (ok, _, err) = kubectl(
        &["scale", "-n", ns, "kafkacluster/calm", "--replicas=3"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    // Nothing moves while paused, and the status says why.
    for _ in 0..10 {
        assert_eq!(replicas(&statefulset(&client, ns, "calm").await), 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let kc = api.get("calm").await.unwrap();
    let (status, reason, message) = condition(&kc, "Paused");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PausedByAnnotation")
    );
    assert!(message.contains("pause-reconciliation"), "{message}");
    // Removed, the operator catches up with the spec.
    let (ok, _, err) = kubectl(
        &[
            "annotate",
            "-n",
            ns,
            "kafkacluster/calm",
            "krallistic.github.com/pause-reconciliation-",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    eventually("3 brokers once resumed", TIMEOUT, || {
        let client = client.clone();
        async move {
            let sts: Api<StatefulSet> = Api::namespaced(client, ns);
            let r = sts.get("calm").await.ok()?.spec?.replicas?;
            (r == 3).then_some(())
        }
    })
    .await;
    let kc = reconciled(&client, ns, "calm").await;
    assert_ne!(kc.status.as_ref().unwrap().phase, Some(Phase::Paused));
    assert!(
        kc.status
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != "Paused"),
        "the Paused condition goes with the annotation"
    );
    assert!(events(ns).await.contains("ReconciliationResumed"));

    // A new value of the restart annotation changes both pod templates (the operator then
    // restarts the pods one at a time, as for any new template).
    let (ok, _, err) = kubectl(
        &[
            "annotate",
            "-n",
            ns,
            "kafkacluster/calm",
            "krallistic.github.com/restart=2026-12-04T10:00:00Z",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    for sts in ["calm", "calm-controller"] {
        let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        eventually(
            &format!("the restart annotation on {sts}'s pods"),
            TIMEOUT,
            || {
                let sts_api = sts_api.clone();
                async move {
                    let s = sts_api.get(sts).await.ok()?;
                    let value = s
                        .spec?
                        .template
                        .metadata?
                        .annotations?
                        .get("krallistic.github.com/restart")
                        .cloned()?;
                    (value == "2026-12-04T10:00:00Z").then_some(())
                }
            },
        )
        .await;
    }
    assert_eq!(operator.failures(), "", "reconcile failures");
}

#[tokio::test]
async fn a_step_without_progress_past_its_bound_is_reported_stuck() {
    let ns = "stuck";
    let client = namespace(ns).await;
    let operator = Operator::start(ns).await;
    // No kubelet here: the brokers of a scale-up never start.
    apply(
        ns,
        "apiVersion: krallistic.github.com/v1\nkind: KafkaCluster\nmetadata: {name: waiting}\nspec:\n  brokerCount: 1\n  controllers: {replicas: 1}\n  rebalance: {stuckAfterSeconds: {WaitingForBrokers: 3}}\n",
    )
    .await;
    reconciled(&client, ns, "waiting").await;
    let (ok, _, err) = kubectl(
        &["scale", "-n", ns, "kafkacluster/waiting", "--replicas=2"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    let message = eventually("the Stuck condition", TIMEOUT, || {
        let api = api.clone();
        async move {
            let kc = api.get("waiting").await.ok()?;
            let c = kc
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Stuck" && c.status == "True")?;
            Some(c.message)
        }
    })
    .await;
    assert!(
        message.contains("step WaitingForBrokers has made no progress")
            && message.contains("lowering brokerCount again undoes the scale-up"),
        "{message}"
    );
    assert!(events(ns).await.contains("Stuck"));
    assert_eq!(operator.failures(), "", "reconcile failures");
}

#[tokio::test]
async fn delete_removes_everything_and_volumes_per_policy() {
    let ns = "deletion";
    let client = namespace(ns).await;
    let operator = Operator::start(ns).await;
    apply(
        ns,
        "apiVersion: krallistic.github.com/v1\nkind: KafkaCluster\nmetadata: {name: doomed}\nspec:\n  brokerCount: 2\n  controllers: {replicas: 1}\n  pvcRetention: {whenDeleted: Delete}\n",
    )
    .await;
    reconciled(&client, ns, "doomed").await;
    // kube-controller-manager creates the pods and their volume claims (Pending: no kubelet,
    // no provisioner), as on a real cluster.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    eventually("volume claims of the brokers", TIMEOUT, || {
        let claims = claims.clone();
        async move {
            let list = claims.list(&ListParams::default()).await.ok()?;
            (list.items.len() >= 3).then_some(())
        }
    })
    .await;

    // Another release of the same name in the namespace: a delete of the cluster leaves it be.
    let foreign = ForeignRelease::create(&client, ns, "doomed", 5)
        .await
        .unwrap();

    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    api.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the KafkaCluster to be gone", TIMEOUT, || {
        let api = api.clone();
        async move { api.get_opt("doomed").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // What is left, by kind and name; the timeout's message lists it.
    let left = || async {
        let lp = ListParams::default().labels("app.kubernetes.io/instance=doomed");
        let mut left = Vec::new();
        for s in statefulsets.list(&lp).await?.items {
            left.push(format!("statefulset/{}", s.name_any()));
        }
        for s in services.list(&lp).await?.items {
            left.push(format!("service/{}", s.name_any()));
        }
        for c in cms.list(&lp).await?.items {
            left.push(format!("configmap/{}", c.name_any()));
        }
        for c in claims.list(&ListParams::default()).await?.items {
            if c.metadata.deletion_timestamp.is_none() && c.name_any() != foreign.claim() {
                left.push(format!("persistentvolumeclaim/{}", c.name_any()));
            }
        }
        Ok::<_, kube::Error>(left)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let now = left().await;
        if now.as_ref().is_ok_and(|l| l.is_empty()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "owned objects not removed in 120s: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    foreign.still_there(&client).await.unwrap();
    assert_eq!(operator.failures(), "", "reconcile failures");
}

#[tokio::test]
async fn bad_specs_are_refused_at_apply_time_naming_the_field() {
    let ns = "bad-specs";
    namespace(ns).await;
    let header =
        "apiVersion: krallistic.github.com/v1\nkind: KafkaCluster\nmetadata: {name: bad}\nspec:\n";
    // (spec body, text the refusal must contain)
    let cases: &[(&str, &str)] = &[
        ("  brokerCount: 0\n", "spec.brokerCount"),
        ("  topics: [{name: t}]\n", "brokerCount"),
        (
            "  brokerCount: 3\n  topics: [{name: orders, partitions: 3, replicationFactor: 4}]\n",
            "replicationFactor must be at most brokerCount",
        ),
        (
            "  brokerCount: 3\n  topics: [{name: orders, partitions: 0, replicationFactor: 1}]\n",
            "spec.topics[0].partitions",
        ),
        (
            "  brokerCount: 3\n  topics: [{name: 'no spaces', partitions: 1, replicationFactor: 1}]\n",
            "spec.topics[0].name",
        ),
        (
            "  brokerCount: 3\n  topics: [{name: a, partitions: 1, replicationFactor: 1}, {name: a, partitions: 2, replicationFactor: 1}]\n",
            "spec.topics[1]",
        ),
        (
            "  brokerCount: 3\n  resources: {memory: lots}\n",
            "resources.memory",
        ),
        (
            "  brokerCount: 3\n  resources: {memory: 100Mi}\n",
            "at least 512Mi",
        ),
        (
            "  brokerCount: 3\n  resources: {diskSpace: 50GB}\n",
            "resources.diskSpace",
        ),
        (
            "  brokerCount: 3\n  resources: {cpu: '-1'}\n",
            "resources.cpu",
        ),
        (
            "  brokerCount: 3\n  leaderImbalanceRatio: 0\n",
            "leaderImbalanceRatio",
        ),
        (
            "  brokerCount: 3\n  leaderImbalanceRatio: 1.5\n",
            "leaderImbalanceRatio",
        ),
        (
            "  brokerCount: 3\n  leaderImbalanceInterval: 0\n",
            "spec.leaderImbalanceInterval",
        ),
        (
            "  brokerCount: 3\n  kafkaOptions: {config: {node.id: '7'}}\n",
            "operator owns",
        ),
        (
            "  brokerCount: 3\n  kafkaOptions: {compressionType: brotli}\n",
            "spec.kafkaOptions.compressionType",
        ),
        (
            "  brokerCount: 3\n  kafkaOptions: {minInsyncReplicas: 4}\n",
            "minInsyncReplicas",
        ),
        (
            "  brokerCount: 3\n  controllers: {replicas: 2}\n",
            "controllers.replicas",
        ),
        (
            "  brokerCount: 3\n  zookeeperConnect: zk:2181\n  controllers: {replicas: 3}\n",
            "controllers",
        ),
        (
            "  brokerCount: 3\n  storageClass: Not_A_Class\n",
            "storageClass",
        ),
        (
            "  brokerCount: 3\n  clusterId: not-an-id\n",
            "clusterId must be a Kafka cluster id",
        ),
        (
            "  brokerCount: 3\n  zookeeperConnect: zk:2181\n  clusterId: Q2x1c3RlckJlZm9yZU5vdw\n",
            "clusterId applies to KRaft clusters only",
        ),
        (
            "  brokerCount: 3\n  minimumGracePeriod: -5\n",
            "spec.minimumGracePeriod",
        ),
        (
            "  brokerCount: 3\n  zookeeperConnect: 'zk 2181'\n",
            "zookeeperConnect",
        ),
        // A newline in a value would add lines to server.properties.
        (
            "  brokerCount: 3\n  kafkaOptions: {config: {zzz.x: \"1\\nnode.id=7\"}}\n",
            "kafkaOptions.config values must not contain control characters",
        ),
        (
            "  brokerCount: 3\n  kafkaOptions: {config: {ssl.x: \"a\\tb\"}}\n",
            "kafkaOptions.config values must not contain control characters",
        ),
        (
            "  brokerCount: 3\n  topics: [{name: t, partitions: 1, replicationFactor: 1, config: {retention.ms: \"1\\r\\nx=y\"}}]\n",
            "spec.topics[0].config.retention.ms in body should match",
        ),
        (
            "  brokerCount: 3\n  topics: [{name: t, partitions: 1, replicationFactor: 1, config: {'retention ms': '1'}}]\n",
            "topics[].config keys must be Kafka topic config names",
        ),
        (
            "  brokerCount: 3\n  image: \"apache/kafka:4.1.1\\nimagePullPolicy: Never\"\n",
            "image must be an image reference",
        ),
        (
            "  brokerCount: 3\n  jmxSidecar: true\n  jmxExporter: {image: 'exporter latest'}\n",
            "jmxExporter.image must be an image reference",
        ),
        (
            "  brokerCount: 3\n  nodeSelector: {'disk type': ssd}\n",
            "nodeSelector keys must be label keys",
        ),
        (
            "  brokerCount: 3\n  nodeSelector: {disktype: 'fast ssd'}\n",
            "nodeSelector values must be label values",
        ),
        (
            "  brokerCount: 3\n  rack: {topologyKey: 'zone name'}\n",
            "rack.topologyKey must be a node label key",
        ),
        (
            "  brokerCount: 3\n  rack: {}\n",
            "spec.rack.topologyKey: Required value",
        ),
    ];
    for (body, expected) in cases {
        let yaml = format!("{header}{body}");
        let (ok, _, err) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(&yaml)).await;
        assert!(!ok, "accepted a bad spec:\n{yaml}");
        assert!(
            err.contains(expected),
            "refusal of\n{yaml}\ndoes not mention {expected:?}:\n{err}"
        );
    }

    // Transition rules: storage class and mode cannot change on an existing cluster.
    apply(
        ns,
        &format!("{header}  brokerCount: 1\n  storageClass: fast\n"),
    )
    .await;
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&format!("{header}  brokerCount: 1\n  storageClass: slow\n")),
    )
    .await;
    assert!(
        !ok && err.contains("storageClass cannot be changed"),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&format!(
            "{header}  brokerCount: 1\n  storageClass: fast\n  zookeeperConnect: zk:2181\n"
        )),
    )
    .await;
    assert!(
        !ok && err.contains("zookeeperConnect cannot be added"),
        "{err}"
    );

    // The controller quorum is static: its size cannot change, also not from the default (3).
    for body in [
        "  brokerCount: 1\n  storageClass: fast\n  controllers: {replicas: 5}\n",
        "  brokerCount: 1\n  storageClass: fast\n  controllers: {replicas: 1}\n",
    ] {
        let (ok, _, err) = kubectl(
            &["apply", "-n", ns, "-f", "-"],
            Some(&format!("{header}{body}")),
        )
        .await;
        assert!(
            !ok && err.contains("spec.controllers.replicas")
                && err.contains("controllers.replicas cannot be changed on an existing cluster"),
            "{err}"
        );
    }
    // Writing down the default is no change.
    apply(
        ns,
        &format!(
            "{header}  brokerCount: 1\n  storageClass: fast\n  controllers: {{replicas: 3}}\n"
        ),
    )
    .await;

    // PVC-backed volumes cannot be resized through the StatefulSet.
    for (body, expected) in [
        (
            "  brokerCount: 1\n  storageClass: fast\n  resources: {diskSpace: 20Gi}\n",
            "resources.diskSpace cannot be changed on a cluster with persistent volumes",
        ),
        (
            "  brokerCount: 1\n  storageClass: fast\n  controllers: {resources: {diskSpace: 5Gi}}\n",
            "controllers.resources.diskSpace cannot be changed on a cluster with persistent volumes",
        ),
    ] {
        let (ok, _, err) = kubectl(
            &["apply", "-n", ns, "-f", "-"],
            Some(&format!("{header}{body}")),
        )
        .await;
        assert!(!ok && err.contains(expected), "{err}");
    }
    // The defaults written down, or the same size spelled differently, are no change.
    apply(
        ns,
        &format!(
            "{header}  brokerCount: 1\n  storageClass: fast\n  resources: {{diskSpace: 10Gi}}\n  controllers: {{resources: {{diskSpace: 2Gi}}}}\n"
        ),
    )
    .await;
    apply(
        ns,
        &format!(
            "{header}  brokerCount: 1\n  storageClass: fast\n  resources: {{diskSpace: 10240Mi}}\n"
        ),
    )
    .await;
    // On emptyDir the size is the pods' sizeLimit, which a restart changes.
    let ephemeral = header.replace("name: bad", "name: bad-ephemeral");
    apply(
        ns,
        &format!("{ephemeral}  brokerCount: 1\n  storageClass: emptyDir\n  resources: {{diskSpace: 1Gi}}\n"),
    )
    .await;
    apply(
        ns,
        &format!(
            "{ephemeral}  brokerCount: 1\n  storageClass: emptyDir\n  resources: {{diskSpace: 2Gi}}\n  controllers: {{resources: {{diskSpace: 1Gi}}}}\n"
        ),
    )
    .await;

    // Cluster names: every derived name must be valid (Services are DNS-1035 labels, the
    // StatefulSets' controller-revision-hash pod labels at most 63 characters).
    let named = |name: &str, body: &str| {
        format!(
            "apiVersion: krallistic.github.com/v1\nkind: KafkaCluster\nmetadata: {{name: {name}}}\nspec:\n{body}"
        )
    };
    let kraft = "  brokerCount: 1\n";
    let zookeeper = "  brokerCount: 1\n  zookeeperConnect: zk:2181\n";
    for (name, body, expected) in [
        (
            "1kafka",
            kraft,
            "metadata.name must be a DNS-1035 label of at most 52 characters",
        ),
        ("my.kafka", kraft, "metadata.name must be a DNS-1035 label"),
        (&"k".repeat(53), zookeeper, "at most 52 characters"),
        (
            &"k".repeat(42),
            kraft,
            "metadata.name of a KRaft cluster can be at most 41 characters",
        ),
    ] {
        let yaml = named(name, body);
        let (ok, _, err) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(&yaml)).await;
        assert!(!ok, "accepted a bad name:\n{yaml}");
        assert!(
            err.contains(expected),
            "refusal of\n{yaml}\ndoes not mention {expected:?}:\n{err}"
        );
    }
    apply(ns, &named(&"k".repeat(41), kraft)).await;
    apply(ns, &named(&"z".repeat(52), zookeeper)).await;
    // The name rules only run at creation: an existing object stays writable.
    apply(ns, &named(&"k".repeat(41), "  brokerCount: 2\n")).await;
}

#[tokio::test]
async fn what_the_schema_cannot_check_is_reported_in_status() {
    let ns = "invalid-status";
    let client = namespace(ns).await;
    let operator = Operator::start(ns).await;
    apply(
        ns,
        "apiVersion: krallistic.github.com/v1\nkind: KafkaCluster\nmetadata: {name: zk4}\nspec:\n  brokerCount: 1\n  zookeeperConnect: zk:2181\n  image: apache/kafka:4.1.1\n",
    )
    .await;
    let kc = reconciled(&client, ns, "zk4").await;
    assert_eq!(kc.status.as_ref().unwrap().phase, Some(Phase::Blocked));
    let (status, reason, message) = condition(&kc, "Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("no ZooKeeper mode"), "{message}");
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    assert!(statefulsets.get_opt("zk4").await.unwrap().is_none());
    eventually("InvalidSpec event", TIMEOUT, || async {
        events(ns).await.contains("InvalidSpec").then_some(())
    })
    .await;
    assert_eq!(operator.failures(), "", "reconcile failures");
}

#[tokio::test]
async fn install_manifest_passes_server_side_dry_run() {
    let manifest = project_root().join("deploy/kafka-operator.yaml");
    let (ok, out, err) = kubectl(
        &[
            "apply",
            "--dry-run=server",
            "-f",
            &manifest.display().to_string(),
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    for kind in [
        "customresourcedefinition.apiextensions.k8s.io/kafkaclusters.krallistic.github.com",
        "namespace/kafka-operator",
        "clusterrole.rbac.authorization.k8s.io/kafka-operator",
        "deployment.apps/kafka-operator",
    ] {
        assert!(out.contains(kind), "{kind} missing from\n{out}");
    }
    // The examples are valid too.
    for file in [
        "kafka-cluster.yaml",
        "kraft-cluster.yaml",
        "zookeeper-cluster.yaml",
        "manual-zookeeper.yaml",
    ] {
        let path = project_root().join("examples").join(file);
        let (ok, _, err) = kubectl(
            &[
                "apply",
                "--dry-run=server",
                "-n",
                "default",
                "-f",
                &path.display().to_string(),
            ],
            None,
        )
        .await;
        assert!(ok, "{file}: {err}");
    }
}
