//! The floor: one `Mutex` around a `HashMap` of cells and a `HashMap` of holds, in process,
//! no log, no expiry, no events. What a hand-written in-memory reservation table costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, Result};

use super::{add_cell, Answer, Backend, Client, Totals};
use crate::workload::{Catalogue, AMPLE_STOCK, HOT_SKU};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Reserved,
    Paid,
    Released,
}

struct Cell {
    on_hand: u64,
    reserved: u64,
}

struct Hold {
    skus: Vec<String>,
    status: Status,
}

#[derive(Default)]
struct State {
    cells: HashMap<String, Cell>,
    holds: HashMap<String, Hold>,
}

pub struct Naive {
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> Result<MutexGuard<'_, State>> {
    m.lock()
        .map_err(|_| anyhow!("naive map: a client panicked holding the lock"))
}

impl Naive {
    pub fn new(cat: &Catalogue) -> Naive {
        let mut st = State::default();
        for sku in &cat.names {
            st.cells.insert(
                sku.clone(),
                Cell {
                    on_hand: AMPLE_STOCK,
                    reserved: 0,
                },
            );
        }
        Naive {
            state: Arc::new(Mutex::new(st)),
        }
    }
}

struct NaiveClient {
    state: Arc<Mutex<State>>,
}

impl Client for NaiveClient {
    fn reserve(&mut self, order_id: &str, skus: &[&str]) -> Result<Answer> {
        let mut st = lock(&self.state)?;
        if st.holds.contains_key(order_id) {
            return Ok(Answer::Reserved);
        }
        let fits = skus.iter().all(|s| {
            st.cells
                .get(*s)
                .is_some_and(|c| c.on_hand - c.reserved >= 1)
        });
        if !fits {
            return Ok(Answer::Refused);
        }
        for s in skus {
            if let Some(c) = st.cells.get_mut(*s) {
                c.reserved += 1;
            }
        }
        st.holds.insert(
            order_id.to_owned(),
            Hold {
                skus: skus.iter().map(|s| (*s).to_owned()).collect(),
                status: Status::Reserved,
            },
        );
        Ok(Answer::Reserved)
    }

    fn commit(&mut self, order_id: &str) -> Result<()> {
        let mut st = lock(&self.state)?;
        let State { cells, holds } = &mut *st;
        let hold = holds
            .get_mut(order_id)
            .ok_or_else(|| anyhow!("commit {order_id}: not found"))?;
        match hold.status {
            Status::Paid => Ok(()),
            Status::Released => Err(anyhow!("commit {order_id}: released")),
            Status::Reserved => {
                for s in &hold.skus {
                    if let Some(c) = cells.get_mut(s) {
                        c.reserved -= 1;
                        c.on_hand -= 1;
                    }
                }
                hold.status = Status::Paid;
                Ok(())
            }
        }
    }

    fn release(&mut self, order_id: &str) -> Result<()> {
        let mut st = lock(&self.state)?;
        let State { cells, holds } = &mut *st;
        let hold = holds
            .get_mut(order_id)
            .ok_or_else(|| anyhow!("release {order_id}: not found"))?;
        match hold.status {
            Status::Released => Ok(()),
            Status::Paid => Err(anyhow!("release {order_id}: paid")),
            Status::Reserved => {
                for s in &hold.skus {
                    if let Some(c) = cells.get_mut(s) {
                        c.reserved -= 1;
                    }
                }
                hold.status = Status::Released;
                Ok(())
            }
        }
    }
}

impl Backend for Naive {
    fn connect(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(NaiveClient {
            state: self.state.clone(),
        }))
    }
    fn set_hot(&self, qty: u64) -> Result<()> {
        lock(&self.state)?.cells.insert(
            HOT_SKU.to_owned(),
            Cell {
                on_hand: qty,
                reserved: 0,
            },
        );
        Ok(())
    }
    fn totals(&self, cat: &Catalogue, hot_stock: u64) -> Result<Totals> {
        let st = lock(&self.state)?;
        let mut t = Totals::default();
        for sku in &cat.names {
            let c = st
                .cells
                .get(sku)
                .ok_or_else(|| anyhow!("naive map lost {sku}"))?;
            add_cell(&mut t, AMPLE_STOCK, c.on_hand, c.reserved);
        }
        if let (true, Some(c)) = (hot_stock > 0, st.cells.get(HOT_SKU)) {
            add_cell(&mut t, hot_stock, c.on_hand, c.reserved);
            t.hot_available = Some(c.on_hand.saturating_sub(c.reserved));
        }
        Ok(t)
    }
    fn server_pid(&self) -> Option<u32> {
        None
    }
}
