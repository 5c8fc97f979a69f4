//! The one error type of the Kafka admin layer.
//!
//! Every variant says what went wrong AND what to do about it, because these messages end up in
//! the KafkaCluster status and in events, where a human reads them. [`KafkaError::is_retriable`]
//! tells the controller whether backing off and trying again can help.

use std::time::Duration;

use kafka_protocol::error::ResponseError;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KafkaError {
    /// No broker answered.
    #[error(
        "cannot reach the Kafka cluster (tried {}): {reason}; check that the brokers are running and \
         that these addresses resolve and are reachable from the operator (an address override can \
         map advertised names to reachable ones)",
        tried.join(", ")
    )]
    Unreachable { tried: Vec<String>, reason: String },

    /// An operation did not finish in time.
    #[error(
        "{operation} timed out after {}s; the cluster may be overloaded or a broker unreachable, \
         it is retried",
        after.as_secs()
    )]
    Timeout { operation: String, after: Duration },

    /// The topic does not exist.
    #[error("topic {topic} does not exist; create it first (spec.topics) or check its name")]
    UnknownTopic { topic: String },

    /// Kafka answered with an error code.
    #[error("{request} failed with {name} (Kafka error {code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        request: String,
        code: i16,
        name: String,
        message: Option<String>,
        retriable: bool,
    },

    /// Kafka refused the request as invalid (a bad replica assignment, a bad config value, fewer
    /// partitions than the topic has): sending it again will not help, the request must change.
    #[error("Kafka refused {request}: {reason}")]
    Refused { request: String, reason: String },

    /// The brokers do not support what is asked (too old a version, a KRaft-only request in
    /// ZooKeeper mode), or answered something this client cannot read.
    #[error("{0}")]
    Unsupported(String),

    /// A client-side problem (librdkafka configuration, an unexpected answer).
    #[error("Kafka client error: {0}")]
    Client(String),
}

pub type Result<T, E = KafkaError> = std::result::Result<T, E>;

/// Kafka error codes that mean the request itself is wrong (as opposed to the cluster being
/// busy or changing): they become [`KafkaError::Refused`].
const REFUSAL_CODES: &[i16] = &[
    37, // INVALID_PARTITIONS
    38, // INVALID_REPLICATION_FACTOR
    39, // INVALID_REPLICA_ASSIGNMENT
    40, // INVALID_CONFIG
    42, // INVALID_REQUEST
    17, // INVALID_TOPIC_EXCEPTION
    44, // POLICY_VIOLATION
];

impl KafkaError {
    /// Whether trying again later may succeed without changing the request.
    pub fn is_retriable(&self) -> bool {
        match self {
            KafkaError::Unreachable { .. } | KafkaError::Timeout { .. } => true,
            KafkaError::Kafka { retriable, .. } => *retriable,
            KafkaError::UnknownTopic { .. }
            | KafkaError::Refused { .. }
            | KafkaError::Unsupported(_)
            | KafkaError::Client(_) => false,
        }
    }

    /// The error for a Kafka error code (`code != 0`) in the answer to `request`.
    pub fn from_code(request: impl Into<String>, code: i16, message: Option<String>) -> Self {
        let request = request.into();
        let err = ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code));
        let name = error_name(code);
        if REFUSAL_CODES.contains(&code) {
            let reason = match message {
                Some(m) if !m.is_empty() => format!("{name}: {m}"),
                _ => name,
            };
            return KafkaError::Refused { request, reason };
        }
        match err {
            ResponseError::UnsupportedVersion => KafkaError::Unsupported(format!(
                "{request}: the broker does not support this request (UNSUPPORTED_VERSION){}",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
            _ => KafkaError::Kafka {
                request,
                code,
                name,
                message: message.filter(|m| !m.is_empty()),
                retriable: err.is_retriable() || RETRIABLE_EXTRA.contains(&code),
            },
        }
    }

    pub(crate) fn timeout(operation: impl Into<String>, after: Duration) -> Self {
        KafkaError::Timeout {
            operation: operation.into(),
            after,
        }
    }
}

/// Codes Kafka marks non-retriable that are transient for an operator: the controller moved,
/// a reassignment is still running, a broker is restarting.
const RETRIABLE_EXTRA: &[i16] = &[
    8,  // BROKER_NOT_AVAILABLE
    41, // NOT_CONTROLLER
    60, // REASSIGNMENT_IN_PROGRESS
    83, // ELIGIBLE_LEADERS_NOT_AVAILABLE
];

/// `UPPER_SNAKE_CASE` name of a Kafka error code, as Kafka's documentation and logs spell it.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            // kafka-protocol prints the CamelCase variant name; Kafka's own spelling is snake case.
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_spelling() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(39), "INVALID_REPLICA_ASSIGNMENT");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(30000), "UNKNOWN_ERROR_CODE_30000");
    }

    #[test]
    fn invalid_requests_are_refusals() {
        let e = KafkaError::from_code("AlterPartitionReassignments", 39, Some("dup".into()));
        assert!(matches!(e, KafkaError::Refused { .. }));
        assert!(!e.is_retriable());
        assert!(e.to_string().contains("INVALID_REPLICA_ASSIGNMENT: dup"));
    }

    #[test]
    fn transient_codes_are_retriable() {
        assert!(KafkaError::from_code("x", 6, None).is_retriable()); // NOT_LEADER_OR_FOLLOWER
        assert!(KafkaError::from_code("x", 41, None).is_retriable()); // NOT_CONTROLLER
        assert!(!KafkaError::from_code("x", 29, None).is_retriable()); // TOPIC_AUTHORIZATION_FAILED
        let e = KafkaError::from_code("DescribeLogDirs", 7, None);
        assert_eq!(
            e.to_string(),
            "DescribeLogDirs failed with REQUEST_TIMED_OUT (Kafka error 7)"
        );
    }

    #[test]
    fn timeouts_and_unreachable_say_what_to_do() {
        let e = KafkaError::timeout("snapshot", Duration::from_secs(30));
        assert!(e.is_retriable());
        assert!(e.to_string().starts_with("snapshot timed out after 30s"));
        let e = KafkaError::Unreachable {
            tried: vec!["a:9092".into(), "b:9092".into()],
            reason: "connection refused".into(),
        };
        assert!(e.to_string().contains("tried a:9092, b:9092"));
    }
}
