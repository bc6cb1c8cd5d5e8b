//! The write side: aggregates rebuilt from their stream (and snapshots), and
//! commands turned into events under optimistic concurrency.

use std::marker::PhantomData;

use super::as_of::AsOf;
use super::codec::Codec;
use crate::error::{Error, Result};
use crate::log::{Appended, ExpectedVersion, Log, NewEvent};
use crate::snapshot::{SkipReason, SkippedSnapshot, SnapshotMeta, SnapshotStore};

/// A consistency boundary whose state is the fold of its stream's events, and
/// which decides what a command does.
///
/// `handle` only decides (it returns events or a domain error); `apply` only
/// changes state (it cannot fail: an event is a fact). The stream of the
/// aggregate with id `id` is `"{KIND}-{id}"`.
///
/// ```
/// use chronolog::cqrs::Aggregate;
///
/// #[derive(Default)]
/// struct Counter { value: u64 }
/// #[derive(Debug, PartialEq)]
/// enum CounterEvent { Added(u64) }
/// #[derive(Debug, thiserror::Error)]
/// #[error("the counter would overflow")]
/// struct Overflow;
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     type Command = u64;
///     type Error = Overflow;
///     const KIND: &'static str = "counter";
///     fn event_type(_: &CounterEvent) -> &'static str { "Added" }
///     fn apply(&mut self, CounterEvent::Added(n): &CounterEvent) { self.value += n }
///     fn handle(&self, amount: &u64) -> Result<Vec<CounterEvent>, Overflow> {
///         self.value.checked_add(*amount).ok_or(Overflow)?;
///         Ok(vec![CounterEvent::Added(*amount)])
///     }
/// }
/// let counter = Counter { value: u64::MAX };
/// assert!(counter.handle(&1).is_err());
/// ```
pub trait Aggregate: Default + Send + 'static {
    /// What happened to the aggregate.
    type Event;
    /// What someone asks the aggregate to do.
    type Command;
    /// Why the aggregate refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Prefix of the aggregate's streams: `"{KIND}-{id}"`.
    const KIND: &'static str;
    /// Version of the state's encoding in snapshots: bump it when the state's
    /// shape changes, and older snapshots are skipped (and reported) rather
    /// than misread.
    const SCHEMA_VERSION: u32 = 1;

    /// The event type stored with the event (filters and tools see it).
    fn event_type(event: &Self::Event) -> &'static str;
    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
    /// Decides what `command` does given the current state.
    fn handle(&self, command: &Self::Command) -> std::result::Result<Vec<Self::Event>, Self::Error>;
}

/// How an aggregate was loaded.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The snapshot started from: its `(next_position, version)`, none for a
    /// replay from the stream's first event.
    pub snapshot: Option<(u64, u64)>,
    /// Newer snapshots that could not be used, and why.
    pub skipped: Vec<SkippedSnapshot>,
    /// Events applied after the snapshot.
    pub events_replayed: u64,
}

/// An aggregate's state and where it stands in its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The aggregate's stream.
    pub stream: String,
    /// The state.
    pub state: A,
    /// Version of the last event applied; `None` when the stream has none
    /// (within the as-of point).
    pub version: Option<u64>,
    /// Position of the last event applied.
    pub last_position: Option<u64>,
    /// Timestamp of the last event applied (0 when none).
    pub last_timestamp_ns: u64,
    /// Stored CRC of the last event applied, read from the same view as the
    /// state (`None` when none, or when it was purged).
    pub last_record_crc: Option<u32>,
    /// How the state was rebuilt.
    pub report: LoadReport,
}

/// A command that did not make it into the log.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused it; nothing was written.
    #[error("command rejected: {0}")]
    Rejected(#[source] E),
    /// The store failed: a concurrency conflict left after every retry, a
    /// codec error (nothing written), or an I/O error. An I/O error from the
    /// append itself (a failed fsync with [`crate::Durability::Sync`], say)
    /// may come after the events were written and seen by readers; the log is
    /// then in its failed state and a reopen settles what stays.
    #[error(transparent)]
    Store(#[from] Error),
}

/// A command that made it into the log.
#[derive(Debug)]
pub struct Executed {
    /// Where its events landed (empty: the command changed nothing).
    pub appended: Vec<Appended>,
    /// The stream's version after it.
    pub version: Option<u64>,
    /// Attempts it took (more than 1 after concurrency conflicts).
    pub attempts: u32,
    /// A snapshot written after it, when one was due.
    pub snapshot: Option<std::path::PathBuf>,
    /// A snapshot that was due but failed. The command's events are in the
    /// log regardless; the next due snapshot tries again.
    pub snapshot_error: Option<Error>,
}

/// Loads aggregates and runs commands against them, over a log and its
/// snapshots.
///
/// ```
/// # use chronolog::cqrs::{Aggregate, Codec, CodecError};
/// # #[derive(Default)] struct Counter { value: u64 }
/// # #[derive(Debug, thiserror::Error)] #[error("overflow")] struct Overflow;
/// # impl Aggregate for Counter {
/// #     type Event = u64; type Command = u64; type Error = Overflow;
/// #     const KIND: &'static str = "counter";
/// #     fn event_type(_: &u64) -> &'static str { "Added" }
/// #     fn apply(&mut self, n: &u64) { self.value += n }
/// #     fn handle(&self, n: &u64) -> Result<Vec<u64>, Overflow> {
/// #         self.value.checked_add(*n).ok_or(Overflow)?; Ok(vec![*n])
/// #     }
/// # }
/// # struct Le;
/// # impl Codec<u64> for Le {
/// #     fn encode(&self, v: &u64) -> Result<Vec<u8>, CodecError> { Ok(v.to_le_bytes().to_vec()) }
/// #     fn decode(&self, b: &[u8]) -> Result<u64, CodecError> { Ok(u64::from_le_bytes(b.try_into()?)) }
/// # }
/// # impl Codec<Counter> for Le {
/// #     fn encode(&self, c: &Counter) -> Result<Vec<u8>, CodecError> { self.encode(&c.value) }
/// #     fn decode(&self, b: &[u8]) -> Result<Counter, CodecError> { Ok(Counter { value: self.decode(b)? }) }
/// # }
/// use chronolog::cqrs::{AggregateStore, AsOf};
/// use chronolog::{Log, LogOptions};
///
/// let directory = tempfile::tempdir()?;
/// let log = Log::open(directory.path(), LogOptions::default())?;
/// let counters = AggregateStore::<Counter, _>::new(&log, Le).snapshot_every(2);
/// for amount in [1, 2, 3] {
///     counters.execute("a", &amount)?;
/// }
/// let loaded = counters.load("a")?;
/// assert_eq!((loaded.state.value, loaded.version), (6, Some(2)));
/// assert_eq!(loaded.report.snapshot, Some((2, 2)), "started from the snapshot after 2 events");
/// assert_eq!(counters.load_as_of("a", AsOf::Position(0))?.state.value, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AggregateStore<A, C> {
    log: Log,
    snapshots: SnapshotStore,
    codec: C,
    snapshot_every: Option<u64>,
    max_attempts: u32,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, C> std::fmt::Debug for AggregateStore<A, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateStore")
            .field("kind", &std::any::type_name::<A>())
            .field("snapshot_every", &self.snapshot_every)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// Attempts of a command under concurrency conflicts, unless told otherwise.
pub const MAX_ATTEMPTS_DEFAULT: u32 = 5;

impl<A, C> AggregateStore<A, C>
where
    A: Aggregate,
    C: Codec<A::Event> + Codec<A>,
{
    /// A store over `log` and its snapshot folder, with no automatic
    /// snapshots and [`MAX_ATTEMPTS_DEFAULT`] attempts per command.
    pub fn new(log: &Log, codec: C) -> Self {
        AggregateStore {
            log: log.clone(),
            snapshots: SnapshotStore::open(log),
            codec,
            snapshot_every: None,
            max_attempts: MAX_ATTEMPTS_DEFAULT,
            _aggregate: PhantomData,
        }
    }

    /// Writes a snapshot of an aggregate each time its stream passes a
    /// multiple of `events` (0: never).
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = (events > 0).then_some(events);
        self
    }

    /// Uses this snapshot store (for its retention, say).
    pub fn snapshot_store(mut self, snapshots: SnapshotStore) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// Tries a command at most `attempts` times (at least 1) when its append
    /// meets a concurrency conflict, reloading the aggregate each time.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The stream of aggregate `id`.
    pub fn stream_of(id: &str) -> String {
        format!("{}-{id}", A::KIND)
    }

    /// The snapshot name of a stream (aggregates and projections share the
    /// snapshot folder, so each kind has its own prefix).
    pub fn snapshot_name(stream: &str) -> String {
        format!("aggregate:{stream}")
    }

    /// The aggregate's current state: its latest usable snapshot, then the
    /// events of its stream after it (read through the stream index).
    pub fn load(&self, id: &str) -> Result<Loaded<A>> {
        self.load_as_of(id, AsOf::Now)
    }

    /// The aggregate as it was at `as_of`: the latest usable snapshot at or
    /// before that point, then only the stream's events up to it.
    ///
    /// Fails with [`Error::MissingHistory`] when events the state needs were
    /// purged and no snapshot covers them, and when `as_of` lies inside the
    /// purged part of a stream's history (what it held there is gone): never
    /// a partial state.
    pub fn load_as_of(&self, id: &str, as_of: AsOf) -> Result<Loaded<A>> {
        let stream = Self::stream_of(id);
        let view = self.log.view();
        let end = as_of.end_position(&view)?;
        // A snapshot this code cannot decode is as good as damaged: it is
        // skipped (and reported) for an older one.
        let mut decoded = None;
        let lookup = self.snapshots.find_accepted(
            &Self::snapshot_name(&stream),
            as_of.snapshot_bound(end),
            A::SCHEMA_VERSION,
            &view,
            |snapshot| match Codec::<A>::decode(&self.codec, snapshot.payload()) {
                Ok(state) => {
                    decoded = Some(state);
                    Ok(())
                }
                Err(error) => Err(undecodable(snapshot, &*error)),
            },
        )?;
        let mut report = LoadReport { skipped: lookup.skipped, ..LoadReport::default() };
        let mut state = A::default();
        let mut next_version = 0;
        let mut last_position = None;
        let mut last_timestamp_ns = 0;
        if let (Some(snapshot), Some(decoded)) = (lookup.snapshot, decoded) {
            state = decoded;
            next_version = snapshot.meta.version;
            last_position = snapshot.meta.next_position.checked_sub(1);
            last_timestamp_ns = snapshot.meta.timestamp_ns;
            report.snapshot = Some((snapshot.meta.next_position, snapshot.meta.version));
        }
        let missing = |next_version| Error::MissingHistory {
            what: format!("stream {stream} from version {next_version}"),
            first_position: view.first_position(),
        };
        let mut read_any = false;
        for event in view.read_stream(&stream, next_version)? {
            let event = event?;
            read_any = true;
            if event.stream_version != next_version {
                // The stream index starts at the oldest event left: the ones
                // before it were purged, and folding the rest would be wrong.
                // Checked before the bound: purged events lie before every
                // event left, so before an as-of point too, unless that point
                // is inside the purged history, where what it held is unknown.
                return Err(missing(next_version));
            }
            if event.position >= end {
                break;
            }
            let decoded: std::result::Result<A::Event, _> = self.codec.decode(event.payload);
            let decoded = decoded.map_err(|error| Error::Codec {
                what: format!("event at position {} of stream {stream}", event.position),
                message: error.to_string(),
            })?;
            state.apply(&decoded);
            next_version = event.stream_version + 1;
            last_position = Some(event.position);
            last_timestamp_ns = event.timestamp_ns;
            report.events_replayed += 1;
        }
        if !read_any && view.stream_state(&stream)?.is_some_and(|state| state.last_version >= next_version) {
            // Nothing left to read, yet the stream has versions the state
            // lacks: every one of its events from `next_version` on was purged.
            return Err(missing(next_version));
        }
        let version = next_version.checked_sub(1);
        // The anchor a snapshot of this state needs, from the view it was
        // folded from (a truncation since cannot lend it another event's).
        let last_record_crc = match last_position {
            Some(position) if position >= view.first_position() => view.fingerprint(position)?.map(|(_, crc)| crc),
            _ => None,
        };
        Ok(Loaded { stream, state, version, last_position, last_timestamp_ns, last_record_crc, report })
    }

    /// Runs `command` against aggregate `id`: loads it, lets it decide, and
    /// appends its events (one atomic batch) expecting the stream's last event
    /// to be the one it was loaded at ([`ExpectedVersion::LastEvent`]: its
    /// version, position and record CRC, so that a truncation and regrowth in
    /// between is a conflict too). A concurrency conflict reloads and retries, up to
    /// [`AggregateStore::max_attempts`]; the last conflict is returned as
    /// [`Error::WrongExpectedVersion`]. A due snapshot is written after the
    /// events are durable.
    pub fn execute(&self, id: &str, command: &A::Command) -> std::result::Result<Executed, CommandError<A::Error>> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut loaded = self.load(id)?;
            let events = loaded.state.handle(command).map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed {
                    appended: Vec::new(),
                    version: loaded.version,
                    attempts,
                    snapshot: None,
                    snapshot_error: None,
                });
            }
            let payloads = events
                .iter()
                .map(|event| {
                    Codec::<A::Event>::encode(&self.codec, event).map_err(|error| Error::Codec {
                        what: format!("{} event for stream {}", A::event_type(event), loaded.stream),
                        message: error.to_string(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            // The very event the state was folded to, not just its version:
            // after a truncation and new appends the stream can be back at
            // that version with other events, and this decision must not go
            // onto them.
            let expected = match (loaded.version, loaded.last_position) {
                (Some(version), Some(position)) => {
                    ExpectedVersion::LastEvent { version, position, record_crc: loaded.last_record_crc }
                }
                (Some(version), None) => ExpectedVersion::Exact(version),
                (None, _) => ExpectedVersion::NoStream,
            };
            let batch: Vec<NewEvent<'_>> = events
                .iter()
                .zip(&payloads)
                .enumerate()
                .map(|(i, (event, payload))| {
                    let new = NewEvent::new(&loaded.stream, A::event_type(event), payload);
                    if i == 0 {
                        new.with_expected_version(expected)
                    } else {
                        new
                    }
                })
                .collect();
            let appended = match self.log.append_batch(&batch) {
                Ok(appended) => appended,
                Err(Error::WrongExpectedVersion { .. }) if attempts < self.max_attempts => continue,
                Err(error) => return Err(error.into()),
            };
            drop(batch);
            let before = loaded.version.map_or(0, |v| v + 1);
            for event in &events {
                loaded.state.apply(event);
            }
            let last = appended.last().copied();
            let version = last.map(|a| a.stream_version);
            let mut executed = Executed { appended, version, attempts, snapshot: None, snapshot_error: None };
            if let (Some(every), Some(last)) = (self.snapshot_every, last) {
                let after = last.stream_version + 1;
                if before / every != after / every {
                    match self.write_snapshot(&loaded.stream, &loaded.state, last, true, after) {
                        Ok(path) => executed.snapshot = Some(path),
                        Err(error) => executed.snapshot_error = Some(error),
                    }
                }
            }
            return Ok(executed);
        }
    }

    /// Writes a snapshot of aggregate `id` as it is now (for a first snapshot
    /// of a long stream, or before purging old segments). Returns `None` for
    /// an aggregate with no events.
    pub fn snapshot(&self, id: &str) -> Result<Option<std::path::PathBuf>> {
        let loaded = self.load(id)?;
        let (Some(version), Some(position)) = (loaded.version, loaded.last_position) else {
            return Ok(None);
        };
        // The anchor comes from the same view as the state.
        let last = Appended {
            position,
            stream_version: version,
            timestamp_ns: loaded.last_timestamp_ns,
            record_crc: loaded.last_record_crc.unwrap_or(0),
        };
        let anchor = loaded.last_record_crc.map(|_| last);
        self.write_snapshot(&loaded.stream, &loaded.state, last, anchor.is_some(), version + 1).map(Some)
    }

    /// Writes a snapshot of `state` ending at `last`, anchored on its record
    /// CRC (from the append, or from the view the state was loaded from) when
    /// `anchored`; the store checks it against the log as it is.
    fn write_snapshot(
        &self,
        stream: &str,
        state: &A,
        last: Appended,
        anchored: bool,
        events: u64,
    ) -> Result<std::path::PathBuf> {
        // Never snapshot events that could still vanish in a power loss: a
        // snapshot ahead of the log would be skipped anyway, but costs a write.
        if !self.log.is_read_only() {
            self.log.sync()?;
        }
        let payload = Codec::<A>::encode(&self.codec, state)
            .map_err(|error| Error::Codec { what: format!("state of {stream}"), message: error.to_string() })?;
        let meta = SnapshotMeta {
            name: Self::snapshot_name(stream),
            next_position: last.position + 1,
            timestamp_ns: last.timestamp_ns,
            version: events,
            schema_version: A::SCHEMA_VERSION,
        };
        let anchor_crc = anchored.then_some(last.record_crc);
        self.snapshots.write_with_anchor_crc(&meta, anchor_crc, &payload)
    }

    /// The log under this store.
    pub fn log(&self) -> &Log {
        &self.log
    }
}

/// The skip reason of a snapshot whose payload the application's codec
/// cannot decode.
pub(crate) fn undecodable(snapshot: &crate::snapshot::Snapshot, error: &dyn std::fmt::Display) -> SkipReason {
    let what = format!("snapshot {}", snapshot.path.display());
    SkipReason::Damaged(Error::Codec { what, message: error.to_string() })
}
