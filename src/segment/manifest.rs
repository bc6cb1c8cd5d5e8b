//! The manifest: the header and footer of every sealed segment, in one file.
//!
//! Opening a log must know each sealed segment's range (its footer) to chain
//! them and to find a position. Reading every footer costs a handful of system
//! calls per segment, so opening would grow with the log. The manifest, written
//! when a segment is sealed, holds those headers and footers: opening reads it
//! and opens a sealed segment it describes only when the segment is first read.
//! It is a hint: a segment that is not in it is opened at once, and a segment
//! opened later must carry exactly the header and footer the manifest gave for
//! it (see `CorruptionKind::ManifestMismatch`).
//!
//! ```text
//! 0   [u8; 8] magic "CHRNLMAN"
//! 8   u32     format version
//! 12  u32     reserved, zero
//! 16  u64     entry count (N)
//! 24  N entries of 128 bytes, in increasing first position:
//!       the segment's 64 header bytes, then its 64 footer bytes, as in the segment
//! end u32     crc32 of every byte before it
//! ```

use byteorder::{ByteOrder, LittleEndian};

use super::layout::{
    is_readable_format_version, SegmentFooter, SegmentHeader, FOOTER_SIZE, FORMAT_VERSION, HEADER_SIZE,
};
use crate::error::CorruptionKind;

/// Name of the manifest file in a log directory.
pub const MANIFEST_FILE_NAME: &str = "MANIFEST";
/// Magic number of the manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"CHRNLMAN";
/// Offset of the format version.
pub const MANIFEST_VERSION_OFFSET: usize = MANIFEST_MAGIC.len();
/// Offset of the reserved field.
pub const MANIFEST_RESERVED_OFFSET: usize = MANIFEST_VERSION_OFFSET + size_of::<u32>();
/// Offset of the entry count.
pub const MANIFEST_ENTRY_COUNT_OFFSET: usize = MANIFEST_RESERVED_OFFSET + size_of::<u32>();
/// Size of the fixed header; the entries follow.
pub const MANIFEST_HEADER_SIZE: usize = MANIFEST_ENTRY_COUNT_OFFSET + size_of::<u64>();
/// Size of one entry: a segment header and a segment footer.
pub const MANIFEST_ENTRY_SIZE: usize = HEADER_SIZE + FOOTER_SIZE;
/// Size of the trailing CRC.
pub const MANIFEST_CRC_SIZE: usize = size_of::<u32>();

const _: () = assert!(MANIFEST_HEADER_SIZE == 24);
const _: () = assert!(MANIFEST_ENTRY_SIZE == 128);

/// What the manifest says of one sealed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The segment's header bytes, exactly as in the segment (the format
    /// version they carry is the segment's, not the manifest's).
    pub header_bytes: [u8; HEADER_SIZE],
    /// The decoded header.
    pub header: SegmentHeader,
    /// The segment's footer.
    pub footer: SegmentFooter,
}

impl ManifestEntry {
    /// The format version in the segment's header.
    pub fn format_version(&self) -> u32 {
        super::layout::header_format_version(&self.header_bytes)
    }
}

/// The manifest file describing `entries` (which must be in increasing first
/// position).
pub fn encode<'a>(entries: impl ExactSizeIterator<Item = &'a ManifestEntry>) -> Vec<u8> {
    let count = entries.len();
    let mut bytes = Vec::with_capacity(MANIFEST_HEADER_SIZE + count * MANIFEST_ENTRY_SIZE + MANIFEST_CRC_SIZE);
    bytes.extend_from_slice(&MANIFEST_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(count as u64).to_le_bytes());
    for entry in entries {
        bytes.extend_from_slice(&entry.header_bytes);
        bytes.extend_from_slice(&entry.footer.encode());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks a manifest file and returns its entries. Errors carry the byte offset
/// of the damage. The entry count is checked against the file's length before
/// anything is allocated.
pub fn decode(bytes: &[u8]) -> Result<Vec<ManifestEntry>, (u64, CorruptionKind)> {
    let minimum = MANIFEST_HEADER_SIZE + MANIFEST_CRC_SIZE;
    if bytes.len() < minimum {
        return Err((0, CorruptionKind::Truncated { needed: minimum as u64, available: bytes.len() as u64 }));
    }
    if bytes[..MANIFEST_VERSION_OFFSET] != MANIFEST_MAGIC {
        return Err((0, CorruptionKind::BadMagic));
    }
    let crc_offset = bytes.len() - MANIFEST_CRC_SIZE;
    let stored = LittleEndian::read_u32(&bytes[crc_offset..]);
    let computed = crc32fast::hash(&bytes[..crc_offset]);
    if stored != computed {
        return Err((crc_offset as u64, CorruptionKind::ChecksumMismatch { stored, computed }));
    }
    let version = LittleEndian::read_u32(&bytes[MANIFEST_VERSION_OFFSET..]);
    if !is_readable_format_version(version) {
        return Err((MANIFEST_VERSION_OFFSET as u64, CorruptionKind::UnsupportedVersion { found: version }));
    }
    if LittleEndian::read_u32(&bytes[MANIFEST_RESERVED_OFFSET..]) != 0 {
        return Err((MANIFEST_RESERVED_OFFSET as u64, CorruptionKind::NonZeroPadding));
    }
    let count = LittleEndian::read_u64(&bytes[MANIFEST_ENTRY_COUNT_OFFSET..]);
    let body = &bytes[MANIFEST_HEADER_SIZE..crc_offset];
    if !body.len().is_multiple_of(MANIFEST_ENTRY_SIZE) || (body.len() / MANIFEST_ENTRY_SIZE) as u64 != count {
        return Err((MANIFEST_ENTRY_COUNT_OFFSET as u64, CorruptionKind::LengthOutOfRange { length: count }));
    }
    let mut entries: Vec<ManifestEntry> = Vec::with_capacity(body.len() / MANIFEST_ENTRY_SIZE);
    for (index, chunk) in body.chunks_exact(MANIFEST_ENTRY_SIZE).enumerate() {
        let start = (MANIFEST_HEADER_SIZE + index * MANIFEST_ENTRY_SIZE) as u64;
        let (header_part, footer_part) = chunk.split_at(HEADER_SIZE);
        let header = SegmentHeader::decode(header_part).map_err(|(offset, kind)| (start + offset, kind))?;
        let footer = match SegmentFooter::decode(footer_part, &header) {
            Ok(Some(footer)) => footer,
            Ok(None) => return Err((start + HEADER_SIZE as u64, CorruptionKind::MissingFooter)),
            Err((offset, kind)) => return Err((start + HEADER_SIZE as u64 + offset, kind)),
        };
        if entries.last().is_some_and(|previous| previous.footer.last_position >= header.first_position) {
            let offset = start + super::layout::HEADER_FIRST_POSITION_OFFSET as u64;
            return Err((offset, CorruptionKind::InvalidField { field: "first position" }));
        }
        let mut header_bytes = [0u8; HEADER_SIZE];
        header_bytes.copy_from_slice(header_part);
        entries.push(ManifestEntry { header_bytes, header, footer });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(first_position: u64, record_count: u64) -> ManifestEntry {
        let header = SegmentHeader { first_position, capacity_bytes: 1 << 20 };
        let footer = SegmentFooter {
            last_position: first_position + record_count - 1,
            record_count,
            min_timestamp_ns: first_position,
            max_timestamp_ns: first_position + 5,
            data_end_offset: 4096,
        };
        ManifestEntry { header_bytes: header.encode(), header, footer }
    }

    #[test]
    fn a_manifest_round_trips_and_every_flipped_byte_or_cut_is_refused() {
        let entries = vec![entry(0, 10), entry(10, 3), entry(13, 100)];
        let bytes = encode(entries.iter());
        assert_eq!(bytes.len(), MANIFEST_HEADER_SIZE + 3 * MANIFEST_ENTRY_SIZE + MANIFEST_CRC_SIZE);
        assert_eq!(decode(&bytes), Ok(entries));
        assert_eq!(decode(&encode([].iter())), Ok(Vec::new()));
        for byte in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x04;
            assert!(decode(&damaged).is_err(), "byte {byte}");
        }
        for length in 0..bytes.len() {
            assert!(decode(&bytes[..length]).is_err(), "cut at {length}");
        }
    }

    #[test]
    fn entries_out_of_order_or_overlapping_are_refused_even_with_a_valid_crc() {
        for entries in [vec![entry(10, 3), entry(0, 10)], vec![entry(0, 10), entry(9, 3)]] {
            let bytes = encode(entries.iter());
            let expected =
                MANIFEST_HEADER_SIZE + MANIFEST_ENTRY_SIZE + super::super::layout::HEADER_FIRST_POSITION_OFFSET;
            assert_eq!(
                decode(&bytes),
                Err((expected as u64, CorruptionKind::InvalidField { field: "first position" }))
            );
        }
    }

    #[test]
    fn an_entry_count_that_disagrees_with_the_length_is_refused_before_allocating() {
        let mut bytes = encode([entry(0, 1)].iter());
        LittleEndian::write_u64(&mut bytes[MANIFEST_ENTRY_COUNT_OFFSET..], u64::MAX);
        let crc_offset = bytes.len() - MANIFEST_CRC_SIZE;
        let crc = crc32fast::hash(&bytes[..crc_offset]);
        LittleEndian::write_u32(&mut bytes[crc_offset..], crc);
        assert_eq!(
            decode(&bytes),
            Err((MANIFEST_ENTRY_COUNT_OFFSET as u64, CorruptionKind::LengthOutOfRange { length: u64::MAX }))
        );
    }
}
