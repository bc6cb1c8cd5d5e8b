//! Operations on the log as a whole: truncate, purge, verify, refresh.

use std::sync::Arc;

use super::open::{self, check_against_footer, list_stream_tables};
use super::{truncation, Inner, LogView};
use crate::error::{CorruptionKind, Error, Result};
use crate::index::stream_table::{self, StreamTable};
use crate::index::{segment_index, SegmentIndex};
use crate::segment::{self, manifest, scan, ScanEnd, SegmentFooter, SegmentHeader, HEADER_SIZE};
use crate::storage;

/// What [`crate::Log::verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments_checked: usize,
    /// Records whose CRC and framing were checked.
    pub records_checked: u64,
    /// Stream table files checked.
    pub indexes_checked: usize,
    /// Every problem found, each naming its file and offset.
    pub problems: Vec<Error>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Inner {
    pub(super) fn truncate_after(&self, position: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let storage = &*self.options.storage;
        // No snapshot write of this process may straddle the cut (see
        // `Log::hold_history`); taken before the state, as snapshot writes
        // take it before reading the log.
        let _history = self.history.write();
        let mut state = self.state.lock();
        self.check_poisoned()?;
        let (first, next) = (state.first_position(), state.next_position);
        if position < first || position >= next {
            return Err(Error::PositionOutOfRange { position, first, next });
        }
        if position + 1 == next {
            return Ok(());
        }
        *state.context.generation.lock() += 1;
        // Views taken before the cut keep reading the segments it removes or
        // rewrites: the ones not opened yet are opened now, while they are
        // still the files the views describe (one that fails to open fails
        // the same way in the views).
        let cut_segment = state.segments.partition_point(|entry| entry.segment.first_position() <= position);
        for entry in &state.segments[cut_segment.saturating_sub(1)..] {
            let _ = entry.segment.get();
        }
        // The records kept must be durable before the marker is: with
        // `Durability::None` (or an append between its write and its sync) a
        // power loss could otherwise leave a marker naming a position the
        // log no longer holds, which no open could finish. A failed sync
        // poisons, as everywhere. From the moment the marker may exist, any
        // failure poisons the log too: the next open finishes the cut, so
        // nothing may be appended meanwhile.
        let result = state
            .active_segment()
            .sync()
            .and_then(|()| truncation::write_marker(storage, &self.directory, position))
            .and_then(|()| truncation::apply(storage, &self.directory, position, false))
            .and_then(|()| truncation::remove_marker(storage, &self.directory))
            .and_then(|()| open::load(&self.directory, &self.options, true, Some(&state.context)));
        let mut loaded = match result {
            Ok(loaded) => loaded,
            Err(error) => {
                // The marker may be on disk: reopening finishes the cut.
                self.poison(&error);
                return Err(error);
            }
        };
        // The segments the cut left as they were keep their handles, which
        // views taken before it share: a later truncate or purge then opens
        // them for those views too before it changes their files.
        for entry in &mut loaded.state.segments {
            let kept = state.segments.iter().find(|old| {
                old.segment.first_position() == entry.segment.first_position()
                    && old.footer.is_some()
                    && old.footer == entry.footer
            });
            if let Some(old) = kept {
                entry.segment = Arc::clone(&old.segment);
            }
        }
        *state = loaded.state;
        *self.published.write() = state.published();
        self.signal.notify();
        // Everything kept is durable: sealed segments were synced when sealed
        // and a cut segment is rewritten and synced. A sync running now was for
        // the old tail; the generation tells it its result no longer applies.
        let mut sync = self.sync.lock();
        sync.generation += 1;
        sync.durable_next_position = state.next_position;
        Ok(())
    }

    pub(super) fn purge_before(&self, position: u64) -> Result<usize> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let storage = &*self.options.storage;
        let directory = &self.directory;
        let mut state = self.state.lock();
        self.check_poisoned()?;
        let purgeable = state.segments[..state.segments.len() - 1]
            .iter()
            .take_while(|entry| entry.footer.is_some_and(|footer| footer.last_position < position))
            .count();
        if purgeable == 0 {
            return Ok(0);
        }
        // Views taken before the purge keep reading the purged segments (see
        // `truncate_after`): each is opened, and checked against the
        // manifest that gave its footer, before anything changes. A segment
        // that is not what the manifest said is not removed on its word.
        for entry in &state.segments[..purgeable] {
            entry.segment.get()?;
        }
        // Checked before anything changes: the purge stores it below.
        let sealed_streams = Arc::clone(&state.sealed_streams);
        let sealed_streams = sealed_streams.table()?;
        *state.context.generation.lock() += 1;
        // Two stream tables must survive the purge (and are stored now, since
        // the write of either may have failed when its segment was sealed): the
        // newest, which opening reads, and the one covering everything before
        // the new first segment, which a truncate into that segment falls back
        // on. Older tables are superseded by the second one.
        let newest = state
            .segments
            .iter()
            .rev()
            .find(|entry| entry.footer.is_some_and(|f| f.last_position + 1 == sealed_streams.next_position()))
            .map(|entry| entry.segment.first_position());
        if let Some(first) = newest {
            let path = directory.join(stream_table::file_name(first));
            storage::write_atomic(storage, &path, sealed_streams.as_bytes())
                .map_err(|e| Error::io("write stream table", &path, e))?;
        }
        let new_first = state.segments[purgeable].segment.first_position();
        let base_first = state.segments[purgeable - 1].segment.first_position();
        let base =
            open::load_stream_table(storage, directory, &state.segments, new_first, true, &mut Default::default())?;
        let base_path = directory.join(stream_table::file_name(base_first));
        storage::write_atomic(storage, &base_path, base.as_bytes())
            .map_err(|e| Error::io("write stream table", &base_path, e))?;
        let removed = state.segments[..purgeable].iter().try_for_each(|entry| {
            truncation::remove_if_present(storage, entry.segment.path())?;
            storage.sync_dir(directory).map_err(|e| Error::io("sync directory", directory, e))?;
            let index_path = directory.join(segment_index::file_name(entry.segment.first_position()));
            truncation::remove_if_present(storage, &index_path)
        });
        if let Err(error) = removed {
            // Some segment files may be gone: the in-memory list no longer
            // matches the directory. Reopening reads what is really there.
            self.poison(&error);
            return Err(error);
        }
        state.segments.drain(..purgeable);
        *self.published.write() = state.published();
        self.signal.notify();
        // The manifest no longer lists the purged segments: an open after a
        // clean close starts from its first segment (see
        // `open::listed_by_clean_close`). A hint: a failure is tried again at
        // the clean close.
        state.manifest_stale = super::manifest::store(storage, directory, &state.segments).is_err();
        // Older tables are superseded; failing to remove one costs only disk.
        for table_first in list_stream_tables(storage, directory).unwrap_or_default() {
            if table_first < base_first && Some(table_first) != newest {
                let _ = truncation::remove_if_present(storage, &directory.join(stream_table::file_name(table_first)));
            }
        }
        Ok(purgeable)
    }

    pub(super) fn refresh(&self) -> Result<()> {
        if self.writable {
            return Ok(());
        }
        // The writer may purge or truncate meanwhile: see `load_read_only`.
        let shared = Arc::clone(&self.state.lock().context);
        let loaded = open::load_read_only(&self.directory, &self.options, Some(&shared))?;
        let mut state = self.state.lock();
        *state = loaded.state;
        *self.published.write() = state.published();
        self.signal.notify();
        Ok(())
    }

    /// Verifies the log as this handle sees it. The segment indexes, stream
    /// tables and manifest are files a live writer rewrites or removes when it
    /// truncates or purges (and a read-only handle's view may be older than
    /// the directory): when problems are found and the log has changed since
    /// the view, the check is made again on the log as it is now, up to
    /// `VERIFY_ATTEMPTS` times in all. The last check's report is returned.
    pub(super) fn verify(&self) -> Result<VerifyReport> {
        let mut published = self.published.read().clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let report = self.verify_view(&LogView::new(published.clone()))?;
            if report.problems.is_empty() || attempt == VERIFY_ATTEMPTS {
                return Ok(report);
            }
            let now = if self.writable {
                let state = self.state.lock();
                let generation = *state.context.generation.lock();
                (generation != published.generation).then(|| state.published())
            } else {
                // The writer's changes show only in a fresh load; this
                // handle's own state is left as it is (see `Log::refresh`).
                let shared = Arc::clone(&self.state.lock().context);
                open::load_read_only(&self.directory, &self.options, Some(&shared))
                    .ok()
                    .map(|loaded| loaded.state.published())
                    .filter(|fresh| !fresh.same_log(&published))
            };
            match now {
                Some(now) => published = now,
                // Nothing changed that explains the problems: they are real.
                None => return Ok(report),
            }
        }
    }

    fn verify_view(&self, view: &LogView) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut timestamp_floor = 0;
        let mut expected_first = view.first_position();
        for (index, entry) in view.segments().iter().enumerate() {
            report.segments_checked += 1;
            let segment = match entry.segment.get() {
                Ok(segment) => segment,
                Err(error) => {
                    // Unreadable, or not the segment the manifest described:
                    // the segments after it are still checked.
                    report.problems.push(error);
                    if let Some(footer) = entry.footer {
                        expected_first = footer.last_position + 1;
                        timestamp_floor = footer.max_timestamp_ns;
                    }
                    continue;
                }
            };
            let path = segment.path();
            let bytes = segment.bytes();
            if let Err((offset, kind)) = SegmentHeader::decode(bytes) {
                report.problems.push(Error::corrupted(path, offset, kind));
                continue;
            }
            if segment.first_position() != expected_first {
                let kind = CorruptionKind::MissingSegment { position: expected_first };
                report.problems.push(Error::corrupted(path, 0, kind));
            }
            let footer = match segment.footer() {
                Ok(footer) => footer,
                Err(error) => {
                    report.problems.push(error);
                    entry.footer
                }
            };
            let end = view.data_end(index);
            let outcome = scan(bytes, HEADER_SIZE as u64, end, segment.first_position(), timestamp_floor, |_, _| {});
            report.records_checked += outcome.record_count;
            timestamp_floor = outcome.last_timestamp_ns;
            expected_first = outcome.next_position;
            match (entry.footer, footer) {
                (Some(_), Some(on_disk)) => {
                    if let Err(error) = check_against_footer(segment, &outcome, &on_disk) {
                        report.problems.push(error);
                    }
                    if let Some(problem) = padding_problem(segment, &on_disk) {
                        report.problems.push(problem);
                    }
                    expected_first = on_disk.last_position + 1;
                }
                (Some(_), None) => {
                    let kind = CorruptionKind::MissingFooter;
                    report.problems.push(Error::corrupted(path, segment.data_limit(), kind));
                }
                (None, _) => {
                    // A read-only handle that found a truncation in progress
                    // shows the log as the cut will leave it, which may end
                    // inside a batch: the writer closes that batch in the copy
                    // it rewrites, not in the file this view maps. Its other
                    // views end where a scan found a complete batch.
                    let capped_inside_a_batch = !self.writable
                        && matches!(outcome.end, ScanEnd::IncompleteBatch { .. })
                        && outcome.stop_offset == end;
                    if let ScanEnd::Invalid { offset, kind } = &outcome.end {
                        report.problems.push(Error::corrupted(path, *offset, kind.clone()));
                    } else if capped_inside_a_batch {
                        report.records_checked += outcome.stop_position - outcome.next_position;
                    } else if outcome.valid_end != end {
                        report.problems.push(Error::corrupted(
                            path,
                            outcome.valid_end,
                            CorruptionKind::IncompleteBatch,
                        ));
                    }
                }
            }
        }
        self.verify_stream_tables(&mut report, view)?;
        self.verify_manifest(&mut report, view)?;
        Ok(report)
    }

    /// The manifest must decode, and describe every sealed segment it lists
    /// as the segment is. (Segments opened from it were compared when
    /// `verify` opened them; the others are compared here.)
    fn verify_manifest(&self, report: &mut VerifyReport, view: &LogView) -> Result<()> {
        let storage = &*self.options.storage;
        let path = self.directory.join(manifest::MANIFEST_FILE_NAME);
        let bytes = match storage::read_all(storage, &path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(Error::io("read manifest", &path, error)),
        };
        report.indexes_checked += 1;
        let entries = match manifest::decode(&bytes) {
            Ok(entries) => entries,
            Err((offset, kind)) => {
                report.problems.push(Error::corrupted(&path, offset, kind));
                return Ok(());
            }
        };
        for entry in view.segments() {
            let (Some(footer), Some(_)) = (entry.footer, entry.segment.if_open()) else { continue };
            let first = entry.segment.first_position();
            let Some(described) = entries.iter().find(|described| described.header.first_position == first) else {
                continue;
            };
            if *described != entry.segment.manifest_entry(footer) {
                let kind = CorruptionKind::ManifestMismatch;
                report.problems.push(Error::corrupted(entry.segment.path(), 0, kind));
            }
        }
        Ok(())
    }

    fn verify_stream_tables(&self, report: &mut VerifyReport, view: &LogView) -> Result<()> {
        let storage = &*self.options.storage;
        for (index, entry) in view.segments().iter().enumerate() {
            let first = entry.segment.first_position();
            let path = self.directory.join(segment_index::file_name(first));
            let bytes = match storage::read_all(storage, &path) {
                Ok(bytes) => bytes,
                // A missing index is rebuilt when needed; not damage.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::io("read segment index", &path, error)),
            };
            // The active segment's index exists only after a clean close (the
            // first append removes it). A writer may close cleanly, or append,
            // after this view was taken, so it is checked for integrity
            // against the data end it claims; recovery compares that with the
            // segment.
            let data_end = match entry.footer {
                Some(footer) => footer.data_end_offset,
                None => SegmentIndex::peek_data_end(&bytes).unwrap_or(view.data_end(index)),
            };
            report.indexes_checked += 1;
            // An anchor that is not this view's record is not damage: the
            // index is of a history a live writer grew back since, which
            // readers do not take (they rebuild it from the segment).
            if let Err((offset, kind)) = SegmentIndex::decode(&bytes, first, data_end) {
                report.problems.push(Error::corrupted(&path, offset, kind));
            }
        }
        for first in list_stream_tables(storage, &self.directory)? {
            let path = self.directory.join(stream_table::file_name(first));
            let bytes = match storage::read_all(storage, &path) {
                Ok(bytes) => bytes,
                // Superseded and removed by a live writer since the listing.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::io("read stream table", &path, error)),
            };
            report.indexes_checked += 1;
            // Likewise, its anchor is not judged here (see above).
            if let Err((offset, kind)) = StreamTable::decode(bytes) {
                report.problems.push(Error::corrupted(&path, offset, kind));
            }
        }
        Ok(())
    }
}

/// How many times `verify` checks the log when a live writer's changes could
/// explain what it found.
const VERIFY_ATTEMPTS: u32 = 3;

/// The bytes between a sealed segment's last record and its footer must be zero.
fn padding_problem(segment: &segment::Segment, footer: &SegmentFooter) -> Option<Error> {
    let padding = segment.bytes().get(footer.data_end_offset as usize..segment.data_limit() as usize)?;
    let index = padding.iter().position(|&b| b != 0)?;
    Some(Error::corrupted(segment.path(), footer.data_end_offset + index as u64, CorruptionKind::NonZeroPadding))
}
