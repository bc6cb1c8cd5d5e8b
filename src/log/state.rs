//! The in-memory state of an open log: what the writer owns and what readers
//! are shown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::CorruptionKind;
use crate::index::{StreamState, StreamTable};
use crate::segment::{Segment, SegmentFooter};

/// A segment and, once it is sealed, its footer.
#[derive(Debug, Clone)]
pub(crate) struct SegmentEntry {
    pub segment: Arc<Segment>,
    pub footer: Option<SegmentFooter>,
}

/// The writer's state, guarded by the writer mutex. The segments list is never
/// empty; its last entry is the active segment (which may be sealed when the
/// next one could not be created yet, e.g. on a full disk).
#[derive(Debug)]
pub(crate) struct State {
    pub segments: Vec<SegmentEntry>,
    /// Offset just past the last record of the last segment.
    pub data_end: u64,
    pub next_position: u64,
    pub last_timestamp_ns: u64,
    pub segment_first_timestamp_ns: Option<u64>,
    pub segment_record_count: u64,
    /// Streams as of the start of the last segment.
    pub sealed_streams: Arc<StreamTable>,
    /// Streams written in the last segment.
    pub active_streams: HashMap<Box<str>, StreamState>,
    /// Reused encoding buffer.
    pub buffer: Vec<u8>,
}

impl State {
    pub fn active(&self) -> &SegmentEntry {
        // The list is never empty (an invariant kept by open, roll, truncate
        // and purge); index from the end without a fallible accessor.
        &self.segments[self.segments.len() - 1]
    }

    pub fn first_position(&self) -> u64 {
        self.segments[0].segment.first_position()
    }

    pub fn stream_state(&self, stream: &str) -> Option<StreamState> {
        self.active_streams.get(stream).copied().or_else(|| self.sealed_streams.get(stream))
    }

    pub fn record_stream(&mut self, stream: &str, state: StreamState) {
        match self.active_streams.get_mut(stream) {
            Some(existing) => *existing = state,
            None => {
                self.active_streams.insert(stream.into(), state);
            }
        }
    }

    pub fn published(&self) -> Published {
        Published {
            segments: Arc::new(self.segments.clone()),
            first_position: self.first_position(),
            next_position: self.next_position,
            active_data_end: self.data_end,
            last_timestamp_ns: self.last_timestamp_ns,
        }
    }
}

/// What readers see: a consistent prefix of the log.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub segments: Arc<Vec<SegmentEntry>>,
    pub first_position: u64,
    pub next_position: u64,
    pub active_data_end: u64,
    pub last_timestamp_ns: u64,
}

/// Bytes that opening the log dropped or set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedBytes {
    /// The file they were in.
    pub path: PathBuf,
    /// Where they started.
    pub offset: u64,
    /// How many bytes, up to the last non-zero one.
    pub length_bytes: u64,
    /// What was wrong at `offset` (none for a plain incomplete write).
    pub reason: Option<CorruptionKind>,
    /// Where a copy of the original file was kept (salvage mode).
    pub saved_to: Option<PathBuf>,
}

/// What opening the log had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A torn or incomplete write cut from the end of the active segment.
    pub torn_tail: Option<DroppedBytes>,
    /// Damaged data cut off in [`crate::RecoveryMode::Salvage`].
    pub salvaged: Vec<DroppedBytes>,
    /// Index files that were missing or damaged and were rebuilt.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// A `truncate_after` interrupted by a crash and completed on open.
    pub completed_truncation: Option<u64>,
}

impl RecoveryReport {
    /// True when opening found nothing to repair.
    pub fn is_clean(&self) -> bool {
        *self == RecoveryReport::default()
    }
}
