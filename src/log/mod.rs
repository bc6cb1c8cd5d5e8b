//! The log: a directory of segments behind one `Send + Sync` handle.
//!
//! One writer (a mutex inside the log) appends; any number of threads read
//! through [`LogView`]s, consistent snapshots of the log that borrow event bytes
//! straight from the segments' memory maps.

mod event;
mod indexes;
mod lazy_segment;
mod maintenance;
mod manifest;
mod notify;
mod open;
mod options;
mod salvage;
mod sealed_streams;
mod state;
mod streams;
mod summary;
mod time;
mod truncation;
mod view;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::index::StreamState;
use crate::storage::StorageFile;

pub use event::{Appended, Event, EventRef, ExpectedVersion, NewEvent};
pub use maintenance::VerifyReport;
pub use open::is_log_file_name;
pub use options::{
    Durability, LogOptions, RecoveryMode, SEGMENT_CAPACITY_BYTES_DEFAULT, SYNC_SPIN_MAX_DEFAULT,
    WRITEBACK_BYTES_DEFAULT,
};
pub use state::{DroppedBytes, RecoveryReport};
pub use streams::{Direction, StreamIter};
pub use summary::SegmentSummary;
pub use view::{Filter, FilteredIter, Iter, LogView, RevIter};

use state::{Published, State};

/// An append-only event log in a directory.
///
/// ```
/// use chronolog::{Durability, Log, LogOptions, NewEvent};
///
/// let directory = tempfile::tempdir()?;
/// let options = LogOptions::default().durability(Durability::None);
/// let log = Log::open(directory.path(), options.clone())?;
/// let batch = [
///     NewEvent::new("cart-1", "ItemAdded", b"apple"),
///     NewEvent::new("cart-1", "ItemAdded", b"pear"),
/// ];
/// let appended = log.append_batch(&batch)?;
/// assert_eq!(appended[1].stream_version, 1);
/// log.sync()?;
/// drop(log);
///
/// let log = Log::open(directory.path(), options)?;
/// assert_eq!(log.next_position(), 2);
/// let newest_first: Vec<_> = log
///     .view()
///     .iter_rev()
///     .map(|event| event.map(|e| e.payload.to_vec()))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(newest_first, vec![b"pear".to_vec(), b"apple".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

/// The position a `truncate_after` in progress (its marker on disk) cuts
/// after, if one is.
pub(crate) fn truncation_in_progress(storage: &dyn crate::storage::Storage, directory: &Path) -> Result<Option<u64>> {
    truncation::read_marker(storage, directory)
}

/// A [`Log`] that may have been closed: for holders that must not keep it
/// open (a snapshot store).
#[derive(Debug, Clone)]
pub(crate) struct WeakLog(std::sync::Weak<Inner>);

impl WeakLog {
    /// The log, if some handle still keeps it open.
    pub(crate) fn upgrade(&self) -> Option<Log> {
        self.0.upgrade().map(|inner| Log { inner })
    }
}

struct Inner {
    directory: PathBuf,
    options: LogOptions,
    writable: bool,
    /// Held for the life of a writable log: the directory's writer lock.
    _lock: Option<Arc<dyn StorageFile>>,
    state: Mutex<State>,
    published: RwLock<Published>,
    sync: Mutex<SyncState>,
    poisoned: Mutex<Option<String>>,
    report: RecoveryReport,
    /// Wakes threads blocked in [`Log::wait_for`].
    signal: notify::AppendSignal,
    /// Held for writing by a truncation, for reading by a snapshot write
    /// (see `Log::hold_history`).
    history: RwLock<()>,
}

impl std::fmt::Debug for Inner {
    /// A summary: the whole state (maps, indexes) would bury a failing
    /// assertion's message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let published = self.published.read();
        f.debug_struct("Log")
            .field("directory", &self.directory)
            .field("writable", &self.writable)
            .field("first_position", &published.first_position)
            .field("next_position", &published.next_position)
            .field("segments", &published.segments.len())
            .field("failure", &*self.poisoned.lock())
            .finish()
    }
}

/// Group commit bookkeeping.
#[derive(Debug, Default)]
struct SyncState {
    /// Every position below this one is durable.
    durable_next_position: u64,
    /// A thread is running an fdatasync for everyone.
    leader_active: bool,
    /// Number of fdatasync calls made for appends (for tests and benches).
    sync_count: u64,
    /// Threads waiting for a sync run by another, woken together by it.
    waiters: Vec<Arc<SyncWaiter>>,
    /// How many waiters the last fdatasync woke.
    last_woken: usize,
    /// The leader waiting for appenders to join its fdatasync, if one is.
    gathering: Option<GatheringLeader>,
    /// How long the last fdatasync took.
    last_fsync: std::time::Duration,
    /// Bumped by `truncate_after`: a sync started before belongs to a tail
    /// that no longer exists.
    generation: u64,
}

/// A thread waiting in `Inner::sync_through` for the fdatasync another
/// thread runs. Each has its own: the leader wakes them all at once with
/// the outcome already set, and one whose events are durable returns without
/// taking the group commit lock again. (A condition variable hands its
/// waiters the lock one at a time, so that after each fdatasync they woke
/// one another in a chain, one cross-CPU wake-up after another.)
#[derive(Debug)]
struct SyncWaiter {
    thread: std::thread::Thread,
    /// The position its events end before.
    target: u64,
    /// `SyncState::generation` when it started waiting.
    generation: u64,
    /// One of `SYNC_WAITING`, `SYNC_COVERED`, `SYNC_LOOK_AGAIN`.
    outcome: std::sync::atomic::AtomicU8,
}

/// A sync leader asleep until `expected` threads wait for its fdatasync.
#[derive(Debug)]
struct GatheringLeader {
    leader: std::thread::Thread,
    expected: usize,
}

impl SyncWaiter {
    /// A waiter for the calling thread.
    fn new(target: u64, generation: u64) -> Arc<SyncWaiter> {
        Arc::new(SyncWaiter {
            thread: std::thread::current(),
            target,
            generation,
            outcome: std::sync::atomic::AtomicU8::new(SYNC_WAITING),
        })
    }

    /// Waits until a sync leader sets the outcome; returns it. It polls for
    /// `spin`, yielding between looks (see [`LogOptions::sync_spin_max`]),
    /// then sleeps. Any other unpark of the thread only makes it look again.
    fn wait(&self, spin: Duration) -> u8 {
        if !spin.is_zero() {
            let until = Instant::now() + spin;
            loop {
                match self.outcome.load(Ordering::Acquire) {
                    SYNC_WAITING if Instant::now() < until => std::thread::yield_now(),
                    SYNC_WAITING => break,
                    outcome => return outcome,
                }
            }
        }
        loop {
            match self.outcome.load(Ordering::Acquire) {
                SYNC_WAITING => std::thread::park(),
                outcome => return outcome,
            }
        }
    }
}

/// A [`SyncWaiter`] still waits.
const SYNC_WAITING: u8 = 0;
/// Its events are durable (or were cut by a truncation): it returns.
const SYNC_COVERED: u8 = 1;
/// The fdatasync that woke it did not cover it, or failed: it looks again.
const SYNC_LOOK_AGAIN: u8 = 2;

impl Log {
    /// Opens (creating it if needed) the log in `directory` for reading and
    /// writing, recovering from a crash as `options` say. Fails with
    /// [`Error::Locked`] when another writer has it open.
    pub fn open(directory: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        options.validate()?;
        let directory = directory.as_ref().to_path_buf();
        let storage = &*options.storage;
        if !options.create_if_missing {
            let exists = storage.exists(&directory).map_err(|e| Error::io("stat", &directory, e))?;
            if !exists || open::list_segments(storage, &directory)?.is_empty() {
                return Err(Error::NotALog { path: directory });
            }
        }
        create_directory_durably(storage, &directory)?;
        let lock = open::lock_directory(storage, &directory)?;
        let loaded = open::load(&directory, &options, true, None)?;
        Ok(Log::from_loaded(directory, options, Some(lock), loaded))
    }

    /// Opens the log in `directory` read-only: no lock is taken, nothing on disk
    /// is changed, and it works while another process appends. Damage is
    /// reported, never repaired; a partly written last batch is simply not
    /// shown. Call [`Log::refresh`] to see what the writer added since.
    pub fn open_read_only(directory: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        options.validate()?;
        let directory = directory.as_ref().to_path_buf();
        let options = match options.recovery_mode {
            RecoveryMode::Strict => options,
            _ => options.recovery_mode(RecoveryMode::TolerateTornTail),
        };
        let loaded = open::load_read_only(&directory, &options, None)?;
        Ok(Log::from_loaded(directory, options, None, loaded))
    }

    fn from_loaded(
        directory: PathBuf,
        options: LogOptions,
        lock: Option<Arc<dyn StorageFile>>,
        loaded: open::Loaded,
    ) -> Log {
        let published = loaded.state.published();
        // Records recovered from the active segment may still be only in the
        // page cache (a process crash keeps them there): count as durable only
        // what sealed segments hold, so that the next `sync` really syncs.
        let active = loaded.state.active();
        let durable_next_position =
            if active.footer.is_some() { loaded.state.next_position } else { active.segment.first_position() };
        Log {
            inner: Arc::new(Inner {
                directory,
                writable: lock.is_some(),
                options,
                _lock: lock,
                state: Mutex::new(loaded.state),
                published: RwLock::new(published),
                sync: Mutex::new(SyncState { durable_next_position, ..SyncState::default() }),
                poisoned: Mutex::new(None),
                report: loaded.report,
                signal: notify::AppendSignal::default(),
                history: RwLock::new(()),
            }),
        }
    }

    /// Appends one event; see [`Log::append_batch`].
    pub fn append(&self, event: &NewEvent<'_>) -> Result<Appended> {
        let appended = self.inner.append_batch(std::slice::from_ref(event))?;
        appended.first().copied().ok_or(Error::EmptyBatch)
    }

    /// Appends events atomically: after a crash either all of them are in the
    /// log or none is. With [`Durability::Sync`] they are on disk when this
    /// returns.
    pub fn append_batch(&self, events: &[NewEvent<'_>]) -> Result<Vec<Appended>> {
        self.inner.append_batch(events)
    }

    /// Makes every appended event durable (fdatasync), sharing the sync with
    /// concurrent callers.
    pub fn sync(&self) -> Result<()> {
        let target = self.inner.published.read().next_position;
        self.inner.sync_through(target)
    }

    /// A consistent snapshot of the log for reading.
    pub fn view(&self) -> LogView {
        LogView::new(self.inner.published.read().clone())
    }

    /// Reads one event by position (an owned copy); `None` outside the log.
    pub fn read(&self, position: u64) -> Result<Option<Event>> {
        let view = self.view();
        let event = view.get(position)?.map(|event| event.to_event());
        Ok(event)
    }

    /// First position held (greater than 0 after a purge).
    pub fn first_position(&self) -> u64 {
        self.inner.published.read().first_position
    }

    /// The position the next appended event will get.
    pub fn next_position(&self) -> u64 {
        self.inner.published.read().next_position
    }

    /// Timestamp of the newest event (0 for an empty log).
    pub fn last_timestamp_ns(&self) -> u64 {
        self.inner.published.read().last_timestamp_ns
    }

    /// Every position below this one is known to be on disk.
    pub fn durable_position(&self) -> u64 {
        self.inner.sync.lock().durable_next_position
    }

    /// Number of fdatasync calls made on behalf of appends and `sync` since open.
    pub fn sync_count(&self) -> u64 {
        self.inner.sync.lock().sync_count
    }

    /// Version and last position of a stream, `None` when it never had an
    /// event (a stream whose every event was purged keeps its last version
    /// and position, below [`Log::first_position`]). An error only when the stream table, checked on first use, is damaged
    /// and cannot be rebuilt.
    pub fn stream_state(&self, stream: &str) -> Result<Option<StreamState>> {
        self.inner.state.lock().stream_state(stream)
    }

    /// What opening the log repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Segment index files found missing or damaged, and rebuilt from their
    /// segments, since open (indexes of sealed segments are loaded on first
    /// use, so this grows as the log is read).
    pub fn rebuilt_indexes(&self) -> Vec<PathBuf> {
        self.inner.published.read().context.rebuilt.lock().clone()
    }

    /// Keeps [`Log::truncate_after`] of this process from running while the
    /// guard lives: a snapshot written meanwhile cannot be made stale by a
    /// truncation it did not see.
    pub(crate) fn hold_history(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.inner.history.read()
    }

    /// A handle that does not keep the log open (nor its directory locked).
    pub(crate) fn downgrade(&self) -> WeakLog {
        WeakLog(Arc::downgrade(&self.inner))
    }

    /// The log's directory.
    pub fn directory(&self) -> &Path {
        &self.inner.directory
    }

    /// The storage this log's files go through (for files kept beside the
    /// log, such as snapshots).
    pub(crate) fn storage(&self) -> Arc<dyn crate::storage::Storage> {
        Arc::clone(&self.inner.options.storage)
    }

    /// True for a handle made by [`Log::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        !self.inner.writable
    }

    /// The error that put the log in its failed state, if one did.
    pub fn failure(&self) -> Option<String> {
        self.inner.poisoned.lock().clone()
    }

    /// Removes every event after `position` (kept: `position` itself). Atomic
    /// across crashes: a marker file makes the next open finish an interrupted
    /// cut. Views taken before keep seeing the old events.
    pub fn truncate_after(&self, position: u64) -> Result<()> {
        self.inner.truncate_after(position)
    }

    /// Deletes whole segments whose events all come before `position`; returns
    /// how many. The active segment is never deleted. Safe across crashes:
    /// segments are removed oldest first, each removal made durable.
    pub fn purge_before(&self, position: u64) -> Result<usize> {
        self.inner.purge_before(position)
    }

    /// Checks every record, footer and index of the log against its checksum
    /// and the format's rules; returns the problems found. A live writer's
    /// truncations and purges (during the check, or, for a read-only handle,
    /// since its last refresh) rewrite index files: when problems are found
    /// and the log has changed, the check is made again on the log as it is
    /// (up to three times in all), so that they are not reported as damage.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.inner.verify()
    }

    /// For a read-only handle: picks up what the writer appended since open.
    /// For a writable one it changes nothing.
    pub fn refresh(&self) -> Result<()> {
        self.inner.refresh()
    }

    /// Blocks until the event at `position` is visible through this handle
    /// (`Ok(true)`), or until `timeout` passes (`Ok(false)`; `None` waits for
    /// ever). This is read-your-writes for another thread, and the way
    /// subscriptions wait for new events without polling.
    ///
    /// A writable log wakes its waiters on every append. A read-only handle
    /// cannot be told by the writing process, so it looks at the files
    /// ([`Log::refresh`]) with pauses growing from 1 ms to 50 ms.
    ///
    /// ```
    /// use chronolog::{Log, LogOptions, NewEvent};
    /// use std::time::Duration;
    ///
    /// let directory = tempfile::tempdir()?;
    /// let log = Log::open(directory.path(), LogOptions::default())?;
    /// let writer = log.clone();
    /// let thread = std::thread::spawn(move || writer.append(&NewEvent::new("s", "T", b"")));
    /// assert!(log.wait_for(0, Some(Duration::from_secs(10)))?);
    /// thread.join().expect("writer thread")?;
    /// assert!(!log.wait_for(1, Some(Duration::from_millis(1)))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for(&self, position: u64, timeout: Option<Duration>) -> Result<bool> {
        self.wait_for_or_stop(position, timeout, &AtomicBool::new(false))
    }

    /// [`Log::wait_for`] that also returns `Ok(false)` once `stop` is set and
    /// [`Log::wake_waiters`] is called (how a subscription or projection thread
    /// is shut down without a timeout). A log put in its failed state returns
    /// [`Error::Poisoned`] rather than waiting for events that cannot come.
    pub fn wait_for_or_stop(&self, position: u64, timeout: Option<Duration>, stop: &AtomicBool) -> Result<bool> {
        self.wait_until(|published| published.next_position > position, timeout, stop)
    }

    /// Blocks until the log this handle shows is no longer the one `view`
    /// shows (`Ok(true)`): an event was appended after the view's end, or
    /// the log was truncated or purged since the view was taken, even if it
    /// has grown back to the same end since. `Ok(false)` when `timeout`
    /// passes, or once `stop` is set and [`Log::wake_waiters`] is called.
    /// `view` must come from this handle (or a clone of it): any other's
    /// counts as changed at once.
    ///
    /// This is how a reader that has read everything up to a view's end
    /// waits: waiting for the event at the view's end
    /// ([`Log::wait_for_or_stop`]) would sleep through a truncation, and on
    /// until the log grew past the old end, while the history it read was
    /// gone. A read-only handle compares what it reloads ([`Log::refresh`])
    /// with the view, down to the view's last record: only another
    /// process's truncation that the log grows back over with a
    /// byte-identical last record before a reload looks unchanged to it.
    ///
    /// ```
    /// use chronolog::{Log, LogOptions, NewEvent};
    /// use std::sync::atomic::AtomicBool;
    /// use std::time::Duration;
    ///
    /// let directory = tempfile::tempdir()?;
    /// let log = Log::open(directory.path(), LogOptions::default())?;
    /// for _ in 0..3 {
    ///     log.append(&NewEvent::new("s", "T", b""))?;
    /// }
    /// let view = log.view();
    /// let (never, now) = (AtomicBool::new(false), Some(Duration::ZERO));
    /// assert!(!log.wait_for_change(&view, now, &never)?, "nothing happened since the view");
    /// log.truncate_after(1)?;
    /// log.append(&NewEvent::new("s", "T", b""))?;
    /// assert_eq!(log.next_position(), view.next_position());
    /// assert!(log.wait_for_change(&view, now, &never)?, "cut and grown back: a change");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_change(&self, view: &LogView, timeout: Option<Duration>, stop: &AtomicBool) -> Result<bool> {
        let seen = view.published();
        // A writable handle counts its truncations and purges in
        // `generation`; a read-only one reloads the writer's log without
        // knowing of them, so it also compares the view's last record.
        let last = view.next_position().checked_sub(1).filter(|&last| last >= view.first_position());
        let seen_last = match last {
            Some(last) if !self.inner.writable => view.fingerprint(last)?.map(|fingerprint| (last, fingerprint)),
            _ => None,
        };
        let changed = |published: &state::Published| {
            published.generation != seen.generation
                || !published.same_log(seen)
                || seen_last.is_some_and(|(last, fingerprint)| {
                    // An error reading it is a change too: the caller's next
                    // read meets it.
                    LogView::new(published.clone()).fingerprint(last).ok().flatten() != Some(fingerprint)
                })
        };
        self.wait_until(changed, timeout, stop)
    }

    /// Waits until `done` holds of the published state (`Ok(true)`), the
    /// timeout passes or `stop` is set (`Ok(false)`).
    fn wait_until(
        &self,
        done: impl Fn(&state::Published) -> bool,
        timeout: Option<Duration>,
        stop: &AtomicBool,
    ) -> Result<bool> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let inner = &*self.inner;
        let visible = || done(&inner.published.read());
        if inner.writable {
            inner
                .signal
                .wait_until(deadline, || visible() || stop.load(Ordering::Acquire) || inner.poisoned.lock().is_some());
            if visible() {
                return Ok(true);
            }
            inner.check_poisoned()?;
            return Ok(false);
        }
        let mut pause = Duration::from_millis(1);
        loop {
            if visible() {
                return Ok(true);
            }
            if stop.load(Ordering::Acquire) {
                return Ok(false);
            }
            inner.refresh()?;
            if visible() {
                return Ok(true);
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Ok(false);
            }
            let wake = now + pause;
            let wake = deadline.map_or(wake, |deadline| deadline.min(wake));
            inner.signal.wait_until(Some(wake), || stop.load(Ordering::Acquire));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Wakes every thread blocked in [`Log::wait_for`] or
    /// [`Log::wait_for_or_stop`] so that it checks its stop flag.
    pub fn wake_waiters(&self) {
        self.inner.signal.notify();
    }
}

/// Creates `directory` and any missing parents, then syncs the parent of each
/// one created: a new log's directory entry must survive a power loss like
/// the files in it, or the first acknowledged appends could vanish with it.
fn create_directory_durably(storage: &dyn crate::storage::Storage, directory: &Path) -> Result<()> {
    let mut created = Vec::new();
    let mut missing = Some(directory);
    while let Some(path) = missing {
        if path.as_os_str().is_empty() || storage.exists(path).map_err(|e| Error::io("stat", path, e))? {
            break;
        }
        created.push(path);
        missing = path.parent();
    }
    storage.create_dir_all(directory).map_err(|e| Error::io("create directory", directory, e))?;
    for path in created.iter().rev() {
        let parent = crate::storage::parent_of(path);
        storage.sync_dir(parent).map_err(|e| Error::io("sync directory", parent, e))?;
    }
    Ok(())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A clean close makes everything appended durable and leaves the active
        // segment's index beside it, so that the next open scans nothing.
        // Errors cannot be returned from drop: a failed sync or write just
        // means the next open scans the active segment.
        if !self.writable || self.poisoned.get_mut().is_some() {
            return;
        }
        let state = self.state.get_mut();
        // The manifest lags behind the sealed segments (its write failed at a
        // seal, the log was truncated or salvaged, or it predates version 5):
        // written now so that the next open need not open them.
        if state.manifest_stale {
            let _ = manifest::store(&*self.options.storage, &self.directory, &state.segments);
        }
        let active = state.active();
        if active.footer.is_some() || state.checkpoint.is_some() {
            return;
        }
        let segment = state.active_segment();
        if segment.sync().is_err() {
            return;
        }
        let Ok(index) = state.active_index.read() else { return };
        if index.data_end() == state.data_end && state.next_position > segment.first_position() {
            let anchor_crc = segment.record_crc_before(index.data_end()).unwrap_or(0);
            indexes::store_index(&*self.options.storage, &self.directory, &index, anchor_crc);
        }
    }
}
