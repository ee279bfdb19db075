//! hybrid-tunnel (placeholder)
