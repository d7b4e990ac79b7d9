//! Payment callbacks (the bank's 3-D Secure answer): commit, release, late payment and
//! refunds, idempotent by payment id. See the payment section of `http-api.md`.

use crate::apply::remember_payment;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::limits;
use crate::orders::OrderShard;
use crate::record::{RefundReason, TAG_PAID, TAG_PAYMENT_FAILED};
use crate::sequencer::Lsn;
use crate::state::State;
use crate::types::Status;

use crate::record::{ANSWER_EXPIRED, ANSWER_PAID, ANSWER_REFUND, ANSWER_RELEASED};

/// A payment callback from the bank.
#[derive(Debug, Clone, Copy)]
pub struct Payment<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub succeeded: bool,
    pub amount_minor: u64,
    pub currency: &'a str,
}

/// What the bank is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentAnswer {
    Paid,
    Released,
    Expired,
    RefundRequired,
}

impl PaymentAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentAnswer::Paid => "paid",
            PaymentAnswer::Released => "released",
            PaymentAnswer::Expired => "expired",
            PaymentAnswer::RefundRequired => "refund_required",
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            PaymentAnswer::Paid => ANSWER_PAID,
            PaymentAnswer::Released => ANSWER_RELEASED,
            PaymentAnswer::Expired => ANSWER_EXPIRED,
            PaymentAnswer::RefundRequired => ANSWER_REFUND,
        }
    }
    fn from_u8(v: u8) -> PaymentAnswer {
        match v {
            ANSWER_PAID => PaymentAnswer::Paid,
            ANSWER_RELEASED => PaymentAnswer::Released,
            ANSWER_EXPIRED => PaymentAnswer::Expired,
            _ => PaymentAnswer::RefundRequired,
        }
    }
    fn of_status(s: Status) -> PaymentAnswer {
        match s {
            Status::Paid => PaymentAnswer::Paid,
            Status::Expired => PaymentAnswer::Expired,
            _ => PaymentAnswer::Released,
        }
    }
}

fn check(p: &Payment<'_>) -> Result<()> {
    limits::check_key("payment_id", p.payment_id)?;
    limits::check_key("order_id", p.order_id)?;
    limits::check_on_hand("amount_minor", p.amount_minor)?;
    if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::invalid(
            "currency",
            "must be three upper-case letters",
        ));
    }
    Ok(())
}

impl Ledger {
    /// Applies a payment callback. Replays of a payment id with the same order and status
    /// get the first answer again and change nothing; with another order or status they
    /// are a `payment_conflict`.
    pub fn pay(&self, p: Payment<'_>) -> Result<PaymentAnswer> {
        let (answer, lsn) = self.pay_nowait(p)?;
        self.ack(lsn)?;
        Ok(answer)
    }

    pub(crate) fn pay_nowait(&self, p: Payment<'_>) -> Result<(PaymentAnswer, Lsn)> {
        check(&p)?;
        self.log.check_writable()?;
        let mut keys = self.state.payments.shard(p.payment_id);
        if let Some(seen) = keys.map.get(p.payment_id) {
            if &*seen.order_id != p.order_id || seen.succeeded != p.succeeded {
                return Err(Error::PaymentConflict {
                    payment_id: p.payment_id.into(),
                });
            }
            return Ok((PaymentAnswer::from_u8(seen.answer), self.seq.next_lsn() - 1));
        }
        let mut shard = self.state.orders.shard(p.order_id);
        let Some(order) = shard.map.get(p.order_id) else {
            return Err(Error::OrderNotFound {
                order_id: p.order_id.into(),
            });
        };
        let now = self.now_ms();
        let status = order.status;
        let due = order.expires_at() <= now;
        let (answer, lsn) = match (p.succeeded, status) {
            (true, Status::Reserved) if !due => {
                match self.commit_locked(&mut shard, p.order_id, Some(p.payment_id)) {
                    Ok(lsn) => (PaymentAnswer::Paid, lsn),
                    // The commit reads the clock again: if it reached `expires_at` since the
                    // check above, this is a late payment, not a 409.
                    Err(Error::OrderNotActive {
                        status: "expired", ..
                    }) => {
                        self.finish_unheld(
                            &mut shard,
                            p.order_id,
                            crate::record::TAG_EXPIRED,
                            None,
                        );
                        self.late_payment(&mut shard, &p)
                    }
                    Err(e) => return Err(e),
                }
            }
            (true, Status::Reserved) => {
                self.finish_unheld(&mut shard, p.order_id, crate::record::TAG_EXPIRED, None);
                self.late_payment(&mut shard, &p)
            }
            (true, Status::Expired) => self.late_payment(&mut shard, &p),
            (true, Status::Released) => self.refund(&p, RefundReason::Cancelled),
            (true, Status::Paid) => self.refund(&p, RefundReason::DoubleCharge),
            (false, Status::Reserved) if due => {
                // Already past its expiry: it is expired (as the expiry pass would have
                // done), and a failed payment for an expired order changes nothing more.
                self.finish_unheld(&mut shard, p.order_id, crate::record::TAG_EXPIRED, None);
                let answer = PaymentAnswer::Expired;
                let (lsn, ()) = self.seq.stage(
                    || (),
                    |enc, _| enc.payment_note(p.payment_id, p.order_id, false, answer.to_u8(), now),
                );
                (answer, lsn)
            }
            (false, Status::Reserved) => {
                let lsn = self.finish_unheld(
                    &mut shard,
                    p.order_id,
                    TAG_PAYMENT_FAILED,
                    Some(p.payment_id),
                );
                (PaymentAnswer::Released, lsn)
            }
            (false, finished) => {
                let answer = PaymentAnswer::of_status(finished);
                let (lsn, ()) = self.seq.stage(
                    || (),
                    |enc, _| enc.payment_note(p.payment_id, p.order_id, false, answer.to_u8(), now),
                );
                (answer, lsn)
            }
        };
        let (order_id, answer_u8) = (p.order_id, answer.to_u8());
        remember_payment(
            &mut keys,
            p.payment_id,
            order_id,
            p.succeeded,
            answer_u8,
            now,
        );
        Ok((answer, lsn))
    }

    fn refund(&self, p: &Payment<'_>, reason: RefundReason) -> (PaymentAnswer, Lsn) {
        let now = self.now_ms();
        let (lsn, ()) = self.seq.stage(
            || (),
            |enc, _| {
                enc.refund_required(
                    p.order_id,
                    now,
                    p.payment_id,
                    p.amount_minor,
                    p.currency,
                    reason,
                )
            },
        );
        (PaymentAnswer::RefundRequired, lsn)
    }

    /// The reservation expired before the money came: reserve its lines again and commit at
    /// once, or tell the bank to refund.
    fn late_payment(&self, shard: &mut OrderShard, p: &Payment<'_>) -> (PaymentAnswer, Lsn) {
        let Some(order) = shard.map.get(p.order_id) else {
            unreachable!("late payment for a missing order");
        };
        let lines = order.lines.clone();
        let ttl = order.expires_at().saturating_sub(order.created_at);
        if self.hold_all(&lines).is_err() {
            return self.refund(p, RefundReason::ExpiredNoStock);
        }
        self.state.end_holds(&lines, Status::Paid);
        let now = self.now_ms();
        // Consumer: the lsn after the cells moved; one record, so both events or neither.
        let (lsn, ()) = self.seq.stage(
            || (),
            |enc, _| {
                enc.created(p.order_id, now, now + ttl, self.line_names(&lines));
                enc.finished(
                    TAG_PAID,
                    p.order_id,
                    now,
                    Some(p.payment_id),
                    self.line_names(&lines),
                );
            },
        );
        // The same effects replay applies for this record: the finished order is replaced
        // by a new reservation, which is paid at once.
        let hash = self.state.orders.hash(p.order_id);
        shard.map.remove(p.order_id);
        let s = State::enter_reserved(shard, hash, p.order_id, lines, now, now + ttl);
        State::enter_finished(shard, s, Status::Paid, now);
        (PaymentAnswer::Paid, lsn)
    }
}
