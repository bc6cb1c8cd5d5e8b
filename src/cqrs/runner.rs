//! Keeping a projection up to date: catch up from its checkpoint, then follow
//! the log live on a thread of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::projection::{fold, restore, save, Checkpoint, Projection, RebuildReport};
use crate::error::{Error, Result};
use crate::log::{Log, LogView};
use crate::snapshot::{SnapshotBound, SnapshotStore};

/// Events a runner folds between two snapshots of its state, unless told
/// otherwise.
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 10_000;
/// Events folded under one hold of the state's write lock: readers wait
/// behind a catching-up runner for at most this many events.
const CHUNK_EVENTS: u64 = 4096;

/// A projection kept up to date on its own thread.
///
/// [`ProjectionRunner::start`] restores the latest usable snapshot, then the
/// thread folds every event after its checkpoint and sleeps until the log
/// changes (an append, or a truncation, which stops it with
/// `LogRewritten`; no polling while the log is idle). Every
/// `snapshot_every` events and when stopped it saves state and checkpoint
/// together in one snapshot.
///
/// ```
/// # use chronolog::cqrs::{CodecError, Projection};
/// # use chronolog::{EventRef, Log, LogOptions, NewEvent};
/// # #[derive(Default)] struct Count(u64);
/// # impl Projection for Count {
/// #     const NAME: &'static str = "count";
/// #     fn apply(&mut self, _: &EventRef<'_>) -> Result<(), CodecError> { self.0 += 1; Ok(()) }
/// #     fn encode(&self) -> Result<Vec<u8>, CodecError> { Ok(self.0.to_le_bytes().to_vec()) }
/// #     fn decode(b: &[u8]) -> Result<Self, CodecError> { Ok(Count(u64::from_le_bytes(b.try_into()?))) }
/// # }
/// use chronolog::cqrs::ProjectionRunner;
/// use chronolog::snapshot::SnapshotStore;
/// use std::time::Duration;
///
/// let directory = tempfile::tempdir()?;
/// let log = Log::open(directory.path(), LogOptions::default())?;
/// let (runner, _report) = ProjectionRunner::<Count>::start(&log, SnapshotStore::open(&log), 100)?;
/// let appended = log.append(&NewEvent::new("s", "T", b""))?;
/// // Read-your-writes: wait until the read model has seen the event.
/// assert!(runner.wait_for(appended.position, Some(Duration::from_secs(10)))?);
/// assert_eq!(runner.read(|count| count.0), 1);
/// let count = runner.stop()?;
/// assert_eq!(count.0, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProjectionRunner<P: Projection> {
    shared: Arc<Shared<P>>,
    thread: Option<JoinHandle<()>>,
}

impl<P: Projection> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let progress = self.shared.progress.lock();
        f.debug_struct("ProjectionRunner")
            .field("name", &P::NAME)
            .field("checkpoint", &progress.checkpoint.next_position)
            .field("failure", &progress.failure)
            .finish()
    }
}

struct Shared<P> {
    log: Log,
    store: SnapshotStore,
    snapshot_every: u64,
    state: RwLock<P>,
    progress: Mutex<Progress>,
    progressed: Condvar,
    stop: AtomicBool,
}

#[derive(Debug)]
struct Progress {
    checkpoint: Checkpoint,
    failure: Option<Failure>,
    finished: bool,
    snapshots_written: u64,
    snapshot_error: Option<String>,
}

/// Why a runner stopped, kept to be returned to every caller that asks.
#[derive(Debug)]
struct Failure {
    message: String,
    cause: Option<Arc<Error>>,
}

impl Failure {
    fn of(error: Error) -> Failure {
        match error {
            Error::ProjectionFailed { message, cause, .. } => Failure { message, cause },
            other => Failure { message: other.to_string(), cause: Some(Arc::new(other)) },
        }
    }

    fn panicked(said: Option<String>) -> Failure {
        let message = said
            .map_or_else(|| "the projection panicked".to_owned(), |said| format!("the projection panicked: {said}"));
        Failure { message, cause: None }
    }

    fn error<P: Projection>(&self) -> Error {
        Error::ProjectionFailed { name: P::NAME.to_owned(), message: self.message.clone(), cause: self.cause.clone() }
    }
}

impl<P: Projection> ProjectionRunner<P> {
    /// Restores `P` from its latest usable snapshot in `store` (or starts from
    /// the beginning of the log), and starts the thread that catches up and
    /// follows. `snapshot_every` events between snapshots (0: only when
    /// stopped). The report says which snapshot was used and which were
    /// skipped.
    pub fn start(log: &Log, store: SnapshotStore, snapshot_every: u64) -> Result<(Self, RebuildReport)> {
        let view = log.view();
        let mut report = RebuildReport::default();
        let (state, checkpoint) = restore::<P>(&store, &view, SnapshotBound::Latest, &mut report)?;
        let shared = Arc::new(Shared {
            log: log.clone(),
            store,
            snapshot_every: if snapshot_every == 0 { u64::MAX } else { snapshot_every },
            state: RwLock::new(state),
            progress: Mutex::new(Progress {
                checkpoint,
                failure: None,
                finished: false,
                snapshots_written: 0,
                snapshot_error: None,
            }),
            progressed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name(format!("projection-{}", P::NAME))
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, checkpoint)
            })
            .map_err(|error| Error::io("spawn projection thread", log.directory(), error))?;
        Ok((ProjectionRunner { shared, thread: Some(thread) }, report))
    }

    /// Reads the read model. It reflects every event before
    /// [`ProjectionRunner::checkpoint`] at least. Once the projection has
    /// failed ([`ProjectionRunner::wait_for`] says so), it is as the failure
    /// left it: an `apply` that panicked may have applied part of its event.
    /// Do not call `wait_for` or `read` again inside `read`: the runner may
    /// be waiting for the write lock, and the nested call would wait behind
    /// it.
    pub fn read<R>(&self, read: impl FnOnce(&P) -> R) -> R {
        read(&self.shared.state.read())
    }

    /// The next position the projection has not seen.
    pub fn checkpoint(&self) -> u64 {
        self.shared.progress.lock().checkpoint.next_position
    }

    /// Snapshots written since start.
    pub fn snapshots_written(&self) -> u64 {
        self.shared.progress.lock().snapshots_written
    }

    /// The last snapshot that failed to be written, if the latest attempt
    /// failed (the runner goes on; the next snapshot tries again).
    pub fn snapshot_error(&self) -> Option<String> {
        self.shared.progress.lock().snapshot_error.clone()
    }

    /// Blocks until the projection has seen the event at `position`
    /// (`Ok(true)`; read-your-writes after a command), or `timeout` passes
    /// (`Ok(false)`). A failed projection returns [`Error::ProjectionFailed`].
    /// The answer is of the log as this handle shows it now: once a
    /// truncation has cut the events the read model reflects (even if the
    /// log grew back over them), it waits for the thread to fail with
    /// `LogRewritten` rather than answer from the cut history.
    pub fn wait_for(&self, position: u64, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let mut progress = self.shared.progress.lock();
        // Reached, and of the log as it is: after a truncation under the
        // checkpoint, which the thread is about to report, the read model
        // reflects a history that is gone.
        let reached = |checkpoint: &Checkpoint| -> Result<bool> {
            Ok(checkpoint.next_position > position && cut_under(&self.shared.log.view(), checkpoint)?.is_none())
        };
        loop {
            if reached(&progress.checkpoint)? {
                return Ok(true);
            }
            if let Some(failure) = &progress.failure {
                return Err(failure.error::<P>());
            }
            if progress.finished {
                return Ok(false);
            }
            match deadline {
                Some(deadline) => {
                    if self.shared.progressed.wait_until(&mut progress, deadline).timed_out() {
                        return reached(&progress.checkpoint);
                    }
                }
                None => self.shared.progressed.wait(&mut progress),
            }
        }
    }

    /// Stops the thread, saves a final snapshot when the state moved since the
    /// last one, and returns the read model. Returns the error that stopped
    /// the projection, if one did (a panic in the projection's own code
    /// included, with its message). A final snapshot that fails to be
    /// written is no error here: the events are in the log, and the next
    /// start folds them again from the last snapshot that was written.
    pub fn stop(mut self) -> Result<P> {
        self.halt();
        let progress = self.shared.progress.lock();
        if let Some(failure) = &progress.failure {
            return Err(failure.error::<P>());
        }
        drop(progress);
        Ok(std::mem::take(&mut *self.shared.state.write()))
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.log.wake_waiters();
        if let Some(thread) = self.thread.take() {
            if let Err(payload) = thread.join() {
                // The panic's own message, which `FinishOnPanic` (in the
                // unwinding thread) cannot see.
                let said = payload.downcast_ref::<&str>().map(|text| (*text).to_owned());
                let said = said.or_else(|| payload.downcast_ref::<String>().cloned());
                self.shared.progress.lock().failure = Some(Failure::panicked(said));
            }
        }
    }
}

impl<P: Projection> Drop for ProjectionRunner<P> {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The runner's thread.
fn run<P: Projection>(shared: &Shared<P>, mut checkpoint: Checkpoint) {
    let _guard = FinishOnPanic(shared);
    let filter = P::filter();
    let mut since_snapshot = 0u64;
    let outcome = loop {
        let view = shared.log.view();
        let end = view.next_position();
        // A truncation under the checkpoint, even one the log has since
        // grown back over, shows as another event (or none) at the
        // checkpoint's last position. Checked before `stop` is honoured, so
        // that a state of a history cut meanwhile is not returned by `stop`
        // as if it were the log's.
        match cut_under(&view, &checkpoint) {
            Ok(None) => {}
            Ok(Some(last)) => break Err(Error::LogRewritten { position: last }),
            Err(error) => break Err(error),
        }
        if shared.stop.load(Ordering::Acquire) {
            break Ok(());
        }
        if checkpoint.next_position >= end {
            // Caught up: woken by the next append, and by a truncation too
            // (waiting for the event at `end` would sleep through one, and
            // `wait_for` would keep answering from the cut history until the
            // log grew past the old end).
            if let Err(error) = shared.log.wait_for_change(&view, None, &shared.stop) {
                break Err(error);
            }
            continue;
        }
        let chunk_end = end.min(checkpoint.next_position.saturating_add(CHUNK_EVENTS));
        let mut report = RebuildReport::default();
        let mut state = shared.state.write();
        let mut folded = fold(&mut *state, &mut checkpoint, &view, chunk_end, &filter, &mut report);
        // The checksum of the last record folded, from the same view: what
        // the rewrite check above and the next snapshot compare with.
        if folded.is_ok() {
            if let Some(last) = checkpoint.next_position.checked_sub(1) {
                match view.fingerprint(last) {
                    Ok(fingerprint) => checkpoint.anchor_crc = fingerprint.map(|(_, crc)| crc),
                    Err(error) => folded = Err(error),
                }
            }
        }
        // Published while the state is still locked: whoever sees the new
        // checkpoint and then reads sees the state that goes with it.
        shared.progress.lock().checkpoint = checkpoint;
        drop(state);
        shared.progressed.notify_all();
        if let Err(error) = folded {
            break Err(error);
        }
        since_snapshot += report.events_read;
        // A failed snapshot is retried at the next chunk or at stop.
        if since_snapshot >= shared.snapshot_every && snapshot(shared, checkpoint) {
            since_snapshot = 0;
        }
    };
    let mut progress = shared.progress.lock();
    match outcome {
        Ok(()) => {
            drop(progress);
            if since_snapshot > 0 {
                snapshot(shared, checkpoint);
            }
            progress = shared.progress.lock();
        }
        Err(error) => progress.failure = Some(Failure::of(error)),
    }
    progress.finished = true;
    drop(progress);
    shared.progressed.notify_all();
}

/// The position of the checkpoint's last event when `view` no longer holds
/// that event (the log was truncated under the checkpoint, even if it has
/// grown back since); `None` while it does, or once it was purged (a purge
/// rewrites nothing).
fn cut_under(view: &LogView, checkpoint: &Checkpoint) -> Result<Option<u64>> {
    let Some(last) = checkpoint.next_position.checked_sub(1).filter(|&last| last >= view.first_position()) else {
        return Ok(None);
    };
    let held = view.holds_fingerprint(last, Some(checkpoint.timestamp_ns), checkpoint.anchor_crc)?;
    Ok((!held).then_some(last))
}

/// Marks the runner finished and failed if its thread panics (in the
/// projection's own code), so that no `wait_for` sleeps for ever.
struct FinishOnPanic<'a, P>(&'a Shared<P>);

impl<P> Drop for FinishOnPanic<'_, P> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut progress = self.0.progress.lock();
            progress.failure.get_or_insert_with(|| Failure::panicked(None));
            progress.finished = true;
            drop(progress);
            self.0.progressed.notify_all();
        }
    }
}

/// Saves state and checkpoint; true on success. A failure is recorded, not
/// fatal (the events are in the log, and the next snapshot tries again).
fn snapshot<P: Projection>(shared: &Shared<P>, checkpoint: Checkpoint) -> bool {
    let saved = save(&shared.log, &shared.store, &*shared.state.read(), checkpoint);
    let mut progress = shared.progress.lock();
    match saved {
        Ok(_) => {
            progress.snapshots_written += 1;
            progress.snapshot_error = None;
            true
        }
        Err(error) => {
            progress.snapshot_error = Some(error.to_string());
            false
        }
    }
}
