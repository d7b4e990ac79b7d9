//! Redis with one Lua script per call (EVALSHA): the way many shops hand-roll reservations.
//! `a:<sku>` holds the available units; `h:<order>` the hold (`_` = status r/p/x, then one
//! field per sku with its qty). Reserve checks every line, decrements every line and stores
//! the hold atomically; release gives the units back; commit only marks the hold paid
//! (available does not change when stock leaves, as in the ledger).

use anyhow::{anyhow, bail, Context, Result};
use redis::Script;

use super::{Answer, Backend, Client, Totals};
use crate::workload::{Catalogue, AMPLE_STOCK, HOT_SKU};

const RESERVE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
for i = 2, #KEYS do
  local a = tonumber(redis.call('GET', KEYS[i]) or '0')
  if a < tonumber(ARGV[1]) then return 0 end
end
local hold = {'_', 'r'}
for i = 2, #KEYS do
  redis.call('DECRBY', KEYS[i], ARGV[1])
  hold[#hold + 1] = KEYS[i]
  hold[#hold + 1] = ARGV[1]
end
redis.call('HSET', KEYS[1], unpack(hold))
return 1
"#;

const COMMIT: &str = r#"
local s = redis.call('HGET', KEYS[1], '_')
if s == 'r' then redis.call('HSET', KEYS[1], '_', 'p') return 1 end
if s == 'p' then return 1 end
return 0
"#;

const RELEASE: &str = r#"
local s = redis.call('HGET', KEYS[1], '_')
if s == 'x' then return 1 end
if s ~= 'r' then return 0 end
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if h[i] ~= '_' then redis.call('INCRBY', h[i], h[i + 1]) end
end
redis.call('HSET', KEYS[1], '_', 'x')
return 1
"#;

/// Keys and values per MSET/MGET round trip while seeding and checking.
const CHUNK: usize = 1000;

pub struct RedisLua {
    client: redis::Client,
    pid: u32,
}

fn avail_key(sku: &str) -> String {
    format!("a:{sku}")
}

impl RedisLua {
    pub fn new(url: &str, cat: &Catalogue) -> Result<RedisLua> {
        let client = redis::Client::open(url).with_context(|| format!("redis url {url}"))?;
        let mut con = client
            .get_connection()
            .with_context(|| format!("connect {url}"))?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| anyhow!("no process_id in INFO server"))?;
        redis::cmd("FLUSHALL").query::<()>(&mut con)?;
        for chunk in cat.names.chunks(CHUNK) {
            let mut cmd = redis::cmd("MSET");
            for sku in chunk {
                cmd.arg(avail_key(sku)).arg(AMPLE_STOCK);
            }
            cmd.query::<()>(&mut con)?;
        }
        Ok(RedisLua { client, pid })
    }
}

struct RedisClient {
    con: redis::Connection,
    reserve: Script,
    commit: Script,
    release: Script,
}

impl Client for RedisClient {
    fn reserve(&mut self, order_id: &str, skus: &[&str]) -> Result<Answer> {
        let mut inv = self.reserve.key(format!("h:{order_id}"));
        for s in skus {
            inv.key(avail_key(s));
        }
        match inv.arg(1).invoke::<i64>(&mut self.con)? {
            1 => Ok(Answer::Reserved),
            0 => Ok(Answer::Refused),
            r => bail!("reserve {order_id}: script answered {r}"),
        }
    }
    fn commit(&mut self, order_id: &str) -> Result<()> {
        match self
            .commit
            .key(format!("h:{order_id}"))
            .invoke::<i64>(&mut self.con)?
        {
            1 => Ok(()),
            r => bail!("commit {order_id}: script answered {r}"),
        }
    }
    fn release(&mut self, order_id: &str) -> Result<()> {
        match self
            .release
            .key(format!("h:{order_id}"))
            .invoke::<i64>(&mut self.con)?
        {
            1 => Ok(()),
            r => bail!("release {order_id}: script answered {r}"),
        }
    }
}

impl Backend for RedisLua {
    fn connect(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(RedisClient {
            con: self.client.get_connection()?,
            reserve: Script::new(RESERVE),
            commit: Script::new(COMMIT),
            release: Script::new(RELEASE),
        }))
    }
    fn set_hot(&self, qty: u64) -> Result<()> {
        let mut con = self.client.get_connection()?;
        redis::cmd("SET")
            .arg(avail_key(HOT_SKU))
            .arg(qty)
            .query::<()>(&mut con)?;
        Ok(())
    }
    fn totals(&self, cat: &Catalogue, hot_stock: u64) -> Result<Totals> {
        let mut con = self.client.get_connection()?;
        let mut t = Totals::default();
        // Availability only: a negative or missing value is an oversell (or a lost key).
        let add = |t: &mut Totals, initial: u64, v: Option<i64>| -> Option<u64> {
            match v {
                Some(a) if a >= 0 && (a as u64) <= initial => {
                    t.consumed += initial - a as u64;
                    Some(a as u64)
                }
                _ => {
                    t.oversold += 1;
                    None
                }
            }
        };
        for chunk in cat.names.chunks(CHUNK) {
            let mut cmd = redis::cmd("MGET");
            for sku in chunk {
                cmd.arg(avail_key(sku));
            }
            let vals: Vec<Option<i64>> = cmd.query(&mut con)?;
            for v in vals {
                add(&mut t, AMPLE_STOCK, v);
            }
        }
        if hot_stock > 0 {
            let v: Option<i64> = redis::cmd("GET").arg(avail_key(HOT_SKU)).query(&mut con)?;
            t.hot_available = add(&mut t, hot_stock, v);
        }
        Ok(t)
    }
    fn server_pid(&self) -> Option<u32> {
        Some(self.pid)
    }
}
