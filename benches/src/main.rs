//! `peers`: one reservation workload against stockledger (embedded and over HTTP), Redis with
//! one Lua script, PostgreSQL and a naive in-process map. Prints a markdown table, writes JSON
//! lines and SVG charts, and checks after every run that nothing was oversold and that each
//! backend's totals equal the units of its successful answers. Exit status 1 if a check
//! failed. `scripts/peers` starts Redis and PostgreSQL and runs this.

mod backends;
mod proc;
mod report;
mod workload;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;

use backends::{Answer, Backend};
use workload::{Catalogue, Follow, Generator};

#[derive(Parser, Debug)]
#[command(about = "Reservation workload against stockledger and its peers")]
struct Args {
    /// Backends, comma-separated (see --help for names); default all of them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "stockledger-embedded-sync,stockledger-embedded-async,stockledger-embedded-none,stockledger-http-sync,redis-lua,redis-lua-aof-always,postgres-sync-on,postgres-sync-off,naive-mutex"
    )]
    backends: Vec<String>,
    /// Workloads: uniform (every client level), flash (flash sale, highest level),
    /// big (--big-skus skus, highest level).
    #[arg(long, value_delimiter = ',', default_value = "uniform,flash,big")]
    workloads: Vec<String>,
    /// Concurrent clients (one connection or thread each).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    #[arg(long, default_value_t = 10_000)]
    skus: usize,
    #[arg(long, default_value_t = 1_000_000)]
    big_skus: usize,
    /// Zipf exponent of the sku choice.
    #[arg(long, default_value_t = 1.01)]
    zipf: f64,
    /// Measured seconds per run (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Share of successful orders committed (paid) afterwards.
    #[arg(long, default_value_t = 0.5)]
    commit_share: f64,
    /// Share of successful orders released afterwards (never for flash-sale orders).
    #[arg(long, default_value_t = 0.25)]
    release_share: f64,
    /// Redis without persistence, e.g. redis://127.0.0.1:6380/
    #[arg(long)]
    redis: Option<String>,
    /// Redis with appendonly yes, appendfsync always.
    #[arg(long)]
    redis_aof: Option<String>,
    /// PostgreSQL connection string, e.g. "host=/tmp/x port=5433 user=postgres".
    #[arg(long)]
    postgres: Option<String>,
    /// stockledgerd binary (default: the workspace's release build).
    #[arg(long)]
    stockledgerd: Option<PathBuf>,
    /// Appends one JSON object per run to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Writes the markdown report here too.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Writes peers-throughput.svg and peers-cpu.svg here.
    #[arg(long)]
    svg_dir: Option<PathBuf>,
    /// The command shown in the report (default: this process's arguments, which name
    /// temporary ports and paths).
    #[arg(long)]
    command_label: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    Uniform,
    Flash,
    Big,
}

impl Workload {
    fn parse(s: &str) -> Result<Workload> {
        match s {
            "uniform" => Ok(Workload::Uniform),
            "flash" => Ok(Workload::Flash),
            "big" => Ok(Workload::Big),
            _ => bail!("unknown workload {s:?} (uniform, flash, big)"),
        }
    }
}

/// One run's figures; the report and the charts are built from these.
pub struct RunResult {
    pub workload: String,
    pub backend: String,
    pub clients: usize,
    pub orders: u64,
    pub orders_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Server CPU seconds per 1,000 orders (in process: the harness's whole CPU).
    pub server_cpu_per_1k: f64,
    pub server_cores: f64,
    /// Harness CPU per 1,000 orders for out-of-process backends.
    pub client_cpu_per_1k: Option<f64>,
    pub refused: u64,
    /// Flash sale only: when the hot sku first refused, as a share of the measured window
    /// (None inside: it never ran out).
    pub hot_sold_out: Option<Option<f64>>,
    pub loadavg: String,
    pub check: std::result::Result<(), String>,
}

#[derive(Default)]
struct Tally {
    reserved: u64,
    refused: u64,
    units_reserved: u64,
    units_released: u64,
    hot_reserved: u64,
    hot_refused: u64,
    /// Refusals of orders that had no short line (everything but the hot sku is ample).
    dishonest: u64,
    measured: u64,
}

struct ThreadOut {
    hist: Histogram<u64>,
    tally: Tally,
    error: Option<String>,
    first_hot_refusal: Option<Instant>,
}

/// Hot stock as a share of the orders the warm-up pace gives in the measured window.
const HOT_SHARE: f64 = 0.15;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

fn make_backend(name: &str, args: &Args, cat: &Catalogue) -> Result<Box<dyn Backend>> {
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| anyhow!("{name} needs {flag} (scripts/peers passes it)"))
    };
    Ok(match name {
        "naive-mutex" => Box::new(backends::naive::Naive::new(cat)),
        "redis-lua" => Box::new(backends::redis_lua::RedisLua::new(
            &need(&args.redis, "--redis")?,
            cat,
        )?),
        "redis-lua-aof-always" => Box::new(backends::redis_lua::RedisLua::new(
            &need(&args.redis_aof, "--redis-aof")?,
            cat,
        )?),
        "postgres-sync-on" | "postgres-sync-off" => Box::new(backends::pg::Postgres::new(
            &need(&args.postgres, "--postgres")?,
            name == "postgres-sync-on",
            cat,
        )?),
        _ => {
            if let Some(d) = name.strip_prefix("stockledger-embedded-") {
                Box::new(backends::ledger::Embedded::new(
                    backends::ledger::parse_durability(d)?,
                    cat,
                )?)
            } else if let Some(d) = name.strip_prefix("stockledger-http-") {
                backends::ledger::parse_durability(d)?;
                let bin = args
                    .stockledgerd
                    .clone()
                    .unwrap_or_else(backends::http::default_binary);
                Box::new(backends::http::Http::start(&bin, d, cat)?)
            } else {
                bail!("unknown backend {name:?}")
            }
        }
    })
}

fn client_loop(
    backend: &dyn Backend,
    gen: &mut Generator<'_>,
    tid: usize,
    flash: bool,
    phase: &AtomicU8,
    done: &AtomicU64,
    barrier: &Barrier,
) -> ThreadOut {
    let mut out = ThreadOut {
        // 1 µs .. 60 s, 3 significant digits.
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
        tally: Tally::default(),
        error: None,
        first_hot_refusal: None,
    };
    let client = backend.connect();
    // Every client waits, connected or not, so the main thread's barrier cannot hang.
    barrier.wait();
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!("connect: {e:#}"));
            return out;
        }
    };
    let mut id = String::with_capacity(32);
    let mut n: u64 = 0;
    loop {
        let ph = phase.load(Ordering::Acquire);
        if ph == STOP {
            break;
        }
        let o = gen.next(flash && ph == MEASURE);
        n += 1;
        id.clear();
        use std::fmt::Write as _;
        let _ = write!(id, "c{tid}-{n}");
        let t0 = Instant::now();
        let answer = client.reserve(&id, &o.skus);
        let lat = t0.elapsed();
        let result = answer.and_then(|a| {
            let t = &mut out.tally;
            match a {
                Answer::Reserved => {
                    t.reserved += 1;
                    t.units_reserved += o.skus.len() as u64;
                    t.hot_reserved += u64::from(o.hot);
                    match o.follow {
                        Follow::Commit => client.commit(&id)?,
                        Follow::Release => {
                            client.release(&id)?;
                            t.units_released += o.skus.len() as u64;
                        }
                        Follow::Keep => {}
                    }
                }
                Answer::Refused => {
                    t.refused += 1;
                    if o.hot {
                        t.hot_refused += 1;
                        out.first_hot_refusal.get_or_insert_with(Instant::now);
                    } else {
                        t.dishonest += 1;
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            out.error = Some(format!("{e:#}"));
            break;
        }
        done.fetch_add(1, Ordering::Relaxed);
        if ph == MEASURE && phase.load(Ordering::Acquire) == MEASURE {
            out.tally.measured += 1;
            out.hist.saturating_record(lat.as_micros() as u64);
        }
    }
    out
}

fn run_one(
    args: &Args,
    workload: Workload,
    backend_name: &str,
    clients: usize,
    cat: &Catalogue,
) -> Result<RunResult> {
    let backend = make_backend(backend_name, args, cat)
        .with_context(|| format!("setting up {backend_name}"))?;
    let flash = workload == Workload::Flash;
    let phase = AtomicU8::new(WARMUP);
    let done = AtomicU64::new(0);
    let barrier = Barrier::new(clients + 1);
    let mut gens = (0..clients)
        .map(|t| {
            Generator::new(
                cat,
                args.zipf,
                0x5eed_0000 + t as u64,
                args.commit_share,
                args.release_share,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let backend_ref: &dyn Backend = backend.as_ref();

    let (outs, t0, window, server_cpu, self_cpu, hot_stock) =
        std::thread::scope(|s| -> Result<_> {
            let handles: Vec<_> = gens
                .iter_mut()
                .enumerate()
                .map(|(t, g)| {
                    let (phase, done, barrier) = (&phase, &done, &barrier);
                    s.spawn(move || client_loop(backend_ref, g, t, flash, phase, done, barrier))
                })
                .collect();
            barrier.wait();
            let measured = (|| -> Result<_> {
                std::thread::sleep(Duration::from_secs_f64(args.warmup));
                // The hot sku sells out about a third into the measured window at the
                // warm-up's pace: half of all orders want one unit of it.
                let mut hot_stock = 0;
                if flash {
                    let rate = done.load(Ordering::Relaxed) as f64 / args.warmup.max(0.001);
                    hot_stock = ((rate * args.duration * HOT_SHARE) as u64).max(10);
                    backend_ref.set_hot(hot_stock)?;
                }
                let cpu = |pid: Option<u32>| match pid {
                    Some(p) => proc::tree_cpu_seconds(p),
                    None => proc::self_cpu_seconds(),
                };
                let pid = backend_ref.server_pid();
                let (srv0, self0) = (cpu(pid)?, proc::self_cpu_seconds()?);
                let t0 = Instant::now();
                phase.store(MEASURE, Ordering::Release);
                std::thread::sleep(Duration::from_secs_f64(args.duration));
                phase.store(STOP, Ordering::Release);
                let window = t0.elapsed().as_secs_f64();
                let (srv1, self1) = (cpu(pid)?, proc::self_cpu_seconds()?);
                Ok((t0, window, srv1 - srv0, self1 - self0, hot_stock))
            })();
            // Stop the clients whatever happened above, then collect them.
            phase.store(STOP, Ordering::Release);
            let outs: Vec<ThreadOut> = handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| ThreadOut {
                        hist: Histogram::new(3).expect("valid histogram"),
                        tally: Tally::default(),
                        error: Some("client thread panicked".into()),
                        first_hot_refusal: None,
                    })
                })
                .collect();
            let (t0, window, srv, me, hot) = measured?;
            Ok((outs, t0, window, srv, me, hot))
        })?;
    let loadavg = proc::loadavg();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut t = Tally::default();
    let mut errors = Vec::new();
    for o in &outs {
        hist.add(&o.hist)?;
        t.reserved += o.tally.reserved;
        t.refused += o.tally.refused;
        t.units_reserved += o.tally.units_reserved;
        t.units_released += o.tally.units_released;
        t.hot_reserved += o.tally.hot_reserved;
        t.hot_refused += o.tally.hot_refused;
        t.dishonest += o.tally.dishonest;
        t.measured += o.tally.measured;
        if let Some(e) = &o.error {
            errors.push(e.clone());
        }
    }

    let totals = backend.totals(cat, hot_stock)?;
    let check = check(&t, &totals, hot_stock, &errors);
    let orders = t.measured.max(1);
    let in_process = backend.server_pid().is_none();
    Ok(RunResult {
        workload: workload_label(workload, cat.names.len()),
        backend: backend_name.to_owned(),
        clients,
        orders: t.measured,
        orders_per_s: t.measured as f64 / window,
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        server_cpu_per_1k: server_cpu / orders as f64 * 1000.0,
        server_cores: server_cpu / window,
        client_cpu_per_1k: (!in_process).then(|| self_cpu / orders as f64 * 1000.0),
        refused: t.refused,
        hot_sold_out: flash.then(|| {
            outs.iter()
                .filter_map(|o| o.first_hot_refusal)
                .min()
                .map(|at| at.saturating_duration_since(t0).as_secs_f64() / window)
        }),
        loadavg,
        check,
    })
}

/// No oversell; conservation (what the backend says is held or sold equals the units of
/// the answers it gave); honest refusals; no errors.
fn check(
    t: &Tally,
    totals: &backends::Totals,
    hot_stock: u64,
    errors: &[String],
) -> std::result::Result<(), String> {
    let mut bad = Vec::new();
    if let Some(e) = errors.first() {
        bad.push(format!("{} client error(s), first: {e}", errors.len()));
    }
    if totals.oversold > 0 {
        bad.push(format!("{} oversold cell(s)", totals.oversold));
    }
    let answered = t.units_reserved - t.units_released;
    if totals.consumed != answered {
        bad.push(format!(
            "backend holds/sold {} units, answers say {answered}",
            totals.consumed
        ));
    }
    if t.dishonest > 0 {
        bad.push(format!(
            "{} refusal(s) of orders whose skus all had ample stock",
            t.dishonest
        ));
    }
    // Hot orders are never released, so the hot sku's availability only falls: a refusal
    // is honest exactly when it ends at 0 with every unit sold to a successful answer.
    if t.hot_refused > 0 {
        if totals.hot_available != Some(0) {
            bad.push(format!(
                "hot sku refused {} orders but ends with {:?} available",
                t.hot_refused, totals.hot_available
            ));
        }
        if t.hot_reserved != hot_stock {
            bad.push(format!(
                "hot sku: {} units answered as reserved, stock was {hot_stock}",
                t.hot_reserved
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn workload_label(w: Workload, skus: usize) -> String {
    let k = if skus >= 1_000_000 && skus.is_multiple_of(1_000_000) {
        format!("{}M", skus / 1_000_000)
    } else if skus >= 1000 && skus.is_multiple_of(1000) {
        format!("{}k", skus / 1000)
    } else {
        skus.to_string()
    };
    match w {
        Workload::Flash => format!("flash sale, {k} skus"),
        _ => format!("{k} skus"),
    }
}

fn main() {
    match real_main() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("peers: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Ok(false): every run finished but some check failed.
fn real_main() -> Result<bool> {
    let args = Args::parse();
    let workloads = args
        .workloads
        .iter()
        .map(|w| Workload::parse(w))
        .collect::<Result<Vec<_>>>()?;
    let max_clients = *args
        .clients
        .iter()
        .max()
        .ok_or_else(|| anyhow!("--clients is empty"))?;
    if args.clients.contains(&0) || max_clients > 4096 {
        bail!("--clients must be 1..=4096");
    }
    let mut json = match &args.json {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open {}", p.display()))?,
        ),
        None => None,
    };
    let machine = report::machine();
    let command = args
        .command_label
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    eprintln!("{machine}");

    let small = Catalogue::new(args.skus);
    let big = workloads
        .contains(&Workload::Big)
        .then(|| Catalogue::new(args.big_skus));
    let mut results = Vec::new();
    for &w in &workloads {
        let (cat, levels): (&Catalogue, Vec<usize>) = match w {
            Workload::Uniform => (&small, args.clients.clone()),
            Workload::Flash => (&small, vec![max_clients]),
            Workload::Big => (big.as_ref().unwrap_or(&small), vec![max_clients]),
        };
        // Level-major: runs that the table compares (one level, every backend) follow each
        // other, so the shared machine's load drifts less between them.
        let mut these = Vec::new();
        for &clients in &levels {
            for name in &args.backends {
                let started = Instant::now();
                let r = match run_one(&args, w, name, clients, cat) {
                    Ok(r) => r,
                    Err(e) => RunResult::failed(w, cat.names.len(), name, clients, e),
                };
                // Wall time with set-up, seeding and the check: where a slow smoke run goes.
                eprintln!(
                    "{} [{:.1} s]",
                    report::row(&r),
                    started.elapsed().as_secs_f64()
                );
                let line = report::json(&r, &machine);
                println!("{line}");
                if let Some(f) = json.as_mut() {
                    writeln!(f, "{line}")?;
                }
                these.push(r);
            }
        }
        these.sort_by_key(|r| {
            let b = args.backends.iter().position(|n| *n == r.backend);
            (b, r.clients)
        });
        results.extend(these);
    }

    let md = report::markdown(&results, &machine, &command);
    println!("{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md).with_context(|| format!("write {}", p.display()))?;
    }
    if let Some(dir) = &args.svg_dir {
        std::fs::create_dir_all(dir)?;
        let (tp, cpu) = report::charts(&results, max_clients);
        std::fs::write(dir.join("peers-throughput.svg"), tp)?;
        std::fs::write(dir.join("peers-cpu.svg"), cpu)?;
    }
    let failed: Vec<_> = results.iter().filter(|r| r.check.is_err()).collect();
    for r in &failed {
        eprintln!(
            "CHECK FAILED: {} / {} / {} clients: {}",
            r.workload,
            r.backend,
            r.clients,
            r.check.as_ref().err().map(String::as_str).unwrap_or("")
        );
    }
    eprintln!("{} runs, {} checks failed", results.len(), failed.len());
    Ok(failed.is_empty())
}

impl RunResult {
    fn failed(w: Workload, skus: usize, backend: &str, clients: usize, e: anyhow::Error) -> Self {
        RunResult {
            workload: workload_label(w, skus),
            backend: backend.to_owned(),
            clients,
            orders: 0,
            orders_per_s: 0.0,
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
            server_cpu_per_1k: 0.0,
            server_cores: 0.0,
            client_cpu_per_1k: None,
            refused: 0,
            hot_sold_out: None,
            loadavg: proc::loadavg(),
            check: Err(format!("run failed: {e:#}")),
        }
    }
}
