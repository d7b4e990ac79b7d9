//! Markdown table, JSON lines and two SVG charts (drawn here: no plotting dependency, no
//! network).

use std::fmt::Write as _;

use crate::RunResult;

/// "2 cores (nproc), Intel(R) Xeon(R) Processor, Linux 6.1": what the figures ran on.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores (nproc), {model}, Linux {kernel}")
}

fn ms(us: u64) -> String {
    if us == 0 {
        "<1 µs".into()
    } else if us < 1000 {
        format!("{us} µs")
    } else if us >= 100_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn check_cell(r: &RunResult) -> String {
    let sold = match r.hot_sold_out {
        Some(Some(at)) => format!(", sold out at {:.0}% of the run", at * 100.0),
        Some(None) => ", hot sku not sold out".into(),
        None => String::new(),
    };
    match &r.check {
        Ok(()) => format!("ok{sold}"),
        Err(e) => format!("**FAIL**: {e}"),
    }
}

/// One line per run on stderr while the harness goes.
pub fn row(r: &RunResult) -> String {
    format!(
        "{:<22} {:<28} {:>3} clients {:>10} orders/s p50 {} p99 {} p99.9 {} server CPU {:.3} s/1k ({:.2} cores) load {} check {}",
        r.workload,
        r.backend,
        r.clients,
        thousands(r.orders_per_s),
        ms(r.p50_us),
        ms(r.p99_us),
        ms(r.p999_us),
        r.server_cpu_per_1k,
        r.server_cores,
        r.loadavg,
        check_cell(r)
    )
}

pub fn json(r: &RunResult, machine: &str) -> String {
    serde_json::json!({
        "workload": r.workload,
        "backend": r.backend,
        "clients": r.clients,
        "orders": r.orders,
        "orders_per_s": (r.orders_per_s * 10.0).round() / 10.0,
        "p50_us": r.p50_us,
        "p99_us": r.p99_us,
        "p999_us": r.p999_us,
        "server_cpu_s_per_1k_orders": r.server_cpu_per_1k,
        "server_cores": r.server_cores,
        "client_cpu_s_per_1k_orders": r.client_cpu_per_1k,
        "refused": r.refused,
        "hot_sold_out_at": r.hot_sold_out.flatten(),
        "flash_sale": r.hot_sold_out.is_some(),
        "loadavg": r.loadavg,
        "check": match &r.check { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
        "machine": machine,
    })
    .to_string()
}

pub fn markdown(results: &[RunResult], machine: &str, command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {machine}; load average (1, 5, 15 min) at the end: {}. Command: `{command}`.\n",
        crate::proc::loadavg()
    );
    s.push_str(
        "| workload | backend | clients | orders/s | p50 | p99 | p99.9 | server CPU s per 1k orders | server cores | harness CPU s per 1k | refused | check | load avg |\n",
    );
    s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
    for r in results {
        let client = match r.client_cpu_per_1k {
            Some(c) => format!("{c:.3}"),
            None => "(in process)".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.2} | {} | {} | {} | {} |",
            r.workload,
            r.backend,
            r.clients,
            thousands(r.orders_per_s),
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.p999_us),
            r.server_cpu_per_1k,
            r.server_cores,
            client,
            r.refused,
            check_cell(r),
            r.loadavg
        );
    }
    s
}

const COLORS: [&str; 10] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#1f78b4", "#b2182b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Decades covering [lo, hi] for a log axis.
fn decades(lo: f64, hi: f64) -> (i32, i32) {
    let a = lo.max(1e-9).log10().floor() as i32;
    let b = hi.max(1e-9).log10().ceil() as i32;
    (a, b.max(a + 1))
}

fn tick_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// (throughput against clients, uniform workload; CPU per 1,000 orders at `at_clients`).
pub fn charts(results: &[RunResult], at_clients: usize) -> (String, String) {
    // The uniform workload is the one without "flash" in its label and the smallest sku
    // count; it is the first workload label that appears at several client levels.
    let label = results
        .iter()
        .find(|r| !r.workload.starts_with("flash"))
        .map(|r| r.workload.clone())
        .unwrap_or_default();
    let uniform: Vec<&RunResult> = results
        .iter()
        .filter(|r| r.workload == label && r.check.is_ok() && r.orders_per_s > 0.0)
        .collect();
    (
        throughput_chart(&uniform, &label),
        cpu_chart(&uniform, at_clients),
    )
}

fn backends_in_order<'a>(rs: &[&'a RunResult]) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for r in rs {
        if !names.contains(&r.backend.as_str()) {
            names.push(&r.backend);
        }
    }
    names
}

fn throughput_chart(rs: &[&RunResult], label: &str) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 440.0, 70.0, 250.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let mut levels: Vec<usize> = rs.iter().map(|r| r.clients).collect();
    levels.sort_unstable();
    levels.dedup();
    let lo = rs.iter().map(|r| r.orders_per_s).fold(f64::MAX, f64::min);
    let hi = rs.iter().map(|r| r.orders_per_s).fold(0.0, f64::max);
    let (d0, d1) = decades(if rs.is_empty() { 1.0 } else { lo }, hi.max(10.0));
    let y = |v: f64| top + ph - (v.max(1e-9).log10() - d0 as f64) / (d1 - d0) as f64 * ph;
    let x = |c: usize| {
        let i = levels.iter().position(|&l| l == c).unwrap_or(0);
        if levels.len() <= 1 {
            left + pw / 2.0
        } else {
            left + pw * i as f64 / (levels.len() - 1) as f64
        }
    };
    let title = format!("Orders/s against concurrent clients (log scale), {label}");
    let mut s = svg_head(w, h, &title);
    for d in d0..=d1 {
        let v = 10f64.powi(d);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            tick_label(v),
            y = y(v)
        );
    }
    for &c in &levels {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{c}</text>"#,
            x(c),
            top + ph + 18.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">concurrent clients</text>"#,
        left + pw / 2.0,
        h - 10.0
    );
    for (i, name) in backends_in_order(rs).iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts: Vec<(f64, f64)> = rs
            .iter()
            .filter(|r| r.backend == *name)
            .map(|r| (x(r.clients), y(r.orders_per_s)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (a, b) in &pts {
            let _ = write!(
                s,
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#
            );
        }
        let ly = top + 10.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{}" y="{:.1}">{}</text>"#,
            left + pw + 15.0,
            ly - 10.0,
            left + pw + 32.0,
            ly,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn cpu_chart(rs: &[&RunResult], at_clients: usize) -> String {
    let rows: Vec<&&RunResult> = rs.iter().filter(|r| r.clients == at_clients).collect();
    let (w, left, right, top) = (760.0, 230.0, 90.0, 40.0);
    let bar = 22.0;
    let h = top + 40.0 + bar * rows.len() as f64 * 1.3;
    let pw = w - left - right;
    let hi = rows
        .iter()
        .map(|r| r.server_cpu_per_1k)
        .fold(0.0, f64::max)
        .max(1e-6);
    let title = format!(
        "CPU seconds per 1,000 orders at {at_clients} clients (server process; in-process backends: whole harness)"
    );
    let mut s = svg_head(w, h, &title);
    for (i, r) in rows.iter().enumerate() {
        let yy = top + 10.0 + bar * 1.3 * i as f64;
        let len = r.server_cpu_per_1k / hi * pw;
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text><rect x="{left}" y="{yy:.1}" width="{len:.1}" height="{bar}" fill="{color}"/><text x="{:.1}" y="{:.1}">{:.3} s</text>"#,
            left - 8.0,
            yy + bar * 0.7,
            esc(&r.backend),
            left + len + 6.0,
            yy + bar * 0.7,
            r.server_cpu_per_1k
        );
    }
    s.push_str("</svg>\n");
    s
}

fn svg_head(w: f64, h: f64, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="#fff"/><text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"##,
        w / 2.0,
        esc(title)
    )
}
