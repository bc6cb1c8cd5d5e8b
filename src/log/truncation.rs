//! `truncate_after`, made atomic by a marker file: the marker is written
//! (durably) before anything is removed and deleted only once the cut is
//! durable, and opening a directory that still has a marker finishes the cut.
//!
//! Marker file `TRUNCATE`, 20 bytes, encoded and checked by
//! `segment::truncate_marker`.

use std::io;
use std::path::Path;

use byteorder::{ByteOrder, LittleEndian};

use super::open::{list_segments, list_stream_tables};
use crate::error::{CorruptionKind, Error, Result};
use crate::index::{segment_index, stream_table};
use crate::record::{self, Decoded, FLAGS_OFFSET, FLAG_BATCH_END, LENGTH_OFFSET};
use crate::segment::truncate_marker::{self, TRUNCATE_MARKER_SIZE};
use crate::segment::{self, scan, Segment, HEADER_SIZE};
use crate::storage::{self, OpenMode, Storage};

/// Name of the marker file.
pub(crate) const TRUNCATE_MARKER: &str = truncate_marker::TRUNCATE_MARKER_FILE_NAME;

/// Writes the marker durably.
pub(crate) fn write_marker(storage: &dyn Storage, directory: &Path, position: u64) -> Result<()> {
    let path = directory.join(TRUNCATE_MARKER);
    storage::write_atomic(storage, &path, &truncate_marker::encode(position))
        .map_err(|e| Error::io("write truncate marker", &path, e))
}

/// Reads the marker, if there is one. Its size is checked before anything is
/// read, so that a damaged marker of any length costs no more than 20 bytes.
pub(crate) fn read_marker(storage: &dyn Storage, directory: &Path) -> Result<Option<u64>> {
    let path = directory.join(TRUNCATE_MARKER);
    let file = match storage.open(&path, OpenMode::ReadOnly) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("read truncate marker", &path, error)),
    };
    let length = file.len().map_err(|e| Error::io("read truncate marker", &path, e))?;
    if length != TRUNCATE_MARKER_SIZE as u64 {
        let kind = CorruptionKind::Truncated { needed: TRUNCATE_MARKER_SIZE as u64, available: length };
        return Err(Error::corrupted(&path, 0, kind));
    }
    let mut bytes = [0u8; TRUNCATE_MARKER_SIZE];
    file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io("read truncate marker", &path, e))?;
    truncate_marker::decode(&bytes).map(Some).map_err(|(offset, kind)| Error::corrupted(&path, offset, kind))
}

/// Removes the marker durably.
pub(crate) fn remove_marker(storage: &dyn Storage, directory: &Path) -> Result<()> {
    let path = directory.join(TRUNCATE_MARKER);
    storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))
}

/// Removes every record after `position` from the files. Idempotent: running it
/// again after a crash half-way gives the same result.
/// `resuming`: finishing a truncation a crash interrupted (see
/// `snapshot::remove_beyond`).
pub(crate) fn apply(storage: &dyn Storage, directory: &Path, position: u64, resuming: bool) -> Result<()> {
    let listed = list_segments(storage, directory)?;
    let Some((keep_first, keep_path)) = listed.iter().rev().find(|(first, _)| *first <= position).cloned() else {
        let first = listed.first().map_or(0, |(first, _)| *first);
        return Err(Error::PositionOutOfRange { position, first, next: first });
    };
    // Find the cut before removing anything: a log whose record `position`
    // cannot be read is left as it is.
    let segment = Segment::open(storage, &keep_path, keep_first, true)?;
    let footer = segment.footer()?;
    let on_boundary = footer.is_some_and(|footer| footer.last_position == position);
    let mut cut: Option<(u64, u64)> = None;
    if !on_boundary {
        let outcome =
            scan(segment.bytes(), HEADER_SIZE as u64, segment.data_limit(), keep_first, 0, |record, offset| {
                if record.header.position == position {
                    cut = Some((offset, offset + u64::from(record.encoded_length)));
                }
            });
        if cut.is_none() {
            let kind = CorruptionKind::MissingSegment { position };
            return Err(Error::corrupted(segment.path(), outcome.stop_offset, kind));
        }
    }
    // The manifest describes segments about to be removed or rewritten (see
    // `manifest`); the directory sync of the rewrite or the final one makes
    // its removal durable, and a crash before then repeats this truncation.
    super::manifest::remove(storage, directory)?;
    // Snapshots of the events being cut go first (see
    // `snapshot::remove_beyond`): the snapshot layer lives above the log, but
    // its files describe the log's history, which only a truncation rewrites.
    crate::snapshot::remove_beyond(storage, directory, position + 1, resuming)?;
    for (_, path) in listed.iter().rev().filter(|(first, _)| *first > position) {
        remove_if_present(storage, path)?;
    }
    match cut {
        // The cut falls on a segment boundary: the kept segment stays sealed.
        None => remove_tables_from(storage, directory, keep_first + 1)?,
        Some((record_start, record_end)) => {
            let has_more = footer.is_some() || segment::last_non_zero(segment.bytes(), record_end).is_some();
            if has_more {
                let patch = batch_end_patch(&segment, record_start, record_end)?;
                segment::rewrite_prefix(storage, &segment, record_end, patch.as_ref())?;
            }
            remove_tables_from(storage, directory, keep_first)?;
        }
    }
    storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))
}

/// The record ending the kept prefix must close its batch, or recovery would
/// drop it as an unfinished batch: the bytes of that record with the flag set
/// and its CRC recomputed, when it lacks the flag.
fn batch_end_patch(segment: &Segment, start: u64, end: u64) -> Result<Option<(u64, Vec<u8>)>> {
    let bytes = &segment.bytes()[start as usize..end as usize];
    match record::decode(bytes) {
        Ok(Decoded::Record(found)) if found.header.flags & FLAG_BATCH_END != 0 => Ok(None),
        Ok(Decoded::Record(_)) => {
            let mut patched = bytes.to_vec();
            patched[FLAGS_OFFSET] |= FLAG_BATCH_END;
            let crc = crc32fast::hash(&patched[LENGTH_OFFSET..]);
            LittleEndian::write_u32(&mut patched[..4], crc);
            Ok(Some((start, patched)))
        }
        Ok(Decoded::End) => {
            Err(Error::corrupted(segment.path(), start, CorruptionKind::InvalidField { field: "record" }))
        }
        Err(kind) => Err(Error::corrupted(segment.path(), start, kind)),
    }
}

/// Removes the stream tables and segment indexes of segments starting at
/// `first` or later: they describe records that are gone or changed.
pub(crate) fn remove_tables_from(storage: &dyn Storage, directory: &Path, first: u64) -> Result<()> {
    for table_first in list_stream_tables(storage, directory)?.into_iter().filter(|&t| t >= first) {
        remove_if_present(storage, &directory.join(stream_table::file_name(table_first)))?;
    }
    let names = storage.list_dir(directory).map_err(|e| Error::io("list directory", directory, e))?;
    for index_first in names.iter().filter_map(|name| segment_index::parse_file_name(name)).filter(|&i| i >= first) {
        remove_if_present(storage, &directory.join(segment_index::file_name(index_first)))?;
    }
    Ok(())
}

pub(crate) fn remove_if_present(storage: &dyn Storage, path: &Path) -> Result<()> {
    match storage.remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, error)),
        _ => Ok(()),
    }
}
