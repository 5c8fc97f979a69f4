//! A minimal Kafka protocol connection for the admin requests librdkafka does not wrap.
//!
//! Kafka's wire format: every request and response is a frame prefixed by its length (big-endian
//! i32). A request frame is a request header (API key, API version, correlation id, client id)
//! followed by the body; a response frame is a response header (the correlation id) followed by
//! the body. Header versions depend on the API and its version ("flexible" versions add tagged
//! fields), which `kafka-protocol` knows. Versions are negotiated once per connection with
//! ApiVersions: each request uses the highest version both this client and the broker support.
//!
//! A connection serves one request at a time (the admin layer opens one per task); the
//! correlation id still guards against reading a stale answer.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{
    Decodable, Request, StrBytes, VersionRange, encode_request_header_into_buffer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{KafkaError, Result};

/// The client id the brokers see in their request logs and quotas.
pub const CLIENT_ID: &str = "kafka-operator";

/// Responses larger than this are refused rather than allocated: a guard against reading a
/// non-Kafka port (an HTTP server's "HTTP/1.1" is a 1.2 GB length).
const MAX_FRAME: usize = 256 << 20;

/// ApiVersions version sent first. v3 is the first flexible version; brokers since 2.4 know it,
/// and an older broker answers with its supported range in the v0 format.
const API_VERSIONS_VERSION: i16 = 3;

/// The highest version of an API both sides support, or None when the ranges do not overlap.
pub fn negotiate(ours: VersionRange, theirs: VersionRange) -> Option<i16> {
    let common = ours.intersect(&theirs);
    (!common.is_empty()).then_some(common.max)
}

/// Encodes a request as a length-prefixed frame.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut body = BytesMut::new();
    encode_request_header_into_buffer(&mut body, &header)
        .and_then(|()| request.encode(&mut body, version))
        .map_err(|e| {
            KafkaError::Client(format!(
                "cannot encode {} v{version}: {e}",
                api_name(R::KEY)
            ))
        })?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    Ok(frame.freeze())
}

/// Decodes a response frame body (without its length prefix): checks the correlation id and
/// returns the decoded response.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    let key = api_key(R::KEY)?;
    let header_version = key.response_header_version(version);
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| bad_response(R::KEY, version, e))?;
    if header.correlation_id != correlation_id {
        return Err(KafkaError::Client(format!(
            "{} answer out of order: correlation id {} instead of {correlation_id}",
            api_name(R::KEY),
            header.correlation_id
        )));
    }
    R::Response::decode(&mut frame, version).map_err(|e| bad_response(R::KEY, version, e))
}

fn bad_response(key: i16, version: i16, e: impl std::fmt::Display) -> KafkaError {
    KafkaError::Client(format!(
        "cannot decode the {} v{version} answer: {e}",
        api_name(key)
    ))
}

fn api_key(key: i16) -> Result<ApiKey> {
    ApiKey::try_from(key).map_err(|_| KafkaError::Client(format!("unknown API key {key}")))
}

/// Name of an API for messages, e.g. `AlterPartitionReassignments`.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(_) => format!("API {key}"),
    }
}

/// An open connection to one broker, with the API versions it supports.
pub struct Connection {
    stream: TcpStream,
    addr: String,
    next_correlation_id: i32,
    versions: HashMap<i16, VersionRange>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and learns the broker's API versions. Not bounded in
    /// time: callers wrap whole operations in their timeout.
    pub async fn connect(addr: &str) -> Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| KafkaError::Unreachable {
                tried: vec![addr.to_string()],
                reason: e.to_string(),
            })?;
        // Admin requests are small and latency-bound.
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            addr: addr.to_string(),
            next_correlation_id: 1,
            versions: HashMap::new(),
        };
        conn.versions = conn.api_versions().await?;
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version this connection would use for request type `R`.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        let name = api_name(R::KEY);
        let theirs = self.versions.get(&R::KEY).ok_or_else(|| {
            KafkaError::Unsupported(format!(
                "the broker at {} does not support {name}; it needs a newer Kafka",
                self.addr
            ))
        })?;
        negotiate(R::VERSIONS, *theirs).ok_or_else(|| {
            KafkaError::Unsupported(format!(
                "the broker at {} supports {name} versions {theirs}, this operator {}; \
                 use a Kafka version this operator supports",
                self.addr,
                R::VERSIONS
            ))
        })
    }

    /// Sends a request at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&mut self, request: &R) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_version(request, version).await
    }

    async fn send_version<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(request, version, correlation_id, CLIENT_ID)?;
        let io_err = |addr: &str, e: std::io::Error| KafkaError::Unreachable {
            tried: vec![addr.to_string()],
            reason: format!("connection lost during {}: {e}", api_name(R::KEY)),
        };
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        let len = self
            .stream
            .read_i32()
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        if len < 0 || len as usize > MAX_FRAME {
            return Err(KafkaError::Client(format!(
                "{} answered a frame of {len} bytes: is it a Kafka listener?",
                self.addr
            )));
        }
        let mut body = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        decode_response::<R>(Bytes::from(body), version, correlation_id)
    }

    async fn api_versions(&mut self) -> Result<HashMap<i16, VersionRange>> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = match self.send_version(&request, API_VERSIONS_VERSION).await {
            Ok(r) => r,
            // A broker that does not know v3 answers UNSUPPORTED_VERSION in the v0 body format,
            // which the v3 decoder cannot read; ask again in v0.
            Err(KafkaError::Client(_)) => self.send_version(&request, 0).await?,
            Err(e) => return Err(e),
        };
        versions_of(&self.addr, &response)
    }
}

/// The supported version range of each API, from an ApiVersions response.
pub fn versions_of(
    addr: &str,
    response: &ApiVersionsResponse,
) -> Result<HashMap<i16, VersionRange>> {
    if response.error_code != 0 {
        return Err(KafkaError::from_code(
            format!("ApiVersions to {addr}"),
            response.error_code,
            None,
        ));
    }
    Ok(response
        .api_keys
        .iter()
        .map(|k| {
            (
                k.api_key,
                VersionRange {
                    min: k.min_version,
                    max: k.max_version,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, DescribeClusterRequest, ResponseHeader,
        UnregisterBrokerRequest, UnregisterBrokerResponse,
    };
    use kafka_protocol::protocol::Encodable;
    use kafka_protocol::protocol::Message;

    fn range(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate(range(0, 2), range(0, 1)), Some(1));
        assert_eq!(negotiate(range(0, 1), range(0, 4)), Some(1));
        assert_eq!(negotiate(range(1, 4), range(2, 3)), Some(3));
        assert_eq!(negotiate(range(3, 4), range(0, 2)), None);
    }

    #[test]
    fn request_frames_carry_length_header_and_body() {
        let request = UnregisterBrokerRequest::default().with_broker_id(7.into());
        let frame = encode_request(&request, 0, 42, "me").unwrap();
        let mut buf = frame.clone();
        let len = buf.get_i32();
        assert_eq!(len as usize, frame.len() - 4);
        // Request header v2 (UnregisterBroker is flexible): key, version, correlation id, client id.
        assert_eq!(buf.get_i16(), ApiKey::UnregisterBroker as i16);
        assert_eq!(buf.get_i16(), 0);
        assert_eq!(buf.get_i32(), 42);
        assert_eq!(buf.get_i16(), 2); // client id length (nullable string, not compact)
        assert_eq!(&buf.copy_to_bytes(2)[..], b"me");
        assert_eq!(buf.get_u8(), 0); // no tagged fields in the header
        assert_eq!(buf.get_i32(), 7); // broker id
        assert_eq!(buf.get_u8(), 0); // no tagged fields in the body
        assert!(!buf.has_remaining());
    }

    #[test]
    fn non_flexible_requests_use_header_v1() {
        let request = AlterPartitionReassignmentsRequest::default();
        // AlterPartitionReassignments is flexible from v0; DescribeCluster too. Both must encode.
        assert!(encode_request(&request, 0, 1, CLIENT_ID).is_ok());
        assert!(encode_request(&DescribeClusterRequest::default(), 1, 1, CLIENT_ID).is_ok());
    }

    #[test]
    fn responses_are_matched_by_correlation_id() {
        let response = UnregisterBrokerResponse::default().with_error_code(69);
        let mut buf = BytesMut::new();
        let header_version = ApiKey::UnregisterBroker.response_header_version(0);
        ResponseHeader::default()
            .with_correlation_id(5)
            .encode(&mut buf, header_version)
            .unwrap();
        response.encode(&mut buf, 0).unwrap();
        let bytes = buf.freeze();
        let decoded = decode_response::<UnregisterBrokerRequest>(bytes.clone(), 0, 5).unwrap();
        assert_eq!(decoded.error_code, 69);
        let err = decode_response::<UnregisterBrokerRequest>(bytes, 0, 6).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }

    #[test]
    fn versions_come_from_the_api_versions_answer() {
        let response = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::UnregisterBroker as i16)
                .with_min_version(0)
                .with_max_version(3),
        ]);
        let versions = versions_of("b:9092", &response).unwrap();
        let theirs = versions[&(ApiKey::UnregisterBroker as i16)];
        assert_eq!(
            negotiate(UnregisterBrokerRequest::VERSIONS, theirs),
            Some(0)
        );
        assert!(versions_of("b:9092", &response.with_error_code(35)).is_err());
    }
}
