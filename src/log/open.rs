//! Opening a log directory: listing and checking segments, recovering the tail
//! of the active segment, and loading the stream table.
//!
//! Only the active (last) segment is scanned; sealed segments are trusted by
//! their header and footer and checked record by record when read (or all at
//! once by `verify`, or by [`RecoveryMode::Salvage`]).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::options::LogOptions;
use super::salvage;
use super::state::{DroppedBytes, RecoveryReport, SegmentEntry, State};
use super::truncation;
use super::RecoveryMode;
use crate::error::{CorruptionKind, Error, Result};
use crate::index::stream_table::{self, StreamState, StreamTable};
use crate::record::{self, Decoded, RecordRef};
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
    let mut segments: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| segment::parse_file_name(name).map(|first| (first, directory.join(name))))
        .collect();
    segments.sort_unstable_by_key(|(first, _)| *first);
    Ok(segments)
}

/// First positions of the stream table files of a directory, newest first.
pub(crate) fn list_stream_tables(storage: &dyn Storage, directory: &Path) -> Result<Vec<u64>> {
    let names = storage.list_dir(directory).map_err(|e| Error::io("list directory", directory, e))?;
    let mut tables: Vec<u64> = names.iter().filter_map(|name| stream_table::parse_file_name(name)).collect();
    tables.sort_unstable_by(|a, b| b.cmp(a));
    Ok(tables)
}

/// Opens (and, when writable, repairs) the log in `directory`.
pub(crate) fn load(directory: &Path, options: &LogOptions, writable: bool) -> Result<Loaded> {
    let storage = &*options.storage;
    let mut report = RecoveryReport::default();
    if writable {
        remove_temporaries(storage, directory)?;
        if let Some(position) = truncation::read_marker(storage, directory)? {
            truncation::apply(storage, directory, position)?;
            truncation::remove_marker(storage, directory)?;
            report.completed_truncation = Some(position);
        }
        if options.recovery_mode == RecoveryMode::Salvage {
            salvage::salvage_sealed_segments(storage, directory, &mut report)?;
        }
    }
    // A reader that finds a truncation in progress shows the log as it will be
    // once the writer finishes the cut, never the events being removed.
    let pending_truncation = if writable { None } else { truncation::read_marker(storage, directory)? };
    let mut listed = list_segments(storage, directory)?;
    if listed.is_empty() {
        if !writable {
            let error = io::Error::new(io::ErrorKind::NotFound, "no segment files: not a chronolog directory");
            return Err(Error::io("open log", directory, error));
        }
        let created = Segment::create(storage, directory, 0, options.segment_capacity_bytes)?;
        listed.push((0, created.path().to_path_buf()));
    }
    let segments = open_segments(storage, &listed, writable, options.recovery_mode)?;
    let Some(last) = segments.last().cloned() else { unreachable!("at least one segment was listed or created") };
    let previous_max_timestamp_ns = segments
        .len()
        .checked_sub(2)
        .and_then(|index| segments[index].footer)
        .map_or(0, |footer| footer.max_timestamp_ns);

    let mut state = State {
        segments,
        data_end: HEADER_SIZE as u64,
        next_position: last.segment.first_position(),
        last_timestamp_ns: previous_max_timestamp_ns,
        segment_first_timestamp_ns: None,
        segment_record_count: 0,
        sealed_streams: Arc::new(StreamTable::empty(0)),
        active_streams: HashMap::new(),
        buffer: Vec::new(),
    };
    if let Some(footer) = last.footer {
        // The last segment was sealed but its successor was never created (a
        // crash or a full disk in between): the next append creates it.
        state.data_end = footer.data_end_offset;
        state.next_position = footer.last_position + 1;
        state.last_timestamp_ns = footer.max_timestamp_ns;
        state.segment_first_timestamp_ns = Some(footer.min_timestamp_ns);
        state.segment_record_count = footer.record_count;
        state.sealed_streams = Arc::new(load_stream_table(
            storage,
            directory,
            &state.segments,
            state.next_position,
            writable,
            &mut report,
        )?);
    } else {
        state.sealed_streams = Arc::new(load_stream_table(
            storage,
            directory,
            &state.segments,
            last.segment.first_position(),
            writable,
            &mut report,
        )?);
        let mut active_streams: HashMap<Box<str>, StreamState> = HashMap::new();
        let outcome =
            scan_for_streams(&last.segment, last.segment.data_limit(), previous_max_timestamp_ns, &mut active_streams);
        recover_tail(storage, &last.segment, &outcome, options.recovery_mode, writable, &mut report)?;
        state.active_streams = active_streams;
        state.data_end = outcome.valid_end;
        state.next_position = outcome.next_position;
        state.last_timestamp_ns = outcome.last_timestamp_ns;
        state.segment_first_timestamp_ns = outcome.first_timestamp_ns;
        state.segment_record_count = outcome.record_count;
    }
    if let Some(position) = pending_truncation {
        cap_at(storage, directory, &mut state, position, &mut report)?;
    }
    Ok(Loaded { state, report })
}

/// Limits a read-only state to the events up to `position`.
fn cap_at(
    storage: &dyn Storage,
    directory: &Path,
    state: &mut State,
    position: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    if position < state.first_position() || position + 1 >= state.next_position {
        return Ok(());
    }
    let index = state.segments.partition_point(|entry| entry.segment.first_position() <= position).saturating_sub(1);
    state.segments.truncate(index + 1);
    let segment = Arc::clone(&state.segments[index].segment);
    state.segments[index].footer = None;
    let mut streams = HashMap::new();
    let mut cut = None;
    let outcome = scan(
        segment.bytes(),
        HEADER_SIZE as u64,
        segment.data_limit(),
        segment.first_position(),
        0,
        |record, offset| {
            if record.header.position <= position {
                let state =
                    StreamState { last_version: record.header.stream_version, last_position: record.header.position };
                match streams.get_mut(record.stream) {
                    Some(existing) => *existing = state,
                    None => {
                        streams.insert(Box::<str>::from(record.stream), state);
                    }
                }
            }
            if record.header.position == position {
                cut = Some((offset + u64::from(record.encoded_length), record.header.timestamp_ns));
            }
        },
    );
    let Some((data_end, timestamp_ns)) = cut else {
        let kind = CorruptionKind::MissingSegment { position };
        return Err(Error::corrupted(segment.path(), outcome.valid_end, kind));
    };
    state.sealed_streams =
        Arc::new(load_stream_table(storage, directory, &state.segments, segment.first_position(), false, report)?);
    state.active_streams = streams;
    state.data_end = data_end;
    state.segment_record_count = position + 1 - segment.first_position();
    state.next_position = position + 1;
    state.last_timestamp_ns = timestamp_ns;
    state.segment_first_timestamp_ns = outcome.first_timestamp_ns;
    Ok(())
}

fn remove_temporaries(storage: &dyn Storage, directory: &Path) -> Result<()> {
    let names = storage.list_dir(directory).map_err(|e| Error::io("list directory", directory, e))?;
    // Only the temporaries chronolog itself makes: a user's own `.tmp` files in
    // the directory are none of its business.
    let ours = |name: &str| {
        name.strip_suffix(".tmp").is_some_and(|stem| {
            stem == super::truncation::TRUNCATE_MARKER
                || segment::parse_file_name(stem).is_some()
                || stream_table::parse_file_name(stem).is_some()
        })
    };
    for name in names.iter().filter(|name| ours(name)) {
        let path = directory.join(name);
        storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    }
    Ok(())
}

/// Opens every listed segment and checks that they chain: each one except the
/// last is sealed, and each starts right after its predecessor.
fn open_segments(
    storage: &dyn Storage,
    listed: &[(u64, PathBuf)],
    writable: bool,
    mode: RecoveryMode,
) -> Result<Vec<SegmentEntry>> {
    let mut segments: Vec<SegmentEntry> = Vec::with_capacity(listed.len());
    for (index, (first, path)) in listed.iter().enumerate() {
        let segment = Arc::new(Segment::open(storage, path, *first, writable)?);
        let is_last = index + 1 == listed.len();
        let footer = match segment.footer() {
            Ok(footer) => footer,
            // A footer torn while it was being written: the segment was never
            // sealed, it is still the active one. Its bytes are cut with the tail.
            Err(_) if is_last && mode != RecoveryMode::Strict => None,
            Err(error) => return Err(error),
        };
        if !is_last && footer.is_none() {
            return Err(Error::corrupted(path, segment.data_limit(), CorruptionKind::MissingFooter));
        }
        if let Some(previous) = segments.last() {
            let expected = previous.footer.map_or(0, |footer| footer.last_position + 1);
            if *first != expected {
                return Err(Error::corrupted(path, 0, CorruptionKind::MissingSegment { position: expected }));
            }
        }
        segments.push(SegmentEntry { segment, footer });
    }
    Ok(segments)
}

/// Scans a segment's records up to `limit`, noting each stream's last version.
pub(crate) fn scan_for_streams(
    segment: &Segment,
    limit: u64,
    previous_timestamp_ns: u64,
    streams: &mut HashMap<Box<str>, StreamState>,
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

/// Decides what the bytes after the active segment's last complete batch are,
/// and cuts them when they are a torn write.
fn recover_tail(
    storage: &dyn Storage,
    segment: &Segment,
    outcome: &ScanOutcome,
    mode: RecoveryMode,
    writable: bool,
    report: &mut RecoveryReport,
) -> Result<()> {
    let (problem_offset, reason) = match &outcome.end {
        ScanEnd::Clean => (outcome.valid_end, None),
        ScanEnd::IncompleteBatch { offset } => (*offset, None),
        ScanEnd::Invalid { offset, kind } => (*offset, Some(kind.clone())),
    };
    let Some(last_non_zero) = segment::last_non_zero(segment.bytes(), outcome.valid_end) else {
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
    // A bad record with a valid one after it is damage in the middle of the log,
    // not a write torn by a crash (a torn write leaves nothing valid behind it).
    let mid_log = valid_record_after(segment.bytes(), outcome.stop_offset, last_non_zero, outcome.stop_position);
    let strict = mode == RecoveryMode::Strict;
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
        segment.zero_range(outcome.valid_end, last_non_zero + 1)?;
    }
    if mid_log {
        report.salvaged.push(dropped);
    } else {
        report.torn_tail = Some(dropped);
    }
    Ok(())
}

/// True when a valid record of position `position` or later starts anywhere in
/// `(from, to]`. Records of an unfinished batch lie before `from`, so they do
/// not count.
fn valid_record_after(bytes: &[u8], from: u64, to: u64, position: u64) -> bool {
    let end = (to as usize + 1).min(bytes.len());
    (from as usize + 1..end).any(|start| {
        matches!(record::decode(&bytes[start..]), Ok(Decoded::Record(record)) if record.header.position >= position)
    })
}

/// Loads the stream table covering every position below `target`: the newest
/// valid table file, brought up to `target` by scanning sealed segments when it
/// is older, or rebuilt from the first segment when none is usable.
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
        let Ok(bytes) = storage::read_all(storage, &path) else { continue };
        let Ok(table) = StreamTable::decode(bytes) else { continue };
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
    let mut updates: HashMap<Box<str>, StreamState> = HashMap::new();
    for entry in segments.iter().filter(|entry| {
        entry.segment.first_position() >= base.next_position() && entry.segment.first_position() < target
    }) {
        let Some(footer) = entry.footer else {
            return Err(Error::corrupted(
                entry.segment.path(),
                entry.segment.data_limit(),
                CorruptionKind::MissingFooter,
            ));
        };
        let outcome = scan_for_streams(&entry.segment, footer.data_end_offset, 0, &mut updates);
        check_against_footer(&entry.segment, &outcome, &footer)?;
    }
    let table = StreamTable::decode(base.merged_with(&updates, target))
        .map_err(|(offset, kind)| Error::corrupted(directory, offset, kind))?;
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
