//! Reading one stream: forward from a version, backward from a version, as of
//! a time, in time proportional to the events read.
//!
//! A stream's events in one segment are found through that segment's postings
//! (offsets in order; versions inside a segment are consecutive). Segments
//! holding a stream are chained newest to oldest by each postings' previous
//! position, so finding where a read starts visits only the segments that hold
//! the stream, never the others.

use super::view::LogView;
use super::EventRef;
use crate::error::{CorruptionKind, Error, Result};
use crate::index::StreamState;
use crate::record::{self, Decoded};

/// How many events ahead a stream read prefetches.
const PREFETCH_DISTANCE: usize = 16;
/// How much of each record it prefetches (the header and a small payload).
const PREFETCH_BYTES: usize = 256;

/// How many segments a walk back along a stream's back links looks the
/// stream up in at once (see `LogView::previous_chunk`).
const LOOKAHEAD_SEGMENTS: usize = 8;

/// The stream's chunks in a run of consecutive segments, looked up together.
#[derive(Debug, Default)]
struct Lookahead {
    low: usize,
    /// From segment `low` on: `None` where no lookup was made, `Some(None)`
    /// where the segment does not hold the stream.
    chunks: Vec<Option<Option<Chunk>>>,
}

impl Lookahead {
    /// The lookup of segment `index`, if one was made.
    fn get(&self, index: usize) -> Option<Option<Chunk>> {
        index.checked_sub(self.low).and_then(|at| self.chunks.get(at).copied().flatten())
    }
}

/// Which way a stream read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

/// What one segment holds of the stream being read.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    segment_index: usize,
    first_version: u64,
    /// Postings of the stream in this segment that the view holds.
    count: usize,
    previous_position: Option<u64>,
}

/// Iterator over the events of one stream; see [`LogView::read_stream`].
#[derive(Debug)]
pub struct StreamIter<'a> {
    view: &'a LogView,
    stream: String,
    direction: Direction,
    /// Forward reads: the segments still to visit, newest first (popped from
    /// the end).
    forward_chunks: Vec<Chunk>,
    /// Offsets of the current chunk's events from version `offsets_first_version`
    /// on, copied once per chunk so that each event costs no index lookup.
    offsets: Vec<u32>,
    offsets_first_version: u64,
    offsets_segment: Option<usize>,
    chunk: Option<Chunk>,
    /// Version of the next event to yield.
    version: u64,
    /// Inclusive bound on versions (forward: highest, backward: lowest).
    version_bound: u64,
    /// Events after this position are not yielded (as-of reads).
    position_bound: u64,
    /// Backward reads: the segments before the current one, looked up ahead.
    lookahead: Lookahead,
    done: bool,
}

impl LogView {
    /// The stream's last version and position as of this view (`None`: the
    /// stream never had an event in it). For a stream whose every event was
    /// purged, the last position is below [`LogView::first_position`], as
    /// [`Log::stream_state`](crate::Log::stream_state) has it too.
    pub fn stream_state(&self, stream: &str) -> Result<Option<StreamState>> {
        let Some(chunk) = self.newest_chunk(stream)? else {
            // The stream tables keep the streams of purged segments: the next
            // append to such a stream continues its versions.
            let purged = self.sealed_stream_state(stream)?.filter(|state| state.last_position < self.first_position());
            return Ok(purged);
        };
        let version = chunk.first_version + chunk.count as u64 - 1;
        let Some(offset) = self.posting(&chunk, stream, version)? else { return Ok(None) };
        let event = self.decode_posting(chunk.segment_index, offset, stream, version)?;
        Ok(Some(StreamState { last_version: version, last_position: event.position }))
    }

    /// Events of `stream` with versions from `from_version` on, oldest first.
    ///
    /// ```
    /// # use chronolog::{Durability, Log, LogOptions, NewEvent};
    /// # let directory = tempfile::tempdir()?;
    /// # let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None))?;
    /// for i in 0..10u8 {
    ///     let stream = if i % 2 == 0 { "even" } else { "odd" };
    ///     log.append(&NewEvent::new(stream, "Counted", &[i]))?;
    /// }
    /// let view = log.view();
    /// let odd: Vec<u8> = view.read_stream("odd", 2)?.map(|e| e.map(|e| e.payload[0])).collect::<Result<_, _>>()?;
    /// assert_eq!(odd, vec![5, 7, 9]);
    /// let newest_even: Vec<u64> = view
    ///     .read_stream_backward("even", None)?
    ///     .take(2)
    ///     .map(|e| e.map(|e| e.stream_version))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(newest_even, vec![4, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream(&self, stream: &str, from_version: u64) -> Result<StreamIter<'_>> {
        self.stream_range(stream, from_version, u64::MAX, Direction::Forward)
    }

    /// Events of `stream` from `from_version` (the newest when `None`) down to
    /// version 0, newest first.
    pub fn read_stream_backward(&self, stream: &str, from_version: Option<u64>) -> Result<StreamIter<'_>> {
        self.stream_range(stream, from_version.unwrap_or(u64::MAX), 0, Direction::Backward)
    }

    /// Events of `stream` from version `from` to version `to` (both included)
    /// in the given direction (`from >= to` when going backward).
    pub fn stream_range(&self, stream: &str, from: u64, to: u64, direction: Direction) -> Result<StreamIter<'_>> {
        let mut iter = StreamIter {
            view: self,
            stream: stream.to_owned(),
            direction,
            forward_chunks: Vec::new(),
            offsets: Vec::new(),
            offsets_first_version: 0,
            offsets_segment: None,
            chunk: None,
            version: from,
            version_bound: to,
            position_bound: u64::MAX,
            lookahead: Lookahead::default(),
            done: false,
        };
        let Some(newest) = self.newest_chunk(stream)? else {
            iter.done = true;
            return Ok(iter);
        };
        let newest_version = newest.first_version + newest.count as u64 - 1;
        match direction {
            Direction::Forward => {
                if from > newest_version || from > to {
                    iter.done = true;
                    return Ok(iter);
                }
                // Walk back to the segment holding `from`, remembering the way.
                let mut chunks = vec![newest];
                let mut lookahead = Lookahead::default();
                while let Some(chunk) = chunks.last().copied() {
                    if chunk.first_version <= from {
                        break;
                    }
                    match self.previous_chunk(stream, &chunk, &mut lookahead)? {
                        Some(previous) => chunks.push(previous),
                        // Older events were purged: start at the oldest left.
                        None => break,
                    }
                }
                if let Some(oldest) = chunks.last() {
                    iter.version = iter.version.max(oldest.first_version);
                }
                iter.chunk = chunks.pop();
                iter.forward_chunks = chunks;
            }
            Direction::Backward => {
                iter.version = from.min(newest_version);
                if iter.version < to {
                    iter.done = true;
                    return Ok(iter);
                }
                let mut chunk = newest;
                while chunk.first_version > iter.version {
                    match self.previous_chunk(stream, &chunk, &mut iter.lookahead)? {
                        Some(previous) => chunk = previous,
                        None => {
                            iter.done = true;
                            return Ok(iter);
                        }
                    }
                }
                iter.chunk = Some(chunk);
            }
        }
        Ok(iter)
    }

    /// Events of `stream` whose timestamp is at or before `timestamp_ns`,
    /// oldest first: the stream as it was at that moment.
    pub fn read_stream_as_of(&self, stream: &str, timestamp_ns: u64) -> Result<StreamIter<'_>> {
        let mut iter = self.read_stream(stream, 0)?;
        match self.position_at(timestamp_ns)? {
            Some(position) => iter.position_bound = position,
            None => iter.done = true,
        }
        Ok(iter)
    }

    /// The stream's postings in the newest segment of the view holding it.
    fn newest_chunk(&self, stream: &str) -> Result<Option<Chunk>> {
        let last = self.segments().len() - 1;
        if let Some(chunk) = self.chunk_in(last, stream)? {
            return Ok(Some(chunk));
        }
        match self.sealed_stream_state(stream)? {
            Some(state) if state.last_position < self.next_position() => {
                let segment_index = self.segment_index_of(state.last_position);
                if segment_index == last && self.segments()[last].footer.is_none() {
                    // The table says the stream is in the active segment, but the
                    // view's part of it holds none of its events.
                    return Ok(None);
                }
                self.chunk_in(segment_index, stream)
            }
            _ => Ok(None),
        }
    }

    /// The stream's chunk in the segment its back link names. The stream is
    /// looked up in the few segments before that one as well, all at once,
    /// and kept in `lookahead`: a walk over a stream present in every segment
    /// then overlaps the cache misses of several independent hash lookups
    /// instead of paying them one after another (at 1e7 events over 25
    /// segments the start of a read went from 22 to 10 µs), and its next steps
    /// find their chunk already looked up. For a stream in few segments the
    /// extra lookups miss at their first probe, and overlap too. The buckets
    /// are loaded first, all at once, by a tag-only probe of each table
    /// (`StreamMap::prefetch`): the full lookups' name compares made each
    /// lookup long enough that few of their misses overlapped (first event
    /// of a 100-event stream at 1e7 events: about 8.9 µs before, 6.1 after).
    fn previous_chunk(&self, stream: &str, chunk: &Chunk, lookahead: &mut Lookahead) -> Result<Option<Chunk>> {
        let Some(previous) = chunk.previous_position else { return Ok(None) };
        if previous < self.first_position() {
            return Ok(None);
        }
        let segment_index = self.segment_index_of(previous);
        if segment_index >= chunk.segment_index {
            let path = self.segments()[chunk.segment_index].segment.path().to_path_buf();
            return Err(Error::corrupted(path, 0, CorruptionKind::InvalidField { field: "stream index back link" }));
        }
        let found = match lookahead.get(segment_index) {
            Some(found) => found,
            None => {
                let low = segment_index.saturating_sub(LOOKAHEAD_SEGMENTS - 1);
                lookahead.low = low;
                lookahead.chunks.clear();
                // First every table's bucket at once, a few instructions each,
                // so that the lookups below find them in cache.
                for index in low..=segment_index {
                    if self.index_is_loaded(index) {
                        self.with_index(index, |index| index.prefetch_streams(std::iter::once(stream)))?;
                    }
                }
                for index in low..segment_index {
                    // Only where it is cheap and harmless: an index not loaded
                    // yet is not loaded for a guess, and a failed guess is
                    // left to the real lookup, should the walk get there.
                    let guess = if self.index_is_loaded(index) { self.chunk_in(index, stream).ok() } else { None };
                    lookahead.chunks.push(guess);
                }
                let found = self.chunk_in(segment_index, stream)?;
                lookahead.chunks.push(Some(found));
                found
            }
        };
        found.map(Some).ok_or_else(|| {
            let path = self.segments()[segment_index].segment.path().to_path_buf();
            Error::corrupted(path, 0, CorruptionKind::InvalidField { field: "stream index back link" })
        })
    }

    /// The stream's postings in one segment, limited to what the view holds.
    fn chunk_in(&self, segment_index: usize, stream: &str) -> Result<Option<Chunk>> {
        let data_end = self.data_end(segment_index);
        self.with_index(segment_index, |index| {
            index.stream(stream).and_then(|postings| {
                let count = postings.offsets.partition_point(|&offset| u64::from(offset) < data_end);
                (count > 0).then_some(Chunk {
                    segment_index,
                    first_version: postings.first_version,
                    count,
                    previous_position: postings.previous_position,
                })
            })
        })
    }

    fn posting(&self, chunk: &Chunk, stream: &str, version: u64) -> Result<Option<u32>> {
        let at = (version - chunk.first_version) as usize;
        self.with_index(chunk.segment_index, |index| {
            index.stream(stream).and_then(|postings| postings.offsets.get(at).copied())
        })
    }
}

impl<'a> StreamIter<'a> {
    /// Stops the read after version `version` (forward) or before it
    /// (backward).
    pub fn until_version(mut self, version: u64) -> Self {
        self.version_bound = match self.direction {
            Direction::Forward => self.version_bound.min(version),
            Direction::Backward => self.version_bound.max(version),
        };
        self
    }

    /// Copies the offsets of the current chunk that the read can still use.
    fn load_offsets(&mut self, chunk: &Chunk) -> Result<()> {
        let chunk_last = chunk.first_version + chunk.count as u64 - 1;
        let (low, high) = match self.direction {
            Direction::Forward => (self.version, self.version_bound.min(chunk_last)),
            Direction::Backward => (self.version_bound.max(chunk.first_version), self.version),
        };
        let (start, end) = ((low - chunk.first_version) as usize, (high.max(low) - chunk.first_version) as usize + 1);
        // No allocation per segment: the offsets go into the iterator's own
        // buffer, and prefetches are issued straight from the postings.
        let (view, stream, offsets) = (self.view, &self.stream, &mut self.offsets);
        offsets.clear();
        view.with_index(chunk.segment_index, |index| {
            if let Some(slice) = index.stream(stream).and_then(|postings| postings.offsets.get(start..end)) {
                offsets.extend_from_slice(slice);
            }
        })?;
        self.offsets_first_version = low;
        self.offsets_segment = Some(chunk.segment_index);
        let segment = view.segments()[chunk.segment_index].segment.get()?;
        let prefetch = |offset: &u32| segment.prefetch(u64::from(*offset), PREFETCH_BYTES);
        match self.direction {
            Direction::Forward => self.offsets.iter().take(PREFETCH_DISTANCE).for_each(prefetch),
            Direction::Backward => self.offsets.iter().rev().take(PREFETCH_DISTANCE).for_each(prefetch),
        }
        // A stream spread thinly has only a few events in each segment: start
        // on the next segment's first ones too, so that their latencies
        // overlap with this segment's.
        let few = self.offsets.len() < PREFETCH_DISTANCE;
        if let (Direction::Forward, true, Some(next)) = (self.direction, few, self.forward_chunks.last()) {
            let want = PREFETCH_DISTANCE - self.offsets.len();
            // A hint: a segment not opened yet is left for its first read.
            if let Some(next_segment) = view.segments()[next.segment_index].segment.if_open() {
                view.with_index(next.segment_index, |index| {
                    if let Some(postings) = index.stream(&self.stream) {
                        for &offset in postings.offsets.iter().take(want) {
                            next_segment.prefetch(u64::from(offset), PREFETCH_BYTES);
                        }
                    }
                })?;
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<EventRef<'a>>> {
        loop {
            let Some(chunk) = self.chunk else { return Ok(None) };
            let chunk_last = chunk.first_version + chunk.count as u64 - 1;
            let in_chunk = self.version >= chunk.first_version && self.version <= chunk_last;
            if !in_chunk {
                self.chunk = match self.direction {
                    Direction::Forward => self.forward_chunks.pop(),
                    Direction::Backward => self.view.previous_chunk(&self.stream, &chunk, &mut self.lookahead)?,
                };
                if let Some(next) = self.chunk {
                    // A stream's versions run on from one segment to the next
                    // (purged ones are only ever the oldest, where the read
                    // starts): a gap is an index that skipped a segment, and
                    // reading on would silently skip versions.
                    let next_last = next.first_version + next.count as u64 - 1;
                    let expected = match self.direction {
                        Direction::Forward => next.first_version,
                        Direction::Backward => next_last,
                    };
                    if expected != self.version {
                        let path = self.view.segments()[next.segment_index].segment.path().to_path_buf();
                        let kind = CorruptionKind::InvalidField { field: "stream index back link" };
                        return Err(Error::corrupted(path, 0, kind));
                    }
                }
                continue;
            }
            let beyond_bound = match self.direction {
                Direction::Forward => self.version > self.version_bound,
                Direction::Backward => self.version < self.version_bound,
            };
            if beyond_bound {
                return Ok(None);
            }
            if self.offsets_segment != Some(chunk.segment_index) {
                self.load_offsets(&chunk)?;
            }
            let at = (self.version - self.offsets_first_version) as usize;
            let Some(&offset) = self.offsets.get(at) else {
                return Ok(None);
            };
            // The stream's next records are scattered over the segment: start
            // loading them now so that their memory latencies overlap.
            let ahead = match self.direction {
                Direction::Forward => self.offsets.get(at + PREFETCH_DISTANCE),
                Direction::Backward => at.checked_sub(PREFETCH_DISTANCE).and_then(|i| self.offsets.get(i)),
            };
            if let (Some(&next), Some(segment)) = (ahead, self.view.segments()[chunk.segment_index].segment.if_open()) {
                segment.prefetch(u64::from(next), PREFETCH_BYTES);
            }
            let event = self.view.decode_posting(chunk.segment_index, offset, &self.stream, self.version)?;
            if event.position > self.position_bound {
                return Ok(None);
            }
            match self.direction {
                Direction::Forward => self.version += 1,
                Direction::Backward => match self.version.checked_sub(1) {
                    Some(version) => self.version = version,
                    None => self.chunk = None,
                },
            }
            return Ok(Some(event));
        }
    }
}

impl<'a> Iterator for StreamIter<'a> {
    type Item = Result<EventRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl LogView {
    /// Decodes the record a stream posting points at and checks that it is
    /// the event the index promised.
    fn decode_posting(&self, segment_index: usize, offset: u32, stream: &str, version: u64) -> Result<EventRef<'_>> {
        let segment = self.segments()[segment_index].segment.get()?;
        let end = self.data_end(segment_index) as usize;
        let bytes = segment.bytes().get(offset as usize..end).unwrap_or(&[]);
        let wrong = |kind| Error::corrupted(segment.path(), u64::from(offset), kind);
        match record::decode(bytes) {
            Ok(Decoded::Record(found)) if found.stream == stream && found.header.stream_version == version => {
                Ok(EventRef::from_record(&found))
            }
            Ok(_) => Err(wrong(CorruptionKind::InvalidField { field: "stream index posting" })),
            Err(kind) => Err(wrong(kind)),
        }
    }
}
