use stockledger::*;

#[test]
fn durable_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = Ledger::open(dir.path(), Options::default()).unwrap();
        l.set_stock("A1", "kol", 10, Source::Warehouse).unwrap();
        l.reserve("o-1", &[Line::new("A1", "kol", 2)], 900).unwrap();
        l.reserve("o-2", &[Line::new("A1", "kol", 3)], 900).unwrap();
        l.commit("o-1").unwrap();
        l.release("o-2").unwrap();
        assert_eq!(l.events(0, 100).unwrap().len(), 5);
        assert!(Ledger::open(dir.path(), Options::default()).is_err());
        l.close().unwrap();
    }
    let l = Ledger::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        l.stock("A1", "kol").unwrap(),
        StockLevel {
            on_hand: 8,
            reserved: 0,
            available: 8
        }
    );
    assert_eq!(l.reservation("o-1").unwrap().unwrap().status, Status::Paid);
    let seq = l.checkpoint().unwrap();
    assert_eq!(seq, 5);
    l.reserve("o-3", &[Line::new("A1", "kol", 8)], 900).unwrap();
    drop(l);
    let l = Ledger::open(dir.path(), Options::default()).unwrap();
    assert_eq!(l.stock("A1", "kol").unwrap().available, 0);
    let evs: Vec<_> = read_events(dir.path(), 0)
        .unwrap()
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(
        evs.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    println!("{}", evs[0].to_json());
}
