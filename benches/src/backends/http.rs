//! stockledgerd over HTTP: a server this harness starts itself (free loopback port, temp data
//! dir seeded through the library, Kafka off), driven by a minimal HTTP/1.1 keep-alive
//! client: one connection per client thread, one request in flight per connection.
//! Reserve: POST /v1/reservations; commit: the signed payment callback; release: DELETE.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{add_cell, Answer, Backend, Client, Totals};
use crate::workload::{Catalogue, AMPLE_STOCK, HOT_SKU, WAREHOUSE};

const SECRET: &str = "peers-secret";
const TOKEN: &str = "peers-token";
/// Largest response accepted; the benchmark's answers are a few hundred bytes, the stock
/// query's about 100 bytes per sku.
const MAX_RESPONSE: usize = 1 << 20;
/// Skus per POST /v1/stock/query (the API's limit).
const QUERY_CHUNK: usize = 1000;

pub struct Http {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr()?.port())
}

impl Http {
    pub fn start(bin: &Path, durability: &str, cat: &Catalogue) -> Result<Http> {
        let dir = tempfile::Builder::new()
            .prefix("peers-http")
            .tempdir()
            .context("temp dir")?;
        let data = dir.path().join("data");
        // Durability none starts empty whatever the data dir holds: seed it over HTTP below.
        let memory_only = durability == "none";
        if !memory_only {
            super::ledger::seed_dir(&data, cat)?;
        }
        let port = free_port()?;
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let mut cmd = Command::new(bin);
        // If the harness dies without running Drop (SIGKILL), the server goes with it.
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--durability", durability])
            .args(["--payment-secret", SECRET])
            .args(["--partner-token", &format!("peers:{TOKEN}")])
            .env("RUST_LOG", "warn")
            .env_remove("STOCKLEDGER_KAFKA_BROKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut http = Http {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = Conn::open(port) {
                if let Ok((200, _)) = c.request("GET", "/healthz", &[], b"") {
                    break;
                }
            }
            if let Some(status) = http.child.try_wait()? {
                let log =
                    std::fs::read_to_string(http._dir.path().join("stderr")).unwrap_or_default();
                bail!("stockledgerd exited ({status}): {log}");
            }
            if Instant::now() > deadline {
                bail!("stockledgerd did not answer /healthz within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if memory_only {
            http.seed(cat)?;
        }
        Ok(http)
    }

    /// PUT every catalogue sku's stock through the partner API, 8 connections at once.
    fn seed(&self, cat: &Catalogue) -> Result<()> {
        let per = cat.names.len().div_ceil(8).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = cat
                .names
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || -> Result<()> {
                        let mut c = Conn::open(self.port)?;
                        for sku in chunk {
                            self.put_stock(&mut c, sku, AMPLE_STOCK)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().map_err(|_| anyhow!("seeding thread panicked"))?)
        })
    }

    fn put_stock(&self, c: &mut Conn, sku: &str, qty: u64) -> Result<()> {
        let auth = format!("Bearer {TOKEN}");
        let (status, body) = c.request(
            "PUT",
            &format!("/v1/partner/stock/{sku}/{WAREHOUSE}"),
            &[("Authorization", &auth)],
            format!(r#"{{"on_hand":{qty}}}"#).as_bytes(),
        )?;
        if status != 200 {
            bail!("set stock of {sku}: HTTP {status} {}", error_code(body));
        }
        Ok(())
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // SIGTERM: the service flushes and exits; SIGKILL if it has not after 10 s.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection. Responses must carry Content-Length (the service's
/// JSON answers do); anything else is an error rather than a guess.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    req: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(1024),
        })
    }

    /// Sends one request and returns (status, body).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, &[u8])> {
        self.req.clear();
        write!(
            self.req,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        )?;
        if !body.is_empty() {
            self.req
                .extend_from_slice(b"Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            write!(self.req, "{k}: {v}\r\n")?;
        }
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(body);
        self.stream.write_all(&self.req)?;

        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                bail!("response head over 64 KiB");
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("connection closed before the response head");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line"))?;
        let mut len = None;
        for line in head.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = Some(v.trim().parse::<usize>().context("content-length")?);
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not supported by this client");
                }
            }
        }
        let len = len.ok_or_else(|| anyhow!("response without content-length"))?;
        if len > MAX_RESPONSE {
            bail!("response of {len} bytes is over the limit");
        }
        let total = head_end + len;
        while self.buf.len() < total {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("connection closed inside the response body");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        if self.buf.len() > total {
            bail!("unexpected bytes after the response");
        }
        Ok((status, &self.buf[head_end..total]))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct HttpClient {
    conn: Conn,
    body: String,
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

impl Client for HttpClient {
    fn reserve(&mut self, order_id: &str, skus: &[&str]) -> Result<Answer> {
        use std::fmt::Write as _;
        self.body.clear();
        write!(self.body, r#"{{"order_id":"{order_id}","lines":["#)?;
        for (i, s) in skus.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(
                self.body,
                r#"{sep}{{"sku":"{s}","warehouse":"{WAREHOUSE}","qty":1}}"#
            )?;
        }
        self.body.push_str("]}");
        let (status, body) =
            self.conn
                .request("POST", "/v1/reservations", &[], self.body.as_bytes())?;
        match status {
            201 => Ok(Answer::Reserved),
            409 if error_code(body) == "insufficient_stock" => Ok(Answer::Refused),
            _ => bail!("reserve {order_id}: HTTP {status} {}", error_code(body)),
        }
    }

    fn commit(&mut self, order_id: &str) -> Result<()> {
        let body = format!(
            r#"{{"payment_id":"p-{order_id}","order_id":"{order_id}","status":"succeeded","amount_minor":100,"currency":"RUB"}}"#
        );
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs()
            .to_string();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes())
            .map_err(|e| anyhow!("hmac key: {e}"))?;
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let (status, answer) = self.conn.request(
            "POST",
            "/v1/payments/callback",
            &[("X-Timestamp", &ts), ("X-Signature", &sig)],
            body.as_bytes(),
        )?;
        if status != 200 || !answer.windows(6).any(|w| w == b"\"paid\"") {
            bail!(
                "commit {order_id}: HTTP {status} {}",
                String::from_utf8_lossy(answer)
            );
        }
        Ok(())
    }

    fn release(&mut self, order_id: &str) -> Result<()> {
        let path = format!("/v1/reservations/{order_id}");
        let (status, body) = self.conn.request("DELETE", &path, &[], b"")?;
        if status != 200 {
            bail!("release {order_id}: HTTP {status} {}", error_code(body));
        }
        Ok(())
    }
}

impl Backend for Http {
    fn connect(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(HttpClient {
            conn: Conn::open(self.port)?,
            body: String::with_capacity(512),
        }))
    }

    fn set_hot(&self, qty: u64) -> Result<()> {
        self.put_stock(&mut Conn::open(self.port)?, HOT_SKU, qty)
    }

    fn totals(&self, cat: &Catalogue, hot_stock: u64) -> Result<Totals> {
        let mut c = Conn::open(self.port)?;
        let mut t = Totals::default();
        let mut skus: Vec<(&str, u64)> = cat
            .names
            .iter()
            .map(|s| (s.as_str(), AMPLE_STOCK))
            .collect();
        if hot_stock > 0 {
            skus.push((HOT_SKU, hot_stock));
        }
        for chunk in skus.chunks(QUERY_CHUNK) {
            let names: Vec<&str> = chunk.iter().map(|(s, _)| *s).collect();
            let req = serde_json::json!({ "skus": names }).to_string();
            let (status, body) = c.request("POST", "/v1/stock/query", &[], req.as_bytes())?;
            if status != 200 {
                bail!("stock query: HTTP {status} {}", error_code(body));
            }
            let v: serde_json::Value = serde_json::from_slice(body)?;
            let items = v["items"]
                .as_array()
                .ok_or_else(|| anyhow!("stock query: no items"))?;
            if items.len() != chunk.len() {
                bail!(
                    "stock query: {} items for {} skus",
                    items.len(),
                    chunk.len()
                );
            }
            for ((sku, initial), item) in chunk.iter().zip(items) {
                let field = |k: &str| {
                    item[k]
                        .as_u64()
                        .ok_or_else(|| anyhow!("stock query: {sku} has no {k}"))
                };
                let (on_hand, reserved) = (field("on_hand")?, field("reserved")?);
                add_cell(&mut t, *initial, on_hand, reserved);
                if *sku == HOT_SKU {
                    t.hot_available = Some(field("available")?);
                }
            }
        }
        Ok(t)
    }

    fn server_pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
}

/// The stockledgerd binary of this workspace's release build.
pub fn default_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/stockledgerd")
}
