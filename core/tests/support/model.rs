#![allow(dead_code)]
//! The reference model of the ledger shared by `model.rs` (proptest), `sim.rs` (simulator)
//! and `ops_model/mod.rs` (the `ops` fuzz target and its stable replay `fuzz_ops.rs`), each
//! including this file by path: stock cells, reservations and their statuses, adjustment
//! and payment keys, retention. [`real`] runs the same operations on a ledger, its answers
//! reduced the same way; [`diff`] compares every cell and order. Depends on nothing but
//! `stockledger` and `std` (the fuzz crate includes it too).

use std::collections::{BTreeMap, HashMap};

use stockledger::{Error, Ledger, PaymentAnswer, Shortfall, Status};

pub const DAY: u64 = 24 * 3600 * 1000;
pub const MAX_ON_HAND: u64 = (1 << 53) - 1;

/// (sku, warehouse, qty)
pub type Lines = Vec<(String, String, u64)>;

#[derive(Debug, Clone, PartialEq)]
pub struct MOrder {
    pub lines: Lines,
    pub status: Status,
    pub created_at: u64,
    pub expires_at: u64,
    pub finished_at: u64,
}

#[derive(Debug, Clone)]
pub struct MPay {
    order: String,
    succeeded: bool,
    answer: PaymentAnswer,
    at: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub now: u64,
    /// (sku, warehouse) -> (on_hand, reserved)
    pub cells: BTreeMap<(String, String), (u64, u64)>,
    pub orders: BTreeMap<String, MOrder>,
    /// adjustment_id -> (cell, delta, applied at).
    pub adjustments: HashMap<String, ((String, String), i64, u64)>,
    pub payments: HashMap<String, MPay>,
    /// Orders pruned after retention: a restart may bring them back (pruning writes no
    /// record; the domain keeps finished orders *at least* 24 h).
    pub pruned: BTreeMap<String, MOrder>,
    /// The newest cutoff of an expiry pass: what finished before it is past its retention.
    /// The ledger writes the cutoff to its log (a retention note) and replay prunes there;
    /// its rings keep finish order, which a clock stepped back leaves out of time order, so
    /// a ring restored from a snapshot may let replay prune an order the live ledger still
    /// held. Retention is "at least 24 h": such an order may be gone after a restart.
    pub retention_cutoff: u64,
}

/// A result reduced to what must agree.
#[derive(Debug, Clone, PartialEq)]
pub enum Res {
    Ok(String),
    Err(String),
}

fn invalid() -> Res {
    Res::Err("invalid_request".into())
}

pub fn err(e: Error) -> Res {
    match e {
        Error::InsufficientStock { shortfalls } => {
            Res::Err(format!("insufficient_stock {shortfalls:?}"))
        }
        Error::BelowReserved {
            on_hand,
            reserved,
            requested_on_hand,
        } => Res::Err(format!(
            "below_reserved {on_hand} {reserved} {requested_on_hand}"
        )),
        e => Res::Err(e.code().as_str().to_string()),
    }
}

pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b))
}

pub fn sorted(lines: &[(String, String, u64)]) -> Lines {
    let mut v = lines.to_vec();
    v.sort();
    v
}

impl Model {
    pub fn at(now: u64) -> Model {
        Model {
            now,
            ..Model::default()
        }
    }

    pub fn level(&self, k: &(String, String)) -> (u64, u64) {
        self.cells.get(k).copied().unwrap_or((0, 0))
    }

    pub fn set(&mut self, s: &str, w: &str, n: u64) -> Res {
        if !valid_name(s) || !valid_name(w) || n > MAX_ON_HAND {
            return invalid();
        }
        let k = (s.to_string(), w.to_string());
        let (on_hand, reserved) = self.level(&k);
        if n < reserved {
            return Res::Err(format!("below_reserved {on_hand} {reserved} {n}"));
        }
        self.cells.insert(k, (n, reserved));
        Res::Ok(format!("{n} {reserved}"))
    }

    pub fn adjust(&mut self, s: &str, w: &str, d: i64, key: &str) -> Res {
        if !valid_name(s) || !valid_name(w) || d == 0 {
            return invalid();
        }
        let k = (s.to_string(), w.to_string());
        if let Some((cell, delta, _)) = self.adjustments.get(key) {
            if *cell != k || *delta != d {
                return Res::Err("adjustment_conflict".into());
            }
            let (o, r) = self.level(&k);
            return Res::Ok(format!("{o} {r}"));
        }
        let (on_hand, reserved) = self.level(&k);
        let next = on_hand as i64 + d;
        if next < reserved as i64 {
            return Res::Err(format!("below_reserved {on_hand} {reserved} {next}"));
        }
        self.cells.insert(k.clone(), (next as u64, reserved));
        self.adjustments.insert(key.to_string(), (k, d, self.now));
        Res::Ok(format!("{next} {reserved}"))
    }

    pub fn reserve(&mut self, id: &str, lines: &[(String, String, u64)], ttl: u64) -> Res {
        if lines.is_empty() || ttl == 0 || ttl > 604_800 {
            return invalid();
        }
        for (i, l) in lines.iter().enumerate() {
            if !valid_name(&l.0)
                || !valid_name(&l.1)
                || l.2 == 0
                || l.2 > 1_000_000
                || lines[..i].iter().any(|p| (&p.0, &p.1) == (&l.0, &l.1))
            {
                return invalid();
            }
        }
        if let Some(existing) = self.orders.get(id) {
            if sorted(&existing.lines) != sorted(lines) {
                return Res::Err("order_conflict".into());
            }
            return Res::Ok(format!("replay {}", existing.status.as_str()));
        }
        let shortfalls: Vec<Shortfall> = lines
            .iter()
            .filter_map(|(s, w, q)| {
                let (on_hand, reserved) = self.level(&(s.clone(), w.clone()));
                let available = on_hand - reserved;
                (available < *q).then(|| Shortfall {
                    sku: s.clone(),
                    warehouse: w.clone(),
                    requested: *q,
                    available,
                })
            })
            .collect();
        if !shortfalls.is_empty() {
            return Res::Err(format!("insufficient_stock {shortfalls:?}"));
        }
        for (s, w, q) in lines {
            if let Some(c) = self.cells.get_mut(&(s.clone(), w.clone())) {
                c.1 += q;
            }
        }
        self.pruned.remove(id);
        self.orders.insert(
            id.to_string(),
            MOrder {
                lines: lines.to_vec(),
                status: Status::Reserved,
                created_at: self.now,
                expires_at: self.now + ttl * 1000,
                finished_at: 0,
            },
        );
        Res::Ok("created reserved".into())
    }

    /// The order leaves `reserved`: its stock is released (and shipped if `ship`).
    fn finish(&mut self, id: &str, status: Status, ship: bool) {
        let now = self.now;
        let Some(o) = self.orders.get_mut(id) else {
            return;
        };
        o.status = status;
        o.finished_at = now;
        for (s, w, q) in o.lines.clone() {
            if let Some(c) = self.cells.get_mut(&(s, w)) {
                c.1 -= q;
                if ship {
                    c.0 -= q;
                }
            }
        }
    }

    pub fn commit(&mut self, id: &str) -> Res {
        let Some(order) = self.orders.get(id) else {
            return Res::Err("order_not_found".into());
        };
        match order.status {
            Status::Paid => return Res::Ok("paid".into()),
            Status::Reserved if self.now < order.expires_at => {}
            _ => return Res::Err("order_not_active".into()),
        }
        self.finish(id, Status::Paid, true);
        Res::Ok("paid".into())
    }

    pub fn release(&mut self, id: &str) -> Res {
        let Some(order) = self.orders.get(id) else {
            return Res::Err("order_not_found".into());
        };
        match order.status {
            Status::Paid => return Res::Err("order_paid".into()),
            Status::Released | Status::Expired => return Res::Ok(order.status.as_str().into()),
            Status::Reserved => {}
        }
        self.finish(id, Status::Released, false);
        Res::Ok("released".into())
    }

    /// These orders expire now (ids the model does not hold are passed over).
    pub fn expire(&mut self, ids: &[String]) {
        for id in ids {
            self.finish(id, Status::Expired, false);
        }
    }

    /// An expiry pass: the due orders expire, then what is past its retention is pruned.
    /// Answers the expired ids, sorted.
    pub fn expire_due(&mut self) -> Res {
        let now = self.now;
        let expired: Vec<String> = self
            .orders
            .iter()
            .filter(|(_, o)| o.status == Status::Reserved && o.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        self.expire(&expired);
        let cutoff = now.saturating_sub(DAY);
        self.retention_cutoff = self.retention_cutoff.max(cutoff);
        let gone: Vec<String> = self
            .orders
            .iter()
            .filter(|(_, o)| o.status.is_finished() && o.finished_at < cutoff)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(o) = self.orders.remove(&id) {
                self.pruned.insert(id, o);
            }
        }
        self.adjustments.retain(|_, a| a.2 >= cutoff);
        self.payments.retain(|_, p| p.at >= cutoff);
        Res::Ok(format!("{expired:?}"))
    }

    /// A payment callback (`currency_ok`: a valid currency code).
    pub fn pay(&mut self, pid: &str, oid: &str, succeeded: bool, currency_ok: bool) -> Res {
        if pid.is_empty() || !currency_ok {
            return invalid();
        }
        if let Some(seen) = self.payments.get(pid) {
            if seen.order != oid || seen.succeeded != succeeded {
                return Res::Err("payment_conflict".into());
            }
            return Res::Ok(seen.answer.as_str().into());
        }
        let Some(order) = self.orders.get(oid) else {
            return Res::Err("order_not_found".into());
        };
        let now = self.now;
        let due = order.expires_at <= now;
        let status = order.status;
        let answer = match (succeeded, status) {
            (true, Status::Reserved) if !due => {
                self.finish(oid, Status::Paid, true);
                PaymentAnswer::Paid
            }
            (true, Status::Reserved) => {
                self.finish(oid, Status::Expired, false);
                self.late_payment(oid)
            }
            (true, Status::Expired) => self.late_payment(oid),
            (true, _) => PaymentAnswer::RefundRequired,
            (false, Status::Reserved) if due => {
                self.finish(oid, Status::Expired, false);
                PaymentAnswer::Expired
            }
            (false, Status::Reserved) => {
                self.finish(oid, Status::Released, false);
                PaymentAnswer::Released
            }
            (false, Status::Paid) => PaymentAnswer::Paid,
            (false, Status::Expired) => PaymentAnswer::Expired,
            (false, Status::Released) => PaymentAnswer::Released,
        };
        self.payments.insert(
            pid.to_string(),
            MPay {
                order: oid.to_string(),
                succeeded,
                answer,
                at: now,
            },
        );
        Res::Ok(answer.as_str().into())
    }

    /// Reserve the expired order's lines again and commit at once, or a refund.
    fn late_payment(&mut self, oid: &str) -> PaymentAnswer {
        let order = self.orders[oid].clone();
        let fits = order.lines.iter().all(|(s, w, q)| {
            let (on_hand, reserved) = self.level(&(s.clone(), w.clone()));
            on_hand - reserved >= *q
        });
        if !fits {
            return PaymentAnswer::RefundRequired;
        }
        for (s, w, q) in &order.lines {
            if let Some(c) = self.cells.get_mut(&(s.clone(), w.clone())) {
                c.0 -= q;
            }
        }
        let ttl = order.expires_at - order.created_at;
        let now = self.now;
        let o = self.orders.get_mut(oid).expect("model order");
        o.status = Status::Paid;
        o.created_at = now;
        o.expires_at = now + ttl;
        o.finished_at = now;
        PaymentAnswer::Paid
    }
}

/// The model's operations on a ledger, the answers reduced as the model's are.
pub mod real {
    use super::{err, Res};
    use stockledger::{Ledger, Line, Payment, Source, StockLevel};

    fn level(r: stockledger::Result<StockLevel>) -> Res {
        match r {
            Ok(l) => Res::Ok(format!("{} {}", l.on_hand, l.reserved)),
            Err(e) => err(e),
        }
    }

    pub fn set(l: &Ledger, s: &str, w: &str, n: u64) -> Res {
        level(l.set_stock(s, w, n, Source::Warehouse))
    }

    pub fn adjust(l: &Ledger, s: &str, w: &str, d: i64, key: &str, reason: Option<&str>) -> Res {
        level(l.adjust_stock(s, w, d, key, reason, Source::Warehouse))
    }

    pub fn reserve(l: &Ledger, id: &str, lines: &[(String, String, u64)], ttl: u64) -> Res {
        let lines: Vec<Line> = lines
            .iter()
            .map(|(s, w, q)| Line::new(s.as_str(), w.as_str(), *q))
            .collect();
        match l.reserve(id, &lines, ttl) {
            Ok(r) if r.created => Res::Ok(format!("created {}", r.reservation.status.as_str())),
            Ok(r) => Res::Ok(format!("replay {}", r.reservation.status.as_str())),
            Err(e) => err(e),
        }
    }

    pub fn commit(l: &Ledger, id: &str) -> Res {
        match l.commit(id) {
            Ok(r) => Res::Ok(r.status.as_str().into()),
            Err(e) => err(e),
        }
    }

    pub fn release(l: &Ledger, id: &str) -> Res {
        match l.release(id) {
            Ok(r) => Res::Ok(r.status.as_str().into()),
            Err(e) => err(e),
        }
    }

    pub fn expire_due(l: &Ledger) -> Res {
        match l.expire_due() {
            Ok(mut v) => {
                v.sort();
                Res::Ok(format!("{v:?}"))
            }
            Err(e) => err(e),
        }
    }

    pub fn checkpoint(l: &Ledger) -> Res {
        match l.checkpoint() {
            Ok(_) => Res::Ok(String::new()),
            Err(e) => err(e),
        }
    }

    pub fn pay(l: &Ledger, pid: &str, oid: &str, succeeded: bool, currency_ok: bool) -> Res {
        match l.pay(Payment {
            payment_id: pid,
            order_id: oid,
            succeeded,
            amount_minor: 1999,
            currency: if currency_ok { "EUR" } else { "eur" },
        }) {
            Ok(a) => Res::Ok(a.as_str().into()),
            Err(e) => err(e),
        }
    }
}

/// Differences between the ledger and the model (empty: they agree): every cell the model
/// holds and every cell of `skus` x `whs` (on_hand, reserved, available), every order of
/// `ids` (status, expiry, lines, and when finished, when), `check_invariants`.
/// `pruned_may_return`: an order the model pruned may still be in the ledger, finished and
/// unchanged (after a restart; or, in the simulator, whose clock steps back, at any time),
/// and a finished order past the newest retention cutoff may be gone (see
/// `Model::retention_cutoff`).
pub fn diff(
    ledger: &Ledger,
    model: &Model,
    skus: &[&str],
    whs: &[&str],
    ids: &[String],
    pruned_may_return: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cells: Vec<(String, String)> = model.cells.keys().cloned().collect();
    for s in skus {
        for w in whs {
            cells.push((s.to_string(), w.to_string()));
        }
    }
    for k in cells {
        let (on_hand, reserved) = model.level(&k);
        match ledger.stock(&k.0, &k.1) {
            Ok(got) => {
                if (got.on_hand, got.reserved, got.available)
                    != (on_hand, reserved, on_hand - reserved)
                {
                    out.push(format!(
                        "cell {k:?}: ledger {got:?}, model on_hand {on_hand} reserved {reserved}"
                    ));
                }
            }
            Err(e) => out.push(format!("cell {k:?}: {e}")),
        }
    }
    for id in ids {
        let got = match ledger.reservation(id) {
            Ok(g) => g,
            Err(e) => {
                out.push(format!("order {id}: {e}"));
                continue;
            }
        };
        let same = |r: &stockledger::Reservation, m: &MOrder| {
            let lines: Vec<_> = r
                .lines
                .iter()
                .map(|l| (l.sku.to_string(), l.warehouse.to_string(), l.qty))
                .collect();
            r.status == m.status
                && r.expires_at == m.expires_at
                && sorted(&lines) == sorted(&m.lines)
                && (!m.status.is_finished() || r.finished_at == Some(m.finished_at))
        };
        match (got, model.orders.get(id)) {
            (None, None) => {}
            (Some(r), Some(m)) if same(&r, m) => {}
            (Some(r), None)
                if pruned_may_return
                    && r.status.is_finished()
                    && model.pruned.get(id).is_some_and(|p| same(&r, p)) => {}
            (None, Some(m))
                if pruned_may_return
                    && m.status.is_finished()
                    && m.finished_at < model.retention_cutoff => {}
            (g, m) => out.push(format!("order {id}: ledger {g:?}, model {m:?}")),
        }
    }
    if let Err(e) = ledger.check_invariants() {
        out.push(format!("invariants: {e}"));
    }
    out
}
