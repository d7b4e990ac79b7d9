//! Defect 10 of the reliability issue: when two sellers race to claim a new sku, the loser's
//! call must leave nothing behind (it used to create a cell before its 403; that cell was in
//! no log record, showed in the sku's stock and vanished after a restart).

use std::sync::{Arc, Barrier};

use stockledger::{ErrorCode, Ledger, Options, Source};

#[test]
fn a_seller_losing_the_race_for_a_new_sku_leaves_no_cell() {
    let ledger = Arc::new(Ledger::in_memory(Options::default()));
    for round in 0..300 {
        let sku = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<_> = ["seller-a", "seller-b"]
            .into_iter()
            .enumerate()
            .map(|(i, seller)| {
                let (ledger, barrier, sku) = (ledger.clone(), barrier.clone(), sku.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let wh = format!("wh-{i}");
                    let r = ledger.set_stock(&sku, &wh, 5, Source::Seller(seller));
                    (wh, r.map_err(|e| e.code()))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("seller thread"))
            .collect();
        let won: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "exactly one seller claims {sku}: {results:?}");
        let lost = results.iter().find(|(_, r)| r.is_err()).expect("a loser");
        assert_eq!(lost.1, Err(ErrorCode::Forbidden));
        let stock = ledger.sku_stock(&sku).expect("valid").expect("known sku");
        let warehouses: Vec<_> = stock.warehouses.iter().map(|(w, _)| w.clone()).collect();
        assert_eq!(
            warehouses,
            vec![won[0].0.clone()],
            "only the winner's cell exists"
        );
        assert_eq!(stock.total.on_hand, 5);
    }
    ledger.check_invariants().expect("invariants");
}

#[test]
fn a_refused_first_write_leaves_the_sku_unknown() {
    let ledger = Ledger::in_memory(Options::default());
    let e = ledger
        .adjust_stock("new-sku", "kol", -3, "adj-1", None, Source::Seller("s1"))
        .expect_err("cannot go below zero");
    assert_eq!(e.code(), ErrorCode::BelowReserved);
    assert_eq!(ledger.sku_stock("new-sku").expect("valid"), None);
    assert_eq!(ledger.owner("new-sku"), None);
    // The sku is still free to claim by anyone.
    ledger
        .set_stock("new-sku", "kol", 1, Source::Seller("s2"))
        .expect("s2 claims it");
    assert_eq!(ledger.owner("new-sku").as_deref(), Some("s2"));
}
