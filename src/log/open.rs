//! Opening a log directory: listing and checking segments, recovering the tail
//! of the active segment, and loading the stream table.
//!
//! Only the active (last) segment is scanned; sealed segments are trusted by
//! their header and footer and checked record by record when read (or all at
//! once by `verify`, or by [`RecoveryMode::Salvage`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::indexes::{scan_into_index, BuiltIndex, IndexContext, IndexHandle, PendingIndex};
use super::lazy_segment::LazySegment;
use super::manifest;
use super::options::LogOptions;
use super::salvage;
use super::sealed_streams::{SealedStreams, Unchecked};
use super::state::{DroppedBytes, RecoveryReport, SegmentEntry, State};
use super::truncation;
use super::RecoveryMode;
use crate::error::{CorruptionKind, Error, Result};
use crate::index::stream_table::{self, StreamState, StreamTable};
use crate::index::SegmentIndex;
use crate::record::{self, Decoded, RecordRef};
use crate::segment::manifest::ManifestEntry;
use crate::segment::{self, scan, ScanEnd, ScanOutcome, Segment, HEADER_SIZE};
use crate::storage::{self, OpenMode, Storage, StorageFile};

/// Name of the lock file held by the writer.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A freshly loaded log.
pub(crate) struct Loaded {
    pub state: State,
    pub report: RecoveryReport,
}

/// Takes the directory's writer lock.
pub(crate) fn lock_directory(storage: &dyn Storage, directory: &Path) -> Result<Arc<dyn StorageFile>> {
    let path = directory.join(LOCK_FILE);
    let file = match storage.open(&path, OpenMode::CreateNew) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => storage.open(&path, OpenMode::ReadWrite),
        other => other,
    }
    .map_err(|e| Error::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(true) => Ok(file),
        Ok(false) => Err(Error::Locked { path }),
        Err(error) => Err(Error::io("lock", &path, error)),
    }
}

/// Segment files of a directory, sorted by first position.
pub(crate) fn list_segments(storage: &dyn Storage, directory: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let names = storage.list_dir(directory).map_err(|e| Error::io("list directory", directory, e))?;
    Ok(segments_among(&names, directory))
}

/// The segment files among the `names` of a directory, sorted.
fn segments_among(names: &[String], directory: &Path) -> Vec<(u64, PathBuf)> {
    let mut segments: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| segment::parse_file_name(name).map(|first| (first, directory.join(name))))
        .collect();
    segments.sort_unstable_by_key(|(first, _)| *first);
    segments
}

/// First positions of the stream table files of a directory, newest first.
pub(crate) fn list_stream_tables(storage: &dyn Storage, directory: &Path) -> Result<Vec<u64>> {
    let names = storage.list_dir(directory).map_err(|e| Error::io("list directory", directory, e))?;
    let mut tables: Vec<u64> = names.iter().filter_map(|name| stream_table::parse_file_name(name)).collect();
    tables.sort_unstable_by(|a, b| b.cmp(a));
    Ok(tables)
}

/// Loads the log for a read-only handle. A reader races the writer: a purge
/// or truncation between the directory listing and the opening of a listed
/// file shows as a file gone, or as a segment that no longer chains. Such an
/// error is tried again after a short pause, a few times (about 30 ms in
/// all), before it is believed.
pub(crate) fn load_read_only(directory: &Path, options: &LogOptions, shared: Option<&IndexContext>) -> Result<Loaded> {
    let mut attempts = 0u32;
    loop {
        match load(directory, options, false, shared) {
            Err(error) if attempts < 5 && (error.is_corruption() || is_not_found(&error)) => {
                std::thread::sleep(std::time::Duration::from_millis(1 << attempts));
                attempts += 1;
            }
            other => return other,
        }
    }
}

fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// Opens (and, when writable, repairs) the log in `directory`.
/// Loads the log in `directory`. `shared` is the index context of the state
/// this load replaces (after a truncate or a refresh): the new state shares
/// its generation and its rebuilt list, so that everything made from the new
/// state (a stream table checked later, an index rebuilt later) sees the
/// truncates and purges that follow, and reports where the log's other
/// rebuilds are reported.
pub(crate) fn load(
    directory: &Path,
    options: &LogOptions,
    writable: bool,
    shared: Option<&IndexContext>,
) -> Result<Loaded> {
    let storage = &*options.storage;
    // After a clean close the segments are taken from the manifest, without
    // listing the directory; when what is found says otherwise, the open
    // starts again with a listing.
    let clean_close_possible = writable
        && options.recovery_mode == RecoveryMode::TolerateTornTail
        && truncation::read_marker(storage, directory)?.is_none();
    if clean_close_possible {
        let manifest = manifest::read(storage, directory);
        if let Some(listed) = listed_by_clean_close(storage, directory, &manifest) {
            let found = Found { listed, manifest, from_manifest: true };
            let report = RecoveryReport::default();
            if let Some(loaded) = load_found(directory, options, writable, shared, found, report, None)? {
                return Ok(loaded);
            }
        }
    }
    let mut report = RecoveryReport::default();
    // The names listed to remove temporaries, kept for finding the segments
    // unless salvage or a truncation changes the files in between.
    let mut listing = None;
    if writable {
        listing = Some(remove_temporaries(storage, directory)?);
        if options.recovery_mode == RecoveryMode::Salvage {
            listing = None;
            salvage::salvage_sealed_segments(storage, directory, &mut report)?;
        }
        if let Some(position) = truncation::read_marker(storage, directory)? {
            listing = None;
            match truncation::apply(storage, directory, position, true) {
                Ok(()) => {}
                // Salvage cut the log before the truncation point: nothing is
                // left to cut.
                Err(Error::Corrupted { .. } | Error::PositionOutOfRange { .. })
                    if options.recovery_mode == RecoveryMode::Salvage => {}
                Err(error) => return Err(error),
            }
            truncation::remove_marker(storage, directory)?;
            report.completed_truncation = Some(position);
        }
    }
    // A reader that finds a truncation in progress shows the log as it will be
    // once the writer finishes the cut, never the events being removed.
    let pending_truncation = if writable { None } else { truncation::read_marker(storage, directory)? };
    let listed = match listing {
        Some(names) => segments_among(&names, directory),
        None => list_segments(storage, directory)?,
    };
    let manifest = if listed.is_empty() { Vec::new() } else { manifest::read(storage, directory) };
    let found = Found { listed, manifest, from_manifest: false };
    match load_found(directory, options, writable, shared, found, report, pending_truncation)? {
        Some(loaded) => Ok(loaded),
        None => unreachable!("only a load from the manifest's listing can give up"),
    }
}

/// The segments an open found, and the manifest.
struct Found {
    listed: Vec<(u64, PathBuf)>,
    manifest: Vec<ManifestEntry>,
    /// `listed` comes from the manifest, not from a listing.
    from_manifest: bool,
}

/// After a clean close, the segments as the manifest lists them, without
/// listing the directory: a listing costs time per file (ext4 hashes every
/// entry of the directory on each `readdir`), three files per segment.
/// Taken only when nothing can have changed the directory since the close:
/// the manifest chains, its first segment is there, and after its last one
/// is a segment with an index beside it: the index a clean close leaves for
/// the active segment, removed before anything is appended. `load_found`
/// gives up when that segment turns out sealed (the index was the one its
/// seal wrote, and later segments may exist), and in the other cases
/// FORMAT.md lists ("Opening after a clean close"). Temporaries of
/// interrupted writes are not looked for: a clean close leaves none, and one
/// a crash leaves while the clean-close index is still there is harmless.
fn listed_by_clean_close(
    storage: &dyn Storage,
    directory: &Path,
    manifest: &[ManifestEntry],
) -> Option<Vec<(u64, PathBuf)>> {
    let last = manifest.last()?;
    let chained = manifest.windows(2).all(|pair| pair[0].footer.last_position + 1 == pair[1].header.first_position);
    let active = last.footer.last_position + 1;
    let firsts = manifest.iter().map(|entry| entry.header.first_position).chain(std::iter::once(active));
    let listed: Vec<(u64, PathBuf)> = firsts.map(|first| (first, directory.join(segment::file_name(first)))).collect();
    let exists = |path: &Path| storage.exists(path).unwrap_or(false);
    let index = directory.join(crate::index::segment_index::file_name(active));
    let clean = chained && exists(&listed[0].1) && exists(&listed[listed.len() - 1].1) && exists(&index);
    clean.then_some(listed)
}

/// The rest of `load`, once the segments are found. Gives up (`None`),
/// before anything is changed, only when `found` came from the manifest
/// alone and what the open finds does not show a clean close.
fn load_found(
    directory: &Path,
    options: &LogOptions,
    writable: bool,
    shared: Option<&IndexContext>,
    found: Found,
    mut report: RecoveryReport,
    pending_truncation: Option<u64>,
) -> Result<Option<Loaded>> {
    let storage = &*options.storage;
    let Found { mut listed, manifest, from_manifest } = found;
    // A segment this open creates holds only its header: scanning it (and
    // checking its 64 MiB of zeros) would find nothing and cost tens of ms.
    let fresh = listed.is_empty();
    if fresh {
        if !writable {
            let error = io::Error::new(io::ErrorKind::NotFound, "no segment files: not a chronolog directory");
            return Err(Error::io("open log", directory, error));
        }
        // A manifest left by a log whose segments were deleted describes
        // segments this log will write differently (made durable by the
        // directory sync of the segment's creation).
        manifest::remove(storage, directory)?;
        // The directory may be left by an open that made it and failed
        // before its entry was synced (`create_directory_durably` syncs only
        // what it creates): a new log makes its name durable before its
        // first segment counts. One level: parents higher up that such an
        // open made are not known here. (When this open made the directory,
        // its parent is synced twice: once per new log.)
        let parent = storage::parent_of(directory);
        storage.sync_dir(parent).map_err(|e| Error::io("sync directory", parent, e))?;
        let created = Segment::create(storage, directory, 0, options.segment_capacity_bytes)?;
        listed.push((0, created.path().to_path_buf()));
    }
    // The manifest spares a writable open the opening of the sealed segments
    // it describes, unless the open must check every one (Strict; Salvage
    // removed it). A read-only handle opens them all: its maps keep the log
    // as it was at open readable, whatever the writer (another process)
    // truncates or purges meanwhile.
    let trust_manifest = writable && options.recovery_mode == RecoveryMode::TolerateTornTail;
    let open = |trust| open_segments(&options.storage, &listed, writable, options.recovery_mode, &manifest, trust);
    let opened = match open(trust_manifest) {
        // Segments taken from the manifest that do not open as it says: the
        // listing decides.
        Ok(opened) if from_manifest && opened.contradicted => return Ok(None),
        Err(_) if from_manifest => return Ok(None),
        // A manifest the segments opened now contradict, or whose footers do
        // not chain with the segments' names, is stale (written by hand, or
        // before something this build did not do rewrote the segments): it
        // is not trusted for any segment.
        Ok(opened) if opened.contradicted => open(false)?,
        Err(Error::Corrupted { .. }) if trust_manifest => open(false)?,
        other => other?,
    };
    let (segments, manifest_stale) = (opened.segments, opened.manifest_stale);
    let opened_last_footer_unreadable = opened.last_footer_unreadable;
    let Some(last) = segments.last().cloned() else { unreachable!("at least one segment was listed or created") };
    if from_manifest && last.footer.is_some() {
        return Ok(None);
    }
    let Some(last_segment) = last.segment.if_open().cloned() else {
        unreachable!("the last segment is always opened at once")
    };
    let previous_max_timestamp_ns = segments
        .len()
        .checked_sub(2)
        .and_then(|index| segments[index].footer)
        .map_or(0, |footer| footer.max_timestamp_ns);
    let context = Arc::new(IndexContext {
        storage: Arc::clone(&options.storage),
        directory: directory.to_path_buf(),
        writable,
        interval_bytes: options.index_interval_bytes,
        rebuilt: shared.map(|shared| Arc::clone(&shared.rebuilt)).unwrap_or_default(),
        generation: shared.map(|shared| Arc::clone(&shared.generation)).unwrap_or_default(),
    });

    let mut state = State {
        segments,
        data_end: HEADER_SIZE as u64,
        next_position: last_segment.first_position(),
        last_timestamp_ns: previous_max_timestamp_ns,
        segment_first_timestamp_ns: None,
        segment_record_count: 0,
        sealed_streams: Arc::new(SealedStreams::checked(StreamTable::empty(0))),
        active_index: Arc::new(BuiltIndex::new(SegmentIndex::new(0, options.index_interval_bytes))),
        context,
        checkpoint: None,
        buffer: Vec::new(),
        writeback_from: u64::MAX,
        manifest_stale,
    };
    if let Some(footer) = last.footer {
        // The last segment was sealed but its successor was never created (a
        // crash or a full disk in between): the next append creates it.
        state.data_end = footer.data_end_offset;
        state.next_position = footer.last_position + 1;
        state.last_timestamp_ns = footer.max_timestamp_ns;
        state.segment_first_timestamp_ns = Some(footer.min_timestamp_ns);
        state.segment_record_count = footer.record_count;
        state.sealed_streams =
            Arc::new(find_sealed_streams(&state.context, &state.segments, state.next_position, &mut report)?);
        state.active_index =
            Arc::new(BuiltIndex::new(SegmentIndex::new(state.next_position, options.index_interval_bytes)));
    } else {
        let checkpoint = if options.recovery_mode == RecoveryMode::TolerateTornTail && !fresh {
            clean_shutdown_checkpoint(storage, directory, &last_segment)
        } else {
            None
        };
        // Segments taken from the manifest are the whole log only after a
        // clean close, whose index describes the last one and ends where no
        // next segment exists; anything else (a seal's index beside a segment
        // whose footer was lost, say) is for the listing to judge, before
        // recovery changes anything.
        if from_manifest {
            let next_exists = |checkpoint: &Checkpoint| {
                storage.exists(&directory.join(segment::file_name(checkpoint.last_position + 1))).unwrap_or(true)
            };
            if opened_last_footer_unreadable || checkpoint.as_ref().is_none_or(next_exists) {
                return Ok(None);
            }
        }
        let target = last_segment.first_position();
        state.sealed_streams = if fresh || checkpoint.is_some() {
            Arc::new(find_sealed_streams(&state.context, &state.segments, target, &mut report)?)
        } else {
            // The scan below needs the table at once (and costs far more than
            // its check): checked now, and a rebuild is in this open's report.
            let table = load_stream_table(storage, directory, &state.segments, target, writable, &mut report)?;
            Arc::new(SealedStreams::checked(table))
        };
        if fresh {
            // Nothing to recover: the state above describes an empty segment.
            // An index file left by a log whose segments were deleted must
            // not outlive the first append (see `State::checkpoint`).
            let stale = directory.join(crate::index::segment_index::file_name(target));
            if writable && storage.exists(&stale).unwrap_or(true) {
                state.checkpoint = Some(stale);
            }
        } else if let Some(checkpoint) = checkpoint {
            // Closed cleanly: nothing to scan, and the index is parsed on first
            // use. The checkpoint is removed before the next append (see
            // `State::checkpoint`).
            state.data_end = checkpoint.data_end;
            state.next_position = checkpoint.last_position + 1;
            state.last_timestamp_ns = checkpoint.last_timestamp_ns;
            state.segment_first_timestamp_ns = Some(checkpoint.first_timestamp_ns);
            state.segment_record_count = state.next_position - last_segment.first_position();
            state.active_index = Arc::new(BuiltIndex::pending(PendingIndex {
                bytes: checkpoint.bytes,
                segment: Arc::clone(&last_segment),
                data_end: checkpoint.data_end,
                interval_bytes: options.index_interval_bytes,
                sealed_streams: Arc::clone(&state.sealed_streams),
            }));
            state.checkpoint = Some(checkpoint.path);
        } else {
            let sealed_streams = Arc::clone(&state.sealed_streams);
            let sealed_streams = sealed_streams.table()?;
            let (outcome, index) = scan_into_index(
                &last_segment,
                last_segment.data_limit(),
                previous_max_timestamp_ns,
                options.index_interval_bytes,
                |stream| sealed_streams.get(stream).map(|s| s.last_position),
            );
            // A clean close's index that was not trusted still says how far
            // the records were durable when it was written (unless a
            // truncation in progress is cutting them).
            // Only a writable open (which holds the lock, and has finished any
            // truncation) can trust it: a reader may race the writer's first
            // append or a truncation, which change the segment before the
            // index goes.
            let promised_end = match pending_truncation {
                Some(_) => None,
                None if writable => promised_data_end(storage, directory, &last_segment),
                None => None,
            };
            let tail = TailCheck { mode: options.recovery_mode, writable, promised_end };
            recover_tail(storage, &last_segment, &outcome, &tail, &mut report)?;
            report.active_segment_scanned = true;
            // An index a clean close left that was not trusted (a Strict or
            // Salvage open, or one that no longer matches) must still go
            // before the next append, or a later open could trust it.
            let stale = directory.join(crate::index::segment_index::file_name(last_segment.first_position()));
            if writable && storage.exists(&stale).unwrap_or(true) {
                state.checkpoint = Some(stale);
            }
            state.active_index = Arc::new(BuiltIndex::new(index));
            state.data_end = outcome.valid_end;
            state.next_position = outcome.next_position;
            state.last_timestamp_ns = outcome.last_timestamp_ns;
            state.segment_first_timestamp_ns = outcome.first_timestamp_ns;
            state.segment_record_count = outcome.record_count;
        }
        let last_entry = state.segments.len() - 1;
        state.segments[last_entry].index = IndexHandle::Built(Arc::clone(&state.active_index));
    }
    if let Some(position) = pending_truncation {
        cap_at(storage, directory, &mut state, position, &mut report)?;
    }
    Ok(Some(Loaded { state, report }))
}

/// The index a clean close left for the active segment, when it still
/// describes the segment exactly.
struct Checkpoint {
    bytes: storage::FileBytes,
    path: PathBuf,
    data_end: u64,
    last_position: u64,
    last_timestamp_ns: u64,
    first_timestamp_ns: u64,
}

/// Maps the active segment's index written by a clean close and checks it
/// against the segment: its header must cover the segment, the record ending where it says
/// the data ends must be whole and close its batch, and nothing may follow it.
/// Anything else (no file, damage, records written after the close) means a
/// scan. The index itself is parsed later, on first use.
fn clean_shutdown_checkpoint(storage: &dyn Storage, directory: &Path, segment: &Segment) -> Option<Checkpoint> {
    let path = directory.join(crate::index::segment_index::file_name(segment.first_position()));
    let bytes = storage::map_all(storage, &path).ok()?;
    let data_end = SegmentIndex::peek_data_end(&bytes)?;
    // `data_end` is the file's word, not checked yet: no overflow on it.
    let header_end = data_end.checked_add(record::HEADER_SIZE as u64)?;
    if data_end <= HEADER_SIZE as u64 || header_end > segment.data_limit() {
        return None;
    }
    if !SegmentIndex::covers(&bytes, segment.first_position(), data_end) {
        return None;
    }
    let map = segment.bytes();
    let next_header = map.get(data_end as usize..data_end as usize + record::HEADER_SIZE)?;
    if next_header.iter().any(|&b| b != 0) {
        return None;
    }
    let length = record::preceding_length(map, data_end as usize)?;
    let start = (data_end as usize).checked_sub(length)?;
    let Ok(Decoded::Record(last)) = record::decode(map.get(start..data_end as usize)?) else { return None };
    if last.header.flags & record::FLAG_BATCH_END == 0 || last.header.position < segment.first_position() {
        return None;
    }
    let Ok(Decoded::Record(first)) = record::decode(map.get(HEADER_SIZE..data_end as usize)?) else { return None };
    if first.header.position != segment.first_position() {
        return None;
    }
    Some(Checkpoint {
        bytes,
        path,
        data_end,
        last_position: last.header.position,
        last_timestamp_ns: last.header.timestamp_ns,
        first_timestamp_ns: first.header.timestamp_ns,
    })
}

/// Limits a read-only state to the events up to `position`.
fn cap_at(
    storage: &dyn Storage,
    directory: &Path,
    state: &mut State,
    position: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    if position < state.first_position() || position.saturating_add(1) >= state.next_position {
        return Ok(());
    }
    let index = state.segments.partition_point(|entry| entry.segment.first_position() <= position).saturating_sub(1);
    state.segments.truncate(index + 1);
    let segment = Arc::clone(state.segments[index].segment.get()?);
    let mut cut = None;
    scan(segment.bytes(), HEADER_SIZE as u64, segment.data_limit(), segment.first_position(), 0, |record, offset| {
        if record.header.position == position {
            cut = Some((offset + u64::from(record.encoded_length), record.header.timestamp_ns));
        }
    });
    let Some((data_end, timestamp_ns)) = cut else {
        let kind = CorruptionKind::MissingSegment { position };
        return Err(Error::corrupted(segment.path(), HEADER_SIZE as u64, kind));
    };
    let sealed_streams =
        load_stream_table(storage, directory, &state.segments, segment.first_position(), false, report)?;
    // Index the records up to the cut. The scan runs to the segment's end:
    // the cut may fall inside a batch, whose records a scan shows only once
    // the batch is complete.
    let mut segment_index = SegmentIndex::new(segment.first_position(), state.context.interval_bytes);
    scan(segment.bytes(), HEADER_SIZE as u64, segment.data_limit(), segment.first_position(), 0, |record, offset| {
        if record.header.position <= position {
            segment_index.add(record, offset, || sealed_streams.get(record.stream).map(|s| s.last_position));
        }
    });
    let first_timestamp_ns = segment_index.entries().first().map(|entry| entry.timestamp_ns);
    state.sealed_streams = Arc::new(SealedStreams::checked(sealed_streams));
    state.active_index = Arc::new(BuiltIndex::new(segment_index));
    state.segments[index].footer = None;
    state.segments[index].index = IndexHandle::Built(Arc::clone(&state.active_index));
    state.data_end = data_end;
    state.segment_record_count = position + 1 - segment.first_position();
    state.next_position = position + 1;
    state.last_timestamp_ns = timestamp_ns;
    state.segment_first_timestamp_ns = first_timestamp_ns;
    Ok(())
}

/// Whether `name` is a file of the log's directory that chronolog writes
/// whole through a `.tmp` temporary (or a segment, whose name it shares).
fn is_atomically_written(name: &str) -> bool {
    name == super::truncation::TRUNCATE_MARKER
        || name == crate::segment::manifest::MANIFEST_FILE_NAME
        || segment::parse_file_name(name).is_some()
        || stream_table::parse_file_name(name).is_some()
        || crate::index::segment_index::parse_file_name(name).is_some()
}

/// Whether `name`, an entry of a log's directory, is one chronolog makes
/// there: a segment, index, stream table, `MANIFEST`, `TRUNCATE` or `LOCK`,
/// the temporary of one of them, or the `snapshots` and `salvage` folders.
/// For tools that must tell a log's own files from a user's (the CLI's demo
/// resets only a directory that holds nothing else).
///
/// ```
/// use chronolog::log::is_log_file_name;
/// assert!(is_log_file_name("00000000000000000000.seg"));
/// assert!(is_log_file_name("MANIFEST.tmp"));
/// assert!(is_log_file_name("snapshots"));
/// assert!(!is_log_file_name("notes.txt"));
/// ```
pub fn is_log_file_name(name: &str) -> bool {
    let stem = name.strip_suffix(".tmp").unwrap_or(name);
    is_atomically_written(stem)
        || matches!(name, LOCK_FILE | crate::snapshot::SNAPSHOTS_FOLDER | super::salvage::SALVAGE_DIRECTORY)
}

/// Removes the temporaries an interrupted atomic write left, and returns the
/// other names of the directory.
fn remove_temporaries(storage: &dyn Storage, directory: &Path) -> Result<Vec<String>> {
    let names = storage.list_dir(directory).map_err(|e| Error::io("list directory", directory, e))?;
    // Only the temporaries chronolog itself makes: a user's own `.tmp` files in
    // the directory are none of its business.
    let ours = |name: &str| name.strip_suffix(".tmp").is_some_and(is_atomically_written);
    let (temporaries, others): (Vec<String>, Vec<String>) = names.into_iter().partition(|name| ours(name));
    for name in temporaries {
        let path = directory.join(name);
        storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    }
    Ok(others)
}

/// The segments of a directory, and whether the manifest lags behind them.
struct OpenedSegments {
    segments: Vec<SegmentEntry>,
    /// Some sealed segment is not described by the manifest as it is.
    manifest_stale: bool,
    /// Some segment opened now has an entry in the manifest that differs.
    contradicted: bool,
    /// The last segment's footer did not decode (taken for a torn seal).
    last_footer_unreadable: bool,
}

/// Opens every listed segment and checks that they chain: each one except the
/// last is sealed, and each starts right after its predecessor. A sealed
/// segment the manifest describes is taken from it when `trust_manifest`, and
/// opened on first use. The last two segments are always opened now: the
/// active one, and the one whose footer gives the active segment's timestamp
/// floor (which decides what recovery keeps), so that a stale manifest is
/// caught before anything is built on it.
fn open_segments(
    storage: &Arc<dyn Storage>,
    listed: &[(u64, PathBuf)],
    writable: bool,
    mode: RecoveryMode,
    manifest: &[ManifestEntry],
    trust_manifest: bool,
) -> Result<OpenedSegments> {
    let mut segments: Vec<SegmentEntry> = Vec::with_capacity(listed.len());
    let mut manifest_stale = false;
    let mut contradicted = false;
    let mut last_footer_unreadable = false;
    let described = |first: u64| {
        manifest.binary_search_by_key(&first, |entry| entry.header.first_position).ok().map(|found| &manifest[found])
    };
    for (index, (first, path)) in listed.iter().enumerate() {
        let is_last = index + 1 == listed.len();
        let (segment, footer) = match described(*first) {
            Some(entry) if trust_manifest && index + 2 < listed.len() => {
                let segment = LazySegment::described(Arc::clone(storage), path.clone(), entry.clone(), writable);
                (segment, Some(entry.footer))
            }
            entry => {
                let segment = Segment::open(&**storage, path, *first, writable)?;
                let footer = match segment.footer() {
                    Ok(footer) => footer,
                    // A footer torn while it was being written: the segment was never
                    // sealed, it is still the active one. Its bytes are cut with the tail.
                    Err(_) if is_last && mode != RecoveryMode::Strict => {
                        last_footer_unreadable = true;
                        None
                    }
                    Err(error) => return Err(error),
                };
                let segment = LazySegment::open(segment);
                match (footer, entry) {
                    (Some(footer), entry) => {
                        let differs = entry.is_some_and(|entry| *entry != segment.manifest_entry(footer));
                        contradicted |= differs;
                        manifest_stale |= differs || entry.is_none();
                    }
                    // The manifest lists only sealed segments.
                    (None, Some(_)) => (contradicted, manifest_stale) = (true, true),
                    (None, None) => {}
                }
                (segment, footer)
            }
        };
        if !is_last && footer.is_none() {
            return Err(Error::corrupted(path, segment.get()?.data_limit(), CorruptionKind::MissingFooter));
        }
        if let Some(previous) = segments.last() {
            let expected = previous.footer.map_or(0, |footer| footer.last_position + 1);
            if *first != expected {
                return Err(Error::corrupted(path, 0, CorruptionKind::MissingSegment { position: expected }));
            }
        }
        segments.push(SegmentEntry { segment: Arc::new(segment), footer, index: IndexHandle::lazy() });
    }
    Ok(OpenedSegments { segments, manifest_stale, contradicted, last_footer_unreadable })
}

/// Scans a segment's records up to `limit`, noting each stream's last version.
pub(crate) fn scan_for_streams(
    segment: &Segment,
    limit: u64,
    previous_timestamp_ns: u64,
    streams: &mut FxHashMap<Box<str>, StreamState>,
) -> ScanOutcome {
    scan(
        segment.bytes(),
        HEADER_SIZE as u64,
        limit,
        segment.first_position(),
        previous_timestamp_ns,
        |record: &RecordRef<'_>, _| {
            let state =
                StreamState { last_version: record.header.stream_version, last_position: record.header.position };
            match streams.get_mut(record.stream) {
                Some(existing) => *existing = state,
                None => {
                    streams.insert(record.stream.into(), state);
                }
            }
        },
    )
}

/// What [`recover_tail`] knows beside the segment's bytes.
struct TailCheck {
    mode: RecoveryMode,
    writable: bool,
    /// Where a clean close's index (still on disk, so nothing was appended
    /// since) says the records end: records before it were durable.
    promised_end: Option<u64>,
}

/// The data end claimed by an intact segment index file of the active
/// segment: one is left only by a clean close, after the records were synced,
/// and removed before the next append.
fn promised_data_end(storage: &dyn Storage, directory: &Path, segment: &Segment) -> Option<u64> {
    let path = directory.join(crate::index::segment_index::file_name(segment.first_position()));
    let bytes = storage::read_all(storage, &path).ok()?;
    let data_end = SegmentIndex::peek_data_end(&bytes)?;
    SegmentIndex::decode(&bytes, segment.first_position(), data_end).ok().map(|_| data_end)
}

/// Decides what the bytes after the active segment's last complete batch are,
/// and cuts them when they are a torn write.
fn recover_tail(
    storage: &dyn Storage,
    segment: &Segment,
    outcome: &ScanOutcome,
    check: &TailCheck,
    report: &mut RecoveryReport,
) -> Result<()> {
    let TailCheck { mode, writable, promised_end } = *check;
    let (problem_offset, reason) = match &outcome.end {
        ScanEnd::Clean => (outcome.valid_end, None),
        ScanEnd::IncompleteBatch { offset } => (*offset, None),
        ScanEnd::Invalid { offset, kind } => (*offset, Some(kind.clone())),
    };
    // Records a clean close made durable are missing: damage, whatever the
    // bytes look like (a flipped bit in the last record looks like a torn
    // write otherwise).
    let lost_durable = promised_end.is_some_and(|end| outcome.valid_end < end);
    let Some(last_non_zero) = segment::last_non_zero(segment.bytes(), outcome.valid_end) else {
        if lost_durable {
            if mode != RecoveryMode::Salvage {
                let kind =
                    CorruptionKind::Truncated { needed: promised_end.unwrap_or(0), available: outcome.valid_end };
                return Err(Error::corrupted(segment.path(), outcome.valid_end, kind));
            }
            // Salvage keeps what is left; the promise no longer holds.
            remove_active_index(storage, segment)?;
        }
        return Ok(());
    };
    let bad_offset = match &reason {
        Some(_) => problem_offset,
        None => problem_offset.max(outcome.valid_end),
    };
    let kind = reason.clone().unwrap_or(match outcome.end {
        ScanEnd::IncompleteBatch { .. } => CorruptionKind::IncompleteBatch,
        _ => CorruptionKind::NonZeroPadding,
    });
    if !writable {
        // A reader cannot tell a torn write, or damage, from a writer still
        // appending (a batch being copied in shows its records one by one,
        // for as long as the copy takes): what follows the last complete batch
        // is not shown yet, and reported; the writer's own open judges it.
        report.torn_tail = Some(DroppedBytes {
            path: segment.path().to_path_buf(),
            offset: outcome.valid_end,
            length_bytes: last_non_zero + 1 - outcome.valid_end,
            reason,
            saved_to: None,
        });
        return Ok(());
    }
    let strict = mode == RecoveryMode::Strict;
    // A bad record with a valid one after it is damage in the middle of the log,
    // not a write torn by a crash (a torn write leaves nothing valid behind it).
    let mid_log = !strict
        && (lost_durable
            || valid_record_after(segment.bytes(), outcome.stop_offset, last_non_zero, outcome.stop_position));
    if strict || (mid_log && mode != RecoveryMode::Salvage) {
        return Err(Error::corrupted(segment.path(), bad_offset, kind));
    }
    let mut dropped = DroppedBytes {
        path: segment.path().to_path_buf(),
        offset: outcome.valid_end,
        length_bytes: last_non_zero + 1 - outcome.valid_end,
        reason,
        saved_to: None,
    };
    if writable {
        if mid_log {
            dropped.saved_to = Some(salvage::save_copy(storage, segment)?);
        }
        // Snapshots of the events cut first (see `snapshot::remove_beyond`):
        // their positions are about to be written again. (A torn tail was
        // never acknowledged as durable, and snapshots are written only of
        // durable events, but salvage cuts events that were.)
        crate::snapshot::remove_beyond(storage, storage::parent_of(segment.path()), outcome.next_position, false)?;
        segment.zero_range(outcome.valid_end, last_non_zero + 1)?;
        // A clean close's index describes what was just cut: it must not
        // outlive the cut, or the next open would take it as a promise the
        // segment no longer keeps.
        remove_active_index(storage, segment)?;
    }
    if mid_log {
        report.salvaged.push(dropped);
    } else {
        report.torn_tail = Some(dropped);
    }
    Ok(())
}

/// Removes the active segment's index file, durably, if there is one.
fn remove_active_index(storage: &dyn Storage, segment: &Segment) -> Result<()> {
    let directory = storage::parent_of(segment.path());
    let path = directory.join(crate::index::segment_index::file_name(segment.first_position()));
    if storage.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
        storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))?;
    }
    Ok(())
}

/// True when a valid record of position `position` or later starts anywhere in
/// `(from, to]`. Records of an unfinished batch lie before `from`, so they do
/// not count. Cheap checks (length, trailer, position range) come first, so
/// that the CRC runs only where a record is plausible: a torn tail of any size
/// is checked in time linear in its size.
fn valid_record_after(bytes: &[u8], from: u64, to: u64, position: u64) -> bool {
    // Records may end in zero bytes (the high bytes of the length copy), so a
    // record starting at or before `to` may end after it.
    let last_start = (to as usize).min(bytes.len());
    let region = last_start.saturating_sub(from as usize) + record::RECORD_OVERHEAD;
    let position_max = position.saturating_add((region / record::RECORD_OVERHEAD) as u64);
    (from as usize + 1..=last_start).any(|start| {
        let Some(header) = bytes.get(start..start + record::HEADER_SIZE) else { return false };
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if !(record::RECORD_OVERHEAD..=bytes.len() - start).contains(&length) {
            return false;
        }
        let trailer = &bytes[start + length - record::TRAILER_SIZE..start + length];
        let record_position = u64::from_le_bytes(header[8..16].try_into().unwrap_or([0xff; 8]));
        if u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize != length
            || !(position..=position_max).contains(&record_position)
        {
            return false;
        }
        matches!(record::decode(&bytes[start..start + length]), Ok(Decoded::Record(_)))
    })
}

/// Loads the stream table covering every position below `target`: the newest
/// valid table file, brought up to `target` by scanning sealed segments when it
/// is older, or rebuilt from the first segment when none is usable.
/// The stream table covering the positions below `target`. When the table
/// written for exactly that point is there and its header is sound, its CRC
/// is left to its first use (see `SealedStreams`); otherwise it is found or
/// rebuilt now, by [`load_stream_table`].
pub(crate) fn find_sealed_streams(
    context: &Arc<IndexContext>,
    segments: &[SegmentEntry],
    target: u64,
    report: &mut RecoveryReport,
) -> Result<SealedStreams> {
    let storage = &*context.storage;
    let exact = segments
        .iter()
        .rev()
        .find(|entry| entry.footer.is_some_and(|footer| footer.last_position + 1 == target))
        .map(|entry| context.directory.join(stream_table::file_name(entry.segment.first_position())));
    if let Some(path) = exact {
        let table = storage::map_all(storage, &path).ok().and_then(|bytes| StreamTable::decode_unverified(bytes).ok());
        if let Some(table) = table.filter(|table| table.next_position() == target && table_fits(table, segments)) {
            return Ok(SealedStreams::unchecked(Unchecked {
                table,
                path,
                segments: segments.to_vec(),
                context: Arc::clone(context),
                generation: *context.generation.lock(),
            }));
        }
    }
    let table = load_stream_table(storage, &context.directory, segments, target, context.writable, report)?;
    Ok(SealedStreams::checked(table))
}

/// The open segment of `segments` sealed with its last record at `next - 1`,
/// and its footer.
fn open_segment_ending_at(segments: &[SegmentEntry], next: u64) -> Option<(&Segment, segment::SegmentFooter)> {
    let last = next.checked_sub(1)?;
    let entry = segments.iter().find(|entry| entry.footer.is_some_and(|footer| footer.last_position == last))?;
    Some((entry.segment.if_open()?, entry.footer?))
}

/// The stored CRC of the last record before position `next`, when one of
/// `segments` is sealed there and open.
pub(crate) fn last_record_crc(segments: &[SegmentEntry], next: u64) -> Option<u32> {
    let (segment, footer) = open_segment_ending_at(segments, next)?;
    segment.record_crc_before(footer.data_end_offset)
}

/// Whether `table` describes the history `segments` hold. A writer may cut
/// away the segment a table ends at and grow it back to the same position,
/// sealing a table of the same name for the other history, while a reader
/// (another process) still holds the first: the table's anchor must be the
/// CRC of the record these segments hold at its last covered position. A
/// table from before version 6 has no anchor and is taken as it is; so is
/// one whose last covered segment is purged here or not open (a writable
/// open's sealed segments, which no other process rewrites).
fn table_fits(table: &StreamTable, segments: &[SegmentEntry]) -> bool {
    match (table.anchor_crc(), open_segment_ending_at(segments, table.next_position())) {
        (Some(anchor), Some((segment, footer))) => segment.record_crc_before(footer.data_end_offset) == Some(anchor),
        _ => true,
    }
}

pub(crate) fn load_stream_table(
    storage: &dyn Storage,
    directory: &Path,
    segments: &[SegmentEntry],
    target: u64,
    writable: bool,
    report: &mut RecoveryReport,
) -> Result<StreamTable> {
    let target_path = segments
        .iter()
        .rev()
        .find(|entry| entry.footer.is_some_and(|footer| footer.last_position + 1 == target))
        .map(|entry| directory.join(stream_table::file_name(entry.segment.first_position())));
    let mut base = None;
    for first in list_stream_tables(storage, directory)? {
        let path = directory.join(stream_table::file_name(first));
        let Ok(bytes) = storage::map_all(storage, &path) else { continue };
        let Ok(table) = StreamTable::decode(bytes) else { continue };
        if !table_fits(&table, segments) {
            continue;
        }
        let start = table.next_position();
        if start == target {
            return Ok(table);
        }
        if start < target && segments.iter().any(|entry| entry.segment.first_position() == start) {
            base = Some(table);
            break;
        }
    }
    let base = match base {
        Some(table) => table,
        None if segments[0].segment.first_position() == 0 => StreamTable::empty(0),
        None => {
            // The history before the first segment was purged and no table
            // remembers it: stream versions cannot be rebuilt from the log.
            let path = target_path.unwrap_or_else(|| directory.join(stream_table::file_name(target)));
            return Err(Error::corrupted(path, 0, CorruptionKind::InvalidField { field: "stream table" }));
        }
    };
    let mut updates: FxHashMap<Box<str>, StreamState> = FxHashMap::default();
    for entry in segments.iter().filter(|entry| {
        entry.segment.first_position() >= base.next_position() && entry.segment.first_position() < target
    }) {
        let segment = entry.segment.get()?;
        let Some(footer) = entry.footer else {
            return Err(Error::corrupted(segment.path(), segment.data_limit(), CorruptionKind::MissingFooter));
        };
        let outcome = scan_for_streams(segment, footer.data_end_offset, 0, &mut updates);
        check_against_footer(segment, &outcome, &footer)?;
    }
    let anchor_crc = last_record_crc(segments, target).unwrap_or(0);
    let merged = base.merged_with(updates.iter().map(|(name, state)| (&**name, *state)), target, anchor_crc);
    let table = StreamTable::decode(merged).map_err(|(offset, kind)| Error::corrupted(directory, offset, kind))?;
    if let Some(path) = target_path {
        if writable {
            // The table is a hint: failing to store it costs a rebuild next time.
            let _ = storage::write_atomic(storage, &path, table.as_bytes());
        }
        report.rebuilt_indexes.push(path);
    }
    Ok(table)
}

/// Checks that a full scan of a sealed segment agrees with its footer.
pub(crate) fn check_against_footer(
    segment: &Segment,
    outcome: &ScanOutcome,
    footer: &segment::SegmentFooter,
) -> Result<()> {
    if let ScanEnd::Invalid { offset, kind } = &outcome.end {
        return Err(Error::corrupted(segment.path(), *offset, kind.clone()));
    }
    if outcome.valid_end != footer.data_end_offset || outcome.record_count != footer.record_count {
        return Err(Error::corrupted(segment.path(), outcome.valid_end, CorruptionKind::IncompleteBatch));
    }
    Ok(())
}
