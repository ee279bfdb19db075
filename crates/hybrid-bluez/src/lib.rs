//! hybrid-bluez: the BlueZ backend (placeholder).
