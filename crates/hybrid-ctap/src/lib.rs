//! hybrid-ctap (placeholder)
