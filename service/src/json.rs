//! Request input: the raw body (413 over 1 MiB), JSON parsing that names the offending field,
//! and path segments. axum's own rejections are plain text; these keep the contract's shape.
//! Parsing is a plain function called by the handler, so a handler decides the order of its
//! checks (the partner gateway must answer 401 before any 400).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::errors::ApiError;

/// The request body limit of the contract.
pub const BODY_LIMIT: usize = 1 << 20;

/// The raw request body, at most [`BODY_LIMIT`] bytes.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<RawBody, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) => Err(body_rejection(e)),
        }
    }
}

/// The whole body of a request taken straight from hyper, with the same limit and the same
/// errors as [`RawBody`] (413 `payload_too_large` beyond [`BODY_LIMIT`]). A body that comes
/// in one frame (the usual small request) is returned as hyper read it, without a copy or a
/// list of chunks.
pub async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    // No refusal by the announced length before reading: the router's extractor reads
    // first too (a client that sent `Expect: 100-continue` gets its 100 from both).
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::invalid(
                "body",
                format!("could not be read: Failed to buffer the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not part of the body
        };
        let read = first.as_ref().map_or(0, Bytes::len) + rest.len();
        if read + data.len() > BODY_LIMIT {
            return Err(ApiError::payload_too_large());
        }
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(rest)))
}

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large()
    } else {
        ApiError::invalid("body", format!("could not be read: {}", e.body_text()))
    }
}

/// Parses a JSON object body into `T`; every failure is a 400 naming the field. Parsed
/// straight from the bytes (no intermediate `Value`): this is the hot path of every write.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::invalid(
                "body",
                "must be a JSON object, got nothing",
            ))
        }
        Some(b'{') => {}
        Some(_) => {
            // Tell malformed JSON from a well-formed non-object.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => ApiError::invalid("body", "must be a JSON object"),
                    Err(e) => ApiError::invalid("body", format!("malformed JSON: {e}")),
                },
            );
        }
    }
    // Fast path: plain serde_json. Only a body that fails is parsed again with path
    // tracking, which costs on every field but names the offending one.
    let mut fast = serde_json::Deserializer::from_slice(body);
    if let Ok(v) = T::deserialize(&mut fast) {
        if fast.end().is_ok() {
            return Ok(v);
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::invalid("body", format!("malformed JSON: {inner}"));
        }
        let path = e.path().to_string();
        let msg = strip_position(&inner.to_string());
        let field = if path == "." || path.is_empty() {
            missing_field(&msg).unwrap_or_else(|| "body".to_string())
        } else {
            path
        };
        ApiError::invalid(&field, msg)
    })?;
    de.end()
        .map_err(|e| ApiError::invalid("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A JSON answer written into one buffer of `capacity` bytes (a good guess avoids growing
/// it), with the same `Content-Type` as axum's `Json`.
pub fn reply<T: Serialize>(
    status: StatusCode,
    value: &T,
    capacity: usize,
) -> Result<Response, ApiError> {
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, value)
        .map_err(|e| ApiError::unavailable(format!("could not write the answer: {e}")))?;
    let mut r = Response::new(axum::body::Body::from(buf));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// A JSON answer written by `write` into one buffer of `capacity` bytes, with the same
/// `Content-Type` as axum's `Json`.
pub fn reply_with(
    status: StatusCode,
    capacity: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Response {
    let mut buf = Vec::with_capacity(capacity);
    write(&mut buf);
    let mut r = Response::new(axum::body::Body::from(buf));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// serde_json appends "at line 1 column 42" to data errors; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde names a missing field only in its message (`missing field `x``).
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

/// Path segments, percent-decoded by axum; a segment that does not decode (bad escapes,
/// invalid UTF-8) is kept as an error for the handler to report in its own order.
pub struct Segments(pub Result<Vec<String>, ApiError>);

impl<S: Send + Sync> FromRequestParts<S> for Segments {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Segments, Self::Rejection> {
        let r = match Path::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Path(pairs)) => Ok(pairs.into_iter().map(|(_, v)| v).collect()),
            Err(e) => Err(ApiError::invalid(
                "path",
                format!(
                    "a path segment is not valid percent-encoded UTF-8 ({})",
                    e.body_text()
                ),
            )),
        };
        Ok(Segments(r))
    }
}

impl Segments {
    /// The single segment of a one-parameter route.
    pub fn one(self) -> Result<String, ApiError> {
        let mut v = self.0?;
        v.pop()
            .ok_or_else(|| ApiError::invalid("path", "missing segment"))
    }

    /// The two segments of a two-parameter route, in path order.
    pub fn two(self) -> Result<(String, String), ApiError> {
        let mut v = self.0?.into_iter();
        match (v.next(), v.next()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(ApiError::invalid("path", "missing segment")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct L {
        qty: u64,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct B {
        order_id: String,
        lines: Vec<L>,
    }

    fn field(body: &str) -> String {
        let e = parse::<B>(body.as_bytes()).unwrap_err();
        assert_eq!(e.code, "invalid_request");
        e.message
    }

    #[test]
    fn names_fields() {
        assert!(field(r#"{"order_id":"o","lines":[{"qty":1},{"qty":"2"}]}"#)
            .starts_with("lines[1].qty:"));
        assert!(field(r#"{"order_id":"o","lines":[{"qty":2.5}]}"#).starts_with("lines[0].qty:"));
        assert!(field(r#"{"order_id":"o","lines":[{"qty":-1}]}"#).starts_with("lines[0].qty:"));
        assert!(field(r#"{"lines":[]}"#).starts_with("order_id:"));
        assert!(field(r#"{"order_id":5,"lines":[]}"#).starts_with("order_id:"));
        assert!(field(r#"[1]"#).starts_with("body:"));
        assert!(field(r#"{"#).starts_with("body:"));
        assert!(field("").starts_with("body:"));
        assert!(parse::<B>(br#"{"order_id":"o","lines":[],"x":1}"#).is_ok());
    }
}
