//! `stockledgerd` (placeholder until the service issue lands).
fn main() {
    let ledger = stockledger::Ledger::in_memory(stockledger::Options::default());
    drop(ledger);
}
