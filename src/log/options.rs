//! How a log is opened: capacity, durability, recovery, storage.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::index::segment_index::INDEX_INTERVAL_BYTES_DEFAULT;
use crate::record::{limits, RECORD_OVERHEAD};
use crate::segment::layout::{SEGMENT_CAPACITY_BYTES_MAX, SEGMENT_CAPACITY_BYTES_MIN};
use crate::segment::{FOOTER_SIZE, HEADER_SIZE};
use crate::storage::{StdStorage, Storage};

/// Default segment capacity: 64 MiB.
pub const SEGMENT_CAPACITY_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default of [`LogOptions::writeback_bytes`]: 2 MiB (1 to 4 MiB did equally
/// well for bulk appends in `examples/bulk_profile.rs`; 8 MiB and more left
/// more for the final sync).
pub const WRITEBACK_BYTES_DEFAULT: u64 = 2 * 1024 * 1024;

/// Default of [`LogOptions::sync_spin_max`]: 1 ms, twice a slow SSD's
/// fdatasync.
pub const SYNC_SPIN_MAX_DEFAULT: Duration = Duration::from_millis(1);

/// When `append` makes its records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The OS writes the data back when it likes; call [`crate::Log::sync`] for
    /// a durable point. A process crash loses nothing; a power loss may lose
    /// the records since the last sync. Should the disk keep a later page of
    /// that unsynced tail but lose an earlier one, opening reports the damage
    /// ([`crate::Error::Corrupted`]) rather than guess, and
    /// [`RecoveryMode::Salvage`] keeps the valid prefix.
    None,
    /// `append` returns only once its records are on disk (fdatasync).
    /// Concurrent appenders share syncs (group commit): while others wait,
    /// the thread that runs the next fdatasync first gives appends under way
    /// up to half an fdatasync's time (at most 250 µs) to join it.
    #[default]
    Sync,
}

/// What opening does with damaged bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any damage, even a torn record at the very end, is an error.
    Strict,
    /// A torn or incomplete batch at the end of the active segment (a crash in
    /// the middle of a write) is cut off; damage anywhere else is an error.
    #[default]
    TolerateTornTail,
    /// Every segment is checked; the log is cut at the first damaged record,
    /// the bytes dropped are moved to a `salvage/` folder in the log directory,
    /// and [`crate::Log::recovery_report`] says what was dropped.
    Salvage,
}

/// Options for [`crate::Log::open`].
///
/// ```
/// use chronolog::{Durability, LogOptions};
/// let options = LogOptions::default()
///     .segment_capacity_bytes(8 << 20)
///     .durability(Durability::None);
/// assert_eq!(options.segment_capacity_bytes_value(), 8 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub(crate) segment_capacity_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) index_interval_bytes: u32,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) create_if_missing: bool,
    pub(crate) writeback_bytes: u64,
    pub(crate) sync_spin_max: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_capacity_bytes: SEGMENT_CAPACITY_BYTES_DEFAULT,
            durability: Durability::default(),
            recovery_mode: RecoveryMode::default(),
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            storage: Arc::new(StdStorage),
            create_if_missing: true,
            writeback_bytes: WRITEBACK_BYTES_DEFAULT,
            sync_spin_max: SYNC_SPIN_MAX_DEFAULT,
        }
    }
}

impl LogOptions {
    /// Size of each segment file (default 64 MiB). Existing segments keep the
    /// capacity they were created with.
    pub fn segment_capacity_bytes(mut self, bytes: u64) -> Self {
        self.segment_capacity_bytes = bytes;
        self
    }

    /// When appends are made durable (default [`Durability::Sync`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// What to do with damaged bytes on open (default
    /// [`RecoveryMode::TolerateTornTail`]).
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Distance between two entries of the sparse position/time index (default
    /// 4 KiB): a seek scans at most this many bytes of records after a binary
    /// search. Smaller is faster to seek and larger in memory.
    pub fn index_interval_bytes(mut self, bytes: u32) -> Self {
        self.index_interval_bytes = bytes;
        self
    }

    /// The storage all file I/O goes through (default: the real file system).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// Whether [`crate::Log::open`] starts a new log in a directory that holds
    /// none (default true). Tools that must only touch an existing log set
    /// it to false and get [`Error::NotALog`] for a mistyped path.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// With [`Durability::None`], asks the OS to start writing appended
    /// records to disk each time this many bytes (rounded up to whole 4 KiB
    /// pages) have been appended since the last sync or the last such request
    /// (default 2 MiB; 0: never). It makes nothing durable and does not wait:
    /// the disk works while the appends go on, so that a [`crate::Log::sync`]
    /// after a bulk load has little left to write (bulk append about 40%
    /// faster here, BENCHMARKS.md), and dirty pages do not pile up in
    /// memory. With [`Durability::Sync`] every append is synced anyway and
    /// this does nothing.
    pub fn writeback_bytes(mut self, bytes: u64) -> Self {
        self.writeback_bytes = bytes;
        self
    }

    /// How long at most a thread waiting for the fdatasync another thread
    /// runs for it (group commit, [`Durability::Sync`]) polls for its end,
    /// yielding its CPU to any other thread between looks, before it sleeps
    /// (default 1 ms; zero: it sleeps at once, the least CPU). A sleeping
    /// waiter must be woken, tens of microseconds in a VM, one after another
    /// before the next fdatasync can cover their next appends: with 16
    /// appending threads, polling raised the rate here by about 40%
    /// (BENCHMARKS.md). A waiter polls for twice the last fdatasync's time,
    /// at most this bound, and not at all when the last fdatasync alone
    /// took longer: next to a slow disk's wait, a wake-up costs little.
    pub fn sync_spin_max(mut self, max: Duration) -> Self {
        self.sync_spin_max = max;
        self
    }

    /// The configured segment capacity.
    pub fn segment_capacity_bytes_value(&self) -> u64 {
        self.segment_capacity_bytes
    }

    /// The configured durability.
    pub fn durability_value(&self) -> Durability {
        self.durability
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidOptions("the index interval must be at least one byte"));
        }
        if !(SEGMENT_CAPACITY_BYTES_MIN..=SEGMENT_CAPACITY_BYTES_MAX).contains(&self.segment_capacity_bytes) {
            return Err(Error::InvalidOptions("segment capacity must be between 4 KiB and 4 GiB"));
        }
        Ok(())
    }
}

/// Bytes of records one segment of `capacity_bytes` can hold.
pub(crate) fn segment_data_bytes(capacity_bytes: u64) -> u64 {
    capacity_bytes - HEADER_SIZE as u64 - FOOTER_SIZE as u64
}

/// The largest record a segment of `capacity_bytes` accepts.
pub(crate) fn record_size_limit(capacity_bytes: u64) -> u64 {
    segment_data_bytes(capacity_bytes).min(limits::RECORD_SIZE_BYTES_MAX as u64)
}

const _: () = assert!(SEGMENT_CAPACITY_BYTES_MIN as usize > HEADER_SIZE + FOOTER_SIZE + RECORD_OVERHEAD);
