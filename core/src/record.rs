//! The entries a log record carries: the decided effects of one change, each (but notes)
//! also an event of `events.md`. Encoded by hand into reused buffers (no allocation on the
//! hot path). Replay decodes borrowed entries (`EntryRef`, no allocation); event readers
//! make owned `Entry`s from them.
//! The byte layout is documented in `docs/log-format.md`.

use crate::time::Millis;

/// A payment's answer as its idempotency key stores it (and replay restores it).
pub(crate) const ANSWER_PAID: u8 = 1;
pub(crate) const ANSWER_RELEASED: u8 = 2;
pub(crate) const ANSWER_EXPIRED: u8 = 3;
pub(crate) const ANSWER_REFUND: u8 = 4;

pub(crate) const TAG_CREATED: u8 = 1;
pub(crate) const TAG_RELEASED: u8 = 2;
pub(crate) const TAG_EXPIRED: u8 = 3;
pub(crate) const TAG_PAID: u8 = 4;
pub(crate) const TAG_PAYMENT_FAILED: u8 = 5;
pub(crate) const TAG_REFUND_REQUIRED: u8 = 6;
pub(crate) const TAG_STOCK_SET: u8 = 7;
pub(crate) const TAG_STOCK_ADJUSTED: u8 = 8;
/// A stock set carrying an idempotency key (the warehouse feed's event_id).
pub(crate) const TAG_STOCK_SET_KEYED: u8 = 9;
/// Bookkeeping without an event: a remembered payment answer.
pub(crate) const TAG_PAYMENT_NOTE: u8 = 100;
/// A payment note with the time it was taken (tag 100 lacked it, so replay could not tell
/// how old its idempotency key was). Written from now on; 100 is still read.
pub(crate) const TAG_PAYMENT_NOTE_AT: u8 = 101;
/// Bookkeeping without an event: finished reservations and idempotency keys older than
/// `cutoff` were pruned here. Replay prunes at the same point of the log, so a recovered or
/// replicated state (and every snapshot) keeps what the live ledger kept, whatever the clock
/// of the process replaying it says.
pub(crate) const TAG_RETENTION_NOTE: u8 = 102;

/// Why money must go back (`payment.refund_required`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundReason {
    ExpiredNoStock,
    Cancelled,
    DoubleCharge,
}

impl RefundReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::ExpiredNoStock => "expired_no_stock",
            RefundReason::Cancelled => "cancelled",
            RefundReason::DoubleCharge => "double_charge",
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            RefundReason::ExpiredNoStock => 1,
            RefundReason::Cancelled => 2,
            RefundReason::DoubleCharge => 3,
        }
    }
    fn from_u8(v: u8) -> Option<RefundReason> {
        Some(match v {
            1 => RefundReason::ExpiredNoStock,
            2 => RefundReason::Cancelled,
            3 => RefundReason::DoubleCharge,
            _ => return None,
        })
    }
}

/// A decoded line: (sku, warehouse, qty).
pub type EventLine = (String, String, u64);

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Created {
        order_id: String,
        at: Millis,
        expires_at: Millis,
        lines: Vec<EventLine>,
    },
    /// Released (cancel), expired, paid or payment-failed: the reservation's end.
    Finished {
        tag: u8,
        order_id: String,
        at: Millis,
        payment_id: Option<String>,
        lines: Vec<EventLine>,
    },
    RefundRequired {
        order_id: String,
        at: Millis,
        payment_id: String,
        amount_minor: u64,
        currency: String,
        reason: RefundReason,
    },
    Stock {
        tag: u8,
        sku: String,
        warehouse: String,
        at: Millis,
        on_hand: u64,
        delta: i64,
        source: String,
        adjustment_id: Option<String>,
        reason: Option<String>,
    },
    PaymentNote {
        payment_id: String,
        order_id: String,
        succeeded: bool,
        answer: u8,
        /// When the callback was answered; `None` in logs written before tag 101.
        at: Option<Millis>,
    },
    /// Retention pruned what finished, or was keyed, before `cutoff` (no event).
    RetentionNote { cutoff: Millis },
}

impl Entry {
    /// This entry as replay reads it (tests apply entries they build).
    #[cfg(test)]
    pub(crate) fn as_ref(&self) -> EntryRef<'_> {
        match self {
            Entry::Created {
                order_id,
                at,
                expires_at,
                lines,
            } => EntryRef::Created {
                order_id,
                at: *at,
                expires_at: *expires_at,
                lines: LinesRef::Owned(lines),
            },
            Entry::Finished {
                tag,
                order_id,
                at,
                payment_id,
                lines,
            } => EntryRef::Finished {
                tag: *tag,
                order_id,
                at: *at,
                payment_id: payment_id.as_deref(),
                lines: LinesRef::Owned(lines),
            },
            Entry::RefundRequired {
                order_id,
                at,
                payment_id,
                amount_minor,
                currency,
                reason,
            } => EntryRef::RefundRequired {
                order_id,
                at: *at,
                payment_id,
                amount_minor: *amount_minor,
                currency,
                reason: *reason,
            },
            Entry::Stock {
                tag,
                sku,
                warehouse,
                at,
                on_hand,
                delta,
                source,
                adjustment_id,
                reason,
            } => EntryRef::Stock {
                tag: *tag,
                sku,
                warehouse,
                at: *at,
                on_hand: *on_hand,
                delta: *delta,
                source,
                adjustment_id: adjustment_id.as_deref(),
                reason: reason.as_deref(),
            },
            Entry::PaymentNote {
                payment_id,
                order_id,
                succeeded,
                answer,
                at,
            } => EntryRef::PaymentNote {
                payment_id,
                order_id,
                succeeded: *succeeded,
                answer: *answer,
                at: *at,
            },
            Entry::RetentionNote { cutoff } => EntryRef::RetentionNote { cutoff: *cutoff },
        }
    }

    pub(crate) fn is_event(&self) -> bool {
        !matches!(
            self,
            Entry::PaymentNote { .. } | Entry::RetentionNote { .. }
        )
    }
}

/// What kind of stock write an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StockKind<'a> {
    Set,
    /// A set with an idempotency key.
    SetKeyed(&'a str),
    /// An adjustment: its id and reason.
    Adjusted(&'a str, Option<&'a str>),
}

/// Appends entries to a buffer.
pub(crate) struct Encoder<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) events: u16,
    pub(crate) entries: u16,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Encoder<'a> {
        Encoder {
            buf,
            events: 0,
            entries: 0,
        }
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        // Every string is bounded by the domain limits (at most 256 bytes).
        debug_assert!(s.len() <= u16::MAX as usize);
        self.buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
    fn begin(&mut self, tag: u8) {
        self.u8(tag);
        self.entries += 1;
        if !matches!(
            tag,
            TAG_PAYMENT_NOTE | TAG_PAYMENT_NOTE_AT | TAG_RETENTION_NOTE
        ) {
            self.events += 1;
        }
    }
    /// Each line comes as its cell's names already encoded (`catalog::encode_names`) and a qty.
    fn lines<'l>(&mut self, lines: impl ExactSizeIterator<Item = (&'l [u8], u64)>) {
        self.buf
            .extend_from_slice(&(lines.len() as u16).to_le_bytes());
        for (names, qty) in lines {
            self.buf.extend_from_slice(names);
            self.u64(qty);
        }
    }

    pub(crate) fn created<'l>(
        &mut self,
        order_id: &str,
        at: Millis,
        expires_at: Millis,
        lines: impl ExactSizeIterator<Item = (&'l [u8], u64)>,
    ) {
        self.begin(TAG_CREATED);
        self.str(order_id);
        self.u64(at);
        self.u64(expires_at);
        self.lines(lines);
    }

    pub(crate) fn finished<'l>(
        &mut self,
        tag: u8,
        order_id: &str,
        at: Millis,
        payment_id: Option<&str>,
        lines: impl ExactSizeIterator<Item = (&'l [u8], u64)>,
    ) {
        debug_assert!((TAG_RELEASED..=TAG_PAYMENT_FAILED).contains(&tag));
        self.begin(tag);
        self.str(order_id);
        self.u64(at);
        self.opt_str(payment_id);
        self.lines(lines);
    }

    pub(crate) fn refund_required(
        &mut self,
        order_id: &str,
        at: Millis,
        payment_id: &str,
        amount_minor: u64,
        currency: &str,
        reason: RefundReason,
    ) {
        self.begin(TAG_REFUND_REQUIRED);
        self.str(order_id);
        self.u64(at);
        self.str(payment_id);
        self.u64(amount_minor);
        self.str(currency);
        self.u8(reason.to_u8());
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stock(
        &mut self,
        sku: &str,
        warehouse: &str,
        at: Millis,
        on_hand: u64,
        delta: i64,
        source: &str,
        kind: StockKind<'_>,
    ) {
        self.begin(match kind {
            StockKind::Set => TAG_STOCK_SET,
            StockKind::SetKeyed(_) => TAG_STOCK_SET_KEYED,
            StockKind::Adjusted(..) => TAG_STOCK_ADJUSTED,
        });
        self.str(sku);
        self.str(warehouse);
        self.u64(at);
        self.u64(on_hand);
        self.u64(delta as u64);
        self.str(source);
        match kind {
            StockKind::Set => {}
            StockKind::SetKeyed(id) => self.str(id),
            StockKind::Adjusted(id, reason) => {
                self.str(id);
                self.opt_str(reason);
            }
        }
    }

    pub(crate) fn payment_note(
        &mut self,
        payment_id: &str,
        order_id: &str,
        succeeded: bool,
        answer: u8,
        at: Millis,
    ) {
        self.begin(TAG_PAYMENT_NOTE_AT);
        self.str(payment_id);
        self.str(order_id);
        self.u8(succeeded as u8);
        self.u8(answer);
        self.u64(at);
    }

    pub(crate) fn retention_note(&mut self, cutoff: Millis) {
        self.begin(TAG_RETENTION_NOTE);
        self.u64(cutoff);
    }
}

/// Reads entries back; every read is bounds-checked, so damaged bytes give `None`.
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }
    /// A string's bytes, not checked for UTF-8.
    fn raw(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn lines(&mut self) -> Option<LinesRef<'a>> {
        let count = self.u16()?;
        if count as usize > crate::limits::MAX_LINES {
            return None;
        }
        // Names are not checked for UTF-8 here: replay only finds existing cells by their
        // bytes (a match proves them valid); `EntryRef::into_entry` checks them all.
        let before = self.bytes;
        for _ in 0..count {
            self.raw()?;
            self.raw()?;
            self.u64()?;
        }
        let bytes = &before[..before.len() - self.bytes.len()];
        Some(LinesRef::Encoded { bytes, count })
    }

    /// The next entry, borrowed from the payload (one grammar for both readers: the owned
    /// [`Entry`] is made from this).
    pub(crate) fn entry_ref(&mut self) -> Option<EntryRef<'a>> {
        let tag = self.u8()?;
        Some(match tag {
            TAG_CREATED => EntryRef::Created {
                order_id: self.str()?,
                at: self.u64()?,
                expires_at: self.u64()?,
                lines: self.lines()?,
            },
            TAG_RELEASED | TAG_EXPIRED | TAG_PAID | TAG_PAYMENT_FAILED => EntryRef::Finished {
                tag,
                order_id: self.str()?,
                at: self.u64()?,
                payment_id: self.opt_str()?,
                lines: self.lines()?,
            },
            TAG_REFUND_REQUIRED => EntryRef::RefundRequired {
                order_id: self.str()?,
                at: self.u64()?,
                payment_id: self.str()?,
                amount_minor: self.u64()?,
                currency: self.str()?,
                reason: RefundReason::from_u8(self.u8()?)?,
            },
            TAG_STOCK_SET | TAG_STOCK_ADJUSTED | TAG_STOCK_SET_KEYED => {
                let sku = self.str()?;
                let warehouse = self.str()?;
                let at = self.u64()?;
                let on_hand = self.u64()?;
                let delta = self.u64()? as i64;
                let source = self.str()?;
                let (adjustment_id, reason) = match tag {
                    TAG_STOCK_ADJUSTED => (Some(self.str()?), self.opt_str()?),
                    TAG_STOCK_SET_KEYED => (Some(self.str()?), None),
                    _ => (None, None),
                };
                EntryRef::Stock {
                    tag,
                    sku,
                    warehouse,
                    at,
                    on_hand,
                    delta,
                    source,
                    adjustment_id,
                    reason,
                }
            }
            TAG_PAYMENT_NOTE | TAG_PAYMENT_NOTE_AT => EntryRef::PaymentNote {
                payment_id: self.str()?,
                order_id: self.str()?,
                succeeded: self.u8()? != 0,
                answer: self.u8()?,
                at: if tag == TAG_PAYMENT_NOTE_AT {
                    Some(self.u64()?)
                } else {
                    None
                },
            },
            TAG_RETENTION_NOTE => EntryRef::RetentionNote {
                cutoff: self.u64()?,
            },
            _ => return None,
        })
    }

    pub(crate) fn entry(&mut self) -> Option<Entry> {
        self.entry_ref()?.into_entry()
    }
}

/// The lines of a borrowed entry: (sku, warehouse, qty) each, either still encoded (their
/// layout checked when decoded, not their UTF-8) or those of an owned [`Entry`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum LinesRef<'a> {
    Encoded {
        bytes: &'a [u8],
        count: u16,
    },
    #[cfg_attr(not(test), allow(dead_code))]
    Owned(&'a [EventLine]),
}

impl<'a> LinesRef<'a> {
    pub(crate) fn len(&self) -> usize {
        match self {
            LinesRef::Encoded { count, .. } => *count as usize,
            LinesRef::Owned(lines) => lines.len(),
        }
    }

    /// Calls `f` with each line's sku and warehouse bytes (not checked for UTF-8) and qty.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&'a [u8], &'a [u8], u64)) {
        match *self {
            LinesRef::Encoded { bytes, count } => {
                let mut d = Decoder::new(bytes);
                for _ in 0..count {
                    let (Some(sku), Some(warehouse), Some(qty)) = (d.raw(), d.raw(), d.u64())
                    else {
                        unreachable!("encoded lines were checked when decoded");
                    };
                    f(sku, warehouse, qty);
                }
            }
            LinesRef::Owned(lines) => {
                for (s, w, q) in lines {
                    f(s.as_bytes(), w.as_bytes(), *q);
                }
            }
        }
    }

    /// The lines as owned strings; `None` if a name is not UTF-8.
    fn to_owned(self) -> Option<Vec<EventLine>> {
        let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
        let mut out = Vec::with_capacity(self.len());
        let mut valid = true;
        self.for_each(|s, w, q| match (text(s), text(w)) {
            (Some(s), Some(w)) => out.push((s, w, q)),
            _ => valid = false,
        });
        valid.then_some(out)
    }
}

/// One entry borrowed from a record's payload: replay applies it without allocating.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EntryRef<'a> {
    Created {
        order_id: &'a str,
        at: Millis,
        expires_at: Millis,
        lines: LinesRef<'a>,
    },
    Finished {
        tag: u8,
        order_id: &'a str,
        at: Millis,
        payment_id: Option<&'a str>,
        lines: LinesRef<'a>,
    },
    RefundRequired {
        order_id: &'a str,
        at: Millis,
        payment_id: &'a str,
        amount_minor: u64,
        currency: &'a str,
        reason: RefundReason,
    },
    Stock {
        tag: u8,
        sku: &'a str,
        warehouse: &'a str,
        at: Millis,
        on_hand: u64,
        delta: i64,
        source: &'a str,
        adjustment_id: Option<&'a str>,
        reason: Option<&'a str>,
    },
    PaymentNote {
        payment_id: &'a str,
        order_id: &'a str,
        succeeded: bool,
        answer: u8,
        at: Option<Millis>,
    },
    RetentionNote {
        cutoff: Millis,
    },
}

impl EntryRef<'_> {
    /// The owned entry; `None` if a line's name is not UTF-8 (not checked when decoded).
    pub(crate) fn into_entry(self) -> Option<Entry> {
        let own = |s: &str| s.to_owned();
        Some(match self {
            EntryRef::Created {
                order_id,
                at,
                expires_at,
                lines,
            } => Entry::Created {
                order_id: own(order_id),
                at,
                expires_at,
                lines: lines.to_owned()?,
            },
            EntryRef::Finished {
                tag,
                order_id,
                at,
                payment_id,
                lines,
            } => Entry::Finished {
                tag,
                order_id: own(order_id),
                at,
                payment_id: payment_id.map(own),
                lines: lines.to_owned()?,
            },
            EntryRef::RefundRequired {
                order_id,
                at,
                payment_id,
                amount_minor,
                currency,
                reason,
            } => Entry::RefundRequired {
                order_id: own(order_id),
                at,
                payment_id: own(payment_id),
                amount_minor,
                currency: own(currency),
                reason,
            },
            EntryRef::Stock {
                tag,
                sku,
                warehouse,
                at,
                on_hand,
                delta,
                source,
                adjustment_id,
                reason,
            } => Entry::Stock {
                tag,
                sku: own(sku),
                warehouse: own(warehouse),
                at,
                on_hand,
                delta,
                source: own(source),
                adjustment_id: adjustment_id.map(own),
                reason: reason.map(own),
            },
            EntryRef::PaymentNote {
                payment_id,
                order_id,
                succeeded,
                answer,
                at,
            } => Entry::PaymentNote {
                payment_id: own(payment_id),
                order_id: own(order_id),
                succeeded,
                answer,
                at,
            },
            EntryRef::RetentionNote { cutoff } => Entry::RetentionNote { cutoff },
        })
    }
}

/// Decodes a whole record payload into borrowed entries; `None` if any byte is out of place.
pub(crate) fn decode_entry_refs(payload: &[u8], count: u16) -> Option<Vec<EntryRef<'_>>> {
    let mut out = Vec::with_capacity(count as usize);
    decode_entry_refs_into(payload, count, &mut out).then_some(out)
}

/// Decodes a whole record payload into `out` (cleared first, so replay reuses one buffer
/// per frame); false if any byte is out of place.
pub(crate) fn decode_entry_refs_into<'a>(
    payload: &'a [u8],
    count: u16,
    out: &mut Vec<EntryRef<'a>>,
) -> bool {
    out.clear();
    let mut d = Decoder::new(payload);
    for _ in 0..count {
        match d.entry_ref() {
            Some(e) => out.push(e),
            None => return false,
        }
    }
    d.is_empty()
}

/// The order id of a record's first entry when it is a reservation's (created or finished),
/// read without decoding the rest: replay prefetches the next record's index bucket by it.
pub(crate) fn first_order_id(payload: &[u8]) -> Option<&str> {
    let mut d = Decoder::new(payload);
    match d.u8()? {
        TAG_CREATED | TAG_RELEASED | TAG_EXPIRED | TAG_PAID | TAG_PAYMENT_FAILED => d.str(),
        _ => None,
    }
}

/// Decodes a whole record payload; `None` if any byte is out of place.
pub(crate) fn decode_entries(payload: &[u8], count: u16) -> Option<Vec<Entry>> {
    let mut d = Decoder::new(payload);
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        out.push(d.entry()?);
    }
    if !d.is_empty() {
        return None;
    }
    Some(out)
}
