//! hybrid-noise (placeholder)
