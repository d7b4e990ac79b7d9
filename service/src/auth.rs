//! Bearer tokens (partner, admin) and the payment callback signature. Every comparison is
//! constant-time; tokens are compared as SHA-256 digests so their lengths leak nothing either.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::PartnerToken;
use crate::errors::ApiError;
use crate::json::RawBody;
use crate::state::Shared;

/// How far the bank's timestamp may be from now, either way.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

type Digest32 = [u8; 32];

fn digest(s: &[u8]) -> Digest32 {
    Sha256::digest(s).into()
}

/// The configured credentials, as digests.
pub struct Auth {
    partners: Vec<(Digest32, String)>,
    admin: Option<Digest32>,
    /// HMAC-SHA256 keyed once with the payment secret: the key's two padded blocks are
    /// hashed here, not for every callback (2 of its ~5 SHA-256 compressions).
    payment_mac: Option<Hmac<Sha256>>,
}

impl Auth {
    pub fn new(
        partners: &[PartnerToken],
        admin: Option<&str>,
        payment_secret: Option<&str>,
    ) -> Auth {
        Auth {
            partners: partners
                .iter()
                .map(|p| (digest(p.token.as_bytes()), p.seller.clone()))
                .collect(),
            admin: admin.map(|t| digest(t.as_bytes())),
            // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
            payment_mac: payment_secret
                .and_then(|s| <Hmac<Sha256> as KeyInit>::new_from_slice(s.as_bytes()).ok()),
        }
    }

    /// The seller whose token the request carries; 401 otherwise.
    pub fn seller(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let given = digest(bearer(headers)?.as_bytes());
        // Visit every token so timing does not reveal which one matched.
        let mut found: Option<&str> = None;
        for (d, seller) in &self.partners {
            if bool::from(d.ct_eq(&given)) {
                found = Some(seller);
            }
        }
        found
            .map(String::from)
            .ok_or_else(|| ApiError::unauthorized("authorization: unknown partner token"))
    }

    /// 401 unless the request carries the admin token.
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let given = digest(bearer(headers)?.as_bytes());
        match &self.admin {
            Some(d) if bool::from(d.ct_eq(&given)) => Ok(()),
            _ => Err(ApiError::unauthorized("authorization: not the admin token")),
        }
    }

    /// Checks `X-Timestamp` and `X-Signature` over `<timestamp>.<body>` at `now_secs`.
    pub fn payment(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<(), ApiError> {
        let Some(keyed) = &self.payment_mac else {
            return Err(ApiError::unauthorized(
                "x-signature: payment callbacks are refused until a payment secret is configured",
            ));
        };
        let ts = header(headers, "x-timestamp")?;
        let sig = header(headers, "x-signature")?;
        let ts_num: i64 =
            if !ts.is_empty() && ts.len() <= 18 && ts.bytes().all(|b| b.is_ascii_digit()) {
                ts.parse()
                    .map_err(|_| ApiError::unauthorized("x-timestamp: not a decimal integer"))?
            } else {
                return Err(ApiError::unauthorized("x-timestamp: not a decimal integer"));
            };
        let Some(hex_sig) = sig.strip_prefix("sha256=") else {
            return Err(ApiError::unauthorized("x-signature: must be sha256=<hex>"));
        };
        let given = hex::decode(hex_sig)
            .map_err(|_| ApiError::unauthorized("x-signature: must be sha256=<hex>"))?;
        let mut mac = keyed.clone();
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&given).is_err() {
            return Err(ApiError::unauthorized(
                "x-signature: does not match the body",
            ));
        }
        if (now_secs - ts_num).abs() > SIGNATURE_WINDOW_SECS {
            return Err(ApiError::unauthorized(
                "x-timestamp: more than 300 seconds away from now",
            ));
        }
        Ok(())
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .ok_or_else(|| ApiError::unauthorized(format!("{name}: header missing")))?
        .to_str()
        .map(str::trim)
        .map_err(|_| ApiError::unauthorized(format!("{name}: not visible ASCII")))
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let v = header(headers, "authorization")?;
    let (scheme, token) = v
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("authorization: must be Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "authorization: must be Bearer <token>",
        ));
    }
    Ok(token.trim())
}

/// A partner request's seller and body. The token is checked before a byte of the body is
/// read (http-api.md: no token is a 401 even for a body over 1 MiB, never a 413).
pub struct SellerBody {
    pub seller: String,
    pub body: Bytes,
}

impl FromRequest<Shared> for SellerBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<SellerBody, ApiError> {
        match state.auth.seller(req.headers()) {
            Ok(seller) => {
                let RawBody(body) = RawBody::from_request(req, state).await?;
                Ok(SellerBody { seller, body })
            }
            Err(e) => {
                discard(req, state.request_timeout);
                Err(e)
            }
        }
    }
}

/// An admin request: the admin token, checked before the body, which admin routes ignore.
pub struct AdminOnly;

impl FromRequest<Shared> for AdminOnly {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<AdminOnly, ApiError> {
        let r = state.auth.admin(req.headers());
        discard(req, state.request_timeout);
        r.map(|()| AdminOnly)
    }
}

/// Most bytes of an unwanted body read and thrown away before the connection is closed.
pub const DISCARD_MAX: u64 = 64 << 20;

/// Reads an unwanted body to its end, keeping nothing, so that a client still sending gets
/// the answer instead of a reset (closing with unread bytes resets the connection). Bounded
/// by [`DISCARD_MAX`] and `within`; beyond either the connection is closed. A client that
/// waits for `100 Continue` has sent nothing yet and is not asked for the body.
pub fn discard(req: Request, within: Duration) {
    let waits = req
        .headers()
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body: Body = req.into_body();
    if waits || body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        let mut seen: u64 = 0;
        let drain = std::future::poll_fn(|cx| loop {
            match std::task::ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        seen = seen.saturating_add(d.len() as u64);
                        if seen > DISCARD_MAX {
                            return std::task::Poll::Ready(());
                        }
                    }
                }
                Some(Err(_)) | None => return std::task::Poll::Ready(()),
            }
        });
        let _ = tokio::time::timeout(within, drain).await;
    });
}

/// `sha256=<hex>` of HMAC-SHA256(secret, `<ts>.<body>`), as the bank computes it.
pub fn sign(secret: &[u8], ts: &str, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn signature() {
        let a = Auth::new(&[], None, Some("k"));
        let body = br#"{"x":1}"#;
        let sig = sign(b"k", "1000", body);
        let ok = headers(&[("x-timestamp", "1000"), ("x-signature", &sig)]);
        assert!(a.payment(&ok, body, 1000).is_ok());
        assert!(a.payment(&ok, body, 1300).is_ok());
        assert!(a.payment(&ok, body, 1301).is_err());
        assert!(a.payment(&ok, body, 699).is_err());
        assert!(a.payment(&ok, b"{}", 1000).is_err());
        let bad = headers(&[("x-timestamp", "1001"), ("x-signature", &sig)]);
        assert!(a.payment(&bad, body, 1000).is_err());
        assert!(a
            .payment(&headers(&[("x-timestamp", "1000")]), body, 1000)
            .is_err());
        let none = Auth::new(&[], None, None);
        assert!(none.payment(&ok, body, 1000).is_err());
    }

    #[test]
    fn tokens() {
        let a = Auth::new(
            &[PartnerToken {
                seller: "s1".into(),
                token: "t1".into(),
            }],
            Some("adm"),
            None,
        );
        assert_eq!(
            a.seller(&headers(&[("authorization", "Bearer t1")]))
                .unwrap(),
            "s1"
        );
        assert!(a
            .seller(&headers(&[("authorization", "Bearer t2")]))
            .is_err());
        assert!(a.seller(&headers(&[])).is_err());
        assert!(a
            .admin(&headers(&[("authorization", "Bearer adm")]))
            .is_ok());
        assert!(a
            .admin(&headers(&[("authorization", "Bearer t1")]))
            .is_err());
    }
}
