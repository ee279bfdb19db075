//! hybrid-vault (placeholder)
