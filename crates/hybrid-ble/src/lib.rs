//! hybrid-ble (placeholder)
