//! Reading: consistent snapshots of the log and iterators over them.

use super::indexes::IndexHandle;
use super::state::{Published, SegmentEntry};
use super::EventRef;
use crate::error::{CorruptionKind, Error, Result};
use crate::index::SegmentIndex;
use crate::record::{self, Decoded, RecordRef};
use crate::segment::HEADER_SIZE;

/// A consistent snapshot of the log: the events from
/// [`LogView::first_position`] up to (not including) [`LogView::next_position`]
/// as they were when the view was taken. Events appended later are not shown;
/// a view keeps the segments it reads open (and mapped) even if they are
/// purged or truncated meanwhile. Every event is checked against its CRC when
/// read, and errors name the file and offset.
///
/// ```
/// # use chronolog::{Durability, Log, LogOptions, NewEvent};
/// # let directory = tempfile::tempdir()?;
/// # let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None))?;
/// for i in 0..10u8 {
///     log.append(&NewEvent::new("counter", "Incremented", &[i]))?;
/// }
/// let view = log.view();
/// let from_seven: Vec<u8> = view.iter_from(7).map(|e| e.map(|e| e.payload[0])).collect::<Result<_, _>>()?;
/// assert_eq!(from_seven, vec![7, 8, 9]);
/// assert_eq!(view.get(3)?.map(|e| e.payload[0]), Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LogView {
    published: Published,
}

impl LogView {
    pub(super) fn new(published: Published) -> LogView {
        LogView { published }
    }

    /// The state this view shows.
    pub(super) fn published(&self) -> &Published {
        &self.published
    }

    /// First position in the view.
    pub fn first_position(&self) -> u64 {
        self.published.first_position
    }

    /// One past the last position in the view.
    pub fn next_position(&self) -> u64 {
        self.published.next_position
    }

    /// Number of events in the view.
    pub fn len(&self) -> u64 {
        self.published.next_position - self.published.first_position
    }

    /// True when the view holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Timestamp of the newest event in the view (0 when empty).
    pub fn last_timestamp_ns(&self) -> u64 {
        self.published.last_timestamp_ns
    }

    /// Every event, oldest first.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(self.first_position())
    }

    /// Events from `position` on (from the first one held, if `position` was
    /// purged), oldest first.
    pub fn iter_from(&self, position: u64) -> Iter<'_> {
        self.iter_range(position, self.next_position())
    }

    /// Events with positions in `[from, to)`, oldest first. Finding `from`
    /// costs a binary search in the segment's sparse index and a scan of at
    /// most one index interval.
    pub fn iter_range(&self, from: u64, to: u64) -> Iter<'_> {
        let from = from.max(self.first_position());
        let end_position = to.min(self.next_position());
        let mut iter = Iter {
            view: self,
            segment_index: 0,
            bytes: &[],
            offset: HEADER_SIZE as u64,
            position: from,
            from,
            end_position,
            done: from >= end_position,
            error: None,
        };
        if iter.done {
            return iter;
        }
        match self.locate(from).and_then(|found| iter.enter_segment(found.0).map(|()| found)) {
            Ok((_, offset, position)) => {
                iter.offset = offset;
                iter.position = position;
            }
            Err(error) => {
                iter.error = Some(error);
                iter.done = true;
                return iter;
            }
        }
        while iter.position < from {
            match iter.next() {
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    iter.error = Some(error);
                    break;
                }
                None => break,
            }
        }
        iter
    }

    /// The segment holding `position`, and the offset and position of the
    /// closest sparse index entry at or before it.
    pub(super) fn locate(&self, position: u64) -> Result<(usize, u64, u64)> {
        let segment_index = self.segment_index_of(position);
        let entry = self.with_index(segment_index, |index| index.seek_position(position))?;
        let first = self.segments()[segment_index].segment.first_position();
        Ok(match entry {
            Some(entry) => (segment_index, u64::from(entry.offset), entry.position),
            None => (segment_index, HEADER_SIZE as u64, first),
        })
    }

    /// Streams known as of the end of the view's last sealed segment.
    pub(super) fn sealed_stream_count(&self) -> Result<u64> {
        Ok(self.published.sealed_streams.table()?.len() as u64)
    }

    /// The stream table of the view's last sealed segment.
    pub(super) fn published_sealed_streams(&self) -> &super::sealed_streams::SealedStreams {
        &self.published.sealed_streams
    }

    /// A stream as of the end of the view's last sealed segment.
    pub(super) fn sealed_stream_state(&self, stream: &str) -> Result<Option<crate::index::StreamState>> {
        self.published.sealed_streams.get(stream)
    }

    /// Runs `read` on the index of a segment of this view (loading it on first
    /// use for a sealed segment).
    pub(super) fn with_index<R>(&self, segment_index: usize, read: impl FnOnce(&SegmentIndex) -> R) -> Result<R> {
        self.published.context.with_index(self.segments(), segment_index, self.published.generation, read)
    }

    /// Whether a segment's index is in memory (so that using it costs no
    /// file read or rebuild).
    pub(super) fn index_is_loaded(&self, segment_index: usize) -> bool {
        match &self.segments()[segment_index].index {
            IndexHandle::Lazy(cell) => cell.get().is_some(),
            IndexHandle::Built(_) => true,
        }
    }

    /// Every event, newest first.
    pub fn iter_rev(&self) -> RevIter<'_> {
        let segment_index = self.segments().len() - 1;
        RevIter {
            view: self,
            segment_index,
            offset: self.data_end(segment_index),
            position: self.next_position(),
            done: self.is_empty(),
        }
    }

    /// The stored CRC32 of the record at `position` (checked when it was
    /// read), with its timestamp: a fingerprint of the event, which snapshots
    /// keep to recognise the events they were made from. `None` when the view
    /// does not hold the position. To ask whether a fingerprint taken earlier
    /// still names the event there, use [`LogView::holds_fingerprint`], which
    /// also knows what a truncation does to the record it leaves last.
    pub fn fingerprint(&self, position: u64) -> Result<Option<(u64, u32)>> {
        let mut iter = self.iter_range(position, position.saturating_add(1));
        let Some(event) = iter.next() else { return Ok(None) };
        let timestamp_ns = event?.timestamp_ns;
        Ok(iter.last_crc().map(|crc| (timestamp_ns, crc)))
    }

    /// Whether the view still holds, at `position`, the event a reader took
    /// the fingerprint of: one with `timestamp_ns` (when given) whose record
    /// has the CRC `crc` (when given). `false` when the view does not hold
    /// the position (cut, not written yet, or purged).
    ///
    /// A truncation that cuts a batch just after `position` sets the
    /// batch-end flag on this record, which changes its CRC but not its
    /// event, so the CRC the record had before that counts too: whoever read
    /// up to the event still holds it.
    pub fn holds_fingerprint(&self, position: u64, timestamp_ns: Option<u64>, crc: Option<u32>) -> Result<bool> {
        if position < self.first_position() {
            return Ok(false);
        }
        let mut iter = self.iter_range(position, position.saturating_add(1));
        let Some(event) = iter.next() else { return Ok(false) };
        let found_timestamp_ns = event?.timestamp_ns;
        if timestamp_ns.is_some_and(|given| given != found_timestamp_ns) {
            return Ok(false);
        }
        let Some(crc) = crc else { return Ok(true) };
        let Some(record) = iter.last_record() else { return Ok(false) };
        Ok(iter.last_crc() == Some(crc) || record::crc_without_batch_end(record) == Some(crc))
    }

    /// The event at `position`, `None` when the view does not hold it.
    pub fn get(&self, position: u64) -> Result<Option<EventRef<'_>>> {
        if position < self.first_position() || position >= self.next_position() {
            return Ok(None);
        }
        self.iter_from(position).next().transpose()
    }

    pub(super) fn segments(&self) -> &[SegmentEntry] {
        &self.published.segments
    }

    pub(super) fn segment_index_of(&self, position: u64) -> usize {
        self.segments().partition_point(|entry| entry.segment.first_position() <= position).saturating_sub(1)
    }

    /// Offset past the last record of a segment in this view.
    pub(super) fn data_end(&self, index: usize) -> u64 {
        let entry = &self.segments()[index];
        match entry.footer {
            Some(footer) => footer.data_end_offset,
            None => self.published.active_data_end,
        }
    }

    pub(super) fn decode_at(
        &self,
        index: usize,
        offset: u64,
        end: u64,
        expected_position: u64,
    ) -> Result<RecordRef<'_>> {
        let segment = self.segments()[index].segment.get()?;
        let bytes = segment.bytes().get(offset as usize..end as usize).unwrap_or(&[]);
        match record::decode(bytes) {
            Ok(Decoded::Record(record)) if record.header.position == expected_position => Ok(record),
            Ok(Decoded::Record(record)) => Err(Error::corrupted(
                segment.path(),
                offset,
                CorruptionKind::PositionMismatch { expected: expected_position, found: record.header.position },
            )),
            Ok(Decoded::End) => Err(Error::corrupted(
                segment.path(),
                offset,
                CorruptionKind::Truncated { needed: record::HEADER_SIZE as u64, available: 0 },
            )),
            Err(kind) => Err(Error::corrupted(segment.path(), offset, kind)),
        }
    }
}

/// Forward iterator over a [`LogView`]; yields each event once, in position
/// order, and stops after the first error.
#[derive(Debug)]
pub struct Iter<'a> {
    view: &'a LogView,
    segment_index: usize,
    /// The current segment's bytes up to its data end in this view, kept so
    /// that the common step (the next record in the same segment) is one
    /// bounds check and a decode.
    bytes: &'a [u8],
    offset: u64,
    position: u64,
    /// The first position to yield.
    from: u64,
    /// One past the last position to yield.
    end_position: u64,
    done: bool,
    /// An error met while seeking to the start, yielded first.
    error: Option<Error>,
}

impl<'a> Iter<'a> {
    /// Position of the next event this iterator yields.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The stored CRC of the record of the event this iterator yielded last
    /// (checked when it was read); `None` before the first. With the event's
    /// timestamp it is its fingerprint ([`LogView::fingerprint`]), which a
    /// reader keeps to notice a truncation rewriting what it read, without
    /// looking the event up again.
    pub fn last_crc(&self) -> Option<u32> {
        self.last_record()
            .and_then(|bytes| bytes.get(..size_of::<u32>()))
            .map(|field| u32::from_le_bytes([field[0], field[1], field[2], field[3]]))
    }

    /// The bytes of the record of the event this iterator yielded last.
    fn last_record(&self) -> Option<&'a [u8]> {
        if self.position <= self.from {
            return None;
        }
        // The iterator stands just past the record it yielded last.
        let end = usize::try_from(self.offset).ok()?;
        let start = end.checked_sub(record::preceding_length(self.bytes, end)?)?;
        self.bytes.get(start..end)
    }

    fn enter_segment(&mut self, segment_index: usize) -> Result<()> {
        let end = self.view.data_end(segment_index) as usize;
        let bytes = self.view.segments()[segment_index].segment.get()?.bytes();
        self.segment_index = segment_index;
        self.bytes = bytes.get(..end).unwrap_or(bytes);
        Ok(())
    }

    /// Moves to the next segment once the current one is used up; an error
    /// when the view has no next segment although positions remain.
    #[cold]
    fn next_segment(&mut self) -> Result<()> {
        while self.offset >= self.bytes.len() as u64 {
            if self.segment_index + 1 >= self.view.segments().len() {
                let path = self.view.segments()[self.segment_index].segment.path();
                let kind = CorruptionKind::MissingSegment { position: self.position };
                return Err(Error::corrupted(path, self.offset, kind));
            }
            self.enter_segment(self.segment_index + 1)?;
            self.offset = HEADER_SIZE as u64;
        }
        Ok(())
    }

    /// The error for a record that did not decode as the expected position
    /// (the decode is repeated here, off the hot path, to name what is wrong).
    #[cold]
    fn record_error(&self) -> Error {
        let end = self.bytes.len() as u64;
        match self.view.decode_at(self.segment_index, self.offset, end, self.position) {
            Err(error) => error,
            Ok(_) => Error::corrupted(
                self.view.segments()[self.segment_index].segment.path(),
                self.offset,
                CorruptionKind::PositionMismatch { expected: self.position, found: self.position },
            ),
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<EventRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.position >= self.end_position {
            if let Some(error) = self.error.take() {
                return Some(Err(error));
            }
            return None;
        }
        if self.offset >= self.bytes.len() as u64 {
            if let Err(error) = self.next_segment() {
                self.done = true;
                return Some(Err(error));
            }
        }
        let bytes = self.bytes.get(self.offset as usize..).unwrap_or(&[]);
        match record::decode(bytes) {
            Ok(Decoded::Record(record)) if record.header.position == self.position => {
                self.offset += u64::from(record.encoded_length);
                self.position += 1;
                Some(Ok(EventRef::from_record(&record)))
            }
            _ => {
                self.done = true;
                Some(Err(self.record_error()))
            }
        }
    }
}

/// Backward iterator over a [`LogView`]: newest event first. Stops after the
/// first error.
#[derive(Debug)]
pub struct RevIter<'a> {
    view: &'a LogView,
    segment_index: usize,
    offset: u64,
    position: u64,
    done: bool,
}

impl<'a> Iterator for RevIter<'a> {
    type Item = Result<EventRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.position <= self.view.first_position() {
            return None;
        }
        let segments = self.view.segments();
        while self.offset <= HEADER_SIZE as u64 && self.segment_index > 0 {
            self.segment_index -= 1;
            self.offset = self.view.data_end(self.segment_index);
        }
        let segment = match segments[self.segment_index].segment.get() {
            Ok(segment) => segment,
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        let expected = self.position - 1;
        let start = record::preceding_length(segment.bytes(), self.offset as usize)
            .and_then(|length| self.offset.checked_sub(length as u64))
            .filter(|&start| start >= HEADER_SIZE as u64);
        let Some(start) = start else {
            self.done = true;
            let kind = CorruptionKind::LengthOutOfRange { length: 0 };
            let offset = self.offset.saturating_sub(record::TRAILER_SIZE as u64);
            return Some(Err(Error::corrupted(segment.path(), offset, kind)));
        };
        match self.view.decode_at(self.segment_index, start, self.offset, expected) {
            Ok(record) if u64::from(record.encoded_length) == self.offset - start => {
                self.offset = start;
                self.position = expected;
                Some(Ok(EventRef::from_record(&record)))
            }
            Ok(_) => {
                self.done = true;
                Some(Err(Error::corrupted(segment.path(), start, CorruptionKind::TrailerMismatch)))
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Which events a filtered read yields: a stream name prefix (a category such
/// as `account-`), a set of event types, or both.
///
/// ```
/// # use chronolog::{Durability, Filter, Log, LogOptions, NewEvent};
/// # let directory = tempfile::tempdir()?;
/// # let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None))?;
/// log.append(&NewEvent::new("account-1", "Opened", b""))?;
/// log.append(&NewEvent::new("order-1", "Placed", b""))?;
/// log.append(&NewEvent::new("account-2", "Closed", b""))?;
/// let view = log.view();
/// let filter = Filter::default().stream_prefix("account-").event_types(["Opened", "Placed"]);
/// let matching: Vec<u64> = view.iter_filtered(0, filter).map(|e| e.map(|e| e.position)).collect::<Result<_, _>>()?;
/// assert_eq!(matching, vec![0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    stream_prefix: Option<String>,
    event_types: Vec<String>,
}

impl Filter {
    /// Only streams whose name starts with `prefix`.
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into());
        self
    }

    /// Only these event types (no restriction while the set is empty).
    pub fn event_types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// True when an event of `stream` and `event_type` passes the filter.
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        self.stream_prefix.as_deref().is_none_or(|prefix| stream.starts_with(prefix))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}

/// Iterator over the events of a view that pass a [`Filter`].
#[derive(Debug)]
pub struct FilteredIter<'a> {
    inner: Iter<'a>,
    filter: Filter,
}

impl<'a> Iterator for FilteredIter<'a> {
    type Item = Result<EventRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.inner.next()? {
                Ok(event) if !self.filter.matches(event.stream, event.event_type) => continue,
                other => return Some(other),
            }
        }
    }
}

impl LogView {
    /// Events from `position` on that pass `filter`, oldest first. Payloads
    /// are checked (CRC) but never copied.
    pub fn iter_filtered(&self, position: u64, filter: Filter) -> FilteredIter<'_> {
        FilteredIter { inner: self.iter_from(position), filter }
    }
}
