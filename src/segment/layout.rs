//! Segment header and footer: fixed 64-byte structures at the two ends of every
//! segment file.
//!
//! ```text
//! header, at offset 0                      footer, at offset capacity - 64
//! 0   [u8; 8] magic "CHRNLSEG"             0   [u8; 8] magic "CHRNLEND"
//! 8   u32     format version               8   u64     last position
//! 12  u32     header size (64)             16  u64     record count
//! 16  u64     first position               24  u64     min timestamp ns
//! 24  u64     capacity in bytes            32  u64     max timestamp ns
//! 32  [u8;28] reserved, zero               40  u64     data end offset
//! 60  u32     crc32 of bytes 0..60         48  [u8;12] reserved, zero
//!                                          60  u32     crc32 of bytes 0..60
//! ```

use byteorder::{ByteOrder, LittleEndian};

use crate::error::CorruptionKind;

/// The on-disk format version written by this build.
pub const FORMAT_VERSION: u32 = 6;
/// The oldest format version this build reads. Versions 3 and 4 only added
/// and extended snapshot files, version 5 added the manifest and version 6
/// the anchors of stream tables and segment indexes (fields that were
/// reserved, zero), so segments, stream tables and indexes of version 2 read
/// as they are.
pub const FORMAT_VERSION_OLDEST_READABLE: u32 = 2;

/// True for a format version this build can read.
pub fn is_readable_format_version(version: u32) -> bool {
    (FORMAT_VERSION_OLDEST_READABLE..=FORMAT_VERSION).contains(&version)
}

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CHRNLSEG";
/// Magic number at the start of a sealed segment's footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"CHRNLEND";

/// Header offsets.
pub const HEADER_MAGIC_OFFSET: usize = 0;
/// Offset of the format version.
pub const HEADER_VERSION_OFFSET: usize = HEADER_MAGIC_OFFSET + SEGMENT_MAGIC.len();
/// Offset of the header size field.
pub const HEADER_SIZE_OFFSET: usize = HEADER_VERSION_OFFSET + size_of::<u32>();
/// Offset of the segment's first position.
pub const HEADER_FIRST_POSITION_OFFSET: usize = HEADER_SIZE_OFFSET + size_of::<u32>();
/// Offset of the segment's capacity.
pub const HEADER_CAPACITY_OFFSET: usize = HEADER_FIRST_POSITION_OFFSET + size_of::<u64>();
/// Offset of the header CRC.
pub const HEADER_CRC_OFFSET: usize = 60;
/// Size of the segment header; records start here.
pub const HEADER_SIZE: usize = HEADER_CRC_OFFSET + size_of::<u32>();

/// Footer offsets (relative to the footer's start).
pub const FOOTER_MAGIC_OFFSET: usize = 0;
/// Offset of the last position.
pub const FOOTER_LAST_POSITION_OFFSET: usize = FOOTER_MAGIC_OFFSET + FOOTER_MAGIC.len();
/// Offset of the record count.
pub const FOOTER_RECORD_COUNT_OFFSET: usize = FOOTER_LAST_POSITION_OFFSET + size_of::<u64>();
/// Offset of the smallest timestamp.
pub const FOOTER_MIN_TIMESTAMP_OFFSET: usize = FOOTER_RECORD_COUNT_OFFSET + size_of::<u64>();
/// Offset of the largest timestamp.
pub const FOOTER_MAX_TIMESTAMP_OFFSET: usize = FOOTER_MIN_TIMESTAMP_OFFSET + size_of::<u64>();
/// Offset of the end of the record data.
pub const FOOTER_DATA_END_OFFSET: usize = FOOTER_MAX_TIMESTAMP_OFFSET + size_of::<u64>();
/// Offset of the footer CRC.
pub const FOOTER_CRC_OFFSET: usize = 60;
/// Size of the footer at the end of every segment file.
pub const FOOTER_SIZE: usize = FOOTER_CRC_OFFSET + size_of::<u32>();

const _: () = assert!(HEADER_CAPACITY_OFFSET + size_of::<u64>() <= HEADER_CRC_OFFSET);
const _: () = assert!(FOOTER_DATA_END_OFFSET + size_of::<u64>() <= FOOTER_CRC_OFFSET);
const _: () = assert!(HEADER_SIZE == 64 && FOOTER_SIZE == 64);

/// Smallest segment capacity accepted.
pub const SEGMENT_CAPACITY_BYTES_MIN: u64 = 4096;
/// Largest segment capacity accepted: offsets inside a segment are stored as
/// `u32` in segment indexes.
pub const SEGMENT_CAPACITY_BYTES_MAX: u64 = 1 << 32;

/// The format version field of a segment header's bytes.
pub fn header_format_version(bytes: &[u8; HEADER_SIZE]) -> u32 {
    LittleEndian::read_u32(&bytes[HEADER_VERSION_OFFSET..])
}

/// The fixed fields at the start of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Position of the first record the segment holds (and its file name).
    pub first_position: u64,
    /// Size of the file, header and footer included.
    pub capacity_bytes: u64,
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        bytes[HEADER_MAGIC_OFFSET..HEADER_VERSION_OFFSET].copy_from_slice(&SEGMENT_MAGIC);
        LittleEndian::write_u32(&mut bytes[HEADER_VERSION_OFFSET..], FORMAT_VERSION);
        LittleEndian::write_u32(&mut bytes[HEADER_SIZE_OFFSET..], HEADER_SIZE as u32);
        LittleEndian::write_u64(&mut bytes[HEADER_FIRST_POSITION_OFFSET..], self.first_position);
        LittleEndian::write_u64(&mut bytes[HEADER_CAPACITY_OFFSET..], self.capacity_bytes);
        let crc = crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]);
        LittleEndian::write_u32(&mut bytes[HEADER_CRC_OFFSET..], crc);
        bytes
    }

    /// Decodes and checks a header. Errors name the offset of the bad field
    /// relative to the start of the file.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, (u64, CorruptionKind)> {
        let bytes = bytes
            .get(..HEADER_SIZE)
            .ok_or((0, CorruptionKind::Truncated { needed: HEADER_SIZE as u64, available: bytes.len() as u64 }))?;
        let stored = LittleEndian::read_u32(&bytes[HEADER_CRC_OFFSET..]);
        let computed = crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]);
        if bytes[..HEADER_VERSION_OFFSET] != SEGMENT_MAGIC {
            return Err((0, CorruptionKind::BadMagic));
        }
        if stored != computed {
            return Err((0, CorruptionKind::ChecksumMismatch { stored, computed }));
        }
        let version = LittleEndian::read_u32(&bytes[HEADER_VERSION_OFFSET..]);
        if !is_readable_format_version(version) {
            return Err((HEADER_VERSION_OFFSET as u64, CorruptionKind::UnsupportedVersion { found: version }));
        }
        if LittleEndian::read_u32(&bytes[HEADER_SIZE_OFFSET..]) != HEADER_SIZE as u32 {
            return Err((HEADER_SIZE_OFFSET as u64, CorruptionKind::InvalidField { field: "header size" }));
        }
        let capacity_bytes = LittleEndian::read_u64(&bytes[HEADER_CAPACITY_OFFSET..]);
        if !(SEGMENT_CAPACITY_BYTES_MIN..=SEGMENT_CAPACITY_BYTES_MAX).contains(&capacity_bytes) {
            return Err((HEADER_CAPACITY_OFFSET as u64, CorruptionKind::InvalidField { field: "capacity" }));
        }
        if bytes[HEADER_CAPACITY_OFFSET + size_of::<u64>()..HEADER_CRC_OFFSET].iter().any(|&b| b != 0) {
            return Err((HEADER_CAPACITY_OFFSET as u64 + 8, CorruptionKind::NonZeroPadding));
        }
        let first_position = LittleEndian::read_u64(&bytes[HEADER_FIRST_POSITION_OFFSET..]);
        // Positions are u64 and a next position must exist: u64::MAX is never
        // a record's position.
        if first_position == u64::MAX {
            return Err((
                HEADER_FIRST_POSITION_OFFSET as u64,
                CorruptionKind::InvalidField { field: "first position" },
            ));
        }
        Ok(SegmentHeader { first_position, capacity_bytes })
    }
}

/// The summary written at the end of a segment when it is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFooter {
    /// Position of the segment's last record.
    pub last_position: u64,
    /// Number of records (always at least one: empty segments are never sealed).
    pub record_count: u64,
    /// Timestamp of the first record.
    pub min_timestamp_ns: u64,
    /// Timestamp of the last record.
    pub max_timestamp_ns: u64,
    /// Offset just past the last record.
    pub data_end_offset: u64,
}

impl SegmentFooter {
    /// The 64 footer bytes.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut bytes = [0u8; FOOTER_SIZE];
        bytes[FOOTER_MAGIC_OFFSET..FOOTER_LAST_POSITION_OFFSET].copy_from_slice(&FOOTER_MAGIC);
        LittleEndian::write_u64(&mut bytes[FOOTER_LAST_POSITION_OFFSET..], self.last_position);
        LittleEndian::write_u64(&mut bytes[FOOTER_RECORD_COUNT_OFFSET..], self.record_count);
        LittleEndian::write_u64(&mut bytes[FOOTER_MIN_TIMESTAMP_OFFSET..], self.min_timestamp_ns);
        LittleEndian::write_u64(&mut bytes[FOOTER_MAX_TIMESTAMP_OFFSET..], self.max_timestamp_ns);
        LittleEndian::write_u64(&mut bytes[FOOTER_DATA_END_OFFSET..], self.data_end_offset);
        let crc = crc32fast::hash(&bytes[..FOOTER_CRC_OFFSET]);
        LittleEndian::write_u32(&mut bytes[FOOTER_CRC_OFFSET..], crc);
        bytes
    }

    /// Decodes a footer: `Ok(None)` when the bytes are all zero (not sealed).
    /// The footer is checked against the header it belongs to. Error offsets
    /// are relative to the footer's start.
    pub fn decode(bytes: &[u8], header: &SegmentHeader) -> Result<Option<SegmentFooter>, (u64, CorruptionKind)> {
        let bytes = bytes
            .get(..FOOTER_SIZE)
            .ok_or((0, CorruptionKind::Truncated { needed: FOOTER_SIZE as u64, available: bytes.len() as u64 }))?;
        if bytes.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if bytes[..FOOTER_LAST_POSITION_OFFSET] != FOOTER_MAGIC {
            return Err((0, CorruptionKind::BadMagic));
        }
        let stored = LittleEndian::read_u32(&bytes[FOOTER_CRC_OFFSET..]);
        let computed = crc32fast::hash(&bytes[..FOOTER_CRC_OFFSET]);
        if stored != computed {
            return Err((0, CorruptionKind::ChecksumMismatch { stored, computed }));
        }
        let footer = SegmentFooter {
            last_position: LittleEndian::read_u64(&bytes[FOOTER_LAST_POSITION_OFFSET..]),
            record_count: LittleEndian::read_u64(&bytes[FOOTER_RECORD_COUNT_OFFSET..]),
            min_timestamp_ns: LittleEndian::read_u64(&bytes[FOOTER_MIN_TIMESTAMP_OFFSET..]),
            max_timestamp_ns: LittleEndian::read_u64(&bytes[FOOTER_MAX_TIMESTAMP_OFFSET..]),
            data_end_offset: LittleEndian::read_u64(&bytes[FOOTER_DATA_END_OFFSET..]),
        };
        let field_error =
            |offset: usize, field: &'static str| Err((offset as u64, CorruptionKind::InvalidField { field }));
        if footer.record_count == 0
            || footer.last_position == u64::MAX
            || header.first_position.checked_add(footer.record_count - 1) != Some(footer.last_position)
        {
            return field_error(FOOTER_RECORD_COUNT_OFFSET, "record count");
        }
        if footer.min_timestamp_ns > footer.max_timestamp_ns {
            return field_error(FOOTER_MIN_TIMESTAMP_OFFSET, "timestamp range");
        }
        let data_end_max = header.capacity_bytes - FOOTER_SIZE as u64;
        if !(HEADER_SIZE as u64..=data_end_max).contains(&footer.data_end_offset) {
            return field_error(FOOTER_DATA_END_OFFSET, "data end");
        }
        if bytes[FOOTER_DATA_END_OFFSET + size_of::<u64>()..FOOTER_CRC_OFFSET].iter().any(|&b| b != 0) {
            return field_error(FOOTER_DATA_END_OFFSET + size_of::<u64>(), "reserved");
        }
        Ok(Some(footer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_footer_round_trip_and_detect_flips() {
        let header = SegmentHeader { first_position: 1234, capacity_bytes: 1 << 20 };
        let encoded = header.encode();
        assert_eq!(SegmentHeader::decode(&encoded), Ok(header));
        let footer = SegmentFooter {
            last_position: 1240,
            record_count: 7,
            min_timestamp_ns: 5,
            max_timestamp_ns: 9,
            data_end_offset: 4000,
        };
        let encoded_footer = footer.encode();
        assert_eq!(SegmentFooter::decode(&encoded_footer, &header), Ok(Some(footer)));
        assert_eq!(SegmentFooter::decode(&[0u8; FOOTER_SIZE], &header), Ok(None));
        for byte in 0..HEADER_SIZE {
            let mut damaged = encoded;
            damaged[byte] ^= 0x10;
            assert!(SegmentHeader::decode(&damaged).is_err(), "header byte {byte}");
            let mut damaged = encoded_footer;
            damaged[byte] ^= 0x10;
            assert!(SegmentFooter::decode(&damaged, &header).is_err(), "footer byte {byte}");
        }
    }

    #[test]
    fn footer_inconsistent_with_header_is_rejected() {
        let header = SegmentHeader { first_position: 10, capacity_bytes: 8192 };
        let footer = SegmentFooter {
            last_position: 10,
            record_count: 2,
            min_timestamp_ns: 0,
            max_timestamp_ns: 0,
            data_end_offset: 100,
        };
        assert!(SegmentFooter::decode(&footer.encode(), &header).is_err());
    }
}
