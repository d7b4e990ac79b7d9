//! The `http_bodies` fuzz target on stable `cargo test` (`bodies/mod.rs`, shared with
//! `fuzz/fuzz_targets/http_bodies.rs`): known good and bad bodies of every route that reads
//! JSON give the expected answer and name the expected field; every committed input in
//! `fuzz/seeds/http_bodies/` and `fuzz/regressions/http_bodies/` and ~20,000 deterministic
//! damages of the seeds (bit flips, cuts, JSON-significant bytes inserted) never panic, and
//! every 400 names a field of its body. `STOCKLEDGER_WRITE_FUZZ_SEEDS=1` (re)writes the
//! seeds from the table below.

mod bodies;
#[path = "../../core/tests/support/fuzz_files.rs"]
mod fuzz_files;

use fuzz_files::fuzz_dir;

/// (route byte, body, expected status, expected field of a 400)
const CASES: &[(u8, &str, u16, Option<&str>)] = &[
    (
        0,
        r#"{"order_id":"x1","lines":[{"sku":"A","warehouse":"w1","qty":2}],"ttl_seconds":60}"#,
        200,
        None,
    ),
    (
        0,
        r#"{"order_id":"x2","lines":[{"sku":"A","warehouse":"w1","qty":1},{"sku":"B","warehouse":"w2","qty":"2"}]}"#,
        400,
        Some("lines[1].qty"),
    ),
    (0, r#"{"order_id":"x3"}"#, 400, Some("lines")),
    (
        0,
        r#"{"order_id":"x4","lines":[{"sku":"A B","warehouse":"w1","qty":1}]}"#,
        400,
        Some("lines[0].sku"),
    ),
    (
        0,
        r#"{"order_id":"x5","lines":[{"sku":"A","warehouse":"w1","qty":0}]}"#,
        400,
        Some("lines[0].qty"),
    ),
    (
        0,
        r#"{"order_id":"x6","lines":[{"sku":"A","warehouse":"w1","qty":1}],"ttl_seconds":0}"#,
        400,
        Some("ttl_seconds"),
    ),
    (
        0,
        r#"{"order_id":"x7","lines":[{"sku":"A","warehouse":"w1","qty":1},{"sku":"A","warehouse":"w1","qty":2}]}"#,
        400,
        Some("lines[1]"),
    ),
    (
        0,
        r#"{"order_id":"","lines":[{"sku":"A","warehouse":"w1","qty":1}]}"#,
        400,
        Some("order_id"),
    ),
    (0, r#"{"order_id":"x8","lines":[]}"#, 400, Some("lines")),
    // serde's derive took a line from an array; the contract says wrong type (found by fuzzing)
    (
        0,
        r#"{"order_id":"x12","lines":[["A","w1",2]]}"#,
        400,
        Some("lines[0]"),
    ),
    (
        0,
        r#"{"order_id":"x13","lines":[{"sku":"A","warehouse":"w1"}]}"#,
        400,
        Some("lines[0]"),
    ), // "missing field `qty`"
    (
        0,
        r#"{"order_id":"x9","lines":[{"sku":"B","warehouse":"w1","qty":1}]}"#,
        409,
        None,
    ),
    (0, "", 400, Some("body")),
    (0, "[1,2]", 400, Some("body")),
    (0, r#"{"order_id":"x10","lines":[{"sku""#, 400, Some("body")),
    (
        0,
        r#"{"order_id":"x11","lines":[{"sku":"A","warehouse":"w1","qty":1}]} trailing"#,
        400,
        Some("body"),
    ),
    (
        1,
        r#"{"payment_id":"p1","order_id":"o1","status":"succeeded","amount_minor":100,"currency":"EUR"}"#,
        200,
        None,
    ),
    // serde's derive took an enum from a map: {"failed": null} was "failed" (found by fuzzing)
    (
        1,
        r#"{"payment_id":"p7","order_id":"o1","status":{"failed":null},"amount_minor":1,"currency":"EUR"}"#,
        400,
        Some("status"),
    ),
    (
        1,
        r#"{"payment_id":"p2","order_id":"o1","status":"ok","amount_minor":100,"currency":"EUR"}"#,
        400,
        Some("status"),
    ),
    (
        1,
        r#"{"payment_id":"p3","order_id":"o1","status":"failed","amount_minor":100,"currency":"eur"}"#,
        400,
        Some("currency"),
    ),
    (
        1,
        r#"{"payment_id":"p4","order_id":"o1","status":"failed","amount_minor":-1,"currency":"EUR"}"#,
        400,
        Some("amount_minor"),
    ),
    (
        1,
        r#"{"payment_id":"p5","status":"failed","amount_minor":1,"currency":"EUR"}"#,
        400,
        Some("order_id"),
    ),
    (
        1,
        r#"{"payment_id":"p6","order_id":"nope","status":"failed","amount_minor":1,"currency":"EUR"}"#,
        404,
        None,
    ),
    (2, r#"{"on_hand":5}"#, 200, None),
    (2, r#"{"on_hand":-1}"#, 400, Some("on_hand")),
    (2, r#"{"on_hand":9007199254740992}"#, 400, Some("on_hand")),
    (2, r#"{"on_hand":1.5}"#, 400, Some("on_hand")),
    (
        3,
        r#"{"delta":3,"adjustment_id":"a1","reason":"count"}"#,
        200,
        None,
    ),
    (3, r#"{"delta":0,"adjustment_id":"a2"}"#, 400, Some("delta")),
    (
        3,
        r#"{"delta":1,"adjustment_id":""}"#,
        400,
        Some("adjustment_id"),
    ),
    (
        3,
        r#"{"delta":1,"adjustment_id":"a3","reason":7}"#,
        400,
        Some("reason"),
    ),
    (3, r#"{"delta":-100000,"adjustment_id":"a4"}"#, 409, None),
    (4, r#"{"skus":["A","B","A","zzz"]}"#, 200, None),
    (4, r#"{"skus":[]}"#, 400, Some("skus")),
    (4, r#"{"skus":["A","B C"]}"#, 400, Some("skus[1]")),
    (4, r#"{"skus":"A"}"#, 400, Some("skus")),
];

fn input(route: u8, body: &str) -> Vec<u8> {
    let mut v = vec![route];
    v.extend_from_slice(body.as_bytes());
    v
}

#[test]
fn known_bodies_get_the_expected_answer_and_field() {
    let (ledger, _) = bodies::ledger();
    if std::env::var_os("STOCKLEDGER_WRITE_FUZZ_SEEDS").is_some() {
        let dir = fuzz_dir().join("seeds/http_bodies");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (r, body, _, _)) in CASES.iter().enumerate() {
            std::fs::write(dir.join(format!("case-{i:02}")), input(*r, body)).unwrap();
        }
    }
    for (r, body, status, field) in CASES {
        let out = bodies::run(&input(*r, body), &ledger);
        assert_eq!(
            (out.status, out.field.as_deref()),
            (*status, *field),
            "{} {body}: {out:?}",
            out.route
        );
    }
}

/// Deterministic damage: bit flips, cuts, and JSON-significant bytes inserted or
/// overwritten at every position (over a stride for long bodies).
fn damaged(bytes: &[u8]) -> Vec<Vec<u8>> {
    const SPECIAL: &[u8] = b"{}[]\":,\\-0e.9 \x00\xff";
    let mut out = Vec::new();
    let stride = (bytes.len() / 60).max(1);
    for at in (1..bytes.len()).step_by(stride) {
        for bit in [0, 5, 7] {
            let mut b = bytes.to_vec();
            b[at] ^= 1 << bit;
            out.push(b);
        }
        out.push(bytes[..at].to_vec());
        for &s in SPECIAL {
            let mut b = bytes.to_vec();
            b[at] = s;
            out.push(b);
            let mut b = bytes.to_vec();
            b.insert(at, s);
            out.push(b);
        }
    }
    out
}

#[test]
fn committed_inputs_and_their_damage_never_panic_and_name_a_field() {
    let (ledger, clock) = bodies::ledger();
    let mut runs = 0;
    let mut bad_requests = 0;
    let mut parsed = 0;
    let n = fuzz_files::replay("http_bodies", |inp| {
        bodies::run(inp, &ledger);
        for d in damaged(inp) {
            let out = bodies::run(&d, &ledger);
            runs += 1;
            bad_requests += (out.status == 400) as usize;
            parsed += out.parsed as usize;
            if runs % 2000 == 0 {
                // A day passes: orders and keys are pruned, the stock comes back.
                clock.advance(2 * 24 * 3600 * 1000);
                ledger.expire_due().unwrap();
                bodies::reset(&ledger);
            }
        }
    });
    assert!(
        n >= CASES.len(),
        "the committed seeds are missing ({n} files)"
    );
    eprintln!("{runs} damaged bodies: {bad_requests} answered 400, {parsed} parsed");
    assert!(runs > 10_000 && bad_requests > runs / 4 && parsed > runs / 20);
}
