//! `shared/contract/rust-api.md`, call by call: the contract's example must compile as written
//! (borrowed `&str` ids and names, `?` on every call) and each call must answer as the
//! contract and `domain.md` say.

use stockledger::{Command, Durability, ErrorCode, Ledger, Line, Options, Source, Status};

fn is_std_error<E: std::error::Error>(_: &E) {}
fn is_send_sync<T: Send + Sync>() {}

#[test]
fn the_contract_example_runs_as_written() -> Result<(), Box<dyn std::error::Error>> {
    is_send_sync::<Ledger>();
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::in_memory(Options::default()); // durability none
    drop(ledger);
    let ledger = Ledger::open(dir.path().join("sync"), Options::default())?; // durability sync
    drop(ledger);
    let ledger = Ledger::open(
        dir.path().join("async"),
        Options {
            durability: Durability::Async,
            ..Options::default()
        },
    )?;

    let set = ledger.set_stock("A1", "kol", 100, Source::Warehouse)?;
    assert_eq!((set.on_hand, set.reserved, set.available), (100, 0, 100));
    let lvl = ledger.stock("A1", "kol")?;
    assert_eq!((lvl.on_hand, lvl.reserved, lvl.available), (100, 0, 100));

    let r = ledger.reserve("o-1", &[Line::new("A1", "kol", 2)], 900)?;
    assert!(r.created);
    assert_eq!(ledger.commit("o-1")?.status, Status::Paid);
    // domain.md: releasing a paid reservation is `order_paid`.
    let e = ledger.release("o-1").unwrap_err();
    assert_eq!(e.code(), ErrorCode::OrderPaid);
    is_std_error(&e);

    let (created, status) = ledger.reserve_ack("o-2", &[Line::new("A1", "kol", 1)], 900)?;
    assert!(created);
    assert_eq!(status, Status::Reserved);
    ledger.commit_ack("o-2")?;
    let e = ledger.release_ack("o-3").unwrap_err();
    assert_eq!(e.code(), ErrorCode::OrderNotFound);

    let results = ledger.execute(&[
        Command::reserve("o-4", &[Line::new("A1", "kol", 1)], 900),
        Command::commit("o-4"),
        Command::release("o-5"),
    ])?;
    assert_eq!(results.len(), 3, "one result per command");
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    let e = results[2].as_ref().unwrap_err();
    assert_eq!(e.code(), ErrorCode::OrderNotFound);

    match ledger.reserve("o-6", &[Line::new("A1", "kol", 10_000)], 900) {
        Err(e) if e.code() == ErrorCode::InsufficientStock => {
            assert!(e.to_string().contains("A1"), "names the short line: {e}");
        }
        other => panic!("expected insufficient_stock, got {other:?}"),
    }
    assert_eq!(ErrorCode::InsufficientStock.as_str(), "insufficient_stock");
    // Lines of owned `String`s too.
    let owned = Line::new(String::from("A1"), String::from("kol"), 1);
    assert!(ledger.reserve("o-7", &[owned], 900)?.created);
    // 100 - 2 (o-1 paid) - 1 (o-2 paid) - 1 (o-4 paid) = 96 on hand; o-7 holds 1.
    let lvl = ledger.stock("A1", "kol")?;
    assert_eq!((lvl.on_hand, lvl.reserved, lvl.available), (96, 1, 95));
    Ok(())
}
