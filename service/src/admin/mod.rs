//! `stockledgerd <subcommand>`: the operator's tools on a ledger folder (operations.md).
//!
//! `verify`, `log`, `snapshot` and `stock` only read: they never take the folder's LOCK, so
//! they run beside a service that holds it. Recovery (for `verify` and `stock`) runs on a
//! private copy of the snapshot and segments in a temporary folder, because the core's
//! recovery takes the lock and may write (zero a torn tail, preallocate a segment).
//! `repair` is the one that writes; it takes the lock like a service would.

pub mod scan;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use stockledger::{Durability, Ledger, Options};

use scan::{Frame, Report};

/// The subcommands; anything else as the first argument is left to the flag parser.
pub const SUBCOMMANDS: &[&str] = &["verify", "log", "snapshot", "stock", "repair"];

const USAGE: &str = "\
usage: stockledgerd verify DIR
       stockledgerd log DIR [--after SEQ] [--limit N] [--json] [--records]
       stockledgerd snapshot DIR
       stockledgerd stock DIR SKU [--json]
       stockledgerd repair DIR --truncate-corrupt-tail";

/// How many times a copy for recovery is retried when a checkpoint changes the folder under it.
const COPY_ATTEMPTS: usize = 5;

/// Runs a subcommand if the first argument names one; `None` leaves `args` to the service.
pub fn dispatch(args: &[OsString]) -> Option<ExitCode> {
    let first = args.get(1)?.to_str()?;
    if !SUBCOMMANDS.contains(&first) {
        return None;
    }
    let rest: Vec<String> = match args[2..]
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
    {
        Some(r) => r,
        None => return Some(usage("arguments must be UTF-8")),
    };
    Some(match run(first, &rest) {
        Ok(code) => code,
        Err(Failure::Usage(m)) => usage(&m),
        Err(Failure::Failed(m)) => {
            eprintln!("stockledgerd {first}: {}", m.trim_end());
            ExitCode::from(1)
        }
    })
}

enum Failure {
    /// Bad arguments: exit 2, like invalid configuration.
    Usage(String),
    /// The folder could not be read, or is damaged: exit 1.
    Failed(String),
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("stockledgerd: {msg}\n{USAGE}");
    ExitCode::from(2)
}

/// The arguments after the subcommand: positionals and flags.
struct Args {
    positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(rest: &[String], valued: &[&str], switches: &[&str]) -> Result<Args, Failure> {
        let mut a = Args {
            positional: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = rest.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                if valued.contains(&name) {
                    let v = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .cloned()
                            .ok_or_else(|| Failure::Usage(format!("--{name} needs a value")))?,
                    };
                    a.flags.push((name.to_string(), Some(v)));
                } else if switches.contains(&name) && inline.is_none() {
                    a.flags.push((name.to_string(), None));
                } else {
                    return Err(Failure::Usage(format!("unknown option --{name}")));
                }
            } else {
                a.positional.push(arg.clone());
            }
        }
        Ok(a)
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Failure> {
        match self.flags.iter().rev().find(|(n, _)| n == name) {
            Some((_, Some(v))) => v.parse::<u64>().map(Some).map_err(|_| {
                Failure::Usage(format!("--{name}: {v:?} is not a non-negative integer"))
            }),
            _ => Ok(None),
        }
    }

    fn positionals(&self, names: &[&str]) -> Result<Vec<String>, Failure> {
        if self.positional.len() != names.len() {
            return Err(Failure::Usage(format!(
                "expected {} (got {} arguments)",
                names.join(" "),
                self.positional.len()
            )));
        }
        Ok(self.positional.clone())
    }
}

fn run(cmd: &str, rest: &[String]) -> Result<ExitCode, Failure> {
    match cmd {
        "verify" => {
            let a = Args::parse(rest, &[], &[])?;
            verify(&folder(&a.positionals(&["DIR"])?[0])?)
        }
        "log" => {
            let a = Args::parse(rest, &["after", "limit"], &["json", "records"])?;
            let dir = folder(&a.positionals(&["DIR"])?[0])?;
            let after = a.number("after")?.unwrap_or(0);
            let limit = a.number("limit")?.unwrap_or(u64::MAX);
            if a.has("records") {
                records(&dir, after, limit, a.has("json"))
            } else {
                events(&dir, after, limit, a.has("json"))
            }
        }
        "snapshot" => {
            let a = Args::parse(rest, &[], &[])?;
            snapshots(&folder(&a.positionals(&["DIR"])?[0])?)
        }
        "stock" => {
            let a = Args::parse(rest, &[], &["json"])?;
            let p = a.positionals(&["DIR", "SKU"])?;
            stock(&folder(&p[0])?, &p[1], a.has("json"))
        }
        "repair" => {
            let a = Args::parse(rest, &[], &["truncate-corrupt-tail"])?;
            let dir = folder(&a.positionals(&["DIR"])?[0])?;
            if !a.has("truncate-corrupt-tail") {
                return Err(Failure::Usage(
                    "repair needs --truncate-corrupt-tail (it drops every record after the damage)"
                        .into(),
                ));
            }
            repair(&dir)
        }
        _ => Err(Failure::Usage(format!("unknown subcommand {cmd}"))),
    }
}

/// The folder argument: it must exist and look like a ledger folder (recovery would
/// otherwise create an empty ledger, and a typo would "verify" fine).
fn folder(arg: &str) -> Result<PathBuf, Failure> {
    let dir = PathBuf::from(arg);
    if !dir.is_dir() {
        return Err(Failure::Failed(format!("{arg}: no such folder")));
    }
    let has_ledger_files = std::fs::read_dir(&dir)
        .map_err(|e| Failure::Failed(format!("{arg}: cannot list: {e}")))?
        .filter_map(|e| e.ok())
        .any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n == "LOCK" || n.starts_with("wal-") || n.starts_with("snapshot-")
        });
    if !has_ledger_files {
        return Err(Failure::Failed(format!(
            "{arg}: not a ledger folder (no LOCK, wal-*.log or snapshot-*.rkyv)"
        )));
    }
    Ok(dir)
}

/// Whether another process holds the folder's LOCK. Read from /proc/locks so that asking
/// never takes the lock (even a shared flock would make a starting service fail).
/// Elsewhere than Linux the answer is "maybe", treated as held.
pub fn locked(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(dir.join("LOCK")) else {
            return false;
        };
        let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
            return true;
        };
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": match the inode (device numbers
        // print differently on overlay file systems; a false match only makes us lenient).
        let ino = meta.ino().to_string();
        locks.lines().any(|l| {
            l.split_whitespace()
                .find(|f| f.matches(':').count() == 2)
                .and_then(|f| f.rsplit(':').next())
                .is_some_and(|i| i == ino)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        true
    }
}

fn scan_only(dir: &Path, live: bool) -> Result<Report, Failure> {
    scan::scan(dir, live, |_, _, _| true).map_err(Failure::Failed)
}

fn print_problems(report: &Report) {
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    for p in &report.problems {
        eprintln!("error: {p}");
    }
}

fn verify(dir: &Path) -> Result<ExitCode, Failure> {
    let live = locked(dir);
    let report = scan_only(dir, live)?;
    print_problems(&report);
    if !report.problems.is_empty() {
        return Err(Failure::Failed(format!(
            "{}: {} problem(s) found; the service would refuse to open it (see operations.md, repair)",
            dir.display(),
            report.problems.len()
        )));
    }
    let (ledger, _tmp) = recover(dir, live)?;
    let invariants = ledger.check_invariants();
    let stats = ledger.stats();
    let last_seq = ledger.last_seq();
    let _ = ledger.close();
    if let Err(e) = invariants {
        return Err(Failure::Failed(format!(
            "{}: recovered state breaks an invariant: {e}",
            dir.display()
        )));
    }
    println!(
        "ok: {}{}: {} segment(s), {} frame(s), last lsn {}, last seq {}, {} snapshot(s){}; \
         recovered {} cell(s), {} sku(s), {} reservation(s); checksums and invariants 1-3 hold",
        dir.display(),
        if live {
            " (held by a running service)"
        } else {
            ""
        },
        report.segments.len(),
        report.segments.iter().map(|s| s.frames).sum::<u64>(),
        report.last_lsn(),
        last_seq,
        report.snapshots.len(),
        report
            .newest_valid_snapshot()
            .map(|s| format!(" (newest at lsn {})", s.lsn))
            .unwrap_or_default(),
        stats.cells,
        stats.skus,
        stats.reservations,
    );
    Ok(ExitCode::SUCCESS)
}

/// Recovers the folder's state in memory without touching it: copies its snapshots and
/// segments into a temporary folder and opens the ledger there. Beside a live writer the copy
/// of the last segment is cut after its last complete frame (a write in progress would read
/// as a hole followed by data).
fn recover(dir: &Path, live: bool) -> Result<(Ledger, tempfile::TempDir), Failure> {
    let failed = |m: String| Failure::Failed(m);
    let mut last_err = String::new();
    for _ in 0..COPY_ATTEMPTS {
        let tmp = tempfile::Builder::new()
            .prefix("stockledgerd-recover-")
            .tempdir()
            .map_err(|e| failed(format!("cannot create a temporary folder: {e}")))?;
        match copy_ledger(dir, tmp.path(), live) {
            Ok(true) => {}
            Ok(false) => {
                last_err = "the folder kept changing under the copy (checkpoints)".into();
                continue;
            }
            Err(e) => return Err(failed(e)),
        }
        let options = Options {
            durability: Durability::Async,
            checkpoint_every_bytes: 0,
            ..Options::default()
        };
        return match Ledger::open(tmp.path(), options) {
            Ok(l) => Ok((l, tmp)),
            Err(e) => Err(failed(format!("{}: recovery fails: {e}", dir.display()))),
        };
    }
    Err(failed(format!("{}: {last_err}", dir.display())))
}

/// Copies snapshots and segments; false when a checkpoint removed or replaced a file meanwhile.
fn copy_ledger(from: &Path, to: &Path, live: bool) -> Result<bool, String> {
    let io = |what: &Path, e: std::io::Error| format!("cannot copy {}: {e}", what.display());
    let before = scan::list_snapshots(from).map_err(|e| io(from, e))?;
    for (_, path) in &before {
        if let Some(name) = path.file_name() {
            match std::fs::copy(path, to.join(name)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io(path, e)),
            }
        }
    }
    let segments = scan::list_segments(from).map_err(|e| io(from, e))?;
    let mut last = None;
    for (_, path) in &segments {
        if let Some(name) = path.file_name() {
            let target = to.join(name);
            match std::fs::copy(path, &target) {
                Ok(_) => last = Some(target),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io(path, e)),
            }
        }
    }
    let after = scan::list_snapshots(from).map_err(|e| io(from, e))?;
    if after.last().map(|s| s.0) != before.last().map(|s| s.0) {
        return Ok(false);
    }
    if let (true, Some(last)) = (live, last) {
        cut_after_last_frame(&last)?;
    }
    Ok(true)
}

/// Zeroes a copied segment from its first byte that is not a complete frame.
fn cut_after_last_frame(path: &Path) -> Result<(), String> {
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if scan::decode_header(&bytes).is_err() {
        return Ok(());
    }
    let mut at = scan::SEGMENT_HEADER;
    while let scan::Slot::Frame(f) = scan::read_frame(&bytes, at) {
        at += f.size();
    }
    if bytes[at..].iter().any(|b| *b != 0) {
        bytes[at..].fill(0);
        std::fs::write(path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes a line to stdout; false once stdout is closed (`| head`).
fn out(stdout: &mut impl Write, line: std::fmt::Arguments<'_>) -> bool {
    stdout
        .write_fmt(line)
        .and_then(|_| stdout.write_all(b"\n"))
        .is_ok()
}

fn events(dir: &Path, after: u64, limit: u64, json: bool) -> Result<ExitCode, Failure> {
    let reader = stockledger::read_events(dir, after)
        .map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
    let stdout = std::io::stdout();
    let mut stdout = std::io::BufWriter::new(stdout.lock());
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    for ev in reader.take(limit) {
        let ev = ev.map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
        let ok = if json {
            out(&mut stdout, format_args!("{}", ev.to_json()))
        } else {
            out(
                &mut stdout,
                format_args!(
                    "{:>10}  {}  {:<24} {}",
                    ev.seq,
                    stockledger::format_rfc3339(ev.at()),
                    ev.kind(),
                    ev.key()
                ),
            )
        };
        if !ok {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = stdout.flush();
    Ok(ExitCode::SUCCESS)
}

fn records(dir: &Path, after: u64, limit: u64, json: bool) -> Result<ExitCode, Failure> {
    let stdout = std::io::stdout();
    let mut stdout = std::io::BufWriter::new(stdout.lock());
    let mut n = 0u64;
    let live = locked(dir);
    let print = |path: &Path, f: &Frame, payload: &[u8]| -> bool {
        // Frames whose events are all at or before `after` (a frame without events: its
        // first seq is the next seq to be given).
        if f.first_seq + u64::from(f.events.max(1)) <= after.saturating_add(1) {
            return true;
        }
        if n >= limit {
            return false;
        }
        n += 1;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if json {
            let v = serde_json::json!({
                "file": file, "offset": f.offset, "lsn": f.lsn, "first_seq": f.first_seq,
                "events": f.events, "entries": f.entries, "len": f.len,
                "crc": format!("{:08x}", f.crc), "payload": hex::encode(payload),
            });
            out(&mut stdout, format_args!("{v}"))
        } else {
            out(
                &mut stdout,
                format_args!(
                    "{file} @{:<9} lsn {:<8} seq {:<8} events {:<3} entries {:<3} len {:<6} crc {:08x}  {}",
                    f.offset,
                    f.lsn,
                    f.first_seq,
                    f.events,
                    f.entries,
                    f.len,
                    f.crc,
                    hex::encode(payload)
                ),
            )
        }
    };
    let report = scan::scan(dir, live, print).map_err(Failure::Failed)?;
    let _ = stdout.flush();
    print_problems(&report);
    if report.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::Failed(format!(
            "{}: the log is damaged; records after the damage are not shown",
            dir.display()
        )))
    }
}

fn snapshots(dir: &Path) -> Result<ExitCode, Failure> {
    let report = scan_only(dir, locked(dir))?;
    let newest = report.newest_valid_snapshot().map(|s| s.path.clone());
    if report.snapshots.is_empty() {
        println!("no snapshot: recovery replays the log from lsn 1");
    }
    for s in &report.snapshots {
        let name = s
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let status = match &s.damage {
            Some(d) => format!("DAMAGED ({d}); recovery skips it"),
            None if Some(&s.path) == newest.as_ref() => "ok, used by recovery".to_string(),
            None => "ok".to_string(),
        };
        let seq = s
            .seq
            .map(|q| format!(", events up to seq {q}"))
            .unwrap_or_default();
        println!(
            "{name}: {} bytes, covers lsn 1..={}{seq}: {status}",
            s.bytes, s.lsn
        );
    }
    let base = report.newest_valid_snapshot().map(|s| s.lsn).unwrap_or(0);
    for seg in &report.segments {
        let name = seg
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let role = if seg.next_lsn <= base + 1 {
            "covered by the snapshot, kept for the events feed/outbox"
        } else {
            "replayed by recovery"
        };
        println!(
            "{name}: epoch {}, lsn {}..{}, seq {}..{}, {} frame(s): {role}",
            seg.epoch,
            seg.first_lsn,
            seg.next_lsn.saturating_sub(1),
            seg.first_seq,
            seg.next_seq.saturating_sub(1),
            seg.frames
        );
    }
    print_problems(&report);
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn valid_sku(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn stock(dir: &Path, sku: &str, json: bool) -> Result<ExitCode, Failure> {
    if !valid_sku(sku) {
        return Err(Failure::Usage(format!(
            "SKU {sku:?}: must be 1..=64 bytes of [A-Za-z0-9._:-]"
        )));
    }
    let (ledger, _tmp) = recover(dir, locked(dir))?;
    let found = ledger.sku_stock(sku);
    let _ = ledger.close();
    let found = found.map_err(|e| Failure::Failed(e.to_string()))?;
    let Some(s) = found else {
        return Err(Failure::Failed(format!(
            "sku {sku}: not found in {}",
            dir.display()
        )));
    };
    if json {
        let level = |l: &stockledger::StockLevel| serde_json::json!({"on_hand": l.on_hand, "reserved": l.reserved, "available": l.available});
        let mut v = level(&s.total);
        v["sku"] = serde_json::json!(s.sku);
        v["warehouses"] = s
            .warehouses
            .iter()
            .map(|(w, l)| {
                let mut e = level(l);
                e["warehouse"] = serde_json::json!(w);
                e
            })
            .collect();
        println!("{v}");
    } else {
        println!(
            "{:<20} {:>14} {:>14} {:>14}",
            "warehouse", "on_hand", "reserved", "available"
        );
        for (w, l) in &s.warehouses {
            println!(
                "{w:<20} {:>14} {:>14} {:>14}",
                l.on_hand, l.reserved, l.available
            );
        }
        let t = &s.total;
        println!(
            "{:<20} {:>14} {:>14} {:>14}",
            "total", t.on_hand, t.reserved, t.available
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn repair(dir: &Path) -> Result<ExitCode, Failure> {
    if locked(dir) {
        return Err(Failure::Failed(format!(
            "ledger folder {} is locked by a running service (lock file {}); stop it first",
            dir.display(),
            dir.join("LOCK").display()
        )));
    }
    let report = scan_only(dir, false)?;
    print_problems(&report);
    // The core says on stderr what it cuts.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let options = Options {
        truncate_corrupt_tail: true,
        ..Options::default()
    };
    // Takes the lock: a service that started since the check above makes this fail, naming it.
    let ledger = Ledger::open(dir, options)
        .map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
    let last = ledger.last_seq();
    ledger
        .close()
        .map_err(|e| Failure::Failed(format!("{}: closing: {e}", dir.display())))?;
    if report.problems.is_empty() {
        println!(
            "nothing to repair: {} opens as it is (last seq {last})",
            dir.display()
        );
    } else {
        println!(
            "repaired {}: the log now ends at seq {last}; records after the damage were dropped",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
