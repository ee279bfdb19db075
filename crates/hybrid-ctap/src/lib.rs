//! hybrid-ctap (placeholder)

pub mod store;
