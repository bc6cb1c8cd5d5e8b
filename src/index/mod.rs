//! Indexes: hints derived from the log, never the truth. Each can be deleted or
//! damaged and is rebuilt from the segments it describes.

pub mod stream_table;

pub use stream_table::{StreamState, StreamTable};
