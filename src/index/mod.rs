//! Indexes: hints derived from the log, never the truth. Each can be deleted or
//! damaged and is rebuilt from the segments it describes.

pub mod segment_index;
pub mod stream_map;
pub mod stream_table;

pub use segment_index::{IndexEntry, Postings, SegmentIndex, StreamPostings};
pub use stream_table::{StreamState, StreamTable};
