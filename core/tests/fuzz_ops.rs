//! The `ops` fuzz target on stable `cargo test`: operation sequences decoded from bytes run
//! against the ledger and a model (`ops_model/mod.rs`, shared with
//! `fuzz/fuzz_targets/ops.rs`). Replays every committed input in `fuzz/seeds/ops/` and
//! `fuzz/regressions/ops/`, then a few hundred deterministic pseudo-random inputs (half of
//! them on disk, with checkpoints and reopens). `STOCKLEDGER_OPS_INPUTS=<n>` runs more.

#[path = "support/fuzz_files.rs"]
mod fuzz_files;
mod ops_model;

#[test]
fn committed_ops_inputs_agree_with_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let n = fuzz_files::replay("ops", |data| {
        ops_model::run(data, Some(tmp.path()));
    });
    assert!(n >= 4, "the committed ops seeds are missing ({n} files)");
}

/// splitmix64
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn random_ops_inputs_agree_with_the_model() {
    let count: u64 = std::env::var("STOCKLEDGER_OPS_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let tmp = tempfile::tempdir().unwrap();
    let mut total = ops_model::Stats::default();
    for seed in 0..count {
        let mut s = seed;
        let len = 16 + (next(&mut s) % 600) as usize;
        let data: Vec<u8> = (0..len).map(|_| next(&mut s) as u8).collect();
        let r = std::panic::catch_unwind(|| ops_model::run(&data, Some(tmp.path())));
        match r {
            Ok(k) => {
                total.ops += k.ops;
                total.created += k.created;
                total.paid += k.paid;
                total.reopens += k.reopens;
            }
            Err(e) => {
                let path = tmp.path().join(format!("failing-{seed}"));
                std::fs::write(&path, &data).unwrap();
                std::panic::resume_unwind(Box::new(format!(
                    "input {seed} failed (bytes kept at {}; copy it to fuzz/regressions/ops/): {:?}",
                    path.display(),
                    e.downcast_ref::<String>()
                )));
            }
        }
    }
    eprintln!("{count} inputs: {total:?}");
    let n = count as usize;
    assert!(
        total.ops > n * 10 && total.created > n && total.paid > n / 4 && total.reopens > n / 4,
        "the inputs are not vacuous: {total:?}"
    );
}

#[test]
fn one_input_from_env() {
    let Ok(p) = std::env::var("STOCKLEDGER_OPS_INPUT") else {
        return;
    };
    let data = std::fs::read(&p).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let s = ops_model::run(&data, Some(tmp.path()));
    eprintln!("{p}: {s:?} in {:?}", t.elapsed());
}
