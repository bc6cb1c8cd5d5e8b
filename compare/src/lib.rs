//! Nothing here: see `benches/versus_sqlite.rs`.
