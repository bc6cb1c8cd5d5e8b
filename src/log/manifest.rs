//! When the log trusts, writes and removes its manifest (the file's layout is
//! in [`crate::segment::manifest`]).
//!
//! The manifest may lag behind the segments (a seal whose manifest write
//! failed, a log written before version 5): segments it does not describe are
//! opened at once. It must never describe a segment other than the one on
//! disk, so it is removed before anything rewrites a sealed segment (a
//! truncation, salvage) and before a new log starts over in a directory.

use std::io;
use std::path::Path;

use super::state::SegmentEntry;
use super::truncation::remove_if_present;
use crate::error::Result;
use crate::segment::manifest::{self, ManifestEntry, MANIFEST_FILE_NAME};
use crate::storage::{self, Storage};

/// The manifest's entries; none when it is missing, unreadable or damaged
/// (a hint: the segments are opened instead).
pub(crate) fn read(storage: &dyn Storage, directory: &Path) -> Vec<ManifestEntry> {
    storage::read_all(storage, &directory.join(MANIFEST_FILE_NAME))
        .ok()
        .and_then(|bytes| manifest::decode(&bytes).ok())
        .unwrap_or_default()
}

/// Writes the manifest describing every sealed segment of `segments`.
pub(crate) fn store(storage: &dyn Storage, directory: &Path, segments: &[SegmentEntry]) -> io::Result<()> {
    let entries: Vec<ManifestEntry> =
        segments.iter().filter_map(|entry| entry.footer.map(|footer| entry.segment.manifest_entry(footer))).collect();
    storage::write_atomic(storage, &directory.join(MANIFEST_FILE_NAME), &manifest::encode(entries.iter()))
}

/// Removes the manifest, if there is one. Not made durable here: callers sync
/// the directory before the change the removal protects against can matter.
pub(crate) fn remove(storage: &dyn Storage, directory: &Path) -> Result<()> {
    remove_if_present(storage, &directory.join(MANIFEST_FILE_NAME))
}
