//! Handlers, one module per gateway.

pub mod events;
pub mod ops;
pub mod partner;
pub mod payments;
pub mod storefront;
