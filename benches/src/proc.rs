//! CPU time from /proc: utime + stime of a process and its live descendants (PostgreSQL
//! serves each connection from a child of the postmaster), and the load average.

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};

/// (ppid, utime + stime in ticks) from a /proc/<pid>/stat line. The command name may hold
/// spaces and parentheses, so fields are counted from the last ')'.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub fn parent_pid(pid: u32) -> Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    parse_stat(&stat)
        .map(|(ppid, _)| ppid)
        .ok_or_else(|| anyhow!("unparsable /proc/{pid}/stat"))
}

/// CPU seconds used so far by `pid` and every live descendant.
pub fn tree_cpu_seconds(pid: u32) -> Result<f64> {
    let mut procs: HashMap<u32, (u32, u64)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("read /proc")? {
        let entry = entry?;
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between listing and reading: skip it.
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            if let Some(v) = parse_stat(&stat) {
                procs.insert(p, v);
            }
        }
    }
    let root = procs
        .get(&pid)
        .ok_or_else(|| anyhow!("process {pid} is gone"))?
        .1;
    let mut total = root;
    // Descendants: walk each process's parent chain up to `pid` (trees here are shallow).
    for (&p, &(mut ppid, ticks)) in &procs {
        if p == pid {
            continue;
        }
        for _ in 0..16 {
            if ppid == pid {
                total += ticks;
                break;
            }
            match procs.get(&ppid) {
                Some(&(next, _)) if ppid > 1 => ppid = next,
                _ => break,
            }
        }
    }
    Ok(total as f64 / ticks_per_second())
}

/// CPU seconds of this process (all threads).
pub fn self_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("read /proc/self/stat")?;
    parse_stat(&stat)
        .map(|(_, t)| t as f64 / ticks_per_second())
        .ok_or_else(|| anyhow!("unparsable /proc/self/stat"))
}

/// The first three fields of /proc/loadavg ("1.70 0.62 0.22").
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_name() {
        let s = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(s), Some((7, 175)));
    }
}
