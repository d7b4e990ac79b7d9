//! Starts the real `stockledgerd` on a free port with a temporary data dir and speaks plain
//! HTTP/1.1 to it (a tiny client, so tests control every byte: bad escapes, huge bodies).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

pub const SECRET: &str = "test-payment-secret";
pub const ADMIN: &str = "test-admin-token";
pub const TOK1: &str = "tok-one";
pub const TOK2: &str = "tok-two";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stockledgerd")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The standard credentials of the tests.
pub fn std_args() -> Vec<String> {
    [
        "--payment-secret",
        SECRET,
        "--admin-token",
        ADMIN,
        "--partner-token",
        &format!("s1:{TOK1}"),
        "--partner-token",
        &format!("s2:{TOK2}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stderr: PathBuf,
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Asserts the contract's error shape and code.
    pub fn err(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["error"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }
}

impl Server {
    /// A fresh server with the standard credentials.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut s = Server::start_in(&data, extra);
        s._tmp = Some(tmp);
        s
    }

    /// A fresh server with extra flags and environment variables.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_opts(extra, env, None)
    }

    /// A fresh server whose open-files limit (soft and hard) is `nofile`.
    pub fn start_limited(nofile: u64, extra: &[&str]) -> Server {
        Server::start_opts(extra, &[], Some(nofile))
    }

    fn start_opts(extra: &[&str], env: &[(&str, &str)], nofile: Option<u64>) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut s = Server::spawn(&data, extra, env, nofile);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `data` (kept by the caller), standard credentials plus `extra`.
    pub fn start_in(data: &Path, extra: &[&str]) -> Server {
        Server::spawn(data, extra, &[], None)
    }

    fn spawn(data: &Path, extra: &[&str], env: &[(&str, &str)], nofile: Option<u64>) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let stderr = data.with_extension(format!("stderr-{port}"));
            let mut args = std_args();
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut cmd = Command::new(bin());
            cmd.arg("--data-dir")
                .arg(data)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(&args)
                .env("RUST_LOG", "warn")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap());
            if let Some(n) = nofile {
                use std::os::unix::process::CommandExt;
                // SAFETY: only async-signal-safe setrlimit between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        let lim = libc::rlimit {
                            rlim_cur: n as libc::rlim_t,
                            rlim_max: n as libc::rlim_t,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            let child = cmd.spawn().unwrap();
            let mut s = Server {
                child: Some(child),
                port,
                data: data.to_path_buf(),
                _tmp: None,
                stderr,
            };
            if s.wait_ready(Duration::from_secs(60)) {
                return s;
            }
            let err = s.stderr_text();
            if !err.contains("listen") {
                panic!("stockledgerd did not start: {err}");
            }
            // The port was taken between probing and binding: try another.
        }
        panic!("stockledgerd did not start after 5 ports");
    }

    /// Polls /healthz until it answers or the process exits.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().unwrap().is_some() {
                    return false;
                }
            }
            if let Ok(r) = self.try_req("GET", "/healthz", &[], b"") {
                if r.status == 200 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn base(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn try_req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        raw_request(self.port, method, path, headers, body)
    }

    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.try_req(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.req("POST", path, &[], body.to_string().as_bytes())
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, &[], b"")
    }

    /// PUT a cell as seller `token`.
    pub fn set_stock(&self, token: &str, sku: &str, wh: &str, on_hand: u64) -> Resp {
        let auth = format!("Bearer {token}");
        self.req(
            "PUT",
            &format!("/v1/partner/stock/{sku}/{wh}"),
            &[("authorization", &auth)],
            serde_json::json!({ "on_hand": on_hand })
                .to_string()
                .as_bytes(),
        )
    }

    pub fn reserve(&self, order_id: &str, lines: &[(&str, &str, u64)], ttl: Option<u64>) -> Resp {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(s, w, q)| serde_json::json!({"sku": s, "warehouse": w, "qty": q}))
            .collect();
        let mut body = serde_json::json!({"order_id": order_id, "lines": lines});
        if let Some(t) = ttl {
            body["ttl_seconds"] = t.into();
        }
        self.post("/v1/reservations", &body)
    }

    /// A correctly signed payment callback.
    pub fn pay(&self, payment_id: &str, order_id: &str, status: &str) -> Resp {
        let body = serde_json::json!({"payment_id": payment_id, "order_id": order_id,
            "status": status, "amount_minor": 129900, "currency": "RUB"})
        .to_string();
        self.pay_raw(body.as_bytes(), now_secs(), SECRET)
    }

    pub fn pay_raw(&self, body: &[u8], ts: i64, secret: &str) -> Resp {
        let ts = ts.to_string();
        let sig = sign(secret, &ts, body);
        self.req(
            "POST",
            "/v1/payments/callback",
            &[("x-timestamp", &ts), ("x-signature", &sig)],
            body,
        )
    }

    pub fn events(&self, after: u64) -> Vec<Value> {
        let r = self.get(&format!("/v1/events?after={after}&limit=1000"));
        assert_eq!(r.status, 200);
        r.json()["events"].as_array().unwrap().clone()
    }

    /// Reads the events feed on from `after` to its end, page by page: the seqs must follow
    /// one another (`what` names the check). Returns the last seq read (`after` if none).
    pub fn events_gap_free(&self, mut after: u64, what: &str) -> u64 {
        loop {
            let page = self.events(after);
            if page.is_empty() {
                return after;
            }
            for e in page {
                after += 1;
                assert_eq!(e["seq"], after, "{what}: gap in the events feed");
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit (with a deadline) and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(Instant::now() < deadline, "stockledgerd did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(30));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The log segments of a ledger folder (`wal-<lsn>.log`, not the spare), in lsn order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("wal-") && n.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub fn raw_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_nodelay(true)?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    let mut has_ct = false;
    for (k, v) in headers {
        has_ct |= k.eq_ignore_ascii_case("content-type");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        if !has_ct {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // The server may answer (413) before reading a large body and close: ignore write errors
    // then and read the answer.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if !buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e),
    }
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < nl + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[nl + 2..nl + 2 + size]);
        raw = &raw[(nl + 4 + size).min(raw.len())..];
    }
    out
}
