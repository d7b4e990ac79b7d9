//! Python bindings of stockledger: the native module `stockledger._stockledger`, re-exported
//! by the `stockledger` package. The contract is `python-api.md`.

mod batch;
mod convert;
mod errors;
mod events;
mod ledger;
mod types;

use pyo3::prelude::*;

#[pymodule]
fn _stockledger(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ledger::Ledger>()?;
    m.add_class::<types::StockLevel>()?;
    m.add_class::<types::Reservation>()?;
    m.add_class::<types::Shortfall>()?;
    m.add_class::<events::EventIterator>()?;
    m.add_function(wrap_pyfunction!(events::read_events, m)?)?;
    m.add_function(wrap_pyfunction!(ledger::_rust_reserve_loop, m)?)?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
