#![allow(dead_code)]
//! Every JSON body the service parses, from arbitrary bytes: the `http_bodies` fuzz target
//! (`fuzz/fuzz_targets/http_bodies.rs`) and its stable replay (`service/tests/http_bodies.rs`)
//! both call [`run`]. The first byte picks the route, the rest is the body. The body goes
//! through the route's own parser (`stockledger_service::fuzz`, the functions the handlers
//! call), then, if it parsed, through the ledger call the handler makes (an in-memory
//! ledger), and the error through the service's error mapping. Checked: nothing panics; no
//! 5xx other than 503 `capacity_exhausted`; a 400 is `invalid_request` whose message starts
//! with a field of that route's body (`order_id`, `lines[2].qty`, ..., or `body` for what is
//! not one field: malformed JSON, not an object, nothing).
//!
//! Depends on `stockledger`, `stockledger_service` and `std` only (included by path from
//! the fuzz crate).

use std::sync::Arc;

use stockledger::{Ledger, Line, ManualClock, Options, Payment, Source};
use stockledger_service::errors::ApiError;
use stockledger_service::fuzz::{
    fuzz_parse_adjust_stock, fuzz_parse_payment, fuzz_parse_query, fuzz_parse_reserve,
    fuzz_parse_set_stock,
};
use stockledger_service::model::PaymentStatus;

pub const ROUTES: [&str; 5] = [
    "reservation",
    "payment",
    "set_stock",
    "adjust_stock",
    "query",
];

/// The fields a 400 may name, per route; `[]` stands for any index.
fn fields(route: usize) -> &'static [&'static str] {
    match route {
        0 => &[
            "body",
            "order_id",
            "lines",
            "lines[]",
            "lines[].sku",
            "lines[].warehouse",
            "lines[].qty",
            "ttl_seconds",
        ],
        1 => &[
            "body",
            "payment_id",
            "order_id",
            "status",
            "amount_minor",
            "currency",
        ],
        2 => &["body", "on_hand"],
        3 => &["body", "delta", "adjustment_id", "reason"],
        _ => &["body", "skus", "skus[]"],
    }
}

/// `lines[12].qty` -> `lines[].qty`
fn shape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            c if in_index && c.is_ascii_digit() => {}
            c => out.push(c),
        }
    }
    out
}

/// The ledger the bodies are applied to: stock in A@w1 and B@w2, order `o1` reserved.
pub fn ledger() -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let ledger = Ledger::in_memory(Options {
        clock: clock.clone(),
        max_orders: 100_000,
        ..Options::default()
    });
    reset(&ledger);
    (ledger, clock)
}

/// Puts the stock and `o1` back (after the clock moved a day and an expiry pass).
pub fn reset(ledger: &Ledger) {
    let _ = ledger.set_stock("A", "w1", 1_000_000, Source::Warehouse);
    let _ = ledger.set_stock("B", "w2", 1_000, Source::Warehouse);
    let _ = ledger.reserve("o1", &[Line::new("A", "w1", 1)], 600);
}

/// What one input gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub route: &'static str,
    /// The body parsed (the handler went on to the ledger).
    pub parsed: bool,
    /// 200 for success, else the error's status.
    pub status: u16,
    pub code: &'static str,
    /// The field a 400 names.
    pub field: Option<String>,
}

/// Runs one input; panics if a check fails.
pub fn run(data: &[u8], ledger: &Ledger) -> Outcome {
    let Some((&r, body)) = data.split_first() else {
        return Outcome {
            route: "none",
            parsed: false,
            status: 0,
            code: "",
            field: None,
        };
    };
    let route = r as usize % ROUTES.len();
    let mut parsed = false;
    let res: Result<(), ApiError> = match route {
        0 => fuzz_parse_reserve(body).and_then(|(order_id, lines, ttl)| {
            parsed = true;
            ledger
                .reserve(&order_id, &lines, ttl)
                .map(|_| ())
                .map_err(ApiError::from)
        }),
        1 => fuzz_parse_payment(body).and_then(|p| {
            parsed = true;
            ledger
                .pay(Payment {
                    payment_id: &p.payment_id,
                    order_id: &p.order_id,
                    succeeded: p.status == PaymentStatus::Succeeded,
                    amount_minor: p.amount_minor,
                    currency: &p.currency,
                })
                .map(|_| ())
                .map_err(ApiError::from)
        }),
        2 => fuzz_parse_set_stock(body).and_then(|on_hand| {
            parsed = true;
            ledger
                .set_stock("B", "w2", on_hand, Source::Seller("s1"))
                .map(|_| ())
                .map_err(ApiError::from)
        }),
        3 => fuzz_parse_adjust_stock(body).and_then(|a| {
            parsed = true;
            ledger
                .adjust_stock(
                    "B",
                    "w2",
                    a.delta,
                    &a.adjustment_id,
                    a.reason.as_deref(),
                    Source::Seller("s1"),
                )
                .map(|_| ())
                .map_err(ApiError::from)
        }),
        _ => fuzz_parse_query(body).and_then(|skus| {
            parsed = true;
            for sku in &skus {
                ledger.sku_stock(sku).map_err(ApiError::from)?;
            }
            Ok(())
        }),
    };
    let name = ROUTES[route];
    let Err(e) = res else {
        return Outcome {
            route: name,
            parsed,
            status: 200,
            code: "",
            field: None,
        };
    };
    let status = e.status.as_u16();
    assert!(
        status < 500 || (status == 503 && e.code == "capacity_exhausted"),
        "{name}: {status} {} {} for body {:?}",
        e.code,
        e.message,
        String::from_utf8_lossy(body)
    );
    let mut field = None;
    if status == 400 {
        assert_eq!(
            e.code, "invalid_request",
            "{name}: a 400 is invalid_request: {}",
            e.message
        );
        let f = e
            .message
            .split_once(": ")
            .map(|(f, _)| f.to_string())
            .unwrap_or_default();
        // A path inside a field names that field (`status.failed`, `lines[0][1]`).
        let shaped = shape(&f);
        let known = fields(route).iter().any(|k| {
            shaped == *k
                || shaped
                    .strip_prefix(k)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        });
        assert!(
            known,
            "{name}: the 400 names no field of the body: {:?} (body {:?})",
            e.message,
            String::from_utf8_lossy(body)
        );
        field = Some(f);
    }
    Outcome {
        route: name,
        parsed,
        status,
        code: e.code,
        field,
    }
}
