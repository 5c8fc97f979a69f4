//! Broker settings that Kafka changes at run time are applied live, not by restarting pods.
//! (Kafka's own split can surprise: `log.retention.ms` changes live, `log.retention.hours` is
//! read at start.)
//!
//! Which settings those are is Kafka's to say: DescribeConfigs marks every setting a broker can
//! only take at start as read-only, so nothing here goes stale with a Kafka release. A changed
//! setting Kafka changes live is set as a cluster-wide broker default (IncrementalAlterConfigs)
//! and read back from every running broker; the pod template's configuration hash keeps the
//! value the pods started with, so no pod restarts. A read-only setting, one this Kafka does
//! not describe, one Kafka changes per broker only, or one removed from the spec (only a
//! restart brings Kafka's default back over the value a broker started with) changes the hash,
//! and the safe roll restarts the pods. A value Kafka refuses is an error to fix in the spec;
//! nothing restarts with it.
//!
//! The state is [`BrokerConfigStatus`] in the cluster's status: `startup`, what the hash is
//! made from, and `live`, the defaults set. Each round derives the same decision from the
//! status, the spec and Kafka's answers, so an operator stopped anywhere in between sets the
//! same values again (IncrementalAlterConfigs is idempotent) and records them afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::api::BrokerConfigStatus;
use crate::kafka::{ConfigOp, ConfigResource, ConfigValue, KafkaAdmin, KafkaError};
use crate::resources::config::Properties;

/// How long the brokers are given to report a live change (they learn of it through the
/// metadata log, or ZooKeeper).
const VERIFY_WAIT: Duration = Duration::from_secs(10);

/// What Kafka says of a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Changed at run time.
    Dynamic,
    /// Taken only at start.
    ReadOnly,
    /// Not a setting this Kafka describes (a misspelling, or one from another version).
    Unknown,
    /// Kafka refused to change it live, with its reason.
    Refused(String),
}

/// A decision on the brokers' settings, before it is carried out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The state once carried out.
    pub config: BrokerConfigStatus,
    /// Cluster-wide defaults to set or delete.
    pub changes: BTreeMap<String, ConfigOp>,
    /// Settings changed live (newly, or again), as `key=value`.
    pub live: Vec<String>,
    /// Settings that restart the pods, with why.
    pub restart: Vec<String>,
}

/// The state of a cluster seen for the first time (new, or made by an operator version that
/// kept none): the pods run what the spec renders, and nothing is set live.
pub fn initial(desired: &Properties) -> BrokerConfigStatus {
    BrokerConfigStatus {
        startup: desired.clone(),
        live: BTreeMap::new(),
    }
}

/// The settings whose value in the spec is neither what the pods started with nor what is
/// set live.
pub fn changed(desired: &Properties, previous: &BrokerConfigStatus) -> BTreeSet<String> {
    desired
        .keys()
        .chain(previous.startup.keys())
        .filter(|k| {
            let want = desired.get(*k);
            want != previous.startup.get(*k) && (want.is_none() || want != previous.live.get(*k))
        })
        .cloned()
        .collect()
}

/// Decides how `desired` (the settings the spec renders) reaches the brokers, given what they
/// have (`previous`) and what Kafka says of each changed setting (`kind`).
pub fn decide(
    desired: &Properties,
    previous: &BrokerConfigStatus,
    kind: impl Fn(&str) -> Kind,
) -> Decision {
    let changed = changed(desired, previous);
    let mut restart = Vec::new();
    for k in &changed {
        let why = match (desired.get(k), kind(k)) {
            (None, _) => "removed from the spec: only a restart brings back Kafka's default over the value the brokers started with".to_string(),
            (Some(_), Kind::Dynamic) => continue,
            (Some(_), Kind::ReadOnly) => "read-only in Kafka".to_string(),
            (Some(_), Kind::Unknown) => "not a setting the brokers describe".to_string(),
            (Some(_), Kind::Refused(reason)) => format!("Kafka refused to change it live: {reason}"),
        };
        restart.push(format!("{k} ({why})"));
    }
    // A restart gives every pod the spec's whole configuration; otherwise each changed setting
    // is set live, and the pods' template keeps what they started with.
    let (startup, newly_live): (Properties, BTreeSet<&String>) = if restart.is_empty() {
        (previous.startup.clone(), changed.iter().collect())
    } else {
        (desired.clone(), BTreeSet::new())
    };
    // A setting once set live follows the spec live from then on (a restart keeps it too:
    // deleting it before every pod restarted would take the others back to their old value).
    let live: BTreeMap<String, String> = previous
        .live
        .keys()
        .chain(newly_live)
        .filter_map(|k| desired.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    let mut changes = BTreeMap::new();
    let mut applied = Vec::new();
    for (k, v) in &live {
        if previous.live.get(k) != Some(v) {
            changes.insert(k.clone(), ConfigOp::Set(v.clone()));
            applied.push(format!("{k}={v}"));
        }
    }
    for k in previous.live.keys() {
        if !live.contains_key(k) {
            changes.insert(k.clone(), ConfigOp::Delete);
        }
    }
    Decision {
        config: BrokerConfigStatus { startup, live },
        changes,
        live: applied,
        restart,
    }
}

/// What [`settle`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// The state to record.
    pub config: BrokerConfigStatus,
    /// Settings applied live this round and confirmed by every running broker (`key=value`).
    pub live: Vec<String>,
    /// Settings that restart the pods, with why (the roll follows from the template).
    pub restart: Vec<String>,
    /// What a live change still waits for; the next round carries it on.
    pub waiting: Option<String>,
}

/// Brings the brokers' settings in line with `desired`: applies what Kafka changes live and
/// verifies it, and returns the state whose `startup` the pod template is keyed on.
///
/// `admin` is None when Kafka cannot be asked. With no broker running nothing is served, and
/// a restart costs nothing: the pods take the new configuration. With brokers running, the
/// change waits for Kafka.
pub async fn settle(
    admin: Option<&dyn KafkaAdmin>,
    brokers_running: bool,
    desired: &Properties,
    previous: Option<&BrokerConfigStatus>,
) -> Result<Settled, KafkaError> {
    let Some(previous) = previous else {
        return Ok(Settled {
            config: initial(desired),
            ..Default::default()
        });
    };
    let changed = changed(desired, previous);
    let live_follows = previous.live.iter().all(|(k, v)| desired.get(k) == Some(v));
    if changed.is_empty() && live_follows {
        return Ok(Settled {
            config: previous.clone(),
            ..Default::default()
        });
    }
    let Some(admin) = admin else {
        if brokers_running {
            return Ok(Settled {
                config: previous.clone(),
                waiting: Some("Kafka to be reachable to apply the changed settings".into()),
                ..Default::default()
            });
        }
        let decision = decide(desired, previous, |_| Kind::ReadOnly);
        return Ok(Settled {
            // The live defaults are left for a round that reaches Kafka.
            config: BrokerConfigStatus {
                startup: decision.config.startup,
                live: previous.live.clone(),
            },
            restart: changed
                .iter()
                .map(|k| format!("{k} (no broker is running)"))
                .collect(),
            ..Default::default()
        });
    };

    let brokers: Vec<i32> = admin.snapshot().await?.broker_ids().into_iter().collect();
    let Some(first) = brokers.first() else {
        return Err(KafkaError::Unsupported(
            "no broker is registered to describe its settings".into(),
        ));
    };
    let described = admin
        .describe_configs(&[ConfigResource::Broker(*first)])
        .await?
        .remove(&ConfigResource::Broker(*first))
        .unwrap_or_default();
    let kind = |k: &str| match described.get(k) {
        None => Kind::Unknown,
        Some(v) if v.read_only => Kind::ReadOnly,
        Some(_) => Kind::Dynamic,
    };
    let mut decision = decide(desired, previous, kind);
    if let Err(e) = alter(admin, &decision.changes).await {
        // A setting Kafka changes per broker only, never as a cluster-wide default, restarts
        // instead. Any other refusal (a value Kafka refuses would stop a broker from starting
        // too) is for the spec to fix, and nothing restarts meanwhile.
        let KafkaError::Refused { reason, .. } = &e else {
            return Err(e);
        };
        if !per_broker_only(reason) {
            return Err(e);
        }
        let newly: BTreeSet<String> = decision
            .changes
            .keys()
            .filter(|k| !previous.live.contains_key(*k))
            .cloned()
            .collect();
        decision = decide(desired, previous, |k| {
            if newly.contains(k) {
                Kind::Refused(reason.clone())
            } else {
                kind(k)
            }
        });
        alter(admin, &decision.changes).await?;
    }
    let set: BTreeMap<&String, &String> = decision
        .changes
        .iter()
        .filter_map(|(k, op)| match op {
            ConfigOp::Set(v) => Some((k, v)),
            ConfigOp::Delete => None,
        })
        .collect();
    if let Some(waiting) = confirm(admin, &brokers, &set).await? {
        // Recorded once confirmed: the next round sets the same values and looks again.
        return Ok(Settled {
            config: BrokerConfigStatus {
                startup: decision.config.startup,
                live: previous.live.clone(),
            },
            restart: decision.restart,
            waiting: Some(waiting),
            ..Default::default()
        });
    }
    Ok(Settled {
        config: decision.config,
        live: decision.live,
        restart: decision.restart,
        waiting: None,
    })
}

/// Whether Kafka refused a cluster-wide default because the setting is per broker only
/// ("Cannot update these configs at default cluster level, broker id must be specified").
fn per_broker_only(reason: &str) -> bool {
    reason.contains("default cluster level")
}

async fn alter(
    admin: &dyn KafkaAdmin,
    changes: &BTreeMap<String, ConfigOp>,
) -> Result<(), KafkaError> {
    if changes.is_empty() {
        return Ok(());
    }
    admin
        .alter_configs(&ConfigResource::BrokerDefault, changes)
        .await
}

/// Waits for every broker in `brokers` to report `set`; what it still waits for if some broker
/// does not within [`VERIFY_WAIT`].
async fn confirm(
    admin: &dyn KafkaAdmin,
    brokers: &[i32],
    set: &BTreeMap<&String, &String>,
) -> Result<Option<String>, KafkaError> {
    let expected: Vec<(&str, &str)> = set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let differing = await_reported(admin, brokers, &expected, VERIFY_WAIT).await?;
    Ok((!differing.is_empty()).then(|| {
        format!(
            "the live settings to reach every broker ({}; a setting made on one broker overrides the cluster-wide one)",
            differing.join(", ")
        )
    }))
}

/// Waits up to `wait` for every broker in `brokers` to report each `(key, value)` of
/// `expected` (brokers learn of a change through the metadata log, or ZooKeeper); what still
/// differs then, as `broker B reports key=value`, or nothing.
pub(crate) async fn await_reported(
    admin: &dyn KafkaAdmin,
    brokers: &[i32],
    expected: &[(&str, &str)],
    wait: Duration,
) -> Result<Vec<String>, KafkaError> {
    if expected.is_empty() || brokers.is_empty() {
        return Ok(Vec::new());
    }
    let resources: Vec<ConfigResource> =
        brokers.iter().map(|b| ConfigResource::Broker(*b)).collect();
    let deadline = Instant::now() + wait;
    loop {
        let described = admin.describe_configs(&resources).await?;
        let mut differing = Vec::new();
        for b in brokers {
            let entries = described.get(&ConfigResource::Broker(*b));
            for (k, v) in expected {
                let reported = entries.and_then(|e| e.get(*k));
                if !reports(reported, v) {
                    let shown = reported
                        .and_then(|r| r.value.clone())
                        .unwrap_or_else(|| "nothing".into());
                    differing.push(format!("broker {b} reports {k}={shown}"));
                }
            }
        }
        if differing.is_empty() || Instant::now() > deadline {
            return Ok(differing);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a broker reports `value` for a setting. A sensitive setting is reported with no
/// value: that it is described at all is as much as can be checked. Lists are compared without
/// the spaces Kafka may add or drop.
fn reports(reported: Option<&ConfigValue>, value: &str) -> bool {
    let Some(reported) = reported else {
        return false;
    };
    match &reported.value {
        None => true,
        Some(v) => {
            let bare = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            bare(v) == bare(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kinds(k: &str) -> Kind {
        match k {
            "log.retention.ms" | "message.max.bytes" => Kind::Dynamic,
            "auto.create.topics.enable" => Kind::ReadOnly,
            _ => Kind::Unknown,
        }
    }

    #[test]
    fn a_dynamic_change_goes_live_and_the_pods_keep_what_they_started_with() {
        let before = initial(&props(&[("log.retention.ms", "604800000")]));
        let d = decide(&props(&[("log.retention.ms", "720000000")]), &before, kinds);
        assert_eq!(
            d.config.startup, before.startup,
            "the template's hash would change"
        );
        assert_eq!(d.config.live, props(&[("log.retention.ms", "720000000")]));
        assert_eq!(
            d.changes,
            BTreeMap::from([(
                "log.retention.ms".to_string(),
                ConfigOp::Set("720000000".into())
            )])
        );
        assert_eq!(d.live, vec!["log.retention.ms=720000000".to_string()]);
        assert!(d.restart.is_empty());
    }

    #[test]
    fn a_read_only_change_restarts_with_the_whole_spec_and_live_settings_keep_following_it() {
        let before = BrokerConfigStatus {
            startup: props(&[
                ("auto.create.topics.enable", "true"),
                ("log.retention.ms", "604800000"),
            ]),
            live: props(&[("log.retention.ms", "720000000")]),
        };
        let desired = props(&[
            ("auto.create.topics.enable", "false"),
            ("log.retention.ms", "100"),
        ]);
        let d = decide(&desired, &before, kinds);
        assert_eq!(d.config.startup, desired);
        assert_eq!(d.config.live, props(&[("log.retention.ms", "100")]));
        assert_eq!(
            d.restart,
            vec!["auto.create.topics.enable (read-only in Kafka)".to_string()]
        );
        assert_eq!(
            d.changes,
            BTreeMap::from([("log.retention.ms".to_string(), ConfigOp::Set("100".into()))])
        );
    }

    #[test]
    fn a_setting_added_live_and_removed_again_is_deleted_without_a_restart() {
        let before = BrokerConfigStatus {
            startup: props(&[]),
            live: props(&[("message.max.bytes", "2000000")]),
        };
        let d = decide(&props(&[]), &before, kinds);
        assert!(d.restart.is_empty(), "{:?}", d.restart);
        assert!(d.config.live.is_empty());
        assert_eq!(
            d.changes,
            BTreeMap::from([("message.max.bytes".to_string(), ConfigOp::Delete)])
        );
    }

    #[test]
    fn a_setting_the_pods_started_with_and_removed_restarts_and_its_live_default_goes() {
        let before = BrokerConfigStatus {
            startup: props(&[("log.retention.ms", "604800000")]),
            live: props(&[("log.retention.ms", "720000000")]),
        };
        let d = decide(&props(&[]), &before, kinds);
        assert_eq!(d.restart.len(), 1, "{:?}", d.restart);
        assert!(d.restart[0].starts_with("log.retention.ms (removed"));
        assert!(d.config.startup.is_empty());
        assert_eq!(
            d.changes,
            BTreeMap::from([("log.retention.ms".to_string(), ConfigOp::Delete)])
        );
    }

    #[test]
    fn an_unknown_or_refused_setting_restarts() {
        let before = initial(&props(&[]));
        let d = decide(&props(&[("log.retention.mz", "1")]), &before, kinds);
        assert_eq!(
            d.restart,
            vec!["log.retention.mz (not a setting the brokers describe)".to_string()]
        );
        let d = decide(&props(&[("log.retention.ms", "1")]), &before, |_| {
            Kind::Refused("INVALID_REQUEST: per broker only".into())
        });
        assert_eq!(d.config.startup, props(&[("log.retention.ms", "1")]));
        assert!(d.changes.is_empty());
    }

    #[test]
    fn nothing_changed_decides_nothing() {
        let before = BrokerConfigStatus {
            startup: props(&[("log.retention.ms", "604800000")]),
            live: props(&[("log.retention.ms", "720000000")]),
        };
        let d = decide(
            &props(&[("log.retention.ms", "720000000")]),
            &before,
            |_| panic!("Kafka asked about nothing that changed"),
        );
        assert_eq!(d.config, before);
        assert!(d.changes.is_empty() && d.restart.is_empty() && d.live.is_empty());
    }

    #[test]
    fn a_reported_value_matches_without_spaces_and_a_sensitive_one_by_its_presence() {
        let value = |v: Option<&str>| ConfigValue {
            value: v.map(str::to_string),
            is_default: false,
            overridden: false,
            read_only: false,
        };
        assert!(reports(Some(&value(Some("a, b"))), "a,b"));
        assert!(!reports(Some(&value(Some("168"))), "200"));
        assert!(reports(Some(&value(None)), "secret"));
        assert!(!reports(None, "200"));
    }
}
