//! Public value types of the ledger: lines, stock levels, reservations.

use crate::time::Millis;

/// One order line as a caller gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Line {
    pub sku: String,
    pub warehouse: String,
    pub qty: u64,
}

impl Line {
    pub fn new(sku: impl Into<String>, warehouse: impl Into<String>, qty: u64) -> Line {
        Line {
            sku: sku.into(),
            warehouse: warehouse.into(),
            qty,
        }
    }
}

/// One order line borrowing the caller's strings: bindings decode a batch into these
/// without copying a name per line (see [`crate::Ledger::reserve_many`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineRef<'a> {
    pub sku: &'a str,
    pub warehouse: &'a str,
    pub qty: u64,
}

/// What the reservation path reads of a line, owned ([`Line`]) or borrowed ([`LineRef`]).
pub trait OrderLine {
    fn sku(&self) -> &str;
    fn warehouse(&self) -> &str;
    fn qty(&self) -> u64;
}

impl OrderLine for Line {
    fn sku(&self) -> &str {
        &self.sku
    }
    fn warehouse(&self) -> &str {
        &self.warehouse
    }
    fn qty(&self) -> u64 {
        self.qty
    }
}

impl OrderLine for LineRef<'_> {
    fn sku(&self) -> &str {
        self.sku
    }
    fn warehouse(&self) -> &str {
        self.warehouse
    }
    fn qty(&self) -> u64 {
        self.qty
    }
}

/// One order of [`crate::Ledger::reserve_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRef<'a> {
    pub order_id: &'a str,
    pub lines: &'a [LineRef<'a>],
    pub ttl_seconds: u64,
}

/// The state of a reservation (see the state diagram of `domain.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Reserved,
    Paid,
    Released,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "reserved",
            Status::Paid => "paid",
            Status::Released => "released",
            Status::Expired => "expired",
        }
    }

    pub fn is_finished(self) -> bool {
        self != Status::Reserved
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Status::Reserved => 0,
            Status::Paid => 1,
            Status::Released => 2,
            Status::Expired => 3,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Reserved,
            1 => Status::Paid,
            2 => Status::Released,
            3 => Status::Expired,
            _ => return None,
        })
    }
}

/// A cell's figures from one moment: `available = on_hand - reserved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockLevel {
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
}

impl StockLevel {
    pub(crate) fn new(on_hand: u64, reserved: u64) -> StockLevel {
        debug_assert!(reserved <= on_hand);
        StockLevel {
            on_hand,
            reserved,
            available: on_hand - reserved,
        }
    }
}

/// The stock of one sku: its cells sorted by warehouse, and their sums.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SkuStock {
    pub sku: String,
    pub total: StockLevel,
    pub warehouses: Vec<(String, StockLevel)>,
}

/// A reservation as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: String,
    pub status: Status,
    pub lines: Vec<Line>,
    /// Unix milliseconds.
    pub created_at: Millis,
    pub expires_at: Millis,
    /// When it became paid, released or expired.
    pub finished_at: Option<Millis>,
}

/// The answer of `reserve`: the reservation and whether this call created it
/// (false for an idempotent replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub reservation: Reservation,
    pub created: bool,
}

/// Who changes stock: a seller through the partner gateway (claims sku ownership) or the
/// warehouse side (stock feed, bindings), which owns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Warehouse,
    Seller(&'a str),
}

impl Source<'_> {
    pub fn name(&self) -> &str {
        match self {
            Source::Warehouse => "warehouse",
            Source::Seller(s) => s,
        }
    }
}
