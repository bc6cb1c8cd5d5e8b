//! Record encoding: one event as bytes, framed so that a torn write, a flipped
//! bit or garbage is always told apart from a valid record.
//!
//! Layout (all integers little-endian; FORMAT.md has the byte table):
//!
//! ```text
//! 0   u32 crc32      over bytes 4..length
//! 4   u32 length     total bytes of the record, trailer included
//! 8   u64 position
//! 16  u64 timestamp_ns
//! 24  u64 stream_version
//! 32  u32 metadata_length
//! 36  u16 stream_length
//! 38  u8  type_length
//! 39  u8  flags       bit 0: last record of its batch
//! 40  ... stream name, event type, metadata, payload
//! end-4 u32 length    copy of the length, for reading backwards
//! ```
//!
//! Nothing read from the header is used for arithmetic before it has been range
//! checked, and nothing is returned before the CRC has matched.

use byteorder::{ByteOrder, LittleEndian};

use crate::error::CorruptionKind;

/// Named limits, checked when writing and again when reading.
pub mod limits {
    /// Largest encoded record (header, names, metadata, payload, trailer).
    pub const RECORD_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;
    /// Longest stream name, in bytes of UTF-8.
    pub const STREAM_NAME_BYTES_MAX: usize = 1024;
    /// Longest event type, in bytes of UTF-8 (it is stored in a `u8`).
    pub const EVENT_TYPE_BYTES_MAX: usize = 255;
}

/// Offset of the CRC32 field.
pub const CRC_OFFSET: usize = 0;
/// Offset of the total-length field.
pub const LENGTH_OFFSET: usize = CRC_OFFSET + size_of::<u32>();
/// Offset of the global position.
pub const POSITION_OFFSET: usize = LENGTH_OFFSET + size_of::<u32>();
/// Offset of the timestamp (nanoseconds since the Unix epoch).
pub const TIMESTAMP_OFFSET: usize = POSITION_OFFSET + size_of::<u64>();
/// Offset of the stream version.
pub const STREAM_VERSION_OFFSET: usize = TIMESTAMP_OFFSET + size_of::<u64>();
/// Offset of the metadata length.
pub const METADATA_LENGTH_OFFSET: usize = STREAM_VERSION_OFFSET + size_of::<u64>();
/// Offset of the stream name length.
pub const STREAM_LENGTH_OFFSET: usize = METADATA_LENGTH_OFFSET + size_of::<u32>();
/// Offset of the event type length.
pub const TYPE_LENGTH_OFFSET: usize = STREAM_LENGTH_OFFSET + size_of::<u16>();
/// Offset of the flag byte.
pub const FLAGS_OFFSET: usize = TYPE_LENGTH_OFFSET + size_of::<u8>();
/// Size of the fixed header; the variable fields start here.
pub const HEADER_SIZE: usize = FLAGS_OFFSET + size_of::<u8>();
/// Size of the trailing length copy.
pub const TRAILER_SIZE: usize = size_of::<u32>();
/// Bytes every record costs on top of its names, metadata and payload.
pub const RECORD_OVERHEAD: usize = HEADER_SIZE + TRAILER_SIZE;

/// Flag: this record is the last of its batch. A batch is valid only once its
/// last record is on disk, which is what makes batches atomic.
pub const FLAG_BATCH_END: u8 = 0b0000_0001;
const FLAGS_KNOWN: u8 = FLAG_BATCH_END;

const _: () = assert!(HEADER_SIZE == 40);
const _: () = assert!(RECORD_OVERHEAD == 44);
const _: () = assert!(limits::RECORD_SIZE_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(limits::STREAM_NAME_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(limits::EVENT_TYPE_BYTES_MAX <= u8::MAX as usize);

/// The fixed fields of a record, as the writer assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Global position in the log.
    pub position: u64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Version of the event within its stream (0 for the first event).
    pub stream_version: u64,
    /// Flag bits ([`FLAG_BATCH_END`]).
    pub flags: u8,
}

/// A decoded record borrowing its variable fields from the bytes it was read
/// from (a memory map, usually): nothing is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Fixed fields.
    pub header: RecordHeader,
    /// Stream name.
    pub stream: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Application metadata (may be empty).
    pub metadata: &'a [u8],
    /// Event payload.
    pub payload: &'a [u8],
    /// Total encoded length in bytes.
    pub encoded_length: u32,
}

/// Encoded size of a record with these variable fields.
pub fn encoded_size(stream_length: usize, type_length: usize, metadata_length: usize, payload_length: usize) -> usize {
    RECORD_OVERHEAD + stream_length + type_length + metadata_length + payload_length
}

/// Appends one encoded record to `buffer`. The caller has checked the limits
/// (`debug_assert`ed here); the length field is derived, never trusted input.
pub fn encode_into(
    buffer: &mut Vec<u8>,
    header: &RecordHeader,
    stream: &str,
    event_type: &str,
    metadata: &[u8],
    payload: &[u8],
) {
    let length = encoded_size(stream.len(), event_type.len(), metadata.len(), payload.len());
    debug_assert!(length <= limits::RECORD_SIZE_BYTES_MAX);
    debug_assert!(!stream.is_empty() && stream.len() <= limits::STREAM_NAME_BYTES_MAX);
    debug_assert!(!event_type.is_empty() && event_type.len() <= limits::EVENT_TYPE_BYTES_MAX);
    let start = buffer.len();
    buffer.resize(start + HEADER_SIZE, 0);
    {
        let fixed = &mut buffer[start..start + HEADER_SIZE];
        LittleEndian::write_u32(&mut fixed[LENGTH_OFFSET..], length as u32);
        LittleEndian::write_u64(&mut fixed[POSITION_OFFSET..], header.position);
        LittleEndian::write_u64(&mut fixed[TIMESTAMP_OFFSET..], header.timestamp_ns);
        LittleEndian::write_u64(&mut fixed[STREAM_VERSION_OFFSET..], header.stream_version);
        LittleEndian::write_u32(&mut fixed[METADATA_LENGTH_OFFSET..], metadata.len() as u32);
        LittleEndian::write_u16(&mut fixed[STREAM_LENGTH_OFFSET..], stream.len() as u16);
        fixed[TYPE_LENGTH_OFFSET] = event_type.len() as u8;
        fixed[FLAGS_OFFSET] = header.flags;
    }
    buffer.extend_from_slice(stream.as_bytes());
    buffer.extend_from_slice(event_type.as_bytes());
    buffer.extend_from_slice(metadata);
    buffer.extend_from_slice(payload);
    buffer.extend_from_slice(&(length as u32).to_le_bytes());
    let crc = crc32(&buffer[start + LENGTH_OFFSET..]);
    LittleEndian::write_u32(&mut buffer[start + CRC_OFFSET..], crc);
    debug_assert_eq!(buffer.len() - start, length);
}

/// CRC32 (IEEE) of `bytes`, as `crc32fast::hash` computes it, but starting
/// from a hasher whose CPU feature detection ran once: on records of a few
/// hundred bytes that detection was a measurable part of a replay.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut hasher = hasher();
    hasher.update(bytes);
    hasher.finalize()
}

fn hasher() -> crc32fast::Hasher {
    static PROTOTYPE: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    PROTOTYPE.get_or_init(crc32fast::Hasher::new).clone()
}

/// The CRC that `record` (one whole record) has with `FLAG_BATCH_END`
/// cleared, `None` when the flag is not set. A truncation that cuts a batch
/// sets the flag on the record it leaves last and recomputes that record's
/// CRC: the event is the same, its fingerprint is not, and this is the CRC it
/// had before.
pub fn crc_without_batch_end(record: &[u8]) -> Option<u32> {
    let flags = *record.get(FLAGS_OFFSET)?;
    if flags & FLAG_BATCH_END == 0 {
        return None;
    }
    let mut hasher = hasher();
    hasher.update(record.get(LENGTH_OFFSET..FLAGS_OFFSET)?);
    hasher.update(&[flags & !FLAG_BATCH_END]);
    hasher.update(record.get(FLAGS_OFFSET + 1..)?);
    Some(hasher.finalize())
}

/// Outcome of looking at the bytes where a record may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, checksummed record.
    Record(RecordRef<'a>),
    /// The bytes are zero where a header would be: nothing was ever written here.
    End,
}

/// Decodes the record at the start of `bytes`, which may extend past it. Never
/// panics and never allocates: every field is range checked against `bytes`
/// before it is used, and the CRC must match before anything is returned.
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, CorruptionKind> {
    if bytes.len() < HEADER_SIZE {
        if bytes.iter().all(|&byte| byte == 0) {
            return Ok(Decoded::End);
        }
        return Err(CorruptionKind::Truncated { needed: HEADER_SIZE as u64, available: bytes.len() as u64 });
    }
    let length = LittleEndian::read_u32(&bytes[LENGTH_OFFSET..]) as usize;
    let stored_crc = LittleEndian::read_u32(&bytes[CRC_OFFSET..]);
    if length == 0 && stored_crc == 0 {
        return Ok(Decoded::End);
    }
    if !(RECORD_OVERHEAD..=limits::RECORD_SIZE_BYTES_MAX).contains(&length) {
        return Err(CorruptionKind::LengthOutOfRange { length: length as u64 });
    }
    if length > bytes.len() {
        return Err(CorruptionKind::Truncated { needed: length as u64, available: bytes.len() as u64 });
    }
    let record = &bytes[..length];
    let computed_crc = crc32(&record[LENGTH_OFFSET..]);
    if computed_crc != stored_crc {
        return Err(CorruptionKind::ChecksumMismatch { stored: stored_crc, computed: computed_crc });
    }
    // The CRC matched, but a record written by a buggy or hostile writer must still
    // not make us slice out of range: check every length again.
    if LittleEndian::read_u32(&record[length - TRAILER_SIZE..]) as usize != length {
        return Err(CorruptionKind::TrailerMismatch);
    }
    let flags = record[FLAGS_OFFSET];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(CorruptionKind::UnknownFlags { flags });
    }
    let metadata_length = LittleEndian::read_u32(&record[METADATA_LENGTH_OFFSET..]) as usize;
    let stream_length = LittleEndian::read_u16(&record[STREAM_LENGTH_OFFSET..]) as usize;
    let type_length = record[TYPE_LENGTH_OFFSET] as usize;
    if stream_length == 0 || stream_length > limits::STREAM_NAME_BYTES_MAX || type_length == 0 {
        return Err(CorruptionKind::FieldLengths);
    }
    let variable = &record[HEADER_SIZE..length - TRAILER_SIZE];
    let payload_start = stream_length
        .checked_add(type_length)
        .and_then(|sum| sum.checked_add(metadata_length))
        .filter(|&sum| sum <= variable.len())
        .ok_or(CorruptionKind::FieldLengths)?;
    let names_length = stream_length + type_length;
    let metadata = &variable[names_length..payload_start];
    let payload = &variable[payload_start..];
    // The stream name and the event type are adjacent: one validation of both
    // (half the per-call cost on short names), then a split that must fall on
    // a character boundary for each to be valid UTF-8 on its own.
    let names = std::str::from_utf8(&variable[..names_length]).map_err(|_| CorruptionKind::InvalidUtf8)?;
    if !names.is_char_boundary(stream_length) {
        return Err(CorruptionKind::InvalidUtf8);
    }
    let (stream, event_type) = names.split_at(stream_length);
    Ok(Decoded::Record(RecordRef {
        header: RecordHeader {
            position: LittleEndian::read_u64(&record[POSITION_OFFSET..]),
            timestamp_ns: LittleEndian::read_u64(&record[TIMESTAMP_OFFSET..]),
            stream_version: LittleEndian::read_u64(&record[STREAM_VERSION_OFFSET..]),
            flags,
        },
        stream,
        event_type,
        metadata,
        payload,
        encoded_length: length as u32,
    }))
}

/// Reads the length copy that ends at `end` (exclusive), for stepping backwards.
/// Returns `None` when it is out of range; the record itself is then checked by
/// [`decode`] at the start it implies.
pub fn preceding_length(bytes: &[u8], end: usize) -> Option<usize> {
    let start = end.checked_sub(TRAILER_SIZE)?;
    let length = LittleEndian::read_u32(bytes.get(start..end)?) as usize;
    (RECORD_OVERHEAD..=limits::RECORD_SIZE_BYTES_MAX).contains(&length).then_some(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_without_the_batch_end_flag_is_the_one_before_a_truncation_set_it() {
        let mut record = Vec::new();
        let header = RecordHeader { position: 7, timestamp_ns: 9, stream_version: 1, flags: 0 };
        encode_into(&mut record, &header, "account-1", "Deposited", b"", b"100");
        let unflagged = LittleEndian::read_u32(&record);
        assert_eq!(crc_without_batch_end(&record), None, "no flag, nothing recomputed");
        // What truncation does to the record it leaves last.
        record[FLAGS_OFFSET] |= FLAG_BATCH_END;
        let flagged = crc32(&record[LENGTH_OFFSET..]);
        LittleEndian::write_u32(&mut record, flagged);
        assert!(matches!(decode(&record), Ok(Decoded::Record(r)) if r.header.flags == FLAG_BATCH_END));
        assert_ne!(flagged, unflagged);
        assert_eq!(crc_without_batch_end(&record), Some(unflagged));
        assert_eq!(crc_without_batch_end(&record[..FLAGS_OFFSET]), None, "too short: no flags byte");
    }

    fn sample(buffer: &mut Vec<u8>, position: u64, payload: &[u8]) {
        let header = RecordHeader {
            position,
            timestamp_ns: 1_700_000_000_000_000_000 + position,
            stream_version: position / 2,
            flags: FLAG_BATCH_END,
        };
        encode_into(buffer, &header, "account-42", "Deposited", b"{\"by\":\"me\"}", payload);
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let mut buffer = Vec::new();
        sample(&mut buffer, 7, b"hello");
        assert_eq!(buffer.len(), encoded_size(10, 9, 11, 5));
        let Ok(Decoded::Record(record)) = decode(&buffer) else {
            panic!("record did not decode: {:?}", decode(&buffer));
        };
        assert_eq!(record.header.position, 7);
        assert_eq!(record.header.stream_version, 3);
        assert_eq!(record.header.flags, FLAG_BATCH_END);
        assert_eq!(record.stream, "account-42");
        assert_eq!(record.event_type, "Deposited");
        assert_eq!(record.metadata, b"{\"by\":\"me\"}");
        assert_eq!(record.payload, b"hello");
        assert_eq!(record.encoded_length as usize, buffer.len());
        assert_eq!(preceding_length(&buffer, buffer.len()), Some(buffer.len()));
    }

    #[test]
    fn zeros_are_the_end_not_corruption() {
        assert_eq!(decode(&[0u8; 100]), Ok(Decoded::End));
        assert_eq!(decode(&[0u8; 3]), Ok(Decoded::End));
        assert_eq!(decode(&[]), Ok(Decoded::End));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buffer = Vec::new();
        sample(&mut buffer, 1, b"payload bytes");
        for byte in 0..buffer.len() {
            for bit in 0..8 {
                let mut damaged = buffer.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode(&damaged), Ok(Decoded::Record(_))),
                    "flip of bit {bit} in byte {byte} was not detected"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let mut buffer = Vec::new();
        sample(&mut buffer, 1, b"payload bytes");
        for cut in 1..buffer.len() {
            let result = decode(&buffer[..cut]);
            assert!(matches!(result, Err(CorruptionKind::Truncated { .. })), "cut at {cut} gave {result:?}");
        }
    }

    #[test]
    fn a_character_split_between_stream_and_type_is_invalid_utf8() {
        // "é" is C3 A9: as one string it is valid, but a stream name ending in
        // C3 and an event type starting with A9 are each invalid.
        let mut buffer = Vec::new();
        let header = RecordHeader { position: 0, timestamp_ns: 1, stream_version: 0, flags: FLAG_BATCH_END };
        encode_into(&mut buffer, &header, "ab", "cd", b"", b"x");
        buffer[HEADER_SIZE + 1] = 0xc3;
        buffer[HEADER_SIZE + 2] = 0xa9;
        let crc = crc32(&buffer[LENGTH_OFFSET..]);
        LittleEndian::write_u32(&mut buffer[CRC_OFFSET..], crc);
        assert_eq!(decode(&buffer), Err(CorruptionKind::InvalidUtf8));
        // The same bytes with the boundary after the character decode.
        LittleEndian::write_u16(&mut buffer[STREAM_LENGTH_OFFSET..], 3);
        buffer[TYPE_LENGTH_OFFSET] = 1;
        let crc = crc32(&buffer[LENGTH_OFFSET..]);
        LittleEndian::write_u32(&mut buffer[CRC_OFFSET..], crc);
        let Ok(Decoded::Record(record)) = decode(&buffer) else { panic!("{:?}", decode(&buffer)) };
        assert_eq!((record.stream, record.event_type), ("aé", "d"));
    }

    #[test]
    fn crc32_matches_crc32fast() {
        for length in [0usize, 1, 15, 16, 63, 64, 186, 4096] {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 31 % 251) as u8).collect();
            assert_eq!(crc32(&bytes), crc32fast::hash(&bytes));
        }
    }

    #[test]
    fn hostile_lengths_with_a_valid_crc_are_rejected() {
        // A record whose CRC is right but whose field lengths overflow the record.
        let mut buffer = Vec::new();
        sample(&mut buffer, 1, b"x");
        LittleEndian::write_u32(&mut buffer[METADATA_LENGTH_OFFSET..], u32::MAX);
        let crc = crc32fast::hash(&buffer[LENGTH_OFFSET..]);
        LittleEndian::write_u32(&mut buffer[CRC_OFFSET..], crc);
        assert_eq!(decode(&buffer), Err(CorruptionKind::FieldLengths));
    }
}
