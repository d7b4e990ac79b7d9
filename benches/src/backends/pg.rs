//! PostgreSQL, one transaction per order: lock the lines' rows in sku order (so concurrent
//! orders cannot deadlock), one conditional UPDATE over all lines (refused unless every line
//! had stock), and an INSERT of the hold. `synchronous_commit` is set per session.

use anyhow::{anyhow, bail, Context, Result};
use postgres::{Client as PgConn, NoTls, Statement};

use super::{Answer, Backend, Client, Totals};
use crate::workload::{Catalogue, AMPLE_STOCK, HOT_SKU};

pub struct Postgres {
    conninfo: String,
    synchronous_commit: bool,
    postmaster: u32,
}

const SCHEMA: &str = "
DROP TABLE IF EXISTS stock, holds;
CREATE TABLE stock (sku text PRIMARY KEY, available bigint NOT NULL);
CREATE TABLE holds (order_id text PRIMARY KEY, skus text[] NOT NULL, status char(1) NOT NULL);
";

impl Postgres {
    pub fn new(conninfo: &str, synchronous_commit: bool, cat: &Catalogue) -> Result<Postgres> {
        let mut db =
            PgConn::connect(conninfo, NoTls).with_context(|| format!("connect {conninfo}"))?;
        db.batch_execute(SCHEMA).context("schema")?;
        // Seeding in one statement: the catalogue names are S1..Sn.
        db.execute(
            "INSERT INTO stock SELECT 'S' || i, $2 FROM generate_series(1, $1::int) i",
            &[&(cat.names.len() as i32), &(AMPLE_STOCK as i64)],
        )
        .context("seed stock")?;
        db.batch_execute("VACUUM ANALYZE stock").context("vacuum")?;
        // The backend's parent is the postmaster; its whole process tree is the server.
        let backend: i32 = db.query_one("SELECT pg_backend_pid()", &[])?.get(0);
        let postmaster = crate::proc::parent_pid(backend as u32)?;
        Ok(Postgres {
            conninfo: conninfo.to_owned(),
            synchronous_commit,
            postmaster,
        })
    }
}

struct PgClient {
    db: PgConn,
    lock: Statement,
    take: Statement,
    hold: Statement,
    commit: Statement,
    unhold: Statement,
    give: Statement,
}

impl Client for PgClient {
    fn reserve(&mut self, order_id: &str, skus: &[&str]) -> Result<Answer> {
        let mut tx = self.db.transaction()?;
        tx.query(&self.lock, &[&skus])?;
        let n = tx.execute(&self.take, &[&skus])?;
        if n != skus.len() as u64 {
            tx.rollback()?;
            return Ok(Answer::Refused);
        }
        if tx.execute(&self.hold, &[&order_id, &skus])? != 1 {
            bail!("reserve {order_id}: order id already used");
        }
        tx.commit()?;
        Ok(Answer::Reserved)
    }
    fn commit(&mut self, order_id: &str) -> Result<()> {
        match self.db.execute(&self.commit, &[&order_id])? {
            1 => Ok(()),
            _ => bail!("commit {order_id}: no reserved hold"),
        }
    }
    fn release(&mut self, order_id: &str) -> Result<()> {
        let mut tx = self.db.transaction()?;
        let rows = tx.query(&self.unhold, &[&order_id])?;
        let skus: Vec<String> = match rows.first() {
            Some(r) => r.try_get(0)?,
            None => bail!("release {order_id}: no reserved hold"),
        };
        tx.query(&self.lock, &[&skus])?;
        tx.execute(&self.give, &[&skus])?;
        tx.commit()?;
        Ok(())
    }
}

impl Backend for Postgres {
    fn connect(&self) -> Result<Box<dyn Client>> {
        let mut db = PgConn::connect(&self.conninfo, NoTls)
            .with_context(|| format!("connect {}", self.conninfo))?;
        let mode = if self.synchronous_commit { "on" } else { "off" };
        db.batch_execute(&format!("SET synchronous_commit = {mode}"))?;
        Ok(Box::new(PgClient {
            lock: db.prepare(
                "SELECT sku FROM stock WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE",
            )?,
            take: db.prepare(
                "UPDATE stock SET available = available - 1 \
                 WHERE sku = ANY($1::text[]) AND available >= 1",
            )?,
            hold: db
                .prepare("INSERT INTO holds VALUES ($1, $2::text[], 'r') ON CONFLICT DO NOTHING")?,
            commit: db
                .prepare("UPDATE holds SET status = 'p' WHERE order_id = $1 AND status = 'r'")?,
            unhold: db.prepare(
                "UPDATE holds SET status = 'x' WHERE order_id = $1 AND status = 'r' RETURNING skus",
            )?,
            give: db.prepare(
                "UPDATE stock SET available = available + 1 WHERE sku = ANY($1::text[])",
            )?,
            db,
        }))
    }
    fn set_hot(&self, qty: u64) -> Result<()> {
        let mut db = PgConn::connect(&self.conninfo, NoTls)?;
        db.execute(
            "INSERT INTO stock VALUES ($1, $2)",
            &[&HOT_SKU, &(qty as i64)],
        )?;
        Ok(())
    }
    fn totals(&self, _cat: &Catalogue, hot_stock: u64) -> Result<Totals> {
        let mut db = PgConn::connect(&self.conninfo, NoTls)?;
        let row = db.query_one(
            "SELECT count(*) FILTER (WHERE available < 0 OR available > $1),
                    coalesce(sum($1 - available), 0)::bigint
             FROM stock WHERE sku <> $2",
            &[&(AMPLE_STOCK as i64), &HOT_SKU],
        )?;
        let oversold: i64 = row.get(0);
        let consumed: i64 = row.get(1);
        let mut t = Totals {
            consumed: u64::try_from(consumed).map_err(|_| anyhow!("negative consumption"))?,
            oversold: oversold as u64,
            hot_available: None,
        };
        if hot_stock > 0 {
            let rows = db.query("SELECT available FROM stock WHERE sku = $1", &[&HOT_SKU])?;
            let a: i64 = rows
                .first()
                .ok_or_else(|| anyhow!("hot sku missing"))?
                .get(0);
            if a < 0 || a as u64 > hot_stock {
                t.oversold += 1;
            } else {
                t.consumed += hot_stock - a as u64;
                t.hot_available = Some(a as u64);
            }
        }
        Ok(t)
    }
    fn server_pid(&self) -> Option<u32> {
        Some(self.postmaster)
    }
}
