//! [`super::RecoveryMode::Salvage`]: check every segment, cut the log at the
//! first damaged record, and set the dropped bytes aside rather than delete
//! them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::open::{check_against_footer, list_segments};
use super::state::{DroppedBytes, RecoveryReport};
use super::truncation::remove_tables_from;
use crate::error::{Error, Result};
use crate::segment::{self, scan, Segment, HEADER_SIZE};
use crate::storage::{self, OpenMode, Storage};

/// Folder, inside the log directory, where salvage keeps what it dropped.
pub(crate) const SALVAGE_DIRECTORY: &str = "salvage";

/// Copies a whole segment file into the salvage folder; returns the copy's path.
pub(crate) fn save_copy(storage: &dyn Storage, segment: &Segment) -> Result<PathBuf> {
    save_bytes(storage, segment.path(), segment.bytes())
}

fn salvage_path(storage: &dyn Storage, original: &Path) -> Result<PathBuf> {
    let log_directory = storage::parent_of(original);
    let directory = log_directory.join(SALVAGE_DIRECTORY);
    if !storage.exists(&directory).map_err(|e| Error::io("stat", &directory, e))? {
        storage.create_dir_all(&directory).map_err(|e| Error::io("create salvage folder", &directory, e))?;
    }
    // The folder's entry must be durable before a copy in it is relied on
    // (the original is cut right after). Synced even when the folder was
    // there: an earlier salvage may have made it and failed to sync it. A
    // salvage is rare; one more directory sync costs nothing that matters.
    storage.sync_dir(log_directory).map_err(|e| Error::io("sync directory", log_directory, e))?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = original.file_name().map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
    Ok(directory.join(format!("{name}.{stamp}")))
}

fn save_bytes(storage: &dyn Storage, original: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let target = salvage_path(storage, original)?;
    let write = || -> std::io::Result<()> {
        let file = storage.open(&target, OpenMode::CreateNew)?;
        file.write_all_at(bytes, 0)?;
        file.sync_data()?;
        storage.sync_dir(storage::parent_of(&target))
    };
    write().map_err(|e| Error::io("save salvage copy", &target, e))?;
    Ok(target)
}

fn move_aside(storage: &dyn Storage, path: &Path, report: &mut RecoveryReport) -> Result<()> {
    let target = salvage_path(storage, path)?;
    storage.rename(path, &target).map_err(|e| Error::io("move to salvage", path, e))?;
    // Its new entry first, then the removal of the old one: in between, a
    // power loss leaves the file in both folders, never in neither.
    for directory in [storage::parent_of(&target), storage::parent_of(path)] {
        storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))?;
    }
    report.salvaged.push(DroppedBytes {
        path: path.to_path_buf(),
        offset: 0,
        length_bytes: 0,
        reason: None,
        saved_to: Some(target),
    });
    Ok(())
}

/// Checks every segment but the last record by record; at the first damage,
/// keeps the valid prefix of that segment (which becomes the active one) and
/// moves every later segment aside.
pub(crate) fn salvage_sealed_segments(
    storage: &dyn Storage,
    directory: &Path,
    report: &mut RecoveryReport,
) -> Result<()> {
    let listed = list_segments(storage, directory)?;
    let mut expected_first = listed.first().map_or(0, |(first, _)| *first);
    for (index, (first, path)) in listed.iter().enumerate() {
        let is_last = index + 1 == listed.len();
        let segment = match Segment::open(storage, path, *first, true) {
            Ok(segment) if *first == expected_first => segment,
            Ok(_) => return cut_from(storage, directory, &listed[index..], expected_first, report),
            Err(error) if error.is_corruption() => {
                return cut_from(storage, directory, &listed[index..], expected_first, report);
            }
            Err(error) => return Err(error),
        };
        let footer = match segment.footer() {
            Ok(Some(footer)) => footer,
            // The last segment without a footer is the active one: its tail is
            // recovered by the normal open path.
            _ if is_last => return Ok(()),
            _ => {
                let outcome = scan(segment.bytes(), HEADER_SIZE as u64, segment.data_limit(), *first, 0, |_, _| {});
                let kept = (outcome.valid_end, outcome.next_position);
                return keep_prefix(storage, directory, &segment, kept, None, &listed[index + 1..], report);
            }
        };
        let outcome = scan(segment.bytes(), HEADER_SIZE as u64, footer.data_end_offset, *first, 0, |_, _| {});
        let padding_clean =
            segment.bytes()[footer.data_end_offset as usize..segment.data_limit() as usize].iter().all(|&b| b == 0);
        match check_against_footer(&segment, &outcome, &footer) {
            Ok(()) if padding_clean => expected_first = footer.last_position + 1,
            result => {
                let reason = match result {
                    Err(Error::Corrupted { kind, .. }) => Some(kind),
                    _ => Some(crate::CorruptionKind::NonZeroPadding),
                };
                let kept = (outcome.valid_end, outcome.next_position);
                return keep_prefix(storage, directory, &segment, kept, reason, &listed[index + 1..], report);
            }
        }
    }
    Ok(())
}

/// Keeps the records of `segment` up to `kept.0` (positions below `kept.1`)
/// and moves the later segments aside.
fn keep_prefix(
    storage: &dyn Storage,
    directory: &Path,
    segment: &Segment,
    kept: (u64, u64),
    reason: Option<crate::CorruptionKind>,
    later: &[(u64, PathBuf)],
    report: &mut RecoveryReport,
) -> Result<()> {
    let (valid_end, next_position) = kept;
    // The manifest describes the segments about to change (see `manifest`).
    super::manifest::remove(storage, directory)?;
    // Snapshots of the events set aside go first: their positions will be
    // written again (see `snapshot::remove_beyond`).
    crate::snapshot::remove_beyond(storage, directory, next_position, false)?;
    for (_, path) in later.iter().rev() {
        move_aside(storage, path, report)?;
    }
    let saved = save_bytes(storage, segment.path(), segment.bytes())?;
    let length_bytes = segment::last_non_zero(segment.bytes(), valid_end).map_or(0, |last| last + 1 - valid_end);
    segment::rewrite_prefix(storage, segment, valid_end, None)?;
    remove_tables_from(storage, directory, segment.first_position())?;
    storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))?;
    report.salvaged.push(DroppedBytes {
        path: segment.path().to_path_buf(),
        offset: valid_end,
        length_bytes,
        reason,
        saved_to: Some(saved),
    });
    Ok(())
}

fn cut_from(
    storage: &dyn Storage,
    directory: &Path,
    from: &[(u64, PathBuf)],
    first_position: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let capacity = from
        .first()
        .and_then(|(_, path)| storage.open(path, OpenMode::ReadOnly).ok())
        .and_then(|file| file.len().ok())
        .filter(|&length| length >= crate::segment::layout::SEGMENT_CAPACITY_BYTES_MIN);
    super::manifest::remove(storage, directory)?;
    crate::snapshot::remove_beyond(storage, directory, first_position, false)?;
    for (_, path) in from.iter().rev() {
        move_aside(storage, path, report)?;
    }
    if let Some((first, _)) = from.first() {
        remove_tables_from(storage, directory, *first)?;
        storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))?;
    }
    // Keep the positions going from where the valid log ends, in a fresh
    // segment of the same size as the one set aside.
    if let Some(capacity) = capacity {
        Segment::create(storage, directory, first_position, capacity)?;
    }
    Ok(())
}
