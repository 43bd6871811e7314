//! Portable replay bundles (being written).
