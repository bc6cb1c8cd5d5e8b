//! `truncate_after`, made atomic by a marker file: the marker is written
//! (durably) before anything is removed and deleted only once the cut is
//! durable, and opening a directory that still has a marker finishes the cut.
//!
//! Marker file `TRUNCATE`, 20 bytes: magic "CHRNLTRC", u64 position (the last
//! position kept), u32 crc32 of the first 16 bytes.

use std::io;
use std::path::Path;

use byteorder::{ByteOrder, LittleEndian};

use super::open::{list_segments, list_stream_tables};
use crate::error::{CorruptionKind, Error, Result};
use crate::index::{segment_index, stream_table};
use crate::record::{self, Decoded, FLAGS_OFFSET, FLAG_BATCH_END, LENGTH_OFFSET};
use crate::segment::{self, scan, Segment, HEADER_SIZE};
use crate::storage::{self, Storage};

/// Name of the marker file.
pub(crate) const TRUNCATE_MARKER: &str = "TRUNCATE";
/// Magic number of the marker.
pub const TRUNCATE_MAGIC: [u8; 8] = *b"CHRNLTRC";
/// Size of the marker file.
pub const TRUNCATE_MARKER_SIZE: usize = TRUNCATE_MAGIC.len() + size_of::<u64>() + size_of::<u32>();

/// Writes the marker durably.
pub(crate) fn write_marker(storage: &dyn Storage, directory: &Path, position: u64) -> Result<()> {
    let mut bytes = [0u8; TRUNCATE_MARKER_SIZE];
    bytes[..8].copy_from_slice(&TRUNCATE_MAGIC);
    LittleEndian::write_u64(&mut bytes[8..16], position);
    let crc = crc32fast::hash(&bytes[..16]);
    LittleEndian::write_u32(&mut bytes[16..], crc);
    let path = directory.join(TRUNCATE_MARKER);
    storage::write_atomic(storage, &path, &bytes).map_err(|e| Error::io("write truncate marker", &path, e))
}

/// Reads the marker, if there is one.
pub(crate) fn read_marker(storage: &dyn Storage, directory: &Path) -> Result<Option<u64>> {
    let path = directory.join(TRUNCATE_MARKER);
    let bytes = match storage::read_all(storage, &path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("read truncate marker", &path, error)),
    };
    if bytes.len() != TRUNCATE_MARKER_SIZE {
        let kind = CorruptionKind::Truncated { needed: TRUNCATE_MARKER_SIZE as u64, available: bytes.len() as u64 };
        return Err(Error::corrupted(&path, 0, kind));
    }
    if bytes[..8] != TRUNCATE_MAGIC {
        return Err(Error::corrupted(&path, 0, CorruptionKind::BadMagic));
    }
    let stored = LittleEndian::read_u32(&bytes[16..]);
    let computed = crc32fast::hash(&bytes[..16]);
    if stored != computed {
        return Err(Error::corrupted(&path, 16, CorruptionKind::ChecksumMismatch { stored, computed }));
    }
    Ok(Some(LittleEndian::read_u64(&bytes[8..16])))
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
