//! Leader election on a `coordination.k8s.io` Lease, so that of several operator replicas (two
//! in `deploy/`, or an old pod still terminating during a rollout) exactly one acts.
//!
//! The holder renews the Lease every [`LeaderElection::renew_every`]; a candidate takes it over
//! once it has not been renewed for its whole duration. Every write is a replace conditional on
//! the Lease's resourceVersion, so two candidates never both win the same round. A holder that
//! cannot renew in time stops acting before its Lease can expire ([`Leadership::is_leading`]
//! turns false at the renew deadline, earlier than any candidate may take over), and the
//! operator's state writes are conditional on what they were computed from besides, so even a
//! holder paused past its deadline cannot write over the new leader's progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

/// Where the Lease lives and who competes for it.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's name (the pod name): the Lease's holder while it leads.
    pub identity: String,
    /// How long a Lease not renewed stays its holder's.
    pub lease_duration: Duration,
}

impl LeaderElection {
    /// The settings of a replica named `identity` in `namespace`, with the default timings.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderElection {
            namespace: namespace.into(),
            lease_name: "kafka-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
        }
    }

    /// How often the holder renews, and candidates try: a third of the duration, so two
    /// renewals may fail before the Lease runs out.
    pub fn renew_every(&self) -> Duration {
        self.lease_duration / 3
    }

    /// How long the holder keeps acting after its last confirmed renewal: two thirds of the
    /// duration, so it stops well before a candidate may take over.
    fn act_for(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// Whether this replica leads, as last confirmed.
#[derive(Clone, Debug)]
pub struct Leadership {
    leading: Arc<AtomicBool>,
}

impl Leadership {
    /// A replica that leads without an election (a single operator, or tests).
    pub fn always() -> Leadership {
        Leadership {
            leading: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }
}

/// What one round of the election did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    Leading,
    Following,
}

/// The background renewal of a held Lease. Dropping it stops renewing (a replica that stops,
/// in whatever way, lets its Lease run out).
pub struct Renewal(tokio::task::JoinHandle<()>);

impl Renewal {
    /// Resolves when the Lease is lost (taken over, or not renewed in time).
    pub async fn lost(&mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits until this replica holds the Lease, then keeps renewing it in the background. The
/// returned [`Leadership`] turns false when a renewal is not confirmed in time; the renewal
/// then ends (the caller stops acting and exits, as a replica that lost its Lease must).
pub async fn acquire(client: Client, election: LeaderElection) -> (Leadership, Renewal) {
    let leases: Api<Lease> = Api::namespaced(client, &election.namespace);
    let leading = Arc::new(AtomicBool::new(false));
    let mut announced_waiting = false;
    loop {
        match round(&leases, &election).await {
            Ok(Round::Leading) => break,
            Ok(Round::Following) => {
                if !announced_waiting {
                    info!(
                        lease = %election.lease_name,
                        identity = %election.identity,
                        "another replica leads; waiting for its Lease"
                    );
                    announced_waiting = true;
                }
            }
            Err(e) => warn!(lease = %election.lease_name, "leader election: {e}"),
        }
        tokio::time::sleep(election.renew_every()).await;
    }
    info!(lease = %election.lease_name, identity = %election.identity, "leading");
    leading.store(true, Ordering::SeqCst);
    let flag = leading.clone();
    let task = tokio::spawn(async move {
        let mut confirmed = Instant::now();
        loop {
            tokio::time::sleep(election.renew_every()).await;
            match round(&leases, &election).await {
                Ok(Round::Leading) => confirmed = Instant::now(),
                Ok(Round::Following) => {
                    warn!(lease = %election.lease_name, "another replica took the Lease");
                    break;
                }
                Err(e) => warn!(lease = %election.lease_name, "renewing the Lease: {e}"),
            }
            if confirmed.elapsed() >= election.act_for() {
                warn!(lease = %election.lease_name, "the Lease was not renewed in time");
                break;
            }
        }
        flag.store(false, Ordering::SeqCst);
    });
    (Leadership { leading }, Renewal(task))
}

/// One attempt to take or renew the Lease.
async fn round(leases: &Api<Lease>, election: &LeaderElection) -> kube::Result<Round> {
    let now = Timestamp::now();
    let duration_secs = election.lease_duration.as_secs().max(1) as i32;
    let Some(mut lease) = leases.get_opt(&election.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.lease_name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(election.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Round::Leading),
            // Another candidate created it first.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Following),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let mine = spec.holder_identity.as_deref() == Some(election.identity.as_str());
    if !mine {
        let held_for = spec
            .lease_duration_seconds
            .map_or(election.lease_duration, |s| {
                Duration::from_secs(s.max(0) as u64)
            });
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let expired = match (renewed, spec.holder_identity.as_deref()) {
            (_, None | Some("")) => true,
            (None, _) => true,
            (Some(renewed), _) => {
                let age = now.duration_since(renewed);
                age.as_secs_f64() > held_for.as_secs_f64()
            }
        };
        if !expired {
            return Ok(Round::Following);
        }
        spec.holder_identity = Some(election.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration_secs);
    // Conditional on the resourceVersion just read: of two candidates, one wins.
    match leases
        .replace(&election.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Round::Leading),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Following),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up (on a clean shutdown), so another replica takes over at once instead of
/// after the Lease's duration. A Lease held by someone else is left alone.
pub async fn release(client: Client, election: &LeaderElection) -> kube::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client, &election.namespace);
    let Some(mut lease) = leases.get_opt(&election.lease_name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    match leases
        .replace(&election.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(()),
        // Taken over meanwhile: nothing to give up.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
