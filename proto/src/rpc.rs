//! JSON-RPC 2.0 envelopes: what one line on the socket looks like.
//!
//! Request (client -> daemon): `{"jsonrpc":"2.0","id":1,"method":"status","params":{}}`
//! Response (daemon -> client): `{"jsonrpc":"2.0","id":1,"result":{...}}` or
//! `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"..."}}`
//! Notification (daemon -> client, streams): `{"jsonrpc":"2.0","method":"log","params":{...}}`

use crate::error::{ErrorCode, RpcError};
use crate::methods::Request;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const JSONRPC: &str = "2.0";

/// A request as read off the wire, before its method and params are checked.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawRequest {
    pub jsonrpc: String,
    /// Absent for a notification; brummerd answers nothing to those (JSON-RPC 2.0, 4.1)
    /// except on a parse error. `"id": null` is present: a request, answered with
    /// `"id": null` (plain `Option` would read it as absent).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl RawRequest {
    /// Parses one line into a raw request. The error carries the id when one was readable,
    /// so that the reply can be correlated.
    pub fn parse(line: &[u8]) -> Result<RawRequest, (Option<Value>, RpcError)> {
        let text = std::str::from_utf8(line).map_err(|e| {
            (
                None,
                RpcError::new(
                    ErrorCode::ParseError,
                    format!("request is not valid UTF-8: {e}"),
                ),
            )
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            (
                None,
                RpcError::new(ErrorCode::ParseError, format!("request is not JSON: {e}")),
            )
        })?;
        let id = value.get("id").cloned();
        if !value.is_object() {
            return Err((
                None,
                RpcError::new(
                    ErrorCode::InvalidRequest,
                    "request must be a JSON object (batches are not supported)",
                ),
            ));
        }
        let raw: RawRequest = serde_json::from_value(value).map_err(|e| {
            (
                id.clone(),
                RpcError::new(ErrorCode::InvalidRequest, format!("invalid request: {e}")),
            )
        })?;
        if raw.jsonrpc != JSONRPC {
            return Err((
                id,
                RpcError::new(ErrorCode::InvalidRequest, "\"jsonrpc\" must be \"2.0\""),
            ));
        }
        Ok(raw)
    }

    /// Checks method and params.
    pub fn decode(&self) -> Result<Request, RpcError> {
        Request::decode(&self.method, self.params.clone())
    }
}

/// A reply: exactly one of `result` and `error`. `R` is how the result is held: a parsed
/// `Value` (what clients read), or already serialised text (`Box<RawValue>`), which is how
/// brummerd answers: building a `Value` tree first and serialising that cost it twice the
/// work (a status of 100 programs is some 2,500 fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response<R = Value> {
    pub jsonrpc: String,
    pub id: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl<R> Response<R> {
    pub fn ok(id: Value, result: R) -> Response<R> {
        Response {
            jsonrpc: JSONRPC.into(),
            id,
            result: Some(result),
            error: None,
        }
    }
}

impl Response {
    pub fn err(id: Option<Value>, error: RpcError) -> Response {
        Response {
            jsonrpc: JSONRPC.into(),
            id: id.unwrap_or(Value::Null),
            result: None,
            error: Some(error),
        }
    }

    pub fn into_result(self) -> Result<Value, RpcError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// A server-to-client notification carrying one streamed item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    pub jsonrpc: String,
    pub method: String,
    pub params: Value,
}

impl Notification {
    pub fn new(method: &str, params: Value) -> Notification {
        Notification {
            jsonrpc: JSONRPC.into(),
            method: method.into(),
            params,
        }
    }
}

/// What a client reads: a reply to one of its requests, or a notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Response(Response),
    Notification(Notification),
}

/// Every field either kind of message has, so that a message is parsed in one pass (a
/// `Value` first and the typed message from it built the result's tree twice).
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    jsonrpc: String,
    /// `Some(Value::Null)` for `"id": null` (an error reply to an unreadable request).
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
    #[serde(default)]
    params: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Incoming {
    pub fn parse(line: &str) -> Result<Incoming, serde_json::Error> {
        let e: Envelope = serde_json::from_str(line)?;
        match (e.id, e.method) {
            (Some(id), None) => Ok(Incoming::Response(Response {
                jsonrpc: e.jsonrpc,
                id,
                result: e.result,
                error: e.error,
            })),
            (_, Some(method)) => Ok(Incoming::Notification(Notification {
                jsonrpc: e.jsonrpc,
                method,
                params: e.params.unwrap_or(Value::Null),
            })),
            (None, None) => Err(serde::de::Error::missing_field("method")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_are_typed() {
        let (_, e) = RawRequest::parse(b"\xff\xfe").unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::ParseError));
        let (_, e) = RawRequest::parse(b"{nope").unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::ParseError));
        let (_, e) = RawRequest::parse(b"[1,2]").unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::InvalidRequest));
        let (id, e) = RawRequest::parse(br#"{"jsonrpc":"1.0","id":7,"method":"x"}"#).unwrap_err();
        assert_eq!(id, Some(Value::from(7)));
        assert_eq!(e.kind(), Some(ErrorCode::InvalidRequest));
    }

    /// Found by the `control` fuzz target (docs/reliability.md): a request with
    /// `"id": null` was read as a notification, so it ran unanswered.
    #[test]
    fn a_null_id_is_a_request_not_a_notification() {
        let r = RawRequest::parse(br#"{"jsonrpc":"2.0","id":null,"method":"version"}"#).unwrap();
        assert_eq!(r.id, Some(Value::Null));
        let r = RawRequest::parse(br#"{"jsonrpc":"2.0","method":"version"}"#).unwrap();
        assert_eq!(r.id, None);
        let (id, _) =
            RawRequest::parse(br#"{"jsonrpc":"1.0","id":null,"method":"x"}"#).unwrap_err();
        assert_eq!(id, Some(Value::Null));
    }

    /// Found by the `control` fuzz target (docs/reliability.md): an id that is not a small
    /// integer (here 43 digits, read as a float) came back in the reply as a number the
    /// client read as another one, because serde_json's default float parsing is not
    /// exact; a client could not match the reply to its request.
    #[test]
    fn a_float_id_comes_back_as_the_same_number() {
        for id in [
            "3333333333333333333333333333333333333333333",
            "3.3333333333333334e42",
            "0.30000000000000004",
            "1e-300",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"status","params":[1]}}"#);
            let read = RawRequest::parse(line.as_bytes()).map_or_else(|(id, _)| id, |r| r.id);
            let read = read.expect("an id");
            assert_eq!(read.as_f64(), id.parse::<f64>().ok(), "{id} read as {read}");
            let reply = Response::err(
                Some(read.clone()),
                RpcError::new(ErrorCode::InvalidParams, "x"),
            );
            let text = serde_json::to_string(&reply).unwrap();
            match Incoming::parse(&text).unwrap() {
                Incoming::Response(r) => assert_eq!(r.id, read, "{text}"),
                Incoming::Notification(n) => panic!("read as a notification: {n:?}"),
            }
        }
    }

    #[test]
    fn incoming_distinguishes_responses_and_notifications() {
        let r = Incoming::parse(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        assert!(matches!(r, Incoming::Response(_)));
        let n = Incoming::parse(r#"{"jsonrpc":"2.0","method":"log","params":{}}"#).unwrap();
        assert!(matches!(n, Incoming::Notification(_)));
        // The reply to a request the daemon could not read has `"id": null`: still a reply.
        let e = Incoming::parse(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"not JSON"}}"#,
        )
        .unwrap();
        match e {
            Incoming::Response(r) => {
                assert_eq!(r.id, Value::Null);
                assert_eq!(r.error.map(|e| e.code), Some(-32700));
            }
            Incoming::Notification(n) => panic!("read as a notification: {n:?}"),
        }
        assert!(Incoming::parse(r#"{"jsonrpc":"2.0"}"#).is_err());
    }
}
