//! The write path: validation, encoding, segment roll, and group commit.

use std::mem;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::MutexGuard;

use super::options::{record_size_limit, segment_data_bytes};

use super::indexes::{store_index, BuiltIndex, IndexHandle};
use super::lazy_segment::LazySegment;
use super::manifest;
use super::sealed_streams::SealedStreams;
use super::state::{SegmentEntry, State};
use super::{
    Appended, Durability, ExpectedVersion, GatheringLeader, Inner, LogView, NewEvent, SyncState, SyncWaiter,
    SYNC_COVERED, SYNC_LOOK_AGAIN,
};
use crate::error::{Error, Result};
use crate::index::segment_index::AddedRecord;
use crate::index::stream_table::{self, StreamState, StreamTable};
use crate::index::SegmentIndex;
use crate::record::{self, limits, RecordHeader, FLAG_BATCH_END};
use crate::segment::{Segment, SegmentFooter, HEADER_SIZE};
use crate::storage;

/// The longest a sync leader waits for other appenders to join its fdatasync
/// (see `Inner::sync_through`): on a slow disk, half an fsync would be long.
const SYNC_GATHER_MAX: Duration = Duration::from_micros(250);

/// How many events of a batch have their streams looked up ahead at once
/// (see `SegmentIndex::prefetch_streams`): enough for the CPU to overlap their cache
/// misses, few enough for their buckets to stay in the L1 cache (bulk append at
/// 10,000 streams: see BENCHMARKS.md, seventh session).
const PREFETCH_AHEAD_EVENTS: usize = 32;

/// Nanoseconds since the Unix epoch by the system clock (0 if it is set before
/// 1970; the writer raises it to the last timestamp anyway).
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
}

impl Inner {
    /// The events of a batch (by index) whose [`ExpectedVersion::LastEvent`]
    /// names a record CRC that the stream's last event does not have. Called
    /// under the writer lock, so the published view is the writer's own
    /// state. Empty, and free, for batches that name no record CRC.
    fn wrong_last_records(&self, state: &State, events: &[NewEvent<'_>]) -> Result<Vec<usize>> {
        let mut wrong = Vec::new();
        let mut view = None;
        for (batch_index, event) in events.iter().enumerate() {
            let ExpectedVersion::LastEvent { version, position, record_crc: Some(crc) } = event.expected_version else {
                continue;
            };
            // Version and position first, from the index: an event that is not
            // the stream's last now (before this batch) is refused without
            // reading its record, which for a stale guard could mean loading
            // an old segment's index while every appender waits. (An event of
            // this same batch cannot be named with a CRC: its record is not in
            // the view.)
            let last = state.stream_state(event.stream)?.map(|s| (s.last_version, s.last_position));
            if last != Some((version, position)) {
                wrong.push(batch_index);
                continue;
            }
            let view = view.get_or_insert_with(|| LogView::new(self.published.read().clone()));
            if !view.holds_fingerprint(position, None, Some(crc))? {
                wrong.push(batch_index);
            }
        }
        Ok(wrong)
    }

    pub(super) fn append_batch(&self, events: &[NewEvent<'_>]) -> Result<Vec<Appended>> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if events.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let batch_bytes = self.validate(events)?;
        let now = now_ns();

        let mut state = self.state.lock();
        self.check_poisoned()?;
        // The table a fresh open left unchecked is checked (or rebuilt) here,
        // before anything is written: a roll and the versions below need it,
        // and so may loading the active segment's index just below. Failing,
        // it fails this append only; the next one tries again.
        state.sealed_streams.table()?;
        if let Some(error) = state.active_index.damage() {
            // The active segment's index could not be loaded whole: versions
            // taken from it could repeat. Stop writing; reopening scans.
            self.poison(&error);
            return Err(error);
        }
        if state.checkpoint.is_some() {
            self.remove_checkpoint(&mut state)?;
        }
        let mut timestamp_floor = state.last_timestamp_ns;
        for event in events {
            match event.timestamp_ns {
                Some(given) if given < timestamp_floor => {
                    return Err(Error::TimestampOutOfOrder { given_ns: given, last_ns: timestamp_floor })
                }
                Some(given) => timestamp_floor = given,
                None => timestamp_floor = timestamp_floor.max(now),
            }
        }
        // Checked here, under the writer lock that truncation takes too: the
        // record seen is the one the stream's last event will be when the
        // index below compares its version and position.
        let wrong_records = self.wrong_last_records(&state, events)?;
        let active = state.active();
        let fits = active.footer.is_none() && state.data_end + batch_bytes <= active.segment.data_limit();
        if !fits {
            let limit_bytes = segment_data_bytes(self.options.segment_capacity_bytes);
            if batch_bytes > limit_bytes {
                return Err(Error::BatchTooLarge { size_bytes: batch_bytes, limit_bytes });
            }
            self.roll(&mut state, batch_bytes)?;
        }

        let mut buffer = mem::take(&mut state.buffer);
        buffer.clear();
        let mut appended = Vec::with_capacity(events.len());
        let mut timestamp_ns = state.last_timestamp_ns;
        let active_index = Arc::clone(&state.active_index);
        let sealed_streams = Arc::clone(&state.sealed_streams);
        let sealed_streams = sealed_streams.table()?;
        let mut index = active_index.write()?;
        let mark = index.mark();
        let mut undo = Vec::with_capacity(events.len());
        for (batch_index, event) in events.iter().enumerate() {
            if batch_index % PREFETCH_AHEAD_EVENTS == 0 {
                index.prefetch_streams(events[batch_index..].iter().take(PREFETCH_AHEAD_EVENTS).map(|e| e.stream));
            }
            timestamp_ns = event.timestamp_ns.unwrap_or(timestamp_ns.max(now));
            let position = state.next_position + batch_index as u64;
            let added = AddedRecord {
                stream: event.stream,
                position,
                timestamp_ns,
                stream_version: 0,
                offset: state.data_end + buffer.len() as u64,
                encoded_length: record::encoded_size(
                    event.stream.len(),
                    event.event_type.len(),
                    event.metadata.len(),
                    event.payload.len(),
                ) as u32,
            };
            // The expected version is checked against the stream as it is just
            // before this event (earlier events of the batch included); a
            // mismatch takes the whole batch back before anything is written.
            let checked = index.append_checked(
                &added,
                |last| event.expected_version.matches(last) && !wrong_records.contains(&batch_index),
                || sealed_streams.get(event.stream).map(|s| (s.last_version, s.last_position)),
            );
            let stream_version = match checked {
                Ok((version, entry)) => {
                    undo.push(entry);
                    version
                }
                Err(actual) => {
                    index.undo(mark, &undo);
                    drop(index);
                    state.buffer = buffer;
                    return Err(Error::WrongExpectedVersion {
                        stream: event.stream.to_owned(),
                        expected: event.expected_version,
                        actual: actual.map(|(version, _)| version),
                        actual_position: actual.map(|(_, position)| position),
                    });
                }
            };
            let header = RecordHeader {
                position,
                timestamp_ns,
                stream_version,
                flags: if batch_index + 1 == events.len() { FLAG_BATCH_END } else { 0 },
            };
            let record_start = buffer.len();
            record::encode_into(&mut buffer, &header, event.stream, event.event_type, event.metadata, event.payload);
            let record_crc = buffer
                .get(record_start..record_start + 4)
                .map_or(0, |field| u32::from_le_bytes([field[0], field[1], field[2], field[3]]));
            appended.push(Appended { position, stream_version, timestamp_ns, record_crc });
        }
        drop(index);
        debug_assert_eq!(buffer.len() as u64, batch_bytes);

        let segment = Arc::clone(state.active_segment());
        let offset = state.data_end;
        let written = segment.write_at(&buffer, offset);
        state.buffer = buffer;
        if let Err(error) = written {
            // Nothing of the batch counts: take its postings back too, so that
            // no lookup ever points at bytes that were not written.
            if let Ok(mut index) = active_index.write() {
                index.undo(mark, &undo);
            }
            // Part of the batch may be in the file past the published end; the
            // state of the page cache is unknown, so stop writing until reopen,
            // which cuts whatever is there.
            self.poison(&error);
            return Err(error);
        }
        state.data_end += batch_bytes;
        let writeback = self.writeback_due(&mut state, offset);
        state.next_position += events.len() as u64;
        state.last_timestamp_ns = timestamp_ns;
        if state.segment_first_timestamp_ns.is_none() {
            state.segment_first_timestamp_ns = appended.first().map(|a| a.timestamp_ns);
        }
        state.segment_record_count += events.len() as u64;
        {
            let mut published = self.published.write();
            published.next_position = state.next_position;
            published.active_data_end = state.data_end;
            published.last_timestamp_ns = state.last_timestamp_ns;
        }
        let target = state.next_position;
        drop(state);
        // After the published guard is gone: a waiter reads it under the
        // signal's lock.
        self.signal.notify();
        if let Some((from, to)) = writeback {
            // Out of the writer lock: the call may wait for the disk's queue.
            // A hint: its failure changes nothing on disk, and a write error
            // of those pages is kept by the OS for the next fdatasync.
            let _ = segment.start_writeback(from, to);
        }

        if self.options.durability == Durability::Sync {
            self.sync_through(target)?;
        }
        Ok(appended)
    }

    /// The range of the active segment to send to writeback after a batch
    /// written at `batch_start`, when `LogOptions::writeback_bytes` of
    /// unsynced bytes have piled up since the last sync or writeback.
    fn writeback_due(&self, state: &mut State, batch_start: u64) -> Option<(u64, u64)> {
        const PAGE_BYTES: u64 = 4096;
        if self.options.durability == Durability::Sync || self.options.writeback_bytes == 0 {
            return None;
        }
        let from = state.writeback_from.min(batch_start);
        state.writeback_from = from;
        let due_bytes = self.options.writeback_bytes.div_ceil(PAGE_BYTES).saturating_mul(PAGE_BYTES);
        if state.data_end - from < due_bytes {
            return None;
        }
        // Whole pages: the last one, partly written, will be written again.
        let to = state.data_end / PAGE_BYTES * PAGE_BYTES;
        state.writeback_from = to;
        Some((from / PAGE_BYTES * PAGE_BYTES, to))
    }

    /// Checks every event against the limits; returns the batch's encoded size.
    fn validate(&self, events: &[NewEvent<'_>]) -> Result<u64> {
        let record_limit = record_size_limit(self.options.segment_capacity_bytes);
        let mut batch_bytes = 0u64;
        for event in events {
            if event.stream.is_empty() || event.stream.len() > limits::STREAM_NAME_BYTES_MAX {
                return Err(Error::InvalidStreamName {
                    length: event.stream.len(),
                    limit: limits::STREAM_NAME_BYTES_MAX,
                });
            }
            if event.event_type.is_empty() || event.event_type.len() > limits::EVENT_TYPE_BYTES_MAX {
                return Err(Error::InvalidEventType {
                    length: event.event_type.len(),
                    limit: limits::EVENT_TYPE_BYTES_MAX,
                });
            }
            // Summed as u64 so that no payload size can overflow the check.
            let size = [event.stream.len(), event.event_type.len(), event.metadata.len(), event.payload.len()]
                .iter()
                .map(|&length| length as u64)
                .sum::<u64>()
                + record::RECORD_OVERHEAD as u64;
            if size > record_limit {
                return Err(Error::RecordTooLarge { size_bytes: size, limit_bytes: record_limit });
            }
            batch_bytes += size;
        }
        Ok(batch_bytes)
    }

    /// Seals the active segment (unless it already is) and starts the next one.
    /// A failure to create the next segment (a full disk) leaves the log sealed
    /// and consistent; the next append tries again.
    fn roll(&self, state: &mut State, batch_bytes: u64) -> Result<()> {
        let storage = &*self.options.storage;
        let active = state.active().clone();
        let sealed_streams = Arc::clone(&state.sealed_streams);
        // Checked before the segment is sealed, so that a failure changes nothing.
        let sealed_streams = sealed_streams.table()?;
        if active.footer.is_none() {
            if state.segment_record_count == 0 {
                // An empty segment too small for this batch (created with a
                // smaller capacity than the one now configured).
                return Err(Error::BatchTooLarge {
                    size_bytes: batch_bytes,
                    limit_bytes: active.segment.data_limit() - HEADER_SIZE as u64,
                });
            }
            let footer = SegmentFooter {
                last_position: state.next_position - 1,
                record_count: state.segment_record_count,
                min_timestamp_ns: state.segment_first_timestamp_ns.unwrap_or(state.last_timestamp_ns),
                max_timestamp_ns: state.last_timestamp_ns,
                data_end_offset: state.data_end,
            };
            if let Err(error) = state.active_segment().seal(&footer) {
                self.poison(&error);
                return Err(error);
            }
            let active_index = Arc::clone(&state.active_index);
            let index = match active_index.read() {
                Ok(index) => index,
                Err(error) => {
                    self.poison(&error);
                    return Err(error);
                }
            };
            let updates = index.streams().map(|(name, postings)| {
                (name, StreamState { last_version: postings.last_version(), last_position: postings.last_position })
            });
            // The anchor of the table and the index: what a reader checks them
            // against (see `open::table_fits`). The segment's last record ends
            // at its data end.
            let anchor_crc = state.active_segment().record_crc_before(state.data_end).unwrap_or(0);
            let table_bytes = sealed_streams.merged_with(updates, state.next_position, anchor_crc);
            let table_path = self.directory.join(stream_table::file_name(active.segment.first_position()));
            // The table and the index are hints: if one cannot be stored, the
            // next open (or first use) rebuilds it.
            let _ = storage::write_atomic(storage, &table_path, &table_bytes);
            store_index(storage, &self.directory, &index, anchor_crc);
            drop(index);
            let table = match StreamTable::decode(table_bytes) {
                Ok(table) => table,
                Err((offset, kind)) => {
                    // The segment is sealed on disk: memory must not go on as if
                    // it were not.
                    let error = Error::corrupted(&table_path, offset, kind);
                    self.poison(&error);
                    return Err(error);
                }
            };
            state.sealed_streams = Arc::new(SealedStreams::checked(table));
            state.active_index =
                Arc::new(BuiltIndex::new(SegmentIndex::new(state.next_position, self.options.index_interval_bytes)));
            let last = state.segments.len() - 1;
            state.segments[last].footer = Some(footer);
            // A hint too: when it cannot be stored, the segments it would
            // describe are opened at once by the next open (and a clean
            // close tries again).
            state.manifest_stale = manifest::store(storage, &self.directory, &state.segments).is_err();
            *self.published.write() = state.published();
        }
        // An index of that name can only be left by a log whose segments
        // were deleted: it must not describe the new segment to a later open
        // (its removal is made durable by the directory sync of the creation).
        let stale_index = self.directory.join(crate::index::segment_index::file_name(state.next_position));
        let created = super::truncation::remove_if_present(storage, &stale_index).and_then(|()| {
            Segment::create(storage, &self.directory, state.next_position, self.options.segment_capacity_bytes)
        });
        let segment = match created {
            Ok(segment) => segment,
            Err(error @ Error::StorageFull { .. }) => return Err(error),
            Err(error) => {
                self.poison(&error);
                return Err(error);
            }
        };
        state.active_index =
            Arc::new(BuiltIndex::new(SegmentIndex::new(segment.first_position(), self.options.index_interval_bytes)));
        state.segments.push(SegmentEntry {
            segment: Arc::new(LazySegment::open(segment)),
            footer: None,
            index: IndexHandle::Built(Arc::clone(&state.active_index)),
        });
        state.data_end = HEADER_SIZE as u64;
        state.writeback_from = u64::MAX;
        state.segment_record_count = 0;
        state.segment_first_timestamp_ns = None;
        *self.published.write() = state.published();
        Ok(())
    }

    /// Returns once every position below `target` is durable. One thread (the
    /// leader) runs fdatasync for all who wait; a failure poisons the log, and
    /// the fsync is never retried.
    pub(super) fn sync_through(&self, target: u64) -> Result<()> {
        let mut sync = self.sync.lock();
        let generation = sync.generation;
        loop {
            self.check_poisoned()?;
            if sync.durable_next_position >= target || sync.generation != generation {
                return Ok(());
            }
            if !sync.leader_active {
                sync.leader_active = true;
                sync = self.gather(sync);
                break;
            }
            let waiter = SyncWaiter::new(target, generation);
            sync.waiters.push(Arc::clone(&waiter));
            let spin_max = self.options.sync_spin_max;
            let spin = if sync.last_fsync <= spin_max { (sync.last_fsync * 2).min(spin_max) } else { Duration::ZERO };
            if let Some(gathering) = &sync.gathering {
                if sync.waiters.len() >= gathering.expected {
                    gathering.leader.unpark();
                }
            }
            drop(sync);
            if waiter.wait(spin) == SYNC_COVERED {
                return Ok(());
            }
            sync = self.sync.lock();
        }
        drop(sync);

        // Everything in earlier segments was synced when they were sealed, so
        // syncing the active segment covers every position written so far.
        let (segment, written_next) = {
            let mut state = self.state.lock();
            // What this sync writes needs no writeback request.
            state.writeback_from = state.data_end;
            (Arc::clone(state.active_segment()), state.next_position)
        };
        let started = Instant::now();
        let result = segment.sync();
        let mut sync = self.sync.lock();
        sync.last_fsync = started.elapsed();
        sync.leader_active = false;
        sync.sync_count += 1;
        match &result {
            Ok(()) if sync.generation == generation => {
                sync.durable_next_position = sync.durable_next_position.max(written_next);
            }
            Ok(()) => {}
            Err(error) => self.poison(error),
        }
        let waiters = mem::take(&mut sync.waiters);
        sync.last_woken = waiters.len();
        for waiter in &waiters {
            let covered =
                result.is_ok() && (sync.durable_next_position >= waiter.target || sync.generation != waiter.generation);
            waiter.outcome.store(if covered { SYNC_COVERED } else { SYNC_LOOK_AGAIN }, Ordering::Release);
        }
        drop(sync);
        for waiter in waiters {
            waiter.thread.unpark();
        }
        result
    }

    /// The new sync leader's wait for the appenders the last fdatasync woke
    /// (see `sync_through`). Other threads wait for a sync, or the last one
    /// woke some: appends come from several. Those just woken get to append
    /// before this sync starts, or each fsync covers only half of them (they
    /// fall into two cohorts that take turns). The leader sleeps until as
    /// many wait as the last fdatasync woke (the last to arrive wakes it), or
    /// up to half the last fdatasync's time: asleep, it leaves its CPU to the
    /// appenders it waits for (a leader that yielded in a loop kept one of two
    /// CPUs busy, and the woken appenders ran one after another on the
    /// other). A lone appender never waits here.
    fn gather<'a>(&'a self, mut sync: MutexGuard<'a, SyncState>) -> MutexGuard<'a, SyncState> {
        let expected = sync.last_woken;
        if expected == 0 || sync.waiters.len() >= expected {
            return sync;
        }
        let deadline = Instant::now() + (sync.last_fsync / 2).min(SYNC_GATHER_MAX);
        sync.gathering = Some(GatheringLeader { leader: std::thread::current(), expected });
        loop {
            let now = Instant::now();
            if sync.waiters.len() >= expected || now >= deadline {
                sync.gathering = None;
                return sync;
            }
            drop(sync);
            std::thread::park_timeout(deadline - now);
            sync = self.sync.lock();
        }
    }

    /// Removes the clean-close index of the active segment, durably, before
    /// the first append after open (FORMAT.md, "Clean close").
    fn remove_checkpoint(&self, state: &mut State) -> Result<()> {
        let Some(path) = state.checkpoint.take() else { return Ok(()) };
        let storage = &*self.options.storage;
        // Already gone (a retry after a failed directory sync) is fine.
        let removed = match storage.remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &path, error)),
            _ => storage.sync_dir(&self.directory).map_err(|e| Error::io("sync directory", &self.directory, e)),
        };
        if let Err(error) = removed {
            state.checkpoint = Some(path);
            return Err(error);
        }
        Ok(())
    }

    pub(super) fn poison(&self, error: &Error) {
        let mut poisoned = self.poisoned.lock();
        if poisoned.is_none() {
            *poisoned = Some(error.to_string());
        }
        drop(poisoned);
        // Waiters must not sleep on for events that cannot come.
        self.signal.notify();
    }

    pub(super) fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(reason) => Err(Error::Poisoned { reason: reason.clone() }),
            None => Ok(()),
        }
    }
}
