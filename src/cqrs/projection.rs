//! The read side: read models built by folding the events they care about,
//! checkpointed in snapshots, and rebuilt as of any moment.

use super::as_of::AsOf;
use super::codec::CodecError;
use crate::error::{Error, Result};
use crate::log::{EventRef, Filter, Log, LogView};
use crate::snapshot::{SkippedSnapshot, SnapshotBound, SnapshotMeta, SnapshotStore};

/// A read model: state folded from the events that pass its filter.
///
/// Its checkpoint (the next position it has not seen) is saved in the same
/// snapshot file as its state, so a restarted projection resumes exactly where
/// the saved state stands: no event applied twice, none missed.
///
/// ```
/// use chronolog::cqrs::{AsOf, CodecError, Projection};
/// use chronolog::{Filter, EventRef, Log, LogOptions, NewEvent};
/// use chronolog::snapshot::SnapshotStore;
///
/// /// How many orders each customer placed.
/// #[derive(Default)]
/// struct OrderCount(u64);
///
/// impl Projection for OrderCount {
///     const NAME: &'static str = "order-count";
///     fn filter() -> Filter { Filter::default().event_types(["Placed"]) }
///     fn apply(&mut self, _event: &EventRef<'_>) -> Result<(), CodecError> {
///         self.0 += 1;
///         Ok(())
///     }
///     fn encode(&self) -> Result<Vec<u8>, CodecError> { Ok(self.0.to_le_bytes().to_vec()) }
///     fn decode(bytes: &[u8]) -> Result<Self, CodecError> { Ok(OrderCount(u64::from_le_bytes(bytes.try_into()?))) }
/// }
///
/// let directory = tempfile::tempdir()?;
/// let log = Log::open(directory.path(), LogOptions::default())?;
/// for time in [10, 20, 30] {
///     log.append(&NewEvent::new("order-1", "Placed", b"").with_timestamp_ns(time))?;
/// }
/// let store = SnapshotStore::open(&log);
/// let (as_of_20, _) = chronolog::cqrs::project_as_of::<OrderCount>(&log, &store, AsOf::Time(20))?;
/// assert_eq!(as_of_20.0, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Projection: Default + Send + Sync + 'static {
    /// The projection's name: its snapshots are kept under it.
    const NAME: &'static str;
    /// Version of the state's encoding: snapshots of another version are
    /// skipped (and reported), and the projection rebuilds.
    const SCHEMA_VERSION: u32 = 1;

    /// Which events it sees (default: all).
    fn filter() -> Filter {
        Filter::default()
    }
    /// Folds one event in. An error stops the projection (a runner reports
    /// [`Error::ProjectionFailed`]) without saving the event as seen.
    fn apply(&mut self, event: &EventRef<'_>) -> std::result::Result<(), CodecError>;
    /// The state's bytes, for its snapshot.
    fn encode(&self) -> std::result::Result<Vec<u8>, CodecError>;
    /// The state back from its bytes.
    fn decode(bytes: &[u8]) -> std::result::Result<Self, CodecError>;
}

/// The snapshot name of projection `P`.
pub fn snapshot_name<P: Projection>() -> String {
    format!("projection:{}", P::NAME)
}

/// How a projection's state was rebuilt.
#[derive(Debug, Default)]
pub struct RebuildReport {
    /// The snapshot started from, by its next position; none for a replay
    /// from the start of the log.
    pub snapshot: Option<u64>,
    /// Newer snapshots that could not be used, and why.
    pub skipped: Vec<SkippedSnapshot>,
    /// Events read after the snapshot (passing the filter or not).
    pub events_read: u64,
    /// Of those, events applied.
    pub events_applied: u64,
}

/// A projection's state and checkpoint: what it reflects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Every event before this position has been seen.
    pub next_position: u64,
    /// Timestamp of the event at `next_position - 1` (0 before any).
    pub timestamp_ns: u64,
    /// Events applied in the projection's life.
    pub applied: u64,
    /// Stored CRC of the record at `next_position - 1`, when known: with
    /// the timestamp, how a truncation and rewrite under the checkpoint is
    /// recognised.
    pub anchor_crc: Option<u32>,
}

/// The latest usable snapshot of `P` within `bound`, decoded: the state to
/// start from and its checkpoint (the start of the log without one).
pub(crate) fn restore<P: Projection>(
    store: &SnapshotStore,
    view: &LogView,
    bound: SnapshotBound,
    report: &mut RebuildReport,
) -> Result<(P, Checkpoint)> {
    let mut decoded = None;
    let lookup =
        store.find_accepted(&snapshot_name::<P>(), bound, P::SCHEMA_VERSION, view, |snapshot| {
            match P::decode(snapshot.payload()) {
                Ok(state) => {
                    decoded = Some(state);
                    Ok(())
                }
                Err(error) => Err(super::aggregate::undecodable(snapshot, &*error)),
            }
        })?;
    report.skipped.extend(lookup.skipped);
    if let (Some(snapshot), Some(state)) = (lookup.snapshot, decoded) {
        report.snapshot = Some(snapshot.meta.next_position);
        let checkpoint = Checkpoint {
            next_position: snapshot.meta.next_position,
            timestamp_ns: snapshot.meta.timestamp_ns,
            applied: snapshot.meta.version,
            anchor_crc: snapshot.anchor_crc,
        };
        return Ok((state, checkpoint));
    }
    Ok((P::default(), Checkpoint { next_position: 0, timestamp_ns: 0, applied: 0, anchor_crc: None }))
}

/// Folds the events of `view` in `[checkpoint, end)` into `state`, moving the
/// checkpoint along; on an error the checkpoint stays at the failed event.
pub(crate) fn fold<P: Projection>(
    state: &mut P,
    checkpoint: &mut Checkpoint,
    view: &LogView,
    end: u64,
    filter: &Filter,
    report: &mut RebuildReport,
) -> Result<()> {
    if checkpoint.next_position < view.first_position() && checkpoint.next_position < end {
        // The state would silently miss events: refuse.
        return Err(Error::MissingHistory {
            what: format!("projection {} from position {}", P::NAME, checkpoint.next_position),
            first_position: view.first_position(),
        });
    }
    for event in view.iter_range(checkpoint.next_position, end) {
        let event = event?;
        if filter.matches(event.stream, event.event_type) {
            state.apply(&event).map_err(|error| Error::ProjectionFailed {
                name: P::NAME.to_owned(),
                message: format!("applying the event at position {}: {error}", event.position),
                cause: None,
            })?;
            checkpoint.applied += 1;
            report.events_applied += 1;
        }
        report.events_read += 1;
        checkpoint.next_position = event.position + 1;
        checkpoint.timestamp_ns = event.timestamp_ns;
        checkpoint.anchor_crc = None;
    }
    Ok(())
}

/// Writes `state` and its checkpoint as one snapshot, after making the
/// events it reflects durable (a writable log): a snapshot must not outlive
/// the events it was made from in a power loss. (Through a read-only handle
/// the writing process decides what is durable; such a snapshot may be found
/// ahead of the log after a power loss, and is then skipped.)
pub(crate) fn save<P: Projection>(
    log: &Log,
    store: &SnapshotStore,
    state: &P,
    checkpoint: Checkpoint,
) -> Result<std::path::PathBuf> {
    if !log.is_read_only() {
        log.sync()?;
    }
    let payload = state.encode().map_err(|error| Error::Codec {
        what: format!("state of projection {}", P::NAME),
        message: error.to_string(),
    })?;
    let meta = SnapshotMeta {
        name: snapshot_name::<P>(),
        next_position: checkpoint.next_position,
        timestamp_ns: checkpoint.timestamp_ns,
        version: checkpoint.applied,
        schema_version: P::SCHEMA_VERSION,
    };
    // The checksum comes from the view the state was folded from (`None`
    // when that event was purged): a truncation since cannot lend the
    // snapshot another record's, and the store checks it against the log.
    store.write_with_anchor_crc(&meta, checkpoint.anchor_crc, &payload)
}

/// Projection `P` as it was at `as_of`: the latest usable snapshot of it at
/// or before that point, then only the events from there to the point. This is
/// the read model "as of" any moment of the whole store.
pub fn project_as_of<P: Projection>(log: &Log, store: &SnapshotStore, as_of: AsOf) -> Result<(P, RebuildReport)> {
    let view = log.view();
    let end = as_of.end_position(&view)?;
    let mut report = RebuildReport::default();
    let (mut state, mut checkpoint) = restore::<P>(store, &view, as_of.snapshot_bound(end), &mut report)?;
    fold(&mut state, &mut checkpoint, &view, end, &P::filter(), &mut report)?;
    Ok((state, report))
}

/// Writes a snapshot of `P` as of `as_of` (rebuilt as [`project_as_of`]
/// does): to seed as-of queries into a long history, or to checkpoint a
/// projection that is not running.
pub fn snapshot_projection_as_of<P: Projection>(
    log: &Log,
    store: &SnapshotStore,
    as_of: AsOf,
) -> Result<Option<std::path::PathBuf>> {
    let view = log.view();
    let end = as_of.end_position(&view)?;
    let mut report = RebuildReport::default();
    let (mut state, mut checkpoint) = restore::<P>(store, &view, as_of.snapshot_bound(end), &mut report)?;
    fold(&mut state, &mut checkpoint, &view, end, &P::filter(), &mut report)?;
    let Some(last) = checkpoint.next_position.checked_sub(1) else { return Ok(None) };
    checkpoint.anchor_crc = view.fingerprint(last)?.map(|(_, crc)| crc);
    save(log, store, &state, checkpoint).map(Some)
}
