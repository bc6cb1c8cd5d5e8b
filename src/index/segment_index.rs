//! The index of one segment: a sparse position/timestamp index and the
//! segment's stream postings.
//!
//! - **Sparse entries**: one `(position, timestamp, offset)` entry for the first
//!   record at or after every `interval` bytes of the segment. Positions and
//!   timestamps never decrease along the log, so the same entries answer "where
//!   is position p" and "where does time T end": a binary search, then a scan of
//!   at most one interval.
//! - **Stream postings**: for every stream with events in the segment, the
//!   version of its first event here, the position of its last event in an
//!   earlier segment (a back link, so that a stream's segments form a chain),
//!   and the offset of each of its events here, in order. A stream's versions
//!   inside one segment are consecutive, so version `v` is posting
//!   `v - first_version`.
//!
//! The index of the active segment is kept in memory and extended by every
//! append; a sealed segment's index is written beside it as `<first>.idx` and
//! loaded on first use, checked against its CRC and the segment, and rebuilt
//! from the segment when it is missing or damaged.
//!
//! ```text
//! 0   [u8; 8] magic "CHRNLIDX"
//! 8   u32     format version
//! 12  u32     interval in bytes
//! 16  u64     segment first position
//! 24  u64     data end offset covered
//! 32  u32     entry count (E)
//! 36  u32     stream count (S)
//! 40  u32     posting count (P)
//! 44  u32     anchor: the stored CRC of the record ending at the data end
//!             (version 6 on; zero before)
//! 48  E x 20  entries: u64 position, u64 timestamp ns, u32 offset
//! ..  S x     streams, sorted by name: u16 name length, name, u64 first
//!             version, u64 previous position (u64::MAX: none), u64 last
//!             position, u32 count, u32 index of its first posting
//! ..  P x 4   postings: u32 record offsets
//! end u32     crc32 of every byte before it
//! ```

use byteorder::{ByteOrder, LittleEndian};

use super::stream_map::StreamMap;
use crate::error::CorruptionKind;
use crate::record::{limits, RecordRef};
use crate::segment::{is_readable_format_version, FORMAT_VERSION, HEADER_SIZE};

/// Magic number of segment index files.
pub const SEGMENT_INDEX_MAGIC: [u8; 8] = *b"CHRNLIDX";
/// File name extension of segment index files.
pub const SEGMENT_INDEX_EXTENSION: &str = "idx";
/// Default distance between two sparse entries.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;

/// Offset of the format version.
pub const INDEX_VERSION_OFFSET: usize = SEGMENT_INDEX_MAGIC.len();
/// Offset of the interval.
pub const INDEX_INTERVAL_OFFSET: usize = INDEX_VERSION_OFFSET + size_of::<u32>();
/// Offset of the segment's first position.
pub const INDEX_FIRST_POSITION_OFFSET: usize = INDEX_INTERVAL_OFFSET + size_of::<u32>();
/// Offset of the data end covered.
pub const INDEX_DATA_END_OFFSET: usize = INDEX_FIRST_POSITION_OFFSET + size_of::<u64>();
/// Offset of the entry count.
pub const INDEX_ENTRY_COUNT_OFFSET: usize = INDEX_DATA_END_OFFSET + size_of::<u64>();
/// Offset of the stream count.
pub const INDEX_STREAM_COUNT_OFFSET: usize = INDEX_ENTRY_COUNT_OFFSET + size_of::<u32>();
/// Offset of the posting count.
pub const INDEX_POSTING_COUNT_OFFSET: usize = INDEX_STREAM_COUNT_OFFSET + size_of::<u32>();
/// Offset of the anchor: the CRC of the last record the index covers.
pub const INDEX_ANCHOR_CRC_OFFSET: usize = INDEX_POSTING_COUNT_OFFSET + size_of::<u32>();
/// Size of the fixed header.
pub const INDEX_HEADER_SIZE: usize = INDEX_ANCHOR_CRC_OFFSET + size_of::<u32>();
/// The first format version whose indexes carry an anchor.
pub const INDEX_ANCHORED_SINCE_VERSION: u32 = 6;
/// Size of one sparse entry.
pub const INDEX_ENTRY_SIZE: usize = 2 * size_of::<u64>() + size_of::<u32>();
/// Fixed bytes of one stream record besides its name.
pub const INDEX_STREAM_FIXED_SIZE: usize = size_of::<u16>() + 3 * size_of::<u64>() + 2 * size_of::<u32>();
/// Size of one posting.
pub const INDEX_POSTING_SIZE: usize = size_of::<u32>();

const _: () = assert!(INDEX_HEADER_SIZE == 48 && INDEX_ENTRY_SIZE == 20 && INDEX_STREAM_FIXED_SIZE == 34);

/// Marks "no earlier segment" in a previous-position field.
const NO_PREVIOUS: u64 = u64::MAX;

/// One sparse entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Position of the record.
    pub position: u64,
    /// Its timestamp.
    pub timestamp_ns: u64,
    /// Its offset in the segment.
    pub offset: u32,
}

/// The fields of a record the index keeps.
#[derive(Debug, Clone, Copy)]
pub struct AddedRecord<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Position.
    pub position: u64,
    /// Timestamp.
    pub timestamp_ns: u64,
    /// Version in its stream.
    pub stream_version: u64,
    /// Offset in the segment.
    pub offset: u64,
    /// Encoded length.
    pub encoded_length: u32,
}

/// How to take back one record added by [`SegmentIndex::append_checked`].
#[derive(Debug, Clone, Copy)]
pub struct UndoEntry<'a> {
    stream: &'a str,
    /// The stream's last position before the record; `None`: the record made
    /// the stream's postings.
    previous_last_position: Option<u64>,
}

/// The index's extent before a batch.
#[derive(Debug, Clone, Copy)]
pub struct IndexMark {
    entries: usize,
    data_end: u64,
}

/// Record offsets of one stream in one segment. Up to 4 are kept inline, in
/// the hash table's bucket (in the space a `Vec` takes anyway): a stream with
/// few events per segment, the common case with many streams, is then read
/// without a cache miss on a separate allocation, in every segment a stream
/// read walks through. It dereferences to `[u32]`.
pub type Postings = smallvec::SmallVec<[u32; 4]>;

const _: () = assert!(size_of::<Postings>() == size_of::<Vec<u32>>());

/// Capacity a stream's postings get when they first leave the inline slots.
const POSTINGS_FIRST_SPILL: usize = 16;

/// Adds a posting. A stream with more than 4 events in a segment is likely
/// to have many more: its postings go straight to room for 16, one
/// allocation instead of one for 8 and a reallocation to 16.
fn push_posting(offsets: &mut Postings, offset: u32) {
    if !offsets.spilled() && offsets.len() == offsets.inline_size() {
        offsets.reserve_exact(POSTINGS_FIRST_SPILL - offsets.len());
    }
    offsets.push(offset);
}

/// The events of one stream inside one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPostings {
    /// Version of the stream's first event in this segment.
    pub first_version: u64,
    /// Position of the stream's last event before this segment, if any.
    pub previous_position: Option<u64>,
    /// Position of the stream's last event in this segment.
    pub last_position: u64,
    /// Offset of each of the stream's events in this segment, in order.
    pub offsets: Postings,
}

impl StreamPostings {
    /// Version of the stream's last event in this segment.
    pub fn last_version(&self) -> u64 {
        self.first_version + self.offsets.len() as u64 - 1
    }
}

/// The index of one segment.
#[derive(Debug, Clone)]
pub struct SegmentIndex {
    first_position: u64,
    interval_bytes: u32,
    entries: Vec<IndexEntry>,
    /// Keyed by stream name.
    streams: StreamMap,
    /// Offset just past the last record indexed.
    data_end: u64,
    /// The stored CRC of the record ending at `data_end`, as read from a
    /// file of version 6 on (`None`: an index built here, or of an older
    /// version).
    anchor_crc: Option<u32>,
}

/// Equal when they index the same records the same way, whatever anchor a
/// file gave one of them.
impl PartialEq for SegmentIndex {
    fn eq(&self, other: &SegmentIndex) -> bool {
        (self.first_position, self.interval_bytes, self.data_end)
            == (other.first_position, other.interval_bytes, other.data_end)
            && self.entries == other.entries
            && self.streams == other.streams
    }
}

impl Eq for SegmentIndex {}

impl SegmentIndex {
    /// An empty index for a segment starting at `first_position`.
    pub fn new(first_position: u64, interval_bytes: u32) -> SegmentIndex {
        SegmentIndex {
            first_position,
            interval_bytes: interval_bytes.max(1),
            entries: Vec::new(),
            streams: StreamMap::default(),
            data_end: HEADER_SIZE as u64,
            anchor_crc: None,
        }
    }

    /// The anchor the file this index was read from holds (see
    /// [`SegmentIndex::encode_anchored`]); `None` for an index built here or
    /// read from a file of a version before 6.
    pub fn anchor_crc(&self) -> Option<u32> {
        self.anchor_crc
    }

    /// Adds a record (records must be added in log order). `previous_position`
    /// is where the stream's last event was before this segment (asked only for
    /// a stream's first event in the segment).
    pub fn add(&mut self, record: &RecordRef<'_>, offset: u64, previous_position: impl FnOnce() -> Option<u64>) {
        let added = AddedRecord {
            stream: record.stream,
            position: record.header.position,
            timestamp_ns: record.header.timestamp_ns,
            stream_version: record.header.stream_version,
            offset,
            encoded_length: record.encoded_length,
        };
        self.add_record(&added, previous_position);
    }

    /// [`SegmentIndex::add`] for a record known by its fields (the writer's
    /// case: it has just encoded them).
    pub fn add_record(&mut self, record: &AddedRecord<'_>, previous_position: impl FnOnce() -> Option<u64>) {
        debug_assert!(record.offset + u64::from(record.encoded_length) <= u64::from(u32::MAX));
        match self.streams.get_mut(record.stream) {
            Some(postings) => {
                push_posting(&mut postings.offsets, record.offset as u32);
                postings.last_position = record.position;
            }
            None => {
                let postings = StreamPostings {
                    first_version: record.stream_version,
                    previous_position: previous_position(),
                    last_position: record.position,
                    offsets: Postings::from_elem(record.offset as u32, 1),
                };
                self.streams.insert(record.stream, postings);
            }
        }
        self.add_sparse_entry(record);
    }

    /// The writer's add: assigns the record's stream version (the one after
    /// the stream's current version, taken from this index or, for a stream new
    /// to the segment, from `prior`: its last version and position before the
    /// segment), refuses it when `accept` rejects the stream's last version
    /// and position (returning them), and otherwise adds the record. The returned [`UndoEntry`]
    /// lets a batch that fails later be taken back with [`SegmentIndex::undo`].
    /// One hash lookup per record: the write path's hottest line.
    pub fn append_checked<'a>(
        &mut self,
        record: &AddedRecord<'a>,
        accept: impl FnOnce(Option<(u64, u64)>) -> bool,
        prior: impl FnOnce() -> Option<(u64, u64)>,
    ) -> Result<(u64, UndoEntry<'a>), Option<(u64, u64)>> {
        let (version, undo) = match self.streams.get_mut(record.stream) {
            Some(postings) => {
                let current = postings.last_version();
                if !accept(Some((current, postings.last_position))) {
                    return Err(Some((current, postings.last_position)));
                }
                let undo = UndoEntry { stream: record.stream, previous_last_position: Some(postings.last_position) };
                push_posting(&mut postings.offsets, record.offset as u32);
                postings.last_position = record.position;
                (current + 1, undo)
            }
            None => {
                let prior = prior();
                if !accept(prior) {
                    return Err(prior);
                }
                let version = prior.map_or(0, |(v, _)| v + 1);
                let postings = StreamPostings {
                    first_version: version,
                    previous_position: prior.map(|(_, position)| position),
                    last_position: record.position,
                    offsets: Postings::from_elem(record.offset as u32, 1),
                };
                self.streams.insert(record.stream, postings);
                (version, UndoEntry { stream: record.stream, previous_last_position: None })
            }
        };
        self.add_sparse_entry(record);
        Ok((version, undo))
    }

    /// Loads the hash table's buckets of `streams`, so that the
    /// [`SegmentIndex::append_checked`] calls for them that follow find them
    /// in cache (see [`StreamMap::prefetch`]). The writer's own lookups, each
    /// between an encoding and a CRC, would wait for their misses one after
    /// another.
    pub fn prefetch_streams<'a>(&self, streams: impl Iterator<Item = &'a str>) {
        self.streams.prefetch(streams);
    }

    /// Where the index stood before a batch, for [`SegmentIndex::undo`].
    pub fn mark(&self) -> IndexMark {
        IndexMark { entries: self.entries.len(), data_end: self.data_end }
    }

    /// Takes back the records added since `mark` (their undo entries in the
    /// order they were added).
    pub fn undo(&mut self, mark: IndexMark, undo: &[UndoEntry<'_>]) {
        for entry in undo.iter().rev() {
            match entry.previous_last_position {
                None => {
                    self.streams.remove(entry.stream);
                }
                Some(previous) => {
                    if let Some(postings) = self.streams.get_mut(entry.stream) {
                        postings.offsets.pop();
                        postings.last_position = previous;
                    }
                }
            }
        }
        self.entries.truncate(mark.entries);
        self.data_end = mark.data_end;
    }

    fn add_sparse_entry(&mut self, record: &AddedRecord<'_>) {
        let due = match self.entries.last() {
            None => true,
            Some(last) => record.offset >= u64::from(last.offset) + u64::from(self.interval_bytes),
        };
        if due {
            self.entries.push(IndexEntry {
                position: record.position,
                timestamp_ns: record.timestamp_ns,
                offset: record.offset as u32,
            });
        }
        self.data_end = record.offset + u64::from(record.encoded_length);
    }

    /// Position of the segment's first record.
    pub fn first_position(&self) -> u64 {
        self.first_position
    }

    /// Offset just past the last record indexed.
    pub fn data_end(&self) -> u64 {
        self.data_end
    }

    /// The sparse entries.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The postings of a stream in this segment.
    pub fn stream(&self, name: &str) -> Option<&StreamPostings> {
        self.streams.get(name)
    }

    /// Every stream with events in this segment.
    pub fn streams(&self) -> impl Iterator<Item = (&str, &StreamPostings)> {
        self.streams.iter()
    }

    /// Offset of the last sparse entry at or before `position`.
    pub fn seek_position(&self, position: u64) -> Option<IndexEntry> {
        let index = self.entries.partition_point(|entry| entry.position <= position);
        index.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last sparse entry whose timestamp is at or before `timestamp_ns`.
    pub fn seek_timestamp(&self, timestamp_ns: u64) -> Option<IndexEntry> {
        self.seek_timestamp_before(timestamp_ns, u64::MAX)
    }

    /// [`SegmentIndex::seek_timestamp`] among the entries of records that start
    /// before `data_end` (a reader's view of a segment still being written:
    /// the index may already hold later records). Offsets and timestamps both
    /// grow along the entries, so the two conditions make one binary search.
    pub fn seek_timestamp_before(&self, timestamp_ns: u64, data_end: u64) -> Option<IndexEntry> {
        let index = self
            .entries
            .partition_point(|entry| entry.timestamp_ns <= timestamp_ns && u64::from(entry.offset) < data_end);
        index.checked_sub(1).map(|i| self.entries[i])
    }

    /// The index file's bytes, with the anchor it was read with (zero when
    /// it has none): what re-encoding a decoded index gives back.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_anchored(self.anchor_crc.unwrap_or(0))
    }

    /// The index file's bytes, anchored to the segment: `anchor_crc` is the
    /// stored CRC of the record ending at the data end, which a reader
    /// compares with the record its own map of the segment holds there (a
    /// writer may cut the segment away and grow it back to the same end,
    /// indexing the other history under the same name).
    pub fn encode_anchored(&self, anchor_crc: u32) -> Vec<u8> {
        let mut names: Vec<(&str, &StreamPostings)> = self.streams().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let posting_count: usize = names.iter().map(|(_, p)| p.offsets.len()).sum();
        let name_bytes: usize = names.iter().map(|(n, _)| n.len()).sum();
        let size = INDEX_HEADER_SIZE
            + self.entries.len() * INDEX_ENTRY_SIZE
            + names.len() * INDEX_STREAM_FIXED_SIZE
            + name_bytes
            + posting_count * INDEX_POSTING_SIZE
            + size_of::<u32>();
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(&SEGMENT_INDEX_MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&self.interval_bytes.to_le_bytes());
        bytes.extend_from_slice(&self.first_position.to_le_bytes());
        bytes.extend_from_slice(&self.data_end.to_le_bytes());
        bytes.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(names.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(posting_count as u32).to_le_bytes());
        bytes.extend_from_slice(&anchor_crc.to_le_bytes());
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.position.to_le_bytes());
            bytes.extend_from_slice(&entry.timestamp_ns.to_le_bytes());
            bytes.extend_from_slice(&entry.offset.to_le_bytes());
        }
        let mut posting_start = 0u32;
        for (name, postings) in &names {
            bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(&postings.first_version.to_le_bytes());
            bytes.extend_from_slice(&postings.previous_position.unwrap_or(NO_PREVIOUS).to_le_bytes());
            bytes.extend_from_slice(&postings.last_position.to_le_bytes());
            bytes.extend_from_slice(&(postings.offsets.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&posting_start.to_le_bytes());
            posting_start += postings.offsets.len() as u32;
        }
        for (_, postings) in &names {
            for offset in &postings.offsets {
                bytes.extend_from_slice(&offset.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(bytes.len(), size);
        bytes
    }

    /// The data end an index file claims to cover, read before anything is
    /// checked (so that [`SegmentIndex::decode`] can be asked to check it).
    pub fn peek_data_end(bytes: &[u8]) -> Option<u64> {
        bytes.get(INDEX_DATA_END_OFFSET..INDEX_DATA_END_OFFSET + size_of::<u64>()).map(LittleEndian::read_u64)
    }

    /// True when an index file's header (magic, version, first position, data
    /// end) says it covers this segment. Nothing else is checked: the CRC is
    /// checked when the file is parsed, on first use.
    pub fn covers(bytes: &[u8], first_position: u64, data_end: u64) -> bool {
        bytes.len() >= INDEX_HEADER_SIZE + size_of::<u32>()
            && bytes[..INDEX_VERSION_OFFSET] == SEGMENT_INDEX_MAGIC
            && is_readable_format_version(LittleEndian::read_u32(&bytes[INDEX_VERSION_OFFSET..]))
            && LittleEndian::read_u64(&bytes[INDEX_FIRST_POSITION_OFFSET..]) == first_position
            && LittleEndian::read_u64(&bytes[INDEX_DATA_END_OFFSET..]) == data_end
    }

    /// Decodes and checks an index file for the segment starting at
    /// `first_position` whose records end at `data_end`. Entries must point
    /// inside `[HEADER_SIZE, data_end)` in order; postings likewise. Errors carry
    /// the byte offset in the file. (An index can still be wrong in ways only
    /// the segment shows, such as an offset inside a record: readers check each
    /// record they reach through it.)
    pub fn decode(bytes: &[u8], first_position: u64, data_end: u64) -> Result<SegmentIndex, (u64, CorruptionKind)> {
        let invalid = |offset: usize, field: &'static str| (offset as u64, CorruptionKind::InvalidField { field });
        if bytes.len() < INDEX_HEADER_SIZE + size_of::<u32>() {
            let kind = CorruptionKind::Truncated {
                needed: (INDEX_HEADER_SIZE + size_of::<u32>()) as u64,
                available: bytes.len() as u64,
            };
            return Err((0, kind));
        }
        if bytes[..INDEX_VERSION_OFFSET] != SEGMENT_INDEX_MAGIC {
            return Err((0, CorruptionKind::BadMagic));
        }
        let crc_offset = bytes.len() - size_of::<u32>();
        let stored = LittleEndian::read_u32(&bytes[crc_offset..]);
        let computed = crc32fast::hash(&bytes[..crc_offset]);
        if stored != computed {
            return Err((crc_offset as u64, CorruptionKind::ChecksumMismatch { stored, computed }));
        }
        let version = LittleEndian::read_u32(&bytes[INDEX_VERSION_OFFSET..]);
        if !is_readable_format_version(version) {
            return Err((INDEX_VERSION_OFFSET as u64, CorruptionKind::UnsupportedVersion { found: version }));
        }
        if LittleEndian::read_u64(&bytes[INDEX_FIRST_POSITION_OFFSET..]) != first_position {
            return Err(invalid(INDEX_FIRST_POSITION_OFFSET, "first position"));
        }
        if LittleEndian::read_u64(&bytes[INDEX_DATA_END_OFFSET..]) != data_end {
            return Err(invalid(INDEX_DATA_END_OFFSET, "data end"));
        }
        let anchor = LittleEndian::read_u32(&bytes[INDEX_ANCHOR_CRC_OFFSET..]);
        let anchor_crc = (version >= INDEX_ANCHORED_SINCE_VERSION).then_some(anchor);
        if anchor_crc.is_none() && anchor != 0 {
            return Err((INDEX_ANCHOR_CRC_OFFSET as u64, CorruptionKind::NonZeroPadding));
        }
        let interval_bytes = LittleEndian::read_u32(&bytes[INDEX_INTERVAL_OFFSET..]);
        let entry_count = LittleEndian::read_u32(&bytes[INDEX_ENTRY_COUNT_OFFSET..]) as usize;
        let stream_count = LittleEndian::read_u32(&bytes[INDEX_STREAM_COUNT_OFFSET..]) as usize;
        let posting_count = LittleEndian::read_u32(&bytes[INDEX_POSTING_COUNT_OFFSET..]) as usize;
        // Counts are checked against the file size before anything is allocated.
        let fixed_size = entry_count
            .checked_mul(INDEX_ENTRY_SIZE)
            .and_then(|e| stream_count.checked_mul(INDEX_STREAM_FIXED_SIZE).and_then(|s| e.checked_add(s)))
            .and_then(|sum| posting_count.checked_mul(INDEX_POSTING_SIZE).and_then(|p| sum.checked_add(p)))
            .and_then(|sum| sum.checked_add(INDEX_HEADER_SIZE));
        if fixed_size.is_none_or(|size| size > crc_offset) || interval_bytes == 0 {
            return Err(invalid(INDEX_ENTRY_COUNT_OFFSET, "counts"));
        }
        let mut index = SegmentIndex::new(first_position, interval_bytes);
        index.data_end = data_end;
        index.anchor_crc = anchor_crc;
        let mut at = INDEX_HEADER_SIZE;
        let mut previous: Option<IndexEntry> = None;
        for _ in 0..entry_count {
            let entry = IndexEntry {
                position: LittleEndian::read_u64(&bytes[at..]),
                timestamp_ns: LittleEndian::read_u64(&bytes[at + 8..]),
                offset: LittleEndian::read_u32(&bytes[at + 16..]),
            };
            let ordered = match previous {
                None => entry.position == first_position && entry.offset as usize == HEADER_SIZE,
                Some(p) => {
                    entry.position > p.position && entry.timestamp_ns >= p.timestamp_ns && entry.offset > p.offset
                }
            };
            if !ordered || u64::from(entry.offset) >= data_end {
                return Err(invalid(at, "entry"));
            }
            index.entries.push(entry);
            previous = Some(entry);
            at += INDEX_ENTRY_SIZE;
        }
        let postings_start = crc_offset - posting_count * INDEX_POSTING_SIZE;
        let mut previous_name: Option<&str> = None;
        let mut next_posting = 0usize;
        for _ in 0..stream_count {
            let stream_at = at;
            let name_length = bytes.get(at..at + 2).map_or(0, |b| LittleEndian::read_u16(b) as usize);
            let name_end = at + 2 + name_length;
            if name_length == 0 || name_length > limits::STREAM_NAME_BYTES_MAX || name_end + 32 > postings_start {
                return Err(invalid(stream_at, "stream"));
            }
            let name = std::str::from_utf8(&bytes[at + 2..name_end]).map_err(|_| invalid(stream_at, "stream name"))?;
            if previous_name.is_some_and(|p| p >= name) {
                return Err(invalid(stream_at, "stream order"));
            }
            previous_name = Some(name);
            let first_version = LittleEndian::read_u64(&bytes[name_end..]);
            let previous_position = LittleEndian::read_u64(&bytes[name_end + 8..]);
            let last_position = LittleEndian::read_u64(&bytes[name_end + 16..]);
            let count = LittleEndian::read_u32(&bytes[name_end + 24..]) as usize;
            let start = LittleEndian::read_u32(&bytes[name_end + 28..]) as usize;
            if count == 0
                || start != next_posting
                || start + count > posting_count
                || first_version.checked_add(count as u64).is_none()
            {
                return Err(invalid(stream_at, "stream postings"));
            }
            if previous_position != NO_PREVIOUS && previous_position >= first_position {
                return Err(invalid(stream_at, "previous position"));
            }
            if last_position < first_position || last_position == u64::MAX || last_position - first_position >= data_end
            {
                return Err(invalid(stream_at, "last position"));
            }
            next_posting += count;
            let mut offsets = Postings::with_capacity(count);
            let mut last = 0u32;
            for posting in 0..count {
                let offset = LittleEndian::read_u32(&bytes[postings_start + (start + posting) * INDEX_POSTING_SIZE..]);
                if (offset as usize) < HEADER_SIZE || u64::from(offset) >= data_end || (posting > 0 && offset <= last) {
                    return Err(invalid(postings_start + (start + posting) * INDEX_POSTING_SIZE, "posting"));
                }
                last = offset;
                offsets.push(offset);
            }
            let postings = StreamPostings {
                first_version,
                previous_position: (previous_position != NO_PREVIOUS).then_some(previous_position),
                last_position,
                offsets,
            };
            index.streams.insert(name, postings);
            at = name_end + 32;
        }
        if at != postings_start || next_posting != posting_count {
            return Err(invalid(at, "layout"));
        }
        Ok(index)
    }
}

/// The file name of the index of the segment starting at `first_position`.
pub fn file_name(first_position: u64) -> String {
    crate::naming::numbered(first_position, SEGMENT_INDEX_EXTENSION)
}

/// The segment first position in an index file name, if `name` is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    crate::naming::parse_numbered(name, SEGMENT_INDEX_EXTENSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{self, Decoded, RecordHeader, FLAG_BATCH_END};

    fn build(records: u64) -> (Vec<u8>, SegmentIndex) {
        let mut bytes = vec![0u8; HEADER_SIZE];
        let mut index = SegmentIndex::new(100, 256);
        for i in 0..records {
            let offset = bytes.len() as u64;
            let header = RecordHeader {
                position: 100 + i,
                timestamp_ns: 10 + i / 3,
                stream_version: i / 2,
                flags: FLAG_BATCH_END,
            };
            let stream = if i % 2 == 0 { "even" } else { "odd" };
            record::encode_into(&mut bytes, &header, stream, "t", b"", &[7u8; 50]);
            let Ok(Decoded::Record(decoded)) = record::decode(&bytes[offset as usize..]) else { panic!("decode") };
            index.add(&decoded, offset, || if i < 2 { Some(5) } else { None });
        }
        (bytes, index)
    }

    #[test]
    fn round_trip_and_seek() {
        let (bytes, index) = build(100);
        assert!(index.entries().len() > 10 && index.entries().len() < 50, "{}", index.entries().len());
        let encoded = index.encode();
        let decoded = SegmentIndex::decode(&encoded, 100, index.data_end()).expect("decodes");
        assert_eq!(decoded, index);
        assert_eq!(bytes.len() as u64, index.data_end());
        let entry = decoded.seek_position(150).expect("entry");
        assert!(entry.position <= 150);
        let entry = decoded.seek_timestamp(20).expect("entry");
        assert!(entry.timestamp_ns <= 20);
        assert_eq!(
            decoded.stream("odd").map(|p| (p.first_version, p.offsets.len(), p.previous_position)),
            Some((0, 50, Some(5)))
        );
        assert_eq!(decoded.stream("even").map(|p| p.last_version()), Some(49));
    }

    #[test]
    fn the_anchor_round_trips_and_an_older_version_has_none() {
        let (_, index) = build(20);
        let bytes = index.encode_anchored(0xdead_beef);
        let decoded = SegmentIndex::decode(&bytes, 100, index.data_end()).expect("decodes");
        assert_eq!((decoded.anchor_crc(), index.anchor_crc()), (Some(0xdead_beef), None));
        assert_eq!(decoded.encode(), bytes, "re-encoded with the anchor it was read with");
        // Version 5: the field was reserved, zero.
        let older = |anchor: u32| {
            let mut bytes = index.encode_anchored(anchor);
            bytes[INDEX_VERSION_OFFSET..INDEX_VERSION_OFFSET + 4].copy_from_slice(&5u32.to_le_bytes());
            let crc_at = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..crc_at]);
            bytes[crc_at..].copy_from_slice(&crc.to_le_bytes());
            SegmentIndex::decode(&bytes, 100, index.data_end())
        };
        assert_eq!(older(0).map(|index| index.anchor_crc()), Ok(None));
        assert!(
            matches!(older(7), Err((offset, CorruptionKind::NonZeroPadding)) if offset == INDEX_ANCHOR_CRC_OFFSET as u64)
        );
    }

    #[test]
    fn damage_is_detected() {
        let (_, index) = build(30);
        let encoded = index.encode();
        for byte in 0..encoded.len() {
            let mut damaged = encoded.clone();
            damaged[byte] ^= 0x20;
            assert!(SegmentIndex::decode(&damaged, 100, index.data_end()).is_err(), "flip at {byte}");
        }
        for cut in 0..encoded.len() {
            assert!(SegmentIndex::decode(&encoded[..cut], 100, index.data_end()).is_err(), "cut at {cut}");
        }
        assert!(SegmentIndex::decode(&encoded, 101, index.data_end()).is_err());
        assert!(SegmentIndex::decode(&encoded, 100, index.data_end() + 1).is_err());
    }
}
