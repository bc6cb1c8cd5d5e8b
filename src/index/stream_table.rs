//! The stream table: for every stream ever written, its last version and the
//! position of its last event, as of the end of a sealed segment.
//!
//! One table is written beside each segment when it is sealed
//! (`<first position>.streams`) and covers the whole log up to the end of that
//! segment, not only the segment itself. So opening a log reads one table plus
//! the active segment, however many segments there are, and purging old segments
//! never makes the log forget a stream's version.
//!
//! ```text
//! 0   [u8; 8] magic "CHRNLSTR"
//! 8   u32     format version
//! 12  u32     anchor: the stored CRC of the record at next position - 1
//!             (version 6 on; zero before)
//! 16  u64     entry count (N)
//! 24  u64     next position: the table covers every position below it
//! 32  [u64;N] offset of each entry from the file start, entries sorted by name
//! ..  entries: u16 name length, name (UTF-8), u64 last version, u64 last position
//! end u32     crc32 of every byte before it
//! ```

use byteorder::{ByteOrder, LittleEndian};

use crate::error::CorruptionKind;
use crate::record::limits;
use crate::segment::{is_readable_format_version, FORMAT_VERSION};
use crate::storage::FileBytes;

/// Magic number of stream table files.
pub const STREAM_TABLE_MAGIC: [u8; 8] = *b"CHRNLSTR";
/// File name extension of stream table files.
pub const STREAM_TABLE_EXTENSION: &str = "streams";

/// Offset of the format version.
pub const VERSION_OFFSET: usize = STREAM_TABLE_MAGIC.len();
/// Offset of the anchor: the CRC of the last record the table covers.
pub const ANCHOR_CRC_OFFSET: usize = VERSION_OFFSET + size_of::<u32>();
/// Offset of the entry count.
pub const ENTRY_COUNT_OFFSET: usize = ANCHOR_CRC_OFFSET + size_of::<u32>();
/// The first format version whose tables carry an anchor.
pub const ANCHORED_SINCE_VERSION: u32 = 6;
/// Offset of the covered-through position.
pub const NEXT_POSITION_OFFSET: usize = ENTRY_COUNT_OFFSET + size_of::<u64>();
/// Size of the fixed header; the offset array follows.
pub const TABLE_HEADER_SIZE: usize = NEXT_POSITION_OFFSET + size_of::<u64>();
/// Size of the trailing CRC.
pub const TABLE_CRC_SIZE: usize = size_of::<u32>();
/// Fixed bytes of one entry besides its name.
pub const ENTRY_FIXED_SIZE: usize = size_of::<u16>() + 2 * size_of::<u64>();

const _: () = assert!(TABLE_HEADER_SIZE == 32);

/// What the log knows about one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// Version of the stream's last event (its first event is version 0).
    pub last_version: u64,
    /// Position of the stream's last event.
    pub last_position: u64,
}

/// A stream table whose header was checked (and, unless it came from
/// [`StreamTable::decode_unverified`], its CRC): held in memory or mapped.
#[derive(Debug)]
pub struct StreamTable {
    bytes: FileBytes,
    entry_count: usize,
    next_position: u64,
    anchor_crc: Option<u32>,
}

impl StreamTable {
    /// A table with no streams, covering nothing before `next_position`
    /// (its anchor zero: an empty table is made only for position 0).
    pub fn empty(next_position: u64) -> StreamTable {
        StreamTable::decode(encode_entries(std::iter::empty(), 0, next_position, 0))
            .unwrap_or_else(|_| unreachable!("an empty table always decodes"))
    }

    /// Checks a table file: magic, version, CRC, and that the offset array fits.
    /// Entries are bounds-checked when read (a CRC-valid table out of name
    /// order can only come from a writer bug; a lookup in one fails, it never
    /// reads out of bounds). Errors carry the byte offset. O(size), no parsing:
    /// opening a log with many streams stays fast.
    pub fn decode(bytes: impl Into<FileBytes>) -> Result<StreamTable, (u64, CorruptionKind)> {
        let bytes = bytes.into();
        // The CRC first (when there is one to check), so that damage anywhere
        // is reported as a checksum mismatch before any field is judged.
        if bytes.len() >= TABLE_HEADER_SIZE + TABLE_CRC_SIZE && bytes[..VERSION_OFFSET] == STREAM_TABLE_MAGIC {
            check_crc(&bytes)?;
        }
        StreamTable::decode_unverified(bytes)
    }

    /// Checks that the whole table matches its CRC. [`StreamTable::decode`]
    /// does this; a table from [`StreamTable::decode_unverified`] must pass it
    /// before any lookup is trusted.
    pub fn verify(&self) -> Result<(), (u64, CorruptionKind)> {
        check_crc(&self.bytes)
    }

    /// [`StreamTable::decode`] without the CRC check, which is O(size) (a
    /// few hundred µs for 100,000 streams): the magic, version and entry
    /// count are checked, so that the table's next position can be read.
    /// Opening a log defers the CRC to the table's first use this way.
    pub fn decode_unverified(bytes: impl Into<FileBytes>) -> Result<StreamTable, (u64, CorruptionKind)> {
        let bytes = bytes.into();
        let too_short =
            |needed: usize| CorruptionKind::Truncated { needed: needed as u64, available: bytes.len() as u64 };
        if bytes.len() < TABLE_HEADER_SIZE + TABLE_CRC_SIZE {
            return Err((0, too_short(TABLE_HEADER_SIZE + TABLE_CRC_SIZE)));
        }
        if bytes[..VERSION_OFFSET] != STREAM_TABLE_MAGIC {
            return Err((0, CorruptionKind::BadMagic));
        }
        let crc_offset = bytes.len() - TABLE_CRC_SIZE;
        let version = LittleEndian::read_u32(&bytes[VERSION_OFFSET..]);
        if !is_readable_format_version(version) {
            return Err((VERSION_OFFSET as u64, CorruptionKind::UnsupportedVersion { found: version }));
        }
        let anchor = LittleEndian::read_u32(&bytes[ANCHOR_CRC_OFFSET..]);
        let anchor_crc = (version >= ANCHORED_SINCE_VERSION).then_some(anchor);
        if anchor_crc.is_none() && anchor != 0 {
            return Err((ANCHOR_CRC_OFFSET as u64, CorruptionKind::NonZeroPadding));
        }
        let entry_count = LittleEndian::read_u64(&bytes[ENTRY_COUNT_OFFSET..]);
        let offsets_end = usize::try_from(entry_count)
            .ok()
            .and_then(|count| count.checked_mul(size_of::<u64>()))
            .and_then(|size| size.checked_add(TABLE_HEADER_SIZE))
            .filter(|&end| end <= crc_offset)
            .ok_or((ENTRY_COUNT_OFFSET as u64, CorruptionKind::InvalidField { field: "entry count" }))?;
        Ok(StreamTable {
            next_position: LittleEndian::read_u64(&bytes[NEXT_POSITION_OFFSET..]),
            entry_count: offsets_end.saturating_sub(TABLE_HEADER_SIZE) / size_of::<u64>(),
            anchor_crc,
            bytes,
        })
    }

    /// The table's bytes, as written to disk.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Positions below this one are covered.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The stored CRC of the record at `next_position - 1` when the table
    /// was made (`None`: a table of a version before 6). A reader compares
    /// it with the record its own segments hold there: a writer may have cut
    /// that segment away and grown it back to the same position since, and
    /// the table of that other history must not be taken for this one.
    pub fn anchor_crc(&self) -> Option<u32> {
        self.anchor_crc
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.entry_count
    }

    /// True when no stream is known.
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// Looks a stream up by binary search. Names are compared as bytes (the
    /// order of UTF-8 strings is their bytes' order), so no probe validates
    /// its name as UTF-8: a recovery that looks up each stream of the active
    /// segment spent a tenth of its time there at 100,000 streams.
    pub fn get(&self, name: &str) -> Option<StreamState> {
        let (mut low, mut high) = (0usize, self.entry_count);
        while low < high {
            let middle = low + (high - low) / 2;
            let (entry_name, state) = self.entry_bytes(middle)?;
            match entry_name.cmp(name.as_bytes()) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(state),
            }
        }
        None
    }

    /// Every stream, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, StreamState)> + '_ {
        (0..self.entry_count).filter_map(move |index| self.entry(index))
    }

    /// The bytes of a new table: this one with `updates` applied, covering
    /// positions below `next_position`, whose record there has the stored
    /// CRC `anchor_crc`.
    pub fn merged_with<'a>(
        &'a self,
        updates: impl IntoIterator<Item = (&'a str, StreamState)>,
        next_position: u64,
        anchor_crc: u32,
    ) -> Vec<u8> {
        let mut changed: Vec<(&str, StreamState)> = updates.into_iter().collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut merged: Vec<(&str, StreamState)> = Vec::with_capacity(self.entry_count + changed.len());
        let mut old = self.iter().peekable();
        let mut new = changed.into_iter().peekable();
        loop {
            let next = match (old.peek(), new.peek()) {
                (Some(a), Some(b)) if a.0 < b.0 => old.next(),
                (Some(a), Some(b)) if a.0 == b.0 => {
                    old.next();
                    new.next()
                }
                (Some(_), None) => old.next(),
                (_, Some(_)) => new.next(),
                (None, None) => break,
            };
            merged.extend(next);
        }
        let total_name_bytes = merged.iter().map(|(name, _)| name.len()).sum();
        encode_entries(merged.into_iter(), total_name_bytes, next_position, anchor_crc)
    }

    fn entry_start(&self, index: usize) -> Option<usize> {
        let at = TABLE_HEADER_SIZE + index * size_of::<u64>();
        let offset = LittleEndian::read_u64(self.bytes.get(at..at + size_of::<u64>())?);
        // An entry inside the header or the offset array is damage that the
        // CRC happened to cover (FORMAT.md: at or after the array's end).
        let entries_start = TABLE_HEADER_SIZE + self.entry_count * size_of::<u64>();
        usize::try_from(offset).ok().filter(|&start| start >= entries_start)
    }

    fn entry(&self, index: usize) -> Option<(&str, StreamState)> {
        let (name, state) = self.entry_bytes(index)?;
        Some((std::str::from_utf8(name).ok()?, state))
    }

    /// [`StreamTable::entry`] with the name's bytes not checked as UTF-8.
    fn entry_bytes(&self, index: usize) -> Option<(&[u8], StreamState)> {
        let start = self.entry_start(index)?;
        let end_of_entries = self.bytes.len() - TABLE_CRC_SIZE;
        let name_length = LittleEndian::read_u16(self.bytes.get(start..start.checked_add(2)?)?) as usize;
        if name_length == 0 || name_length > limits::STREAM_NAME_BYTES_MAX {
            return None;
        }
        let name_start = start + size_of::<u16>();
        let fixed_start = name_start + name_length;
        let entry_end = fixed_start + 2 * size_of::<u64>();
        if entry_end > end_of_entries {
            return None;
        }
        let name = &self.bytes[name_start..fixed_start];
        let state = StreamState {
            last_version: LittleEndian::read_u64(&self.bytes[fixed_start..]),
            last_position: LittleEndian::read_u64(&self.bytes[fixed_start + 8..]),
        };
        Some((name, state))
    }
}

/// Checks the trailing CRC of table bytes at least `TABLE_CRC_SIZE` long.
fn check_crc(bytes: &[u8]) -> Result<(), (u64, CorruptionKind)> {
    let crc_offset = bytes.len() - TABLE_CRC_SIZE;
    let stored = LittleEndian::read_u32(&bytes[crc_offset..]);
    let computed = crc32fast::hash(&bytes[..crc_offset]);
    if stored != computed {
        return Err((crc_offset as u64, CorruptionKind::ChecksumMismatch { stored, computed }));
    }
    Ok(())
}

fn encode_entries<'a>(
    entries: impl ExactSizeIterator<Item = (&'a str, StreamState)>,
    total_name_bytes: usize,
    next_position: u64,
    anchor_crc: u32,
) -> Vec<u8> {
    let count = entries.len();
    let entries_start = TABLE_HEADER_SIZE + count * size_of::<u64>();
    let size = entries_start + count * ENTRY_FIXED_SIZE + total_name_bytes + TABLE_CRC_SIZE;
    let mut bytes = vec![0u8; entries_start];
    bytes.reserve(size - entries_start);
    bytes[..VERSION_OFFSET].copy_from_slice(&STREAM_TABLE_MAGIC);
    LittleEndian::write_u32(&mut bytes[VERSION_OFFSET..], FORMAT_VERSION);
    LittleEndian::write_u32(&mut bytes[ANCHOR_CRC_OFFSET..], anchor_crc);
    LittleEndian::write_u64(&mut bytes[ENTRY_COUNT_OFFSET..], count as u64);
    LittleEndian::write_u64(&mut bytes[NEXT_POSITION_OFFSET..], next_position);
    for (index, (name, state)) in entries.enumerate() {
        let offset = bytes.len() as u64;
        LittleEndian::write_u64(&mut bytes[TABLE_HEADER_SIZE + index * 8..], offset);
        bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&state.last_version.to_le_bytes());
        bytes.extend_from_slice(&state.last_position.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(bytes.len(), size);
    bytes
}

/// The file name of the table written when the segment starting at
/// `first_position` was sealed.
pub fn file_name(first_position: u64) -> String {
    crate::naming::numbered(first_position, STREAM_TABLE_EXTENSION)
}

/// The segment first position in a table file name, if `name` is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    crate::naming::parse_numbered(name, STREAM_TABLE_EXTENSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn state(version: u64) -> StreamState {
        StreamState { last_version: version, last_position: version * 10 }
    }

    #[test]
    fn merge_keeps_old_entries_and_applies_updates() {
        let mut first: HashMap<Box<str>, StreamState> = HashMap::new();
        first.insert("b".into(), state(1));
        first.insert("d".into(), state(2));
        let table = StreamTable::decode(StreamTable::empty(0).merged_with(first.iter().map(|(n, s)| (&**n, *s)), 5, 7))
            .expect("valid");
        let mut second: HashMap<Box<str>, StreamState> = HashMap::new();
        second.insert("a".into(), state(3));
        second.insert("d".into(), state(9));
        let table =
            StreamTable::decode(table.merged_with(second.iter().map(|(n, s)| (&**n, *s)), 9, 0xfeed)).expect("valid");
        assert_eq!(table.anchor_crc(), Some(0xfeed));
        let all: Vec<_> = table.iter().map(|(n, s)| (n.to_string(), s.last_version)).collect();
        assert_eq!(all, vec![("a".into(), 3), ("b".into(), 1), ("d".into(), 9)]);
        assert_eq!(table.get("d"), Some(state(9)));
        assert_eq!(table.get("c"), None);
        assert_eq!(table.next_position(), 9);
    }

    #[test]
    fn an_unverified_decode_leaves_the_crc_to_verify() {
        let mut streams = HashMap::new();
        for i in 0..5u64 {
            streams.insert(format!("stream-{i}").into_boxed_str(), state(i));
        }
        let mut bytes = StreamTable::empty(0).merged_with(streams.iter().map(|(n, s)| (&**n, *s)), 50, 1);
        let entry_byte = bytes.len() - TABLE_CRC_SIZE - 3;
        bytes[entry_byte] ^= 0x01;
        let table = StreamTable::decode_unverified(bytes.clone()).expect("the header is sound");
        assert_eq!(table.next_position(), 50);
        assert!(matches!(table.verify(), Err((_, CorruptionKind::ChecksumMismatch { .. }))));
        assert!(matches!(StreamTable::decode(bytes), Err((_, CorruptionKind::ChecksumMismatch { .. }))));
    }

    #[test]
    fn the_anchor_is_read_from_version_6_on() {
        let bytes = StreamTable::empty(0).merged_with(std::iter::once(("s", state(1))), 11, 0xabcd);
        assert_eq!(StreamTable::decode(bytes.clone()).map(|t| t.anchor_crc()).ok(), Some(Some(0xabcd)));
        let older = |anchor: u32| {
            let mut bytes = bytes.clone();
            LittleEndian::write_u32(&mut bytes[VERSION_OFFSET..], 5);
            LittleEndian::write_u32(&mut bytes[ANCHOR_CRC_OFFSET..], anchor);
            let crc_at = bytes.len() - TABLE_CRC_SIZE;
            let crc = crc32fast::hash(&bytes[..crc_at]);
            LittleEndian::write_u32(&mut bytes[crc_at..], crc);
            StreamTable::decode(bytes)
        };
        assert_eq!(older(0).map(|t| t.anchor_crc()).ok(), Some(None), "a version 5 table has no anchor");
        assert!(
            matches!(older(3), Err((offset, CorruptionKind::NonZeroPadding)) if offset == ANCHOR_CRC_OFFSET as u64)
        );
    }

    /// A CRC-valid table whose entry offset points into its own header or
    /// offset array (a writer bug's, or crafted): the entry is absent, not
    /// garbage read as a stream.
    #[test]
    fn an_entry_inside_the_header_or_offset_array_is_absent() {
        // Entry 1 at the header's next position (3): read as an entry, a
        // 3-byte name of zero bytes (valid UTF-8), then 16 bytes that fit.
        let bytes = StreamTable::empty(0).merged_with([("a", state(1)), ("b", state(2))], 3, 0);
        let mut crafted = bytes;
        LittleEndian::write_u64(&mut crafted[TABLE_HEADER_SIZE + 8..], NEXT_POSITION_OFFSET as u64);
        let crc_at = crafted.len() - TABLE_CRC_SIZE;
        let crc = crc32fast::hash(&crafted[..crc_at]);
        LittleEndian::write_u32(&mut crafted[crc_at..], crc);
        let table = StreamTable::decode(crafted).unwrap();
        assert_eq!(table.iter().map(|(name, _)| name.to_owned()).collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(table.get("b"), None);
    }

    #[test]
    fn any_damage_is_detected() {
        let mut streams = HashMap::new();
        for i in 0..20u64 {
            streams.insert(format!("stream-{i}").into_boxed_str(), state(i));
        }
        let bytes = StreamTable::empty(0).merged_with(streams.iter().map(|(n, s)| (&**n, *s)), 100, 2);
        for byte in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x01;
            assert!(StreamTable::decode(damaged).is_err(), "flip at {byte}");
        }
        for cut in 0..bytes.len() {
            assert!(StreamTable::decode(bytes[..cut].to_vec()).is_err(), "cut at {cut}");
        }
    }
}
