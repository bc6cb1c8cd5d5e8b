//! Segment indexes as the log uses them: built by scanning, kept in memory for
//! the active segment, loaded (or rebuilt) on first use for sealed ones.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::FxHashMap;

use super::open::{check_against_footer, load_stream_table, scan_for_streams};
use super::state::{RecoveryReport, SegmentEntry};
use crate::error::{CorruptionKind, Error, Result};
use crate::index::segment_index::{self, SegmentIndex};
use crate::index::{StreamState, StreamTable};
use crate::segment::{scan, ScanOutcome, Segment, HEADER_SIZE};
use crate::storage::{self, Storage};

/// An index held in memory: built as the segment is written (or scanned on
/// open), or left by a clean close and parsed on first use, so that opening a
/// log does not pay for parsing the active segment's index.
#[derive(Debug)]
pub(crate) struct BuiltIndex {
    loaded: AtomicBool,
    index: RwLock<SegmentIndex>,
    pending: Mutex<Option<PendingIndex>>,
    /// Set when a pending index failed its checks and the scan that replaced
    /// it stopped before the data end the clean close recorded: the segment
    /// is damaged there, and the index is incomplete.
    damage: Mutex<Option<(PathBuf, u64, CorruptionKind)>>,
}

/// An index file whose header was checked at open but not parsed yet, with what is
/// needed to rebuild it from its segment if parsing fails.
#[derive(Debug)]
pub(crate) struct PendingIndex {
    pub bytes: storage::FileBytes,
    pub segment: Arc<Segment>,
    pub data_end: u64,
    pub interval_bytes: u32,
    pub sealed_streams: Arc<super::sealed_streams::SealedStreams>,
}

impl BuiltIndex {
    pub fn new(index: SegmentIndex) -> BuiltIndex {
        BuiltIndex {
            loaded: AtomicBool::new(true),
            index: RwLock::new(index),
            pending: Mutex::new(None),
            damage: Mutex::new(None),
        }
    }

    pub fn pending(pending: PendingIndex) -> BuiltIndex {
        let placeholder = SegmentIndex::new(pending.segment.first_position(), pending.interval_bytes);
        BuiltIndex {
            loaded: AtomicBool::new(false),
            index: RwLock::new(placeholder),
            pending: Mutex::new(Some(pending)),
            damage: Mutex::new(None),
        }
    }

    /// The index, loaded first if it is pending. An error when it is damaged
    /// (see [`BuiltIndex::damage`]) or could not be loaded yet.
    pub fn read(&self) -> Result<RwLockReadGuard<'_, SegmentIndex>> {
        match self.damage() {
            Some(error) => Err(error),
            None => Ok(self.index.read()),
        }
    }

    /// [`BuiltIndex::read`], for the writer.
    pub fn write(&self) -> Result<RwLockWriteGuard<'_, SegmentIndex>> {
        match self.damage() {
            Some(error) => Err(error),
            None => Ok(self.index.write()),
        }
    }

    /// The damage found while loading, as an error; or the error that kept
    /// a pending index from loading now (the stream table it needs to be
    /// rebuilt was unavailable), which the next call tries again.
    pub fn damage(&self) -> Option<Error> {
        if let Err(error) = self.load() {
            return Some(error);
        }
        self.damage.lock().as_ref().map(|(path, offset, kind)| Error::corrupted(path, *offset, kind.clone()))
    }

    fn load(&self) -> Result<()> {
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut pending_slot = self.pending.lock();
        if let Some(pending) = pending_slot.as_ref() {
            let first = pending.segment.first_position();
            let decoded = SegmentIndex::decode(&pending.bytes, first, pending.data_end);
            let index = match decoded.ok().filter(|index| index_fits(index, &pending.segment)) {
                Some(index) => index,
                None => {
                    // Damaged after its header was checked at open, or of
                    // another history than the segment this handle maps:
                    // the segment is the truth, up to the end the close recorded.
                    // Without the stream table there are no back links: the
                    // error is returned and the index stays pending, so that
                    // a later call tries again (nothing is guessed).
                    let table = pending.sealed_streams.table()?;
                    let (outcome, index) =
                        scan_into_index(&pending.segment, pending.data_end, 0, pending.interval_bytes, |stream| {
                            table.get(stream).map(|state| state.last_position)
                        });
                    if outcome.valid_end != pending.data_end {
                        let kind = match outcome.end {
                            crate::segment::ScanEnd::Invalid { kind, .. } => kind,
                            _ => CorruptionKind::IncompleteBatch,
                        };
                        *self.damage.lock() = Some((pending.segment.path().to_path_buf(), outcome.valid_end, kind));
                    }
                    index
                }
            };
            *self.index.write() = index;
            *pending_slot = None;
        }
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }
}

/// Where a segment's index lives.
#[derive(Debug, Clone)]
pub(crate) enum IndexHandle {
    /// Held in memory; frozen once the segment is sealed.
    Built(Arc<BuiltIndex>),
    /// Loaded from its file, or rebuilt, on first use.
    Lazy(Arc<OnceLock<Arc<SegmentIndex>>>),
}

impl IndexHandle {
    pub fn lazy() -> IndexHandle {
        IndexHandle::Lazy(Arc::new(OnceLock::new()))
    }
}

/// What loading an index needs to know about the log.
#[derive(Debug)]
pub(crate) struct IndexContext {
    pub storage: Arc<dyn Storage>,
    pub directory: PathBuf,
    pub writable: bool,
    pub interval_bytes: u32,
    /// Index files found missing or damaged and rebuilt since open (shared by
    /// every context of one log, across truncations).
    pub rebuilt: Arc<Mutex<Vec<PathBuf>>>,
    /// Bumped by truncate and purge (while held) before they change any file:
    /// a view taken before may still rebuild an index from the segments it
    /// maps, but must not write it back, or the file would describe bytes
    /// that are gone. Shared by every context of one log.
    pub generation: Arc<Mutex<u64>>,
}

/// Scans a segment's records up to `limit`, building its index. The stream
/// back links come from `previous_of` (the last position of a stream before
/// this segment).
pub(crate) fn scan_into_index(
    segment: &Segment,
    limit: u64,
    previous_timestamp_ns: u64,
    interval_bytes: u32,
    previous_of: impl Fn(&str) -> Option<u64>,
) -> (ScanOutcome, SegmentIndex) {
    let mut index = SegmentIndex::new(segment.first_position(), interval_bytes);
    let outcome = scan(
        segment.bytes(),
        HEADER_SIZE as u64,
        limit,
        segment.first_position(),
        previous_timestamp_ns,
        |record, offset| index.add(record, offset, || previous_of(record.stream)),
    );
    (outcome, index)
}

impl IndexContext {
    /// The index of segment `position_in_list` of `segments`, running `read`
    /// on it.
    pub fn with_index<R>(
        &self,
        segments: &[SegmentEntry],
        position_in_list: usize,
        generation: u64,
        read: impl FnOnce(&SegmentIndex) -> R,
    ) -> Result<R> {
        let entry = &segments[position_in_list];
        match &entry.index {
            IndexHandle::Built(index) => Ok(read(&*index.read()?)),
            IndexHandle::Lazy(cell) => {
                if let Some(index) = cell.get() {
                    return Ok(read(index));
                }
                let index = Arc::new(self.load(segments, position_in_list, generation)?);
                // Another reader may have loaded it meanwhile; either copy is right.
                let _ = cell.set(Arc::clone(&index));
                Ok(read(&index))
            }
        }
    }

    fn load(&self, segments: &[SegmentEntry], position_in_list: usize, generation: u64) -> Result<SegmentIndex> {
        let entry = &segments[position_in_list];
        let first = entry.segment.first_position();
        let Some(footer) = entry.footer else {
            let segment = &entry.segment;
            return Err(Error::corrupted(segment.path(), segment.data_limit(), CorruptionKind::MissingFooter));
        };
        let path = self.directory.join(segment_index::file_name(first));
        if let Ok(bytes) = storage::read_all(&*self.storage, &path) {
            if let Ok(index) = SegmentIndex::decode(&bytes, first, footer.data_end_offset) {
                // Of this segment's records, not of a history a writer grew
                // back to the same end since this segment was opened (a
                // segment not open yet is the file the index is beside).
                if entry.segment.if_open().is_none_or(|segment| index_fits(&index, segment)) {
                    return Ok(index);
                }
            }
        }
        // Missing or damaged: the segment is the truth.
        let segment = entry.segment.get()?;
        // Not stored by `load_stream_table`: this view may be of a history a
        // truncation has replaced since (its table would then take the new
        // history's name). Stored below, as the index is, only while no
        // truncation or purge has run since the view.
        let mut rebuilt = RecoveryReport::default();
        let table = load_stream_table(&*self.storage, &self.directory, segments, first, false, &mut rebuilt);
        // No table covers the positions before the segment when the view
        // holds segments purged since it was taken (a purge removes their
        // index files and supersedes the tables before them): the view's own
        // segments then give every back link its reads can follow.
        let back_links = match table {
            Ok(table) => BackLinks::Table(table),
            Err(_) => BackLinks::View(last_positions_before(segments, position_in_list)?),
        };
        let (outcome, index) = scan_into_index(segment, footer.data_end_offset, 0, self.interval_bytes, |stream| {
            back_links.last_position(stream)
        });
        check_against_footer(segment, &outcome, &footer)?;
        // Only an index whose back links all come from the log's table is
        // stored: one made for a view may lack links to purged positions.
        if let (true, BackLinks::Table(table)) = (self.writable, &back_links) {
            let current = self.generation.lock();
            if *current == generation {
                // Hints: failing to store them only costs another rebuild.
                if let Some(table_path) = rebuilt.rebuilt_indexes.first() {
                    let _ = storage::write_atomic(&*self.storage, table_path, table.as_bytes());
                }
                let _ = storage::write_atomic(&*self.storage, &path, &anchored_bytes(&index, segment));
            }
        }
        self.rebuilt.lock().push(path);
        Ok(index)
    }
}

/// Where the back links of a rebuilt index come from.
enum BackLinks {
    /// The stream table covering the positions before the segment.
    Table(StreamTable),
    /// The last positions in the view's segments before it (see
    /// [`last_positions_before`]).
    View(FxHashMap<Box<str>, StreamState>),
}

impl BackLinks {
    fn last_position(&self, stream: &str) -> Option<u64> {
        match self {
            BackLinks::Table(table) => table.get(stream).map(|state| state.last_position),
            BackLinks::View(streams) => streams.get(stream).map(|state| state.last_position),
        }
    }
}

/// The last state of every stream in `segments[..end]`, scanned. Links to
/// positions before a view's first segment are never followed by its reads
/// (`LogView::previous_chunk` stops there), so for rebuilding the index of
/// segment `end` of a view these stand in for the stream table before it.
fn last_positions_before(segments: &[SegmentEntry], end: usize) -> Result<FxHashMap<Box<str>, StreamState>> {
    let mut streams = FxHashMap::default();
    for entry in &segments[..end] {
        let segment = entry.segment.get()?;
        let Some(footer) = entry.footer else {
            return Err(Error::corrupted(segment.path(), segment.data_limit(), CorruptionKind::MissingFooter));
        };
        let outcome = scan_for_streams(segment, footer.data_end_offset, 0, &mut streams);
        check_against_footer(segment, &outcome, &footer)?;
    }
    Ok(streams)
}

/// Writes a segment's index beside it (best effort: it is a hint), anchored
/// by `anchor_crc`, the stored CRC of the record ending at its data end.
pub(crate) fn store_index(storage: &dyn Storage, directory: &Path, index: &SegmentIndex, anchor_crc: u32) {
    let path = directory.join(segment_index::file_name(index.first_position()));
    let _ = storage::write_atomic(storage, &path, &index.encode_anchored(anchor_crc));
}

/// The index file of `index`, anchored to `segment` (see
/// [`SegmentIndex::encode_anchored`]).
fn anchored_bytes(index: &SegmentIndex, segment: &Segment) -> Vec<u8> {
    index.encode_anchored(segment.record_crc_before(index.data_end()).unwrap_or(0))
}

/// Whether an index read from a file describes the records `segment` holds:
/// its anchor (version 6 on) is the CRC of the record ending at its data end.
pub(crate) fn index_fits(index: &SegmentIndex, segment: &Segment) -> bool {
    index.anchor_crc().is_none_or(|anchor| segment.record_crc_before(index.data_end()) == Some(anchor))
}
