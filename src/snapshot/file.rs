//! The bytes of one snapshot file.
//!
//! ```text
//! 0   [u8; 8] magic "CHRNLSNP"
//! 8   u32     format version
//! 12  u32     crc32 of bytes 16..end of file
//! 16  u64     next position      (every event before it is reflected)
//! 24  u64     timestamp ns       (of the event at next position - 1)
//! 32  u64     version            (application counter; aggregates: events applied)
//! 40  u32     schema version     (chosen by the application)
//! 44  u16     name length
//! 46  u16     reserved, zero
//! 48  u64     payload length
//! 56  u32     anchor crc         (stored CRC of the record at next position - 1)
//! 60  u8      flags              (bit 0: anchor crc present)
//! 61  [u8; 3] reserved, zero
//! 64  name (UTF-8), then payload
//! ```

use byteorder::{ByteOrder, LittleEndian};

use crate::error::CorruptionKind;
use crate::record::limits::STREAM_NAME_BYTES_MAX;
use crate::segment::{is_readable_format_version, FORMAT_VERSION};

/// Magic number at the start of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CHRNLSNP";
/// Offset of the format version.
pub const SNAPSHOT_VERSION_OFFSET: usize = SNAPSHOT_MAGIC.len();
/// Offset of the CRC.
pub const SNAPSHOT_CRC_OFFSET: usize = SNAPSHOT_VERSION_OFFSET + size_of::<u32>();
/// Offset of the next position; the CRC covers everything from here on.
pub const SNAPSHOT_NEXT_POSITION_OFFSET: usize = SNAPSHOT_CRC_OFFSET + size_of::<u32>();
/// Offset of the timestamp.
pub const SNAPSHOT_TIMESTAMP_OFFSET: usize = SNAPSHOT_NEXT_POSITION_OFFSET + size_of::<u64>();
/// Offset of the application's version counter.
pub const SNAPSHOT_VERSION_COUNTER_OFFSET: usize = SNAPSHOT_TIMESTAMP_OFFSET + size_of::<u64>();
/// Offset of the schema version.
pub const SNAPSHOT_SCHEMA_OFFSET: usize = SNAPSHOT_VERSION_COUNTER_OFFSET + size_of::<u64>();
/// Offset of the name length.
pub const SNAPSHOT_NAME_LENGTH_OFFSET: usize = SNAPSHOT_SCHEMA_OFFSET + size_of::<u32>();
/// Offset of the first reserved field.
pub const SNAPSHOT_RESERVED_OFFSET: usize = SNAPSHOT_NAME_LENGTH_OFFSET + size_of::<u16>();
/// Offset of the payload length.
pub const SNAPSHOT_PAYLOAD_LENGTH_OFFSET: usize = SNAPSHOT_RESERVED_OFFSET + size_of::<u16>();
/// Offset of the anchor CRC (format version 4).
pub const SNAPSHOT_ANCHOR_CRC_OFFSET: usize = SNAPSHOT_PAYLOAD_LENGTH_OFFSET + size_of::<u64>();
/// Offset of the flags (format version 4).
pub const SNAPSHOT_FLAGS_OFFSET: usize = SNAPSHOT_ANCHOR_CRC_OFFSET + size_of::<u32>();
/// Offset of the second reserved field.
pub const SNAPSHOT_RESERVED2_OFFSET: usize = SNAPSHOT_FLAGS_OFFSET + size_of::<u8>();
/// Size of the header; the name starts here.
pub const SNAPSHOT_HEADER_SIZE: usize = SNAPSHOT_RESERVED2_OFFSET + 3;
/// Flag: the anchor CRC field holds the CRC of the snapshot's last record.
pub const SNAPSHOT_FLAG_ANCHOR_CRC: u8 = 0b0000_0001;
/// Longest snapshot name: the longest stream name plus room for a prefix
/// (`aggregate:`), so that an aggregate's snapshot can be named after its
/// stream.
pub const SNAPSHOT_NAME_MAX: usize = STREAM_NAME_BYTES_MAX + 32;

const _: () = assert!(SNAPSHOT_HEADER_SIZE == 64);
const _: () = assert!(SNAPSHOT_NAME_MAX <= u16::MAX as usize);

/// What a snapshot says about itself: everything but the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// What the snapshot is of (an aggregate's stream, a projection's name).
    pub name: String,
    /// Every event at a position below this one is reflected in the state,
    /// none at or after it.
    pub next_position: u64,
    /// Timestamp of the event at `next_position - 1` (0 when `next_position`
    /// is 0): a fingerprint that tells whether the log still holds the events
    /// the snapshot was made from.
    pub timestamp_ns: u64,
    /// A counter of the application's: for an aggregate, the number of events
    /// of its stream applied (its next stream version).
    pub version: u64,
    /// The application's version of the state's encoding: a snapshot with
    /// another schema version than the one expected is skipped.
    pub schema_version: u32,
}

/// Encodes a snapshot file with no anchor CRC.
pub fn encode(meta: &SnapshotMeta, payload: &[u8]) -> Vec<u8> {
    encode_anchored(meta, None, payload)
}

/// Encodes a snapshot file; `anchor_crc` is the stored CRC of the record at
/// `next_position - 1`, which lookups compare with the log's.
pub fn encode_anchored(meta: &SnapshotMeta, anchor_crc: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; SNAPSHOT_HEADER_SIZE];
    bytes[..SNAPSHOT_MAGIC.len()].copy_from_slice(&SNAPSHOT_MAGIC);
    LittleEndian::write_u32(&mut bytes[SNAPSHOT_VERSION_OFFSET..], FORMAT_VERSION);
    LittleEndian::write_u64(&mut bytes[SNAPSHOT_NEXT_POSITION_OFFSET..], meta.next_position);
    LittleEndian::write_u64(&mut bytes[SNAPSHOT_TIMESTAMP_OFFSET..], meta.timestamp_ns);
    LittleEndian::write_u64(&mut bytes[SNAPSHOT_VERSION_COUNTER_OFFSET..], meta.version);
    LittleEndian::write_u32(&mut bytes[SNAPSHOT_SCHEMA_OFFSET..], meta.schema_version);
    // Callers check the name's length first (`Error::InvalidSnapshotName`).
    let name_length = u16::try_from(meta.name.len()).unwrap_or(u16::MAX);
    LittleEndian::write_u16(&mut bytes[SNAPSHOT_NAME_LENGTH_OFFSET..], name_length);
    LittleEndian::write_u64(&mut bytes[SNAPSHOT_PAYLOAD_LENGTH_OFFSET..], payload.len() as u64);
    if let Some(crc) = anchor_crc {
        LittleEndian::write_u32(&mut bytes[SNAPSHOT_ANCHOR_CRC_OFFSET..], crc);
        bytes[SNAPSHOT_FLAGS_OFFSET] = SNAPSHOT_FLAG_ANCHOR_CRC;
    }
    bytes.reserve(meta.name.len() + payload.len());
    bytes.extend_from_slice(meta.name.as_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc32fast::hash(&bytes[SNAPSHOT_NEXT_POSITION_OFFSET..]);
    LittleEndian::write_u32(&mut bytes[SNAPSHOT_CRC_OFFSET..], crc);
    bytes
}

/// Decodes a whole snapshot file: its description and the range of its
/// payload. Checks, in order, the length, magic, version, name and payload
/// lengths against the file's size, the CRC, the reserved fields and the
/// name's UTF-8, and returns the offset and kind of the first failure.
pub fn decode(bytes: &[u8]) -> Result<(SnapshotMeta, std::ops::Range<usize>), (u64, CorruptionKind)> {
    let available = bytes.len() as u64;
    if bytes.len() < SNAPSHOT_HEADER_SIZE {
        return Err((0, CorruptionKind::Truncated { needed: SNAPSHOT_HEADER_SIZE as u64, available }));
    }
    if bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err((0, CorruptionKind::BadMagic));
    }
    let version = LittleEndian::read_u32(&bytes[SNAPSHOT_VERSION_OFFSET..]);
    if !is_readable_format_version(version) {
        return Err((SNAPSHOT_VERSION_OFFSET as u64, CorruptionKind::UnsupportedVersion { found: version }));
    }
    let name_length = usize::from(LittleEndian::read_u16(&bytes[SNAPSHOT_NAME_LENGTH_OFFSET..]));
    if name_length == 0 || name_length > SNAPSHOT_NAME_MAX {
        let kind = CorruptionKind::LengthOutOfRange { length: name_length as u64 };
        return Err((SNAPSHOT_NAME_LENGTH_OFFSET as u64, kind));
    }
    let payload_length = LittleEndian::read_u64(&bytes[SNAPSHOT_PAYLOAD_LENGTH_OFFSET..]);
    let needed = (SNAPSHOT_HEADER_SIZE + name_length) as u64;
    let needed = needed
        .checked_add(payload_length)
        .ok_or((SNAPSHOT_PAYLOAD_LENGTH_OFFSET as u64, CorruptionKind::LengthOutOfRange { length: payload_length }))?;
    if needed > available {
        return Err((SNAPSHOT_PAYLOAD_LENGTH_OFFSET as u64, CorruptionKind::Truncated { needed, available }));
    }
    if needed < available {
        // Bytes after the payload: the lengths were damaged, or the file was.
        return Err((needed, CorruptionKind::LengthOutOfRange { length: available }));
    }
    let stored = LittleEndian::read_u32(&bytes[SNAPSHOT_CRC_OFFSET..]);
    let computed = crc32fast::hash(&bytes[SNAPSHOT_NEXT_POSITION_OFFSET..]);
    if stored != computed {
        return Err((SNAPSHOT_CRC_OFFSET as u64, CorruptionKind::ChecksumMismatch { stored, computed }));
    }
    if LittleEndian::read_u16(&bytes[SNAPSHOT_RESERVED_OFFSET..]) != 0 {
        return Err((SNAPSHOT_RESERVED_OFFSET as u64, CorruptionKind::InvalidField { field: "reserved" }));
    }
    let flags = bytes[SNAPSHOT_FLAGS_OFFSET];
    if flags & !SNAPSHOT_FLAG_ANCHOR_CRC != 0 {
        return Err((SNAPSHOT_FLAGS_OFFSET as u64, CorruptionKind::UnknownFlags { flags }));
    }
    // Without the flag (and in files of version 3, where these bytes were
    // reserved) the anchor field is zero.
    if flags & SNAPSHOT_FLAG_ANCHOR_CRC == 0 && LittleEndian::read_u32(&bytes[SNAPSHOT_ANCHOR_CRC_OFFSET..]) != 0 {
        return Err((SNAPSHOT_ANCHOR_CRC_OFFSET as u64, CorruptionKind::InvalidField { field: "anchor crc" }));
    }
    if bytes[SNAPSHOT_RESERVED2_OFFSET..SNAPSHOT_HEADER_SIZE].iter().any(|&b| b != 0) {
        return Err((SNAPSHOT_RESERVED2_OFFSET as u64, CorruptionKind::InvalidField { field: "reserved" }));
    }
    let name_end = SNAPSHOT_HEADER_SIZE + name_length;
    let name = std::str::from_utf8(&bytes[SNAPSHOT_HEADER_SIZE..name_end])
        .map_err(|_| (SNAPSHOT_HEADER_SIZE as u64, CorruptionKind::InvalidUtf8))?;
    let meta = SnapshotMeta {
        name: name.to_owned(),
        next_position: LittleEndian::read_u64(&bytes[SNAPSHOT_NEXT_POSITION_OFFSET..]),
        timestamp_ns: LittleEndian::read_u64(&bytes[SNAPSHOT_TIMESTAMP_OFFSET..]),
        version: LittleEndian::read_u64(&bytes[SNAPSHOT_VERSION_COUNTER_OFFSET..]),
        schema_version: LittleEndian::read_u32(&bytes[SNAPSHOT_SCHEMA_OFFSET..]),
    };
    Ok((meta, name_end..bytes.len()))
}

/// The anchor CRC of a snapshot file that [`decode`] accepted.
pub fn anchor_crc(bytes: &[u8]) -> Option<u32> {
    let flags = *bytes.get(SNAPSHOT_FLAGS_OFFSET)?;
    let field = bytes.get(SNAPSHOT_ANCHOR_CRC_OFFSET..SNAPSHOT_FLAGS_OFFSET)?;
    (flags & SNAPSHOT_FLAG_ANCHOR_CRC != 0).then(|| LittleEndian::read_u32(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta { name: "account-7".into(), next_position: 42, timestamp_ns: 9, version: 3, schema_version: 2 }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&meta(), b"state");
        assert_eq!(bytes.len(), SNAPSHOT_HEADER_SIZE + "account-7".len() + 5);
        let (decoded, payload) = decode(&bytes).unwrap();
        assert_eq!(decoded, meta());
        assert_eq!(&bytes[payload], b"state");
    }

    #[test]
    fn the_anchor_crc_round_trips_and_is_optional() {
        let anchored = encode_anchored(&meta(), Some(0xdead_beef), b"state");
        assert!(decode(&anchored).is_ok());
        assert_eq!(anchor_crc(&anchored), Some(0xdead_beef));
        let plain = encode(&meta(), b"state");
        assert_eq!(anchor_crc(&plain), None);
        // Zero is a CRC like any other: the flag, not the value, says it is there.
        assert_eq!(anchor_crc(&encode_anchored(&meta(), Some(0), b"")), Some(0));
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = encode(&meta(), b"some state bytes");
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x40;
            assert!(decode(&damaged).is_err(), "flip at {index} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_and_extension_is_caught() {
        let bytes = encode(&meta(), b"some state bytes");
        for length in 0..bytes.len() {
            assert!(decode(&bytes[..length]).is_err(), "cut at {length}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer).unwrap_err().0, bytes.len() as u64);
    }
}
