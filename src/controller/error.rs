//! The controller's one error type.

/// Why a reconcile failed. Every variant is retried with backoff by the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("serializing {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("KafkaCluster has no namespace")]
    MissingNamespace,

    /// The KafkaCluster changed between the read a decision was computed from and its status
    /// write (another replica's write, a user's edit): read again and decide again.
    #[error("the KafkaCluster changed meanwhile; reconciling again from its current state")]
    StaleState,
}

impl Error {
    /// Short label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Serialize { .. } => "serialize",
            Error::MissingNamespace => "missing_namespace",
            Error::StaleState => "stale_state",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
