//! Imports run one way (docs/architecture.md, "Layers"): every module of `src/` may use only
//! modules of lower layers, so the crate has no import cycle. A new module must be placed
//! in `LAYERS` below, which is the map of the crate.

use std::collections::BTreeSet;
use std::path::Path;

/// Lowest first. Modules of one layer may not use each other.
const LAYERS: &[&[&str]] = &[
    &[
        "error", "time", "stats", "inline", "chunked", "cell", "storage", "cache",
    ],
    &["types"],
    &["limits"],
    &["options"],
    &["catalog", "slot_index", "aging"],
    &["order"],
    &["retained"],
    &["orders", "record"],
    &["event", "sequencer"],
    &["state"],
    &["apply"],
    &["wal"],
    &["ledger"],
    &["batch", "payment", "outbox"],
    &["deferred"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The crate modules a source file names (`crate::x`), tests excluded.
fn uses(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let name: String = code[at + 7..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        if module == "lib" {
            continue;
        }
        let files: Vec<_> = if path.is_dir() {
            std::fs::read_dir(&path)
                .expect("dir")
                .map(|e| e.expect("entry").path())
                .collect()
        } else {
            vec![path.clone()]
        };
        let Some(mine) = layer_of(&module) else {
            wrong.push(format!("module `{module}` is in no layer"));
            continue;
        };
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            for used in uses(&text) {
                if used == module {
                    continue;
                }
                match layer_of(&used) {
                    Some(theirs) if theirs < mine => {}
                    _ => wrong.push(format!("{} uses crate::{used}", file.display())),
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} files checked");
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
