//! Deferred acknowledgement: decide now, answer once the log allows. A caller that serves
//! many requests on few threads (an async service) decides on its own thread and awaits
//! the log without a thread of its own per request; group commit still batches them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::batch::Answered;
use crate::error::Result;
use crate::ledger::Ledger;
use crate::payment::{Payment, PaymentAnswer};
use crate::sequencer::Lsn;
use crate::types::{OrderLine, Reservation, Reserved};

/// A decision that may be acknowledged only once [`Ledger::durable`] resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a decision must not be acknowledged before its ticket is durable"]
pub struct Ticket(Lsn);

impl Ledger {
    /// Decides like [`Ledger::reserve`] (the same checks, idempotent replays and errors) but
    /// does not wait for the log: the reservation as `reserve` would answer it, and the
    /// ticket to await before telling anyone. It never waits for the disk; it may wait
    /// briefly for room in the bounded staging buffer. Lines may be owned ([`crate::Line`]) or
    /// borrow the caller's strings ([`crate::LineRef`]: a service reading a request body
    /// copies no name).
    pub fn reserve_deferred<L: OrderLine>(
        &self,
        order_id: &str,
        lines: &[L],
        ttl_seconds: u64,
    ) -> Result<(Reserved, Ticket)> {
        let (created, _, lsn, reservation) =
            self.reserve_decide(order_id, lines, ttl_seconds, |o| self.view(order_id, o))?;
        Ok((
            Reserved {
                reservation,
                created,
            },
            Ticket(lsn),
        ))
    }

    /// Like [`Ledger::reserve_deferred`], answering with the order as decided ([`Answered`]:
    /// its fields and cell ids, copied under the shard's lock; the names are borrowed from
    /// the ledger when read) instead of a [`Reservation`] that copies the id and every name:
    /// a service writes its answer from it without an allocation or a second lookup.
    /// `created` is always `Some`.
    pub fn reserve_deferred_answered<L: OrderLine>(
        &self,
        order_id: &str,
        lines: &[L],
        ttl_seconds: u64,
    ) -> Result<(Answered<'_>, Ticket)> {
        let (created, _, lsn, mut answered) =
            self.reserve_decide(order_id, lines, ttl_seconds, |o| {
                Answered::of(self, None, o)
            })?;
        answered.created = Some(created);
        Ok((answered, Ticket(lsn)))
    }

    /// Like [`Ledger::release_deferred`], answering with [`Answered`] (`created` is `None`).
    pub fn release_deferred_answered(&self, order_id: &str) -> Result<(Answered<'_>, Ticket)> {
        let lsn = self.release_nowait(order_id)?;
        Ok((self.answered_now(order_id)?, Ticket(lsn)))
    }

    /// Decides like [`Ledger::release`] without waiting for the log.
    pub fn release_deferred(&self, order_id: &str) -> Result<(Reservation, Ticket)> {
        let lsn = self.release_nowait(order_id)?;
        Ok((self.answer(order_id)?, Ticket(lsn)))
    }

    /// Decides like [`Ledger::commit`] without waiting for the log.
    pub fn commit_deferred(&self, order_id: &str) -> Result<(Reservation, Ticket)> {
        let lsn = self.commit_nowait(order_id, None)?;
        Ok((self.answer(order_id)?, Ticket(lsn)))
    }

    /// Decides like [`Ledger::pay`] without waiting for the log.
    pub fn pay_deferred(&self, payment: Payment<'_>) -> Result<(PaymentAnswer, Ticket)> {
        let (answer, lsn) = self.pay_nowait(payment)?;
        Ok((answer, Ticket(lsn)))
    }

    fn answer(&self, order_id: &str) -> Result<Reservation> {
        self.reservation(order_id)?
            .ok_or_else(|| crate::Error::OrderNotFound {
                order_id: order_id.into(),
            })
    }

    /// Resolves once `ticket` may be acknowledged under the durability mode (`sync`: its
    /// record is fsync'd), or to `ledger_unavailable` if the log failed or closed first.
    /// Ready at once in `async` and `none` mode. Runtime-agnostic: it uses the task's waker.
    pub fn durable(&self, ticket: Ticket) -> Durable<'_> {
        Durable {
            ledger: self,
            lsn: ticket.0,
            token: 0,
            done: false,
        }
    }

    /// Blocks until `ticket` may be acknowledged (the blocking form of [`Ledger::durable`]).
    pub fn wait_ticket(&self, ticket: Ticket) -> Result<()> {
        self.ack(ticket.0)
    }
}

/// The future of [`Ledger::durable`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Durable<'a> {
    ledger: &'a Ledger,
    lsn: Lsn,
    /// The waiter registration (0: none).
    token: u64,
    done: bool,
}

impl Future for Durable<'_> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        assert!(!this.done, "Durable polled after it resolved");
        let poll = this.ledger.log.poll_ack(this.lsn, &mut this.token, cx);
        this.done = poll.is_ready();
        poll
    }
}

impl Drop for Durable<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.ledger.log.cancel_ack(self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use crate::wal::{Fault, FaultyStorage};
    use crate::{Durability, ErrorCode, Ledger, Line, Options, Source, Status};

    /// Counts wake-ups and unparks the polling thread.
    struct ThreadWaker(std::thread::Thread, AtomicUsize);

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.unpark();
        }
    }

    /// Polls every future until all are ready (a minimal executor: park between rounds).
    fn join_all<F: Future<Output = crate::Result<()>>>(futures: Vec<F>) -> Vec<crate::Result<()>> {
        let waker = Arc::new(ThreadWaker(std::thread::current(), AtomicUsize::new(0)));
        let w = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&w);
        let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
        let mut out: Vec<Option<crate::Result<()>>> = futures.iter().map(|_| None).collect();
        while out.iter().any(Option::is_none) {
            for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
                if o.is_none() {
                    if let Poll::Ready(r) = f.as_mut().poll(&mut cx) {
                        *o = Some(r);
                    }
                }
            }
            if out.iter().any(Option::is_none) {
                std::thread::park();
            }
        }
        out.into_iter().flatten().collect()
    }

    fn sync_options(storage: Option<FaultyStorage>) -> Options {
        Options {
            durability: Durability::Sync,
            storage: storage.map(|s| Arc::new(s) as Arc<dyn crate::wal::Storage>),
            ..Options::default()
        }
    }

    fn durable_ledger(dir: &std::path::Path) -> Ledger {
        Ledger::open(dir, sync_options(None)).expect("open")
    }

    #[test]
    fn deferred_reservations_share_fsyncs_and_are_durable_when_resolved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = durable_ledger(dir.path());
        ledger
            .set_stock("A", "w", 1_000, Source::Warehouse)
            .expect("stock");
        let lines = [Line::new("A", "w", 2)];
        let (fsyncs_before, _) = ledger.log.counters();
        let mut tickets = Vec::new();
        for i in 0..64 {
            let (r, ticket) = ledger
                .reserve_deferred(&format!("o{i}"), &lines, 900)
                .expect("reserve");
            assert!(r.created);
            assert_eq!(r.reservation.status, Status::Reserved);
            assert_eq!(r.reservation.expires_at, r.reservation.created_at + 900_000);
            tickets.push(ticket);
        }
        let futures = tickets.iter().map(|t| ledger.durable(*t)).collect();
        for r in join_all(futures) {
            r.expect("durable");
        }
        let (fsyncs_after, _) = ledger.log.counters();
        assert!(
            fsyncs_after - fsyncs_before < 64,
            "64 deferred reserves took {} fsyncs",
            fsyncs_after - fsyncs_before
        );
        // Resolved means durable: a reopen after close finds every reservation.
        let last = *tickets.last().expect("tickets");
        assert!(ledger.log.shared.durable_lsn.load(Ordering::SeqCst) >= last.0);
        assert!(ledger.log.waiting() == 0);
        ledger.close().expect("close");
        drop(ledger);
        let reopened = durable_ledger(dir.path());
        assert_eq!(
            reopened.stock("A", "w").expect("stock").available,
            1_000 - 128
        );
    }

    #[test]
    fn a_replay_is_answered_with_the_existing_reservation() {
        let ledger = Ledger::in_memory(Options::default());
        ledger
            .set_stock("A", "w", 10, Source::Warehouse)
            .expect("stock");
        let lines = [Line::new("A", "w", 3)];
        let (first, t1) = ledger.reserve_deferred("o", &lines, 60).expect("first");
        let (again, t2) = ledger.reserve_deferred("o", &lines, 60).expect("again");
        assert!(first.created && !again.created);
        assert_eq!(first.reservation, again.reservation);
        assert!(t2.0 >= t1.0);
        let other = [Line::new("A", "w", 4)];
        let e = ledger.reserve_deferred("o", &other, 60).unwrap_err();
        assert_eq!(e.code(), ErrorCode::OrderConflict);
        assert_eq!(ledger.stock("A", "w").expect("stock").available, 7);
        let (released, t3) = ledger.release_deferred("o").expect("release");
        assert_eq!(released.status, Status::Released);
        assert!(t3.0 > t2.0);
        assert_eq!(ledger.stock("A", "w").expect("stock").available, 10);
        let e = ledger.commit_deferred("o").unwrap_err();
        assert_eq!(e.code(), ErrorCode::OrderNotActive);
    }

    /// The answered forms say what the reservation read back says, with the same errors.
    #[test]
    fn answered_forms_agree_with_the_reservation_read_back() {
        let ledger = Ledger::in_memory(Options::default());
        for (sku, wh) in [("A", "w"), ("B", "w"), ("A", "v")] {
            ledger
                .set_stock(sku, wh, 10, Source::Warehouse)
                .expect("stock");
        }
        let same = |a: &crate::Answered<'_>, order_id: &str| {
            let r = ledger.reservation(order_id).expect("read").expect("known");
            assert_eq!(a.status, r.status);
            assert_eq!((a.created_at, a.expires_at), (r.created_at, r.expires_at));
            assert_eq!(a.finished_at, r.finished_at);
            let lines: Vec<Line> = a
                .lines()
                .map(|l| Line::new(l.sku, l.warehouse, l.qty))
                .collect();
            assert_eq!(lines, r.lines);
        };
        let lines = [
            Line::new("B", "w", 2),
            Line::new("A", "v", 1),
            Line::new("A", "w", 3),
        ];
        let (first, _) = ledger
            .reserve_deferred_answered("o", &lines, 60)
            .expect("first");
        assert_eq!(first.created, Some(true));
        same(&first, "o");
        let reordered = [lines[2].clone(), lines[0].clone(), lines[1].clone()];
        let (again, _) = ledger
            .reserve_deferred_answered("o", &reordered, 60)
            .expect("again");
        assert_eq!(again.created, Some(false));
        same(&again, "o");
        let e = ledger
            .reserve_deferred_answered("o", &lines[..1], 60)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::OrderConflict);
        let e = ledger
            .reserve_deferred_answered("p", &[Line::new("A", "w", 8)], 60)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InsufficientStock);
        let (released, _) = ledger.release_deferred_answered("o").expect("release");
        assert_eq!(
            (released.created, released.status),
            (None, Status::Released)
        );
        same(&released, "o");
        let e = ledger.release_deferred_answered("nobody").unwrap_err();
        assert_eq!(e.code(), ErrorCode::OrderNotFound);
        assert_eq!(ledger.stock("A", "w").expect("stock").available, 10);
    }

    #[test]
    fn a_failed_fsync_resolves_every_waiting_task_to_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Fails the first fsync of records (after the segment is created).
        let storage = FaultyStorage::new(Fault::SyncError, 2);
        let Ok(ledger) = Ledger::open(dir.path(), sync_options(Some(storage))) else {
            return;
        };
        let _ = ledger.set_stock("A", "w", 100, Source::Warehouse);
        let mut tickets = Vec::new();
        for i in 0..8 {
            if let Ok((_, t)) =
                ledger.reserve_deferred(&format!("o{i}"), &[Line::new("A", "w", 1)], 60)
            {
                tickets.push(t);
            }
        }
        let results = join_all(tickets.iter().map(|t| ledger.durable(*t)).collect());
        assert!(
            ledger.unavailable_reason().is_some(),
            "the fault never fired"
        );
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(r.code(), ErrorCode::LedgerUnavailable);
        }
        assert!(ledger.log.waiting() == 0);
    }

    #[test]
    fn a_dropped_wait_leaves_no_registration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = durable_ledger(dir.path());
        ledger
            .set_stock("A", "w", 10, Source::Warehouse)
            .expect("stock");
        let waker = Waker::from(Arc::new(ThreadWaker(
            std::thread::current(),
            AtomicUsize::new(0),
        )));
        let mut cx = Context::from_waker(&waker);
        // A lsn far ahead stays pending: the registration must go with the future.
        {
            let mut f = pin!(ledger.durable(super::Ticket(u64::MAX - 1)));
            assert!(f.as_mut().poll(&mut cx).is_pending());
            assert_eq!(ledger.log.waiting(), 1);
            assert!(f.as_mut().poll(&mut cx).is_pending());
            assert_eq!(ledger.log.waiting(), 1, "re-poll registered twice");
        }
        assert!(ledger.log.waiting() == 0);
    }
}
