//! Storefront gateway: reservations and stock reads (no auth).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use stockledger::{limits, Line, Reservation};

use crate::errors::{ApiError, ApiResult};
use crate::json::{parse, reply_with, RawBody, Segments};
use crate::metrics as m;
use crate::model::*;
use crate::state::{blocking, deferred, Shared};

/// The reservation body as `reserve` reads it: order id, lines, ttl (the default applied).
/// The ledger checks the fields' contents. Public for the fuzz target
/// (`fuzz::fuzz_parse_reserve`).
#[doc(hidden)]
pub fn reserve_body(body: &[u8]) -> Result<(String, Vec<Line>, u64), ApiError> {
    if let Some((order_id, lines, ttl)) = plain::reserve(body) {
        let lines = lines
            .iter()
            .map(|l| Line::new(l.sku, l.warehouse, l.qty))
            .collect();
        return Ok((order_id.to_string(), lines, ttl));
    }
    reserve_body_serde(body)
}

/// A reservation body through serde (every shape JSON allows; the errors name the field).
fn reserve_body_serde(body: &[u8]) -> Result<(String, Vec<Line>, u64), ApiError> {
    let req: ReserveRequest = parse(body)?;
    let lines: Vec<Line> = req
        .lines
        .into_iter()
        .map(|l| Line::new(l.sku, l.warehouse, l.qty))
        .collect();
    let ttl = req.ttl_seconds.unwrap_or(limits::DEFAULT_TTL_SECONDS);
    Ok((req.order_id, lines, ttl))
}

/// The reservation body in the shape clients send it, read without serde: only a subset of
/// JSON is taken here (ASCII strings without escapes, integers without sign, fraction or
/// exponent, each known field once, no unknown field, `ttl_seconds` a number or null), and
/// for it the answer is what serde gives. Anything else is `None`, and `reserve_body` parses
/// it with serde (which also words the errors). serde's field-by-field machinery cost about
/// 6,000 instructions per reservation (issue 11).
mod plain {
    use stockledger::{limits, LineRef};

    /// The lines of a body, inline up to the usual four (no allocation per request).
    pub(super) type Lines<'a> = smallvec::SmallVec<[LineRef<'a>; 4]>;

    struct Cursor<'a> {
        /// The whole body, checked to be UTF-8 once: a string is a slice of it between
        /// ASCII quotes (char boundaries), so no string is checked again.
        text: &'a str,
        b: &'a [u8],
        i: usize,
    }

    /// Bytes that end the plain form of a string: its closing quote, or what it does not
    /// take (escapes, control bytes, DEL and non-ASCII).
    const STRING_STOP: [bool; 256] = {
        let mut stop = [true; 256];
        let mut c = 0x20;
        while c <= 0x7e {
            stop[c] = c == b'"' as usize || c == b'\\' as usize;
            c += 1;
        }
        stop
    };

    impl<'a> Cursor<'a> {
        fn ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        /// The next non-whitespace byte, consumed.
        fn next(&mut self) -> Option<u8> {
            self.ws();
            let c = *self.b.get(self.i)?;
            self.i += 1;
            Some(c)
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            (self.next()? == c).then_some(())
        }

        /// A string of printable ASCII without escapes (the quotes consumed).
        fn str(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let start = self.i;
            let n = self
                .b
                .get(start..)?
                .iter()
                .position(|&c| STRING_STOP[c as usize])?;
            if self.b[start + n] != b'"' {
                return None;
            }
            self.i = start + n + 1;
            self.text.get(start..start + n)
        }

        /// A key: compared at once when it is `guess` (the field clients usually send
        /// next), else read as any string. Both ways take the same bytes.
        fn key(&mut self, guess: &'static [u8]) -> Option<&'a [u8]> {
            self.ws();
            let rest = self.b.get(self.i..)?;
            let n = guess.len();
            let quoted = rest
                .get(..n + 2)
                .is_some_and(|q| q[0] == b'"' && q[n + 1] == b'"' && &q[1..=n] == guess);
            if quoted {
                self.i += n + 2;
                return Some(&rest[1..=n]);
            }
            self.str().map(str::as_bytes)
        }

        /// An unsigned integer that fits u64 (no sign, fraction or exponent).
        fn uint(&mut self) -> Option<u64> {
            self.ws();
            let first = *self.b.get(self.i)?;
            if !first.is_ascii_digit() {
                return None;
            }
            self.i += 1;
            let mut v = u64::from(first - b'0');
            while let Some(&d) = self.b.get(self.i) {
                if !d.is_ascii_digit() {
                    break;
                }
                if first == b'0' {
                    return None; // a leading zero is not JSON
                }
                v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                self.i += 1;
            }
            match self.b.get(self.i) {
                Some(b'.' | b'e' | b'E') => None,
                _ => Some(v),
            }
        }

        fn line(&mut self) -> Option<LineRef<'a>> {
            self.eat(b'{')?;
            let (mut sku, mut warehouse, mut qty) = (None, None, None);
            let mut guess: &'static [u8] = b"sku";
            loop {
                let key = self.key(guess)?;
                self.eat(b':')?;
                guess = match key {
                    b"sku" => b"warehouse",
                    b"warehouse" => b"qty",
                    _ => b"sku",
                };
                match key {
                    b"sku" if sku.is_none() => sku = Some(self.str()?),
                    b"warehouse" if warehouse.is_none() => warehouse = Some(self.str()?),
                    b"qty" if qty.is_none() => qty = Some(self.uint()?),
                    _ => return None,
                }
                match self.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
            Some(LineRef {
                sku: sku?,
                warehouse: warehouse?,
                qty: qty?,
            })
        }

        fn lines(&mut self) -> Option<Lines<'a>> {
            self.eat(b'[')?;
            let mut lines = Lines::new();
            self.ws();
            if self.b.get(self.i) == Some(&b']') {
                self.i += 1;
                return Some(lines);
            }
            loop {
                lines.push(self.line()?);
                match self.next()? {
                    b',' => continue,
                    b']' => return Some(lines),
                    _ => return None,
                }
            }
        }
    }

    /// The order id and lines borrow `body`.
    pub(super) fn reserve(body: &[u8]) -> Option<(&str, Lines<'_>, u64)> {
        let text = std::str::from_utf8(body).ok()?;
        let mut c = Cursor {
            text,
            b: body,
            i: 0,
        };
        c.eat(b'{')?;
        let (mut order_id, mut lines, mut ttl) = (None, None, None);
        let mut guess: &'static [u8] = b"order_id";
        loop {
            let key = c.key(guess)?;
            c.eat(b':')?;
            guess = match key {
                b"order_id" => b"lines",
                b"lines" => b"ttl_seconds",
                _ => b"order_id",
            };
            match key {
                b"order_id" if order_id.is_none() => order_id = Some(c.str()?),
                b"lines" if lines.is_none() => lines = Some(c.lines()?),
                b"ttl_seconds" if ttl.is_none() => {
                    c.ws();
                    ttl = Some(if c.b[c.i..].starts_with(b"null") {
                        c.i += 4;
                        None
                    } else {
                        Some(c.uint()?)
                    });
                }
                _ => return None,
            }
            match c.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
        if c.next().is_some() {
            return None;
        }
        let ttl = ttl.flatten().unwrap_or(limits::DEFAULT_TTL_SECONDS);
        Some((order_id?, lines?, ttl))
    }

    #[cfg(test)]
    mod tests {
        use super::super::*;

        /// Whatever the plain reader takes, it reads as serde does; what it leaves, serde
        /// reads (or rejects) as before.
        #[test]
        fn plain_reader_agrees_with_serde() {
            let serde = |b: &[u8]| -> Option<(String, Vec<Line>, u64)> {
                let req: ReserveRequest = parse(b).ok()?;
                let lines = req
                    .lines
                    .into_iter()
                    .map(|l| Line::new(l.sku, l.warehouse, l.qty))
                    .collect();
                Some((
                    req.order_id,
                    lines,
                    req.ttl_seconds.unwrap_or(limits::DEFAULT_TTL_SECONDS),
                ))
            };
            let bodies: &[&str] = &[
                r#"{"order_id":"o-1","lines":[{"sku":"A","warehouse":"kol","qty":1}]}"#,
                r#" { "order_id" : "o 1" , "lines" : [ { "qty" : 7 , "sku" : "A" , "warehouse" : "w" } , {"sku":"B","warehouse":"w","qty":0} ] , "ttl_seconds" : 60 } "#,
                "{\"order_id\":\"o\",\r\n\t\"lines\":[],\"ttl_seconds\":null}",
                r#"{"lines":[],"order_id":"o","ttl_seconds":18446744073709551615}"#,
                r#"{"lines":[],"order_id":"o","ttl_seconds":18446744073709551616}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":01}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":1.0}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":1e2}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":-1}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":"1"}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w"}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":1,"qty":2}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":1,"x":2}]}"#,
                r#"{"order_id":"o","order_id":"p","lines":[]}"#,
                r#"{"order_id":"o","lines":[],"x":1}"#,
                r#"{"order_idx":"o","lines":[]}"#,
                r#"{"order_id":"o","lines":[{"skux":"A","warehouse":"w","qty":1}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","sku":"B","qty":1}]}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","qty":1,"warehouse":"w"}],"lines":[]}"#,
                r#"{"order_id":"o\"q","lines":[]}"#,
                r#"{"order_id":"o\u0041","lines":[]}"#,
                "{\"order_id\":\"caf\u{e9}\",\"lines\":[]}",
                "{\"order_id\":\"a\tb\",\"lines\":[]}",
                r#"{"order_id":"o","lines":[]} x"#,
                r#"{"order_id":"o","lines":[],}"#,
                r#"{"order_id":"o","lines":[{"sku":"A","warehouse":"w","qty":1},]}"#,
                r#"{"order_id":"o","lines":{}}"#,
                r#"{"order_id":5,"lines":[]}"#,
                r#"{"order_id":"o","lines":[],"ttl_seconds":nul}"#,
                r#"{"order_id":"o","lines":[],"ttl_seconds":"60"}"#,
                r#"{"lines":[]}"#,
                r#"{}"#,
                r#"{"#,
                "",
                "[]",
            ];
            for body in bodies {
                let b = body.as_bytes();
                let owned = |(o, l, t): (&str, plain::Lines<'_>, u64)| {
                    let l = l.iter().map(|l| Line::new(l.sku, l.warehouse, l.qty));
                    (o.to_string(), l.collect::<Vec<_>>(), t)
                };
                let fast = plain::reserve(b).map(owned);
                if let Some(f) = &fast {
                    assert_eq!(Some(f.clone()), serde(b), "{body}");
                }
                // Every prefix, and every byte replaced by a JSON-significant one: never
                // taken unless serde takes it the same way.
                for n in 0..b.len() {
                    if let Some(f) = plain::reserve(&b[..n]).map(owned) {
                        assert_eq!(Some(f), serde(&b[..n]), "{:?}", &body[..n]);
                    }
                    for &c in b"\"\\:,{}[]0 -.e\tn\x01\xc3" {
                        let mut m = b.to_vec();
                        m[n] = c;
                        if let Some(f) = plain::reserve(&m).map(owned) {
                            assert_eq!(Some(f), serde(&m), "{:?}", String::from_utf8_lossy(&m));
                        }
                    }
                }
            }
            assert!(plain::reserve(bodies[0].as_bytes()).is_some());
            assert!(plain::reserve(bodies[1].as_bytes()).is_some());
            assert!(plain::reserve(bodies[2].as_bytes()).is_some());
            assert!(plain::reserve(bodies[3].as_bytes()).is_some());
        }
    }
}

/// The stock query body as `query` reads and checks it: the skus, in request order.
#[doc(hidden)]
pub fn query_body(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let req: StockQueryRequest = parse(body)?;
    if req.skus.is_empty() || req.skus.len() > 1000 {
        return Err(ApiError::invalid("skus", "must hold 1 to 1000 entries"));
    }
    for (i, sku) in req.skus.iter().enumerate() {
        limits::check_name(&format!("skus[{i}]"), sku)?;
    }
    Ok(req.skus)
}

/// Reserve stock for an order (all lines or none).
#[utoipa::path(post, path = "/v1/reservations", tag = "storefront",
    request_body = ReserveRequest,
    responses(
        (status = 201, description = "Created", body = ReservationBody),
        (status = 200, description = "Idempotent replay: the reservation as it is now", body = ReservationBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 409, description = "insufficient_stock or order_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "ledger_unavailable, capacity_exhausted (names the limit), or overloaded (with Retry-After; nothing was done)", body = ErrorBody),
    ))]
pub async fn reserve(State(s): State<Shared>, RawBody(body): RawBody) -> ApiResult<Response> {
    reserve_answer(&s, &body).await
}

/// `POST /v1/reservations` served straight from hyper's request (see `server::ConnService`):
/// the same answer as the axum route [`reserve`] with its 1 MiB body limit, without the
/// router, the middleware's boxed futures and the request's extensions. The caller applies
/// the request timeout and records the route's HTTP metrics, as for every direct route.
pub async fn reserve_direct(s: Shared, body: hyper::body::Incoming) -> Response {
    match crate::json::read_body(body).await {
        Ok(body) => match reserve_answer(&s, &body).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// A reservation body, as the plain reader borrowed it or as serde owns it.
enum Parsed<'a> {
    Plain(&'a str, plain::Lines<'a>, u64),
    Owned(String, Vec<Line>, u64),
}

/// Parses, decides, waits for the log, and writes the answer of a reservation.
async fn reserve_answer(s: &Shared, body: &[u8]) -> ApiResult<Response> {
    // Decided here, answered once durable: no thread hop, no read-back. The usual body is
    // read in place (names borrowed from it); anything else through serde.
    let parsed = match plain::reserve(body) {
        Some((order_id, lines, ttl)) => Parsed::Plain(order_id, lines, ttl),
        None => {
            let (order_id, lines, ttl) =
                reserve_body_serde(body).inspect_err(|_| m::reservation("invalid_request"))?;
            Parsed::Owned(order_id, lines, ttl)
        }
    };
    let order_id = match &parsed {
        Parsed::Plain(order_id, ..) => order_id,
        Parsed::Owned(order_id, ..) => order_id.as_str(),
    };
    let decided = deferred(&s.ledger, |l| match &parsed {
        Parsed::Plain(order_id, lines, ttl) => l.reserve_deferred_answered(order_id, lines, *ttl),
        Parsed::Owned(order_id, lines, ttl) => l.reserve_deferred_answered(order_id, lines, *ttl),
    });
    match m::timed_durable(decided).await {
        Ok(a) => {
            let (status, result) = if a.created == Some(true) {
                (StatusCode::CREATED, "created")
            } else {
                (StatusCode::OK, "replay")
            };
            m::reservation(result);
            Ok(answered_reply(status, order_id, &a))
        }
        Err(e) => {
            m::reservation(e.code);
            Err(e)
        }
    }
}

/// Read a reservation.
#[utoipa::path(get, path = "/v1/reservations/{order_id}", tag = "storefront",
    params(("order_id" = String, Path, description = "1..=128 bytes of printable ASCII")),
    responses(
        (status = 200, description = "The reservation", body = ReservationBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
    ))]
pub async fn get_reservation(State(s): State<Shared>, path: Segments) -> ApiResult<Response> {
    let order_id = path.one()?;
    match s.ledger.reservation(&order_id)? {
        Some(r) => reservation_reply(StatusCode::OK, &r),
        None => Err(stockledger::Error::OrderNotFound { order_id }.into()),
    }
}

/// Release a reservation (the buyer cancels).
#[utoipa::path(delete, path = "/v1/reservations/{order_id}", tag = "storefront",
    params(("order_id" = String, Path, description = "1..=128 bytes of printable ASCII")),
    responses(
        (status = 200, description = "Released, or already released or expired (unchanged)", body = ReservationBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 404, description = "order_not_found", body = ErrorBody),
        (status = 409, description = "order_paid", body = ErrorBody),
        (status = 503, description = "ledger_unavailable", body = ErrorBody),
    ))]
pub async fn release(State(s): State<Shared>, path: Segments) -> ApiResult<Response> {
    let order_id = path.one()?;
    release_answer(&s, &order_id).await
}

/// `DELETE /v1/reservations/{order_id}` served straight from hyper's request (see
/// `server::ConnService`, which takes only ids that need no percent-decoding): the same
/// answer as the axum route [`release`], without the router.
pub async fn release_direct(s: Shared, order_id: String) -> Response {
    match release_answer(&s, &order_id).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The order id of a `DELETE /v1/reservations/{order_id}` path that the router would
/// match and pass to the handler unchanged: one non-empty segment without `%` (the
/// router percent-decodes, and rejects what does not decode). None for anything else.
pub fn release_path(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/v1/reservations/")?;
    let plain = !id.is_empty() && !id.bytes().any(|b| b == b'/' || b == b'%');
    plain.then_some(id)
}

/// Releases, waits for the log, and writes the answer of a release.
async fn release_answer(s: &Shared, order_id: &str) -> ApiResult<Response> {
    let a = deferred(&s.ledger, |l| l.release_deferred_answered(order_id)).await?;
    Ok(answered_reply(StatusCode::OK, order_id, &a))
}

/// A reservation as the answer body, written from the order as the call left it.
fn answered_reply(status: StatusCode, order_id: &str, a: &stockledger::Answered<'_>) -> Response {
    let body = AnsweredJson {
        order_id,
        answered: a,
    };
    reply_with(status, body.size_hint(), |buf| body.write_to(buf))
}

/// A reservation as the answer body, written straight from the ledger's value.
fn reservation_reply(status: StatusCode, r: &Reservation) -> ApiResult<Response> {
    let body = ReservationJson(r);
    Ok(reply_with(status, body.size_hint(), |buf| {
        body.write_to(buf)
    }))
}

/// Stock of one sku over its warehouses.
#[utoipa::path(get, path = "/v1/stock/{sku}", tag = "storefront",
    params(("sku" = String, Path, description = "1..=64 bytes of [A-Za-z0-9._:-]")),
    responses(
        (status = 200, description = "The sku's stock", body = SkuStockBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 404, description = "sku_not_found", body = ErrorBody),
    ))]
pub async fn stock(State(s): State<Shared>, path: Segments) -> ApiResult<Json<SkuStockBody>> {
    let sku = path.one()?;
    match s.ledger.sku_stock(&sku)? {
        Some(st) => Ok(Json(SkuStockBody::of(&st))),
        None => Err(stockledger::Error::SkuNotFound { sku }.into()),
    }
}

/// Stock of many skus at once, in request order (unknown skus read as zeros).
#[utoipa::path(post, path = "/v1/stock/query", tag = "storefront",
    request_body = StockQueryRequest,
    responses(
        (status = 200, description = "One item per requested sku", body = StockQueryBody),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
    ))]
pub async fn query(
    State(s): State<Shared>,
    RawBody(body): RawBody,
) -> ApiResult<Json<StockQueryBody>> {
    let skus = query_body(&body)?;
    // Each distinct sku is looked up once (duplicates are allowed, and a sku may have
    // thousands of cells), off the async runtime.
    let ledger = s.ledger.clone();
    let items = blocking(move || {
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        let mut items: Vec<SkuStockBody> = Vec::with_capacity(skus.len());
        for sku in &skus {
            if let Some(&first) = seen.get(sku.as_str()) {
                let again = items[first].clone();
                items.push(again);
                continue;
            }
            seen.insert(sku, items.len());
            items.push(match ledger.sku_stock(sku)? {
                Some(st) => SkuStockBody::of(&st),
                None => SkuStockBody::empty(sku),
            });
        }
        Ok(items)
    })
    .await?;
    Ok(Json(StockQueryBody { items }))
}

#[cfg(test)]
mod release_path_tests {
    use super::release_path;

    /// Only ids the router would pass unchanged are taken; the rest is left to the router.
    #[test]
    fn takes_only_plain_single_segments() {
        assert_eq!(release_path("/v1/reservations/o-1"), Some("o-1"));
        assert_eq!(release_path("/v1/reservations/a+b;c=d"), Some("a+b;c=d"));
        for path in [
            "/v1/reservations/",
            "/v1/reservations",
            "/v1/reservations/o-1/",
            "/v1/reservations/o-1/x",
            "/v1/reservations//o-1",
            "/v1/reservations/o%2D1",
            "/v1/Reservations/o-1",
            "/v1/reservations/o-1%",
        ] {
            assert_eq!(release_path(path), None, "{path}");
        }
    }
}
