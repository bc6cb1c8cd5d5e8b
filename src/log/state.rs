//! The in-memory state of an open log: what the writer owns and what readers
//! are shown.

use std::path::PathBuf;
use std::sync::Arc;

use super::indexes::{BuiltIndex, IndexContext, IndexHandle};
use super::lazy_segment::LazySegment;
use super::sealed_streams::SealedStreams;
use crate::error::CorruptionKind;
use crate::error::Result;
use crate::index::StreamState;
use crate::segment::{Segment, SegmentFooter};

/// A segment (open, or opened on first use), its footer once it is sealed,
/// and its index.
#[derive(Debug, Clone)]
pub(crate) struct SegmentEntry {
    pub segment: Arc<LazySegment>,
    pub footer: Option<SegmentFooter>,
    pub index: IndexHandle,
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
    /// Streams as of the end of the last sealed segment.
    pub sealed_streams: Arc<SealedStreams>,
    /// Index of the last segment while it is not sealed (shared with its
    /// entry in `segments`); empty when the last segment is sealed.
    pub active_index: Arc<BuiltIndex>,
    pub context: Arc<IndexContext>,
    /// The active segment's index file left by a clean close and trusted by
    /// open: it must be removed (durably) before anything is appended, or a
    /// later open could trust it over records written after it.
    pub checkpoint: Option<PathBuf>,
    /// Reused encoding buffer.
    pub buffer: Vec<u8>,
    /// Offset in the active segment from which appended bytes were neither
    /// synced nor sent to writeback (`LogOptions::writeback_bytes`);
    /// `u64::MAX`: from the next batch on (what lies before it was written
    /// by an earlier process, or synced).
    pub writeback_from: u64,
    /// The manifest on disk may not describe every sealed segment of
    /// `segments`: the next seal, or a clean close, writes it.
    pub manifest_stale: bool,
}

impl State {
    pub fn active(&self) -> &SegmentEntry {
        // The list is never empty (an invariant kept by open, roll, truncate
        // and purge); index from the end without a fallible accessor.
        &self.segments[self.segments.len() - 1]
    }

    /// The active segment, which is always open (open, roll and truncate
    /// open the last segment at once; only sealed ones wait for first use).
    pub fn active_segment(&self) -> &Arc<Segment> {
        match self.active().segment.if_open() {
            Some(segment) => segment,
            None => unreachable!("the last segment is opened when it becomes the last"),
        }
    }

    pub fn first_position(&self) -> u64 {
        self.segments[0].segment.first_position()
    }

    pub fn stream_state(&self, stream: &str) -> Result<Option<StreamState>> {
        let active = self.active_index.read()?.stream(stream).map(|postings| StreamState {
            last_version: postings.last_version(),
            last_position: postings.last_position,
        });
        match active {
            Some(state) => Ok(Some(state)),
            None => self.sealed_streams.get(stream),
        }
    }

    pub fn published(&self) -> Published {
        Published {
            segments: Arc::new(self.segments.clone()),
            first_position: self.first_position(),
            next_position: self.next_position,
            active_data_end: self.data_end,
            last_timestamp_ns: self.last_timestamp_ns,
            sealed_streams: Arc::clone(&self.sealed_streams),
            generation: *self.context.generation.lock(),
            context: Arc::clone(&self.context),
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
    pub sealed_streams: Arc<SealedStreams>,
    /// The index generation when this was published (see
    /// `IndexContext::generation`).
    pub generation: u64,
    pub context: Arc<IndexContext>,
}

impl Published {
    /// Whether both show the same log: the same segments, sealed alike, and
    /// the same end. (A log cut and grown back to the same bytes' length
    /// between the two looks the same; within one process, `generation`
    /// tells them apart.)
    pub fn same_log(&self, other: &Published) -> bool {
        let ends = |p: &Published| (p.first_position, p.next_position, p.active_data_end);
        ends(self) == ends(other)
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(other.segments.iter())
                .all(|(x, y)| x.segment.first_position() == y.segment.first_position() && x.footer == y.footer)
    }
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
    /// The active segment was scanned record by record (no clean close left
    /// its index, or the recovery mode asks for a scan). Not a repair.
    pub active_segment_scanned: bool,
}

impl RecoveryReport {
    /// True when opening found nothing to repair.
    pub fn is_clean(&self) -> bool {
        self.torn_tail.is_none()
            && self.salvaged.is_empty()
            && self.rebuilt_indexes.is_empty()
            && self.completed_truncation.is_none()
    }
}
