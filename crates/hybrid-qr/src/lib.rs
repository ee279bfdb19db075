//! hybrid-qr (placeholder)
