//! Snapshot files: a state (an aggregate's, a read model's) saved with the log
//! position it reflects, so that rebuilding starts from the latest snapshot at
//! or before the target point instead of from event zero.
//!
//! Snapshots live beside the log, in `<log directory>/snapshots/`, one folder
//! per name, one file per snapshot named after the position it reflects. They
//! are hints like the indexes: a damaged snapshot, one of another schema
//! version, or one made from events the log no longer holds (after a
//! truncation, or a power loss that took unsynced events) is skipped in favour
//! of an older one, and every skip is reported in [`SnapshotLookup::skipped`].
//!
//! ```
//! use chronolog::snapshot::{SnapshotBound, SnapshotMeta, SnapshotStore};
//! use chronolog::{Log, LogOptions, NewEvent};
//!
//! let directory = tempfile::tempdir()?;
//! let log = Log::open(directory.path(), LogOptions::default())?;
//! let appended = log.append(&NewEvent::new("counter", "Incremented", b""))?;
//!
//! let store = SnapshotStore::open(&log);
//! let meta = SnapshotMeta {
//!     name: "counter".into(),
//!     next_position: appended.position + 1,
//!     timestamp_ns: appended.timestamp_ns,
//!     version: 1,
//!     schema_version: 1,
//! };
//! store.write(&meta, b"1")?;
//!
//! let found = store.find("counter", SnapshotBound::Latest, 1, &log.view())?;
//! let snapshot = found.snapshot.expect("a snapshot");
//! assert_eq!(snapshot.payload(), b"1");
//! assert!(found.skipped.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod file;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{Error, Result};
use crate::log::{Log, LogView};
use crate::naming;
use crate::storage::{self, FileBytes, OpenMode, Storage};

pub use file::{SnapshotMeta, SNAPSHOT_HEADER_SIZE, SNAPSHOT_NAME_MAX};

/// The folder of a log directory that holds its snapshots.
pub const SNAPSHOTS_FOLDER: &str = "snapshots";
/// Extension of snapshot files.
pub const SNAPSHOT_EXTENSION: &str = "snap";
/// How many snapshots per name a store keeps unless told otherwise.
pub const KEEP_LAST_DEFAULT: usize = 3;
/// Files at least this large are mapped rather than read into memory.
const MAP_THRESHOLD_BYTES: u64 = 64 * 1024;

/// Which snapshots a lookup may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotBound {
    /// The newest one.
    Latest,
    /// Those reflecting no event at or after this position
    /// (`next_position <= end`).
    Before(u64),
    /// Those whose last reflected event is not newer than this timestamp
    /// (`timestamp_ns <= t`).
    AtOrBeforeTime(u64),
}

/// A snapshot read and checked: its description and its payload.
#[derive(Debug)]
pub struct Snapshot {
    /// What the snapshot says about itself.
    pub meta: SnapshotMeta,
    /// The stored CRC of the record at `next_position - 1` when the snapshot
    /// was written, if the writer gave it ([`SnapshotStore::write_anchored`]).
    pub anchor_crc: Option<u32>,
    /// The file it was read from.
    pub path: PathBuf,
    bytes: FileBytes,
    payload: std::ops::Range<usize>,
}

impl Snapshot {
    /// The saved state, as the application encoded it.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload.clone()]
    }
}

/// Why a snapshot was passed over.
#[derive(Debug)]
#[non_exhaustive]
pub enum SkipReason {
    /// The file is damaged (or could not be read): the error says where.
    Damaged(Error),
    /// Made by another version of the application's state encoding.
    SchemaVersion {
        /// Schema version in the file.
        found: u32,
        /// Schema version the caller expects.
        expected: u32,
    },
    /// The file holds a snapshot of another name (two names whose folders
    /// collide, or a file moved by hand).
    OtherName {
        /// The name in the file.
        found: String,
    },
    /// It reflects events the log does not hold (they were truncated, or lost
    /// to a power loss before they were synced).
    AheadOfLog {
        /// The snapshot's next position.
        next_position: u64,
        /// The log's next position.
        log_next_position: u64,
    },
    /// The log's event at the snapshot's last position is not the one it was
    /// made from (the log was truncated and written again).
    Diverged {
        /// Position of the snapshot's last reflected event.
        position: u64,
        /// Timestamp the snapshot recorded for it.
        snapshot_timestamp_ns: u64,
        /// Timestamp of the log's event there.
        log_timestamp_ns: u64,
        /// Record CRC the snapshot recorded for it, if any.
        snapshot_crc: Option<u32>,
        /// CRC of the log's record there.
        log_crc: u32,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Damaged(error) => write!(f, "damaged: {error}"),
            SkipReason::SchemaVersion { found, expected } => {
                write!(f, "schema version {found}, expected {expected}")
            }
            SkipReason::OtherName { found } => write!(f, "holds a snapshot of {found:?}"),
            SkipReason::AheadOfLog { next_position, log_next_position } => {
                write!(f, "reflects events up to {next_position}, the log ends at {log_next_position}")
            }
            SkipReason::Diverged { position, snapshot_timestamp_ns, log_timestamp_ns, snapshot_crc, log_crc } => {
                write!(
                    f,
                    "made from another event at position {position} (timestamp {snapshot_timestamp_ns}, log has {log_timestamp_ns}"
                )?;
                match snapshot_crc {
                    Some(crc) => write!(f, "; record crc {crc:#010x}, log has {log_crc:#010x})"),
                    None => write!(f, ")"),
                }
            }
        }
    }
}

/// A snapshot that a lookup passed over, and why.
#[derive(Debug)]
pub struct SkippedSnapshot {
    /// The snapshot file.
    pub path: PathBuf,
    /// Why it was not used.
    pub reason: SkipReason,
}

/// What a lookup found: the snapshot to start from (none: replay from the
/// start) and every newer candidate it had to pass over.
#[derive(Debug, Default)]
pub struct SnapshotLookup {
    /// The newest usable snapshot within the bound.
    pub snapshot: Option<Snapshot>,
    /// Unusable candidates newer than the one chosen, newest first: those
    /// within the bound, and any made from events the log no longer holds
    /// (reported whatever the bound, so that a truncation's effect shows).
    pub skipped: Vec<SkippedSnapshot>,
}

/// One snapshot file as listed: its description, or why it cannot be read.
#[derive(Debug)]
pub struct SnapshotEntry {
    /// The file.
    pub path: PathBuf,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// The decoded header (`Err`: the file is damaged).
    pub meta: Result<SnapshotMeta>,
}

/// The snapshots of one log directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
    storage: Arc<dyn Storage>,
    keep_last: usize,
    keep_spread: usize,
    /// The log, when the store was opened from one (and while it is open):
    /// anchored writes are then checked against it, and kept apart from its
    /// truncations. Weak, so that a store never keeps a log open.
    log: Option<crate::log::WeakLog>,
    /// Folders whose entries (and the root's) this store made durable: a
    /// folder found in place is not known to be (the process that made it
    /// may have failed, or crashed, before its directory sync), so each is
    /// synced into its parent once per store (shared by its clones) before
    /// a snapshot in it counts. At most `DURABLE_FOLDERS_REMEMBERED`.
    durable_folders: Arc<parking_lot::Mutex<std::collections::HashSet<PathBuf>>>,
}

/// How many folders a store remembers as durable (`durable_folders`).
const DURABLE_FOLDERS_REMEMBERED: usize = 4096;

/// Distinguishes the temporary files of concurrent writes in this process.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What the names of this process's temporaries hold after the snapshot's
/// name, before the counter: `.tmp-`, the process id, a random value drawn
/// once per process, `-`. The random value tells this process's temporaries
/// from those of a crashed earlier process that had the same id (an
/// application restarted as a container's process 1), which are leftovers
/// that retention must remove, and whose names a new write could otherwise
/// collide with.
fn temporary_infix() -> &'static str {
    static INFIX: OnceLock<String> = OnceLock::new();
    INFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // `RandomState` draws its keys from the OS's random source.
        let token = std::collections::hash_map::RandomState::new().build_hasher().finish() as u32;
        format!(".tmp-{}-{token:08x}-", std::process::id())
    })
}

impl SnapshotStore {
    /// The snapshot store of `log`'s directory, through the log's storage.
    /// Keeps the last [`KEEP_LAST_DEFAULT`] snapshots per name. Nothing is
    /// created on disk until the first write. The store keeps a handle on
    /// the log: an anchored write is checked against the log as it is when
    /// the file is renamed into place, and never overlaps a
    /// [`Log::truncate_after`] of this process (which removes the snapshots
    /// of the events it cuts).
    pub fn open(log: &Log) -> SnapshotStore {
        SnapshotStore { log: Some(log.downgrade()), ..SnapshotStore::at(log.directory(), log.storage()) }
    }

    /// The snapshot store of the log directory `log_directory`, through
    /// `storage` (for tools that do not open the log). Such a store writes
    /// what it is given, unchecked: prefer [`SnapshotStore::open`] wherever
    /// the log is open, whose writes are checked against it and never
    /// outlive a truncation of their events.
    pub fn at(log_directory: &Path, storage: Arc<dyn Storage>) -> SnapshotStore {
        SnapshotStore {
            root: log_directory.join(SNAPSHOTS_FOLDER),
            storage,
            keep_last: KEEP_LAST_DEFAULT,
            keep_spread: 0,
            log: None,
            durable_folders: Arc::default(),
        }
    }

    /// Keeps the newest `keep_last` snapshots of each name (at least 1) and
    /// deletes older ones after each write.
    pub fn keep_last(mut self, keep_last: usize) -> SnapshotStore {
        self.keep_last = keep_last.max(1);
        self
    }

    /// Besides the newest [`SnapshotStore::keep_last`], keeps up to `count`
    /// older snapshots of each name spread evenly over the history (the
    /// oldest always among them): as-of queries far in the past then replay
    /// at most about `history / count` events instead of all of them. Each
    /// write drops the older snapshot whose removal leaves the smallest gap.
    /// Default 0 (only the newest are kept).
    ///
    /// ```
    /// # use chronolog::snapshot::{SnapshotMeta, SnapshotStore};
    /// # use chronolog::{Log, LogOptions, NewEvent};
    /// # let directory = tempfile::tempdir()?;
    /// # let log = Log::open(directory.path(), LogOptions::default())?;
    /// let store = SnapshotStore::open(&log).keep_last(2).keep_spread(3);
    /// for i in 0..20u64 {
    ///     let appended = log.append(&NewEvent::new("s", "T", b""))?;
    ///     let meta = SnapshotMeta {
    ///         name: "n".into(), next_position: appended.position + 1, timestamp_ns: appended.timestamp_ns,
    ///         version: i, schema_version: 1,
    ///     };
    ///     store.write(&meta, b"")?;
    /// }
    /// let kept: Vec<u64> =
    ///     store.list("n")?.into_iter().map(|e| e.meta.map(|m| m.next_position)).collect::<Result<_, _>>()?;
    /// assert_eq!(kept.len(), 5);
    /// assert_eq!(&kept[..2], &[20, 19], "the newest two");
    /// assert_eq!(kept[4], 1, "the oldest stays");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keep_spread(mut self, count: usize) -> SnapshotStore {
        self.keep_spread = count;
        self
    }

    /// The number of snapshots kept per name.
    pub fn kept_per_name(&self) -> usize {
        self.keep_last
    }

    /// The folder holding the snapshots.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a snapshot atomically (temporary file, fsync, rename, fsync of the
    /// folder), replacing one of the same name and position, then deletes the
    /// name's snapshots beyond the newest [`SnapshotStore::keep_last`]. Returns
    /// the file's path. An error from the clean-up comes after the new
    /// snapshot is durable; an error before leaves the older snapshots as they
    /// were. One writer per name at a time.
    ///
    /// Through a store opened from a log that is still open, the events the
    /// snapshot reflects are made durable first, and the write fails (and
    /// leaves no file) when `meta.next_position` is beyond the log's end
    /// ([`Error::PositionOutOfRange`]) or the event at
    /// `meta.next_position - 1` has another timestamp ([`Error::LogRewritten`]:
    /// not the event the state was made from; a truncation ran). The
    /// anchored writes below also compare the record's CRC.
    pub fn write(&self, meta: &SnapshotMeta, payload: &[u8]) -> Result<PathBuf> {
        self.write_with(meta, None, payload)
    }

    /// [`SnapshotStore::write`], also recording the stored CRC of the record
    /// at `meta.next_position - 1` as `view` holds it: lookups then recognise
    /// the events the snapshot was made from by their checksum, not only by
    /// the timestamp (which a log truncated and written again with explicit
    /// timestamps could repeat). Fails with [`Error::PositionOutOfRange`] when
    /// the view does not hold that record with `meta.timestamp_ns` (the state
    /// does not come from this log as it is); a purged record is written
    /// without a CRC.
    pub fn write_anchored(&self, meta: &SnapshotMeta, payload: &[u8], view: &LogView) -> Result<PathBuf> {
        let anchor = match meta.next_position.checked_sub(1) {
            None => None,
            Some(last) if last < view.first_position() => None,
            Some(last) => match view.fingerprint(last)? {
                Some((timestamp_ns, crc)) if timestamp_ns == meta.timestamp_ns => Some(crc),
                _ => {
                    let (first, next) = (view.first_position(), view.next_position());
                    return Err(Error::PositionOutOfRange { position: last, first, next });
                }
            },
        };
        self.write_with(meta, anchor, payload)
    }

    /// [`SnapshotStore::write`] with an anchor CRC the caller already knows
    /// (taken from the same view as the state, as a projection runner does).
    pub fn write_with_anchor_crc(
        &self,
        meta: &SnapshotMeta,
        anchor_crc: Option<u32>,
        payload: &[u8],
    ) -> Result<PathBuf> {
        self.write_with(meta, anchor_crc, payload)
    }

    /// Writes the file. When the store has its log (and the log is open),
    /// the snapshot must describe the log as it is: its events are made
    /// durable first, and it is checked against the log (its last event
    /// present with the recorded timestamp, and CRC when anchored, unless
    /// purged) while truncations of this process are held off, and again
    /// once the file is in place, so that no truncation, of this process or
    /// another, can leave it behind: a truncation removes the snapshots of
    /// the events it cuts, and either it sees the new file or the second
    /// check sees the truncation (its marker while it runs, its cut once
    /// done), and the file is removed.
    fn write_with(&self, meta: &SnapshotMeta, anchor_crc: Option<u32>, payload: &[u8]) -> Result<PathBuf> {
        check_name(&meta.name)?;
        let log = self.log.as_ref().and_then(crate::log::WeakLog::upgrade);
        if let Some(log) = &log {
            // The events a snapshot reflects are made durable before it is:
            // otherwise a power loss could keep the snapshot and lose them,
            // and their positions would be written again under it.
            if !log.is_read_only() && meta.next_position > log.durable_position() {
                log.sync()?;
            }
        }
        let _history = log.as_ref().map(Log::hold_history);
        if let Some(log) = &log {
            describes_log(meta, anchor_crc, log, false)?;
        }
        let folder = self.folder(&meta.name);
        self.create_folder(&folder)?;
        let path = folder.join(naming::numbered(meta.next_position, SNAPSHOT_EXTENSION));
        let temporary = folder.join(format!(
            "{}{}{}",
            naming::numbered(meta.next_position, SNAPSHOT_EXTENSION),
            temporary_infix(),
            TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = file::encode_anchored(meta, anchor_crc, payload);
        let written = write_new(&*self.storage, &temporary, &bytes)
            .and_then(|()| self.storage.rename(&temporary, &path))
            .and_then(|()| self.storage.sync_dir(&folder));
        if let Err(error) = written {
            // Best effort: the temporary is garbage whatever happened.
            let _ = self.storage.remove_file(&temporary);
            return Err(Error::io("write snapshot", &path, error));
        }
        if let Some(log) = &log {
            if let Err(error) = describes_log(meta, anchor_crc, log, true) {
                // A truncation ran meanwhile (another process's, or one this
                // process's hold could not cover): the file must not stay.
                self.storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                self.storage.sync_dir(&folder).map_err(|e| Error::io("sync directory", &folder, e))?;
                return Err(error);
            }
        }
        self.apply_retention(&meta.name, &folder, &path)?;
        Ok(path)
    }

    /// The newest snapshot of `name` within `bound` that is intact, of
    /// `schema_version`, and made from events `view` still holds; with every
    /// newer candidate it passed over. Candidates are read whole and checked
    /// newest first until one is usable; under a time bound, those whose
    /// header says they are newer than the bound are passed over unread.
    pub fn find(
        &self,
        name: &str,
        bound: SnapshotBound,
        schema_version: u32,
        view: &LogView,
    ) -> Result<SnapshotLookup> {
        self.find_accepted(name, bound, schema_version, view, |_| Ok(()))
    }

    /// [`SnapshotStore::find`] with one more test of the application's: a
    /// candidate that passes every other check is used only if `accept`
    /// returns `Ok`; otherwise it is skipped with the reason `accept` gives
    /// and the lookup goes on to older ones. This is how a snapshot whose
    /// payload the application cannot decode falls back to an older one.
    pub fn find_accepted(
        &self,
        name: &str,
        bound: SnapshotBound,
        schema_version: u32,
        view: &LogView,
        mut accept: impl FnMut(&Snapshot) -> std::result::Result<(), SkipReason>,
    ) -> Result<SnapshotLookup> {
        let mut lookup = SnapshotLookup::default();
        let folder = self.folder(name);
        for (next_position, path) in self.positions(&folder)? {
            let mut skip = |reason| lookup.skipped.push(SkippedSnapshot { path: path.clone(), reason });
            if next_position > view.next_position() {
                // Unusable for any query: made from events the log lost or
                // cut. Reported, so that a truncation's effect is visible.
                skip(SkipReason::AheadOfLog { next_position, log_next_position: view.next_position() });
                continue;
            }
            if let SnapshotBound::Before(end) = bound {
                if next_position > end {
                    continue;
                }
            }
            if let SnapshotBound::AtOrBeforeTime(time) = bound {
                // Judged by the header alone; a damaged header that claims a
                // later time only makes the lookup use an older snapshot.
                if peek_timestamp(&*self.storage, &path).is_some_and(|timestamp| timestamp > time) {
                    continue;
                }
            }
            let snapshot = match read_snapshot(&*self.storage, &path) {
                Ok(snapshot) => snapshot,
                // Removed since the listing (by another store's retention, or
                // a truncation): gone, not damaged.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    skip(SkipReason::Damaged(error));
                    continue;
                }
            };
            let meta = &snapshot.meta;
            if meta.next_position != next_position {
                let kind = crate::error::CorruptionKind::InvalidField { field: "next_position (file name)" };
                let offset = file::SNAPSHOT_NEXT_POSITION_OFFSET as u64;
                skip(SkipReason::Damaged(Error::corrupted(&path, offset, kind)));
                continue;
            }
            if meta.name != name {
                skip(SkipReason::OtherName { found: meta.name.clone() });
                continue;
            }
            if let SnapshotBound::AtOrBeforeTime(time) = bound {
                if meta.timestamp_ns > time {
                    continue;
                }
            }
            if meta.schema_version != schema_version {
                skip(SkipReason::SchemaVersion { found: meta.schema_version, expected: schema_version });
                continue;
            }
            if let Some(reason) = check_against_log(meta, snapshot.anchor_crc, view)? {
                skip(reason);
                continue;
            }
            if let Err(reason) = accept(&snapshot) {
                skip(reason);
                continue;
            }
            lookup.snapshot = Some(snapshot);
            break;
        }
        Ok(lookup)
    }

    /// Every snapshot of `name`, newest first. A file removed while the
    /// listing runs (by a live writer's retention) is left out.
    pub fn list(&self, name: &str) -> Result<Vec<SnapshotEntry>> {
        let folder = self.folder(name);
        Ok(self.positions(&folder)?.into_iter().filter_map(|(_, path)| self.entry(path)).collect())
    }

    /// Every snapshot file under the store, by folder, newest first within
    /// each. Each is read whole and checked; a file removed while the
    /// listing runs is left out, and an entry of the store's folder that is
    /// not a folder is no snapshot's.
    pub fn list_all(&self) -> Result<Vec<SnapshotEntry>> {
        let mut folders = match self.storage.list_dir(&self.root) {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("list directory", &self.root, error)),
        };
        folders.sort_unstable();
        let mut entries = Vec::new();
        for folder in folders {
            let folder = self.root.join(folder);
            entries.extend(self.positions(&folder)?.into_iter().filter_map(|(_, path)| self.entry(path)));
        }
        Ok(entries)
    }

    /// One listed file; a file that cannot be read is an entry with an
    /// error, not a failure of the whole listing. A file removed since the
    /// listing (by a live writer's retention or truncation) is gone, not
    /// damaged: `None`.
    fn entry(&self, path: PathBuf) -> Option<SnapshotEntry> {
        let meta = read_snapshot(&*self.storage, &path).map(|snapshot| snapshot.meta);
        if matches!(&meta, Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound) {
            return None;
        }
        let file_bytes = self.storage.open(&path, OpenMode::ReadOnly).and_then(|file| file.len()).unwrap_or(0);
        Some(SnapshotEntry { path, file_bytes, meta })
    }

    /// The folder of a name: readable characters of the name, then a hash of
    /// the whole name (names may be long and hold any character; the file
    /// itself records the exact name).
    fn folder(&self, name: &str) -> PathBuf {
        self.root.join(folder_name(name))
    }

    fn create_folder(&self, folder: &Path) -> Result<()> {
        // Checked on every write, even for a folder made durable here: one
        // removed from outside is made again rather than failing each write.
        if self.storage.exists(folder).map_err(|e| Error::io("stat", folder, e))? {
            if self.durable_folders.lock().contains(folder) {
                return Ok(());
            }
        } else {
            self.storage.create_dir_all(folder).map_err(|e| Error::io("create directory", folder, e))?;
        }
        // The folders' names must be durable before a snapshot in them is:
        // the folder's in the root, the root's in the log directory. Both
        // are synced even when the folders were there already (see
        // `durable_folders`); the root once per store.
        self.storage.sync_dir(&self.root).map_err(|e| Error::io("sync directory", &self.root, e))?;
        let root_durable = self.durable_folders.lock().contains(&self.root);
        if !root_durable {
            let parent = storage::parent_of(&self.root);
            self.storage.sync_dir(parent).map_err(|e| Error::io("sync directory", parent, e))?;
        }
        let mut durable = self.durable_folders.lock();
        // Bounded: an aggregate store writes one folder per aggregate. Past
        // the bound, folders are synced once more each (and the root).
        if durable.len() >= DURABLE_FOLDERS_REMEMBERED {
            durable.clear();
        }
        durable.insert(self.root.clone());
        durable.insert(folder.to_path_buf());
        Ok(())
    }

    /// Snapshot files of a folder, newest (highest position) first; a folder
    /// that does not exist has none.
    fn positions(&self, folder: &Path) -> Result<Vec<(u64, PathBuf)>> {
        let Some(names) = list_folder(&*self.storage, folder)? else { return Ok(Vec::new()) };
        let mut positions: Vec<(u64, PathBuf)> = names
            .iter()
            .filter_map(|name| naming::parse_numbered(name, SNAPSHOT_EXTENSION).map(|p| (p, folder.join(name))))
            .collect();
        positions.sort_unstable_by_key(|&(position, _)| std::cmp::Reverse(position));
        Ok(positions)
    }

    /// Deletes stale temporaries and the snapshots of `name` beyond the
    /// newest `keep_last`, never `written` (the snapshot just made, which may
    /// be older than others: written as of a past point, or after a truncation
    /// left snapshots ahead of the log). Files already gone (another writer's
    /// retention got there first) are no error.
    fn apply_retention(&self, name: &str, folder: &Path, written: &Path) -> Result<()> {
        let names = self.storage.list_dir(folder).map_err(|e| Error::io("list directory", folder, e))?;
        // A temporary of another process (by id and random value, see
        // `temporary_infix`) is a crashed writer's leftover: only one writer
        // per name is supported.
        let mut removed = 0usize;
        let remove = |path: &Path| match self.storage.remove_file(path) {
            Ok(()) => Ok(1),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(error) => Err(Error::io("remove", path, error)),
        };
        for entry in names.iter().filter(|entry| entry.contains(".tmp-") && !entry.contains(temporary_infix())) {
            removed += remove(&folder.join(entry))?;
        }
        // Only files of this name: a colliding name's snapshots are not ours
        // to keep or drop.
        let positions: Vec<(u64, PathBuf)> = self
            .positions(folder)?
            .into_iter()
            .filter(|(_, path)| peek_name_matches(&*self.storage, path, name) != Some(false))
            .collect();
        let others: Vec<&(u64, PathBuf)> = positions.iter().filter(|(_, path)| path != written).collect();
        let newest_kept = others.len().min(self.keep_last - 1);
        let older = &others[newest_kept..];
        // The closest kept snapshot above the older ones (the one just
        // written counts): the upper end of the newest gap.
        let written_position = positions.iter().find(|(_, path)| path == written).map(|(position, _)| *position);
        let upper = others[..newest_kept]
            .iter()
            .map(|(position, _)| *position)
            .chain(written_position)
            .filter(|&position| older.first().is_none_or(|(oldest_newer, _)| position > *oldest_newer))
            .min()
            .unwrap_or(u64::MAX);
        for (_, path) in thin_out(older, upper, self.keep_spread) {
            removed += remove(path)?;
        }
        if removed > 0 {
            self.storage.sync_dir(folder).map_err(|e| Error::io("sync directory", folder, e))?;
        }
        Ok(())
    }

    /// Checks every snapshot file; returns the problems found (empty: clean).
    pub fn verify(&self) -> Result<Vec<Error>> {
        Ok(self.list_all()?.into_iter().filter_map(|entry| entry.meta.err()).collect())
    }
}

/// The snapshots of `older` (newest first, all below `upper`) to delete so
/// that at most `keep` remain, spread evenly: the oldest always stays, and
/// each removal takes the one whose neighbours are closest together.
fn thin_out<'a>(older: &[&'a (u64, PathBuf)], upper: u64, keep: usize) -> Vec<&'a (u64, PathBuf)> {
    if keep == 0 {
        return older.to_vec();
    }
    let mut kept: Vec<&(u64, PathBuf)> = older.to_vec();
    let mut dropped = Vec::new();
    while kept.len() > keep {
        // Newest first: the neighbours of `i` are `i - 1` (newer) and `i + 1`.
        let gap_without = |i: usize| {
            let newer = if i == 0 { upper } else { kept[i - 1].0 };
            newer.saturating_sub(kept[i + 1].0)
        };
        let Some(index) = (0..kept.len() - 1).min_by_key(|&i| gap_without(i)) else { break };
        dropped.push(kept.remove(index));
    }
    dropped
}

/// Checks a snapshot name's length.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > SNAPSHOT_NAME_MAX {
        return Err(Error::InvalidSnapshotName { length: name.len(), limit: SNAPSHOT_NAME_MAX });
    }
    Ok(())
}

/// `<up to 48 readable characters>-<16 hex digits of FNV-1a 64 of the name>`.
pub fn folder_name(name: &str) -> String {
    let readable: String = name
        .chars()
        .take(48)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    format!("{readable}-{:016x}", fnv1a64(name.as_bytes()))
}

/// FNV-1a, 64 bits: tiny, and stable across builds (unlike std's hasher),
/// which a name on disk needs.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn write_new(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = storage.open(path, OpenMode::CreateNew)?;
    file.write_all_at(bytes, 0)?;
    file.sync_data()
}

/// Reads and checks a whole snapshot file.
pub fn read_snapshot(storage: &dyn Storage, path: &Path) -> Result<Snapshot> {
    let file = storage.open(path, OpenMode::ReadOnly).map_err(|e| Error::io("open snapshot", path, e))?;
    let length = file.len().map_err(|e| Error::io("stat", path, e))?;
    let bytes = if length >= MAP_THRESHOLD_BYTES {
        // SIGBUS-safe: snapshot files are never written in place after their
        // rename, only replaced or unlinked, which leaves a live map intact.
        FileBytes::Mapped(file.map().map_err(|e| Error::io("map snapshot", path, e))?)
    } else {
        let mut bytes = vec![0u8; length as usize];
        file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io("read snapshot", path, e))?;
        FileBytes::Owned(bytes)
    };
    let (meta, payload) = file::decode(&bytes).map_err(|(offset, kind)| Error::corrupted(path, offset, kind))?;
    let anchor_crc = file::anchor_crc(&bytes);
    Ok(Snapshot { meta, anchor_crc, path: path.to_path_buf(), bytes, payload })
}

/// The header of a snapshot file, if it can be read and has the right magic.
fn peek_header(storage: &dyn Storage, path: &Path) -> Option<[u8; SNAPSHOT_HEADER_SIZE]> {
    let file = storage.open(path, OpenMode::ReadOnly).ok()?;
    let mut header = [0u8; SNAPSHOT_HEADER_SIZE];
    file.read_exact_at(&mut header, 0).ok()?;
    (header[..file::SNAPSHOT_MAGIC.len()] == file::SNAPSHOT_MAGIC).then_some(header)
}

fn peek_timestamp(storage: &dyn Storage, path: &Path) -> Option<u64> {
    peek_header(storage, path).map(|header| LittleEndian::read_u64(&header[file::SNAPSHOT_TIMESTAMP_OFFSET..]))
}

fn peek_name_matches(storage: &dyn Storage, path: &Path, name: &str) -> Option<bool> {
    let header = peek_header(storage, path)?;
    let length = usize::from(LittleEndian::read_u16(&header[file::SNAPSHOT_NAME_LENGTH_OFFSET..]));
    if length != name.len() {
        return Some(false);
    }
    let file = storage.open(path, OpenMode::ReadOnly).ok()?;
    let mut stored = vec![0u8; length];
    file.read_exact_at(&mut stored, SNAPSHOT_HEADER_SIZE as u64).ok()?;
    Some(stored == name.as_bytes())
}

/// Whether a snapshot describes `log` as it is: an error saying why not.
/// `after_write`: the check made once the file is in place, which also looks
/// for a truncation in progress (its marker) and brings a read-only handle
/// up to date first (a reader sees the writer's truncation only then).
fn describes_log(meta: &SnapshotMeta, anchor_crc: Option<u32>, log: &Log, after_write: bool) -> Result<()> {
    if after_write {
        if log.is_read_only() {
            log.refresh()?;
        }
        let storage = log.storage();
        if let Some(cut) = crate::log::truncation_in_progress(&*storage, log.directory())? {
            if meta.next_position > cut.saturating_add(1) {
                return Err(Error::LogRewritten { position: cut.saturating_add(1) });
            }
        }
    }
    let view = log.view();
    match check_against_log(meta, anchor_crc, &view)? {
        None => Ok(()),
        Some(SkipReason::Diverged { position, .. }) => Err(Error::LogRewritten { position }),
        Some(_) => {
            let (first, next) = (view.first_position(), view.next_position());
            Err(Error::PositionOutOfRange { position: meta.next_position.saturating_sub(1), first, next })
        }
    }
}

/// The names in `folder`, an entry of the snapshots folder; `None` when it
/// is gone (removed since the listing, or never made) or is not a folder (a
/// stray file: nothing of ours).
fn list_folder(storage: &dyn Storage, folder: &Path) -> Result<Option<Vec<String>>> {
    match storage.list_dir(folder) {
        Ok(names) => Ok(Some(names)),
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            Ok(None)
        }
        Err(error) => Err(Error::io("list directory", folder, error)),
    }
}

/// Removes every snapshot made from events after position `limit - 1`
/// (`next_position > limit`): called by a truncation that keeps the events
/// below `limit`, under its marker (so that a crash in between is finished
/// by the next open). A snapshot beyond the cut describes events that no
/// longer exist; while its last event is in the log a lookup would see the
/// log diverge and skip it, but once a purge removes that event nothing could
/// tell it from a good one. Found by the model fuzz target.
///
/// `sync_all`: sync every folder, not only those this call removed from: a
/// truncation finished after a crash cannot know which removals of the
/// crashed run were not yet durable.
pub(crate) fn remove_beyond(storage: &dyn Storage, log_directory: &Path, limit: u64, sync_all: bool) -> Result<()> {
    let root = log_directory.join(SNAPSHOTS_FOLDER);
    let folders = match storage.list_dir(&root) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(Error::io("list directory", &root, error)),
    };
    for folder in folders {
        let folder = root.join(folder);
        // Any other failure to list a folder fails the truncation (its marker
        // stays, and the next open finishes it): skipping the folder would
        // leave its snapshots of the cut events behind.
        let Some(names) = list_folder(storage, &folder)? else { continue };
        let mut removed = false;
        for name in names {
            if naming::parse_numbered(&name, SNAPSHOT_EXTENSION).is_some_and(|next| next > limit) {
                let path = folder.join(&name);
                match storage.remove_file(&path) {
                    Ok(()) => removed = true,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(Error::io("remove", &path, error)),
                }
            }
        }
        if removed || sync_all {
            storage.sync_dir(&folder).map_err(|e| Error::io("sync directory", &folder, e))?;
        }
    }
    Ok(())
}

/// Whether the log still holds the events a snapshot was made from: its last
/// reflected event must exist (unless purged) with the recorded timestamp,
/// and the recorded record CRC when the snapshot has one.
fn check_against_log(meta: &SnapshotMeta, anchor_crc: Option<u32>, view: &LogView) -> Result<Option<SkipReason>> {
    let Some(last) = meta.next_position.checked_sub(1) else {
        return Ok(None);
    };
    if meta.next_position > view.next_position() {
        let reason =
            SkipReason::AheadOfLog { next_position: meta.next_position, log_next_position: view.next_position() };
        return Ok(Some(reason));
    }
    if last < view.first_position() {
        // Purged: nothing left to compare with, and a purge never rewrites.
        return Ok(None);
    }
    if view.holds_fingerprint(last, Some(meta.timestamp_ns), anchor_crc)? {
        return Ok(None);
    }
    match view.fingerprint(last)? {
        Some((timestamp_ns, crc)) => Ok(Some(SkipReason::Diverged {
            position: last,
            snapshot_timestamp_ns: meta.timestamp_ns,
            log_timestamp_ns: timestamp_ns,
            snapshot_crc: anchor_crc,
            log_crc: crc,
        })),
        None => Ok(Some(SkipReason::AheadOfLog {
            next_position: meta.next_position,
            log_next_position: view.next_position(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogOptions, NewEvent};

    fn meta(name: &str, next_position: u64, timestamp_ns: u64) -> SnapshotMeta {
        SnapshotMeta { name: name.into(), next_position, timestamp_ns, version: next_position, schema_version: 1 }
    }

    fn log_with(events: u64) -> (tempfile::TempDir, Log, Vec<u64>) {
        let directory = tempfile::tempdir().unwrap();
        let log = Log::open(directory.path(), LogOptions::default()).unwrap();
        let timestamps = (0..events)
            .map(|i| log.append(&NewEvent::new("s", "T", b"").with_timestamp_ns(1000 + i * 10)).unwrap().timestamp_ns)
            .collect();
        (directory, log, timestamps)
    }

    #[test]
    fn finds_the_newest_within_each_bound_and_keeps_the_last_n() {
        let (_directory, log, timestamps) = log_with(10);
        let store = SnapshotStore::open(&log).keep_last(3);
        for next in [2u64, 4, 6, 8] {
            let ts = timestamps[next as usize - 1];
            store.write(&meta("agg", next, ts), next.to_string().as_bytes()).unwrap();
        }
        assert_eq!(store.list("agg").unwrap().len(), 3, "the oldest was deleted");
        let view = log.view();
        let found = |bound| store.find("agg", bound, 1, &view).unwrap().snapshot.map(|s| s.meta.next_position);
        assert_eq!(found(SnapshotBound::Latest), Some(8));
        assert_eq!(found(SnapshotBound::Before(7)), Some(6));
        assert_eq!(found(SnapshotBound::Before(3)), None, "2 was deleted by retention");
        assert_eq!(found(SnapshotBound::AtOrBeforeTime(timestamps[5])), Some(6));
        assert_eq!(found(SnapshotBound::AtOrBeforeTime(timestamps[5] - 1)), Some(4));
        assert_eq!(store.find("other", SnapshotBound::Latest, 1, &view).unwrap().snapshot.map(|s| s.meta), None);
    }

    #[test]
    fn spread_retention_keeps_the_oldest_and_even_gaps() {
        let (_directory, log, timestamps) = log_with(200);
        let store = SnapshotStore::open(&log).keep_last(1).keep_spread(4);
        for next in 1..=200u64 {
            store.write(&meta("agg", next, timestamps[next as usize - 1]), b"").unwrap();
        }
        let kept: Vec<u64> = store.list("agg").unwrap().into_iter().map(|e| e.meta.unwrap().next_position).collect();
        assert_eq!(kept.len(), 5, "{kept:?}");
        assert_eq!((kept[0], kept[4]), (200, 1), "{kept:?}");
        let gaps: Vec<u64> = kept.windows(2).map(|w| w[0] - w[1]).collect();
        // Ideal: 4 gaps of about 50.
        assert!(gaps.iter().all(|&gap| (25..=100).contains(&gap)), "{kept:?}");
        // As of any point, the nearest snapshot before it is at most one gap away.
        let view = log.view();
        for end in (1..=200).step_by(7) {
            let found = store.find("agg", SnapshotBound::Before(end), 1, &view).unwrap().snapshot.unwrap();
            assert!(end - found.meta.next_position <= 100, "as of {end}: {}", found.meta.next_position);
        }
    }

    #[test]
    fn damaged_wrong_schema_and_ahead_of_log_snapshots_are_skipped_and_reported() {
        let (_directory, log, timestamps) = log_with(10);
        // Opened from the log, a store refuses to write a snapshot that does
        // not describe it; a store without it writes what it is given (as a
        // late writer elsewhere could), which lookups must then sort out.
        let checked = SnapshotStore::open(&log);
        assert!(matches!(
            checked.write(&meta("agg", 9, timestamps[8] + 1), b""),
            Err(Error::LogRewritten { position: 8 })
        ));
        assert!(matches!(checked.write(&meta("agg", 12, 5000), b""), Err(Error::PositionOutOfRange { .. })));
        let store = SnapshotStore::at(log.directory(), log.storage()).keep_last(10);
        store.write(&meta("agg", 3, timestamps[2]), b"three").unwrap();
        store.write(&SnapshotMeta { schema_version: 2, ..meta("agg", 5, timestamps[4]) }, b"five").unwrap();
        let damaged = store.write(&meta("agg", 7, timestamps[6]), b"seven").unwrap();
        store.write(&meta("agg", 9, timestamps[8] + 1), b"nine, diverged").unwrap();
        store.write(&meta("agg", 12, 5000), b"twelve, ahead").unwrap();
        let mut bytes = std::fs::read(&damaged).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&damaged, bytes).unwrap();

        let lookup = store.find("agg", SnapshotBound::Latest, 1, &log.view()).unwrap();
        assert_eq!(lookup.snapshot.as_ref().map(|s| s.payload()), Some(&b"three"[..]));
        let reasons: Vec<String> = lookup.skipped.iter().map(|s| s.reason.to_string()).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(matches!(lookup.skipped[0].reason, SkipReason::AheadOfLog { next_position: 12, .. }));
        assert!(matches!(lookup.skipped[1].reason, SkipReason::Diverged { position: 8, .. }));
        let SkipReason::Damaged(Error::Corrupted { path, .. }) = &lookup.skipped[2].reason else {
            panic!("expected a corruption, got {:?}", lookup.skipped[2].reason);
        };
        assert_eq!(path, &damaged);
        assert!(matches!(lookup.skipped[3].reason, SkipReason::SchemaVersion { found: 2, expected: 1 }));
        assert_eq!(store.verify().unwrap().len(), 1);
    }

    #[test]
    fn a_truncation_removes_exactly_the_snapshots_beyond_its_cut() {
        let directory = tempfile::tempdir().unwrap();
        let store = SnapshotStore::at(directory.path(), Arc::new(crate::storage::StdStorage)).keep_last(10);
        for next in [3u64, 5, 6, 9] {
            store.write(&meta("a", next, next), b"").unwrap();
        }
        store.write(&meta("b", 7, 7), b"").unwrap();
        let folder = store.folder("a");
        // Not snapshots: a temporary and a file of someone else's.
        std::fs::write(folder.join("00000000000000000009.snap.tmp-1-0"), b"").unwrap();
        std::fs::write(folder.join("notes.txt"), b"").unwrap();
        std::fs::write(store.root().join("stray-file"), b"").unwrap();
        remove_beyond(&crate::storage::StdStorage, directory.path(), 5, false).unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "00000000000000000003.snap",
                "00000000000000000005.snap",
                "00000000000000000009.snap.tmp-1-0",
                "notes.txt"
            ]
        );
        assert!(store.list("b").unwrap().is_empty(), "b's snapshot at 7 reflects events after the cut");
        // The stray file is no folder of snapshots, and no failure either.
        let listed: Vec<u64> =
            store.list_all().unwrap().into_iter().map(|entry| entry.meta.unwrap().next_position).collect();
        assert_eq!(listed, vec![5, 3]);
        assert!(store.verify().unwrap().is_empty());
        // Nothing to remove, and no snapshots folder at all: no error.
        remove_beyond(&crate::storage::StdStorage, directory.path(), 5, true).unwrap();
        let empty = tempfile::tempdir().unwrap();
        remove_beyond(&crate::storage::StdStorage, empty.path(), 0, true).unwrap();
    }

    #[test]
    fn names_are_checked_and_folders_are_stable() {
        let (_directory, log, _) = log_with(1);
        let store = SnapshotStore::open(&log);
        assert!(matches!(store.write(&meta("", 0, 0), b""), Err(Error::InvalidSnapshotName { .. })));
        let long = "x".repeat(SNAPSHOT_NAME_MAX + 1);
        assert!(matches!(store.write(&meta(&long, 0, 0), b""), Err(Error::InvalidSnapshotName { .. })));
        let folder = folder_name("account/7 é");
        assert_eq!(folder, format!("account_7__-{:016x}", fnv1a64("account/7 é".as_bytes())));
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c, "the published FNV-1a 64 test vector");
    }
}
