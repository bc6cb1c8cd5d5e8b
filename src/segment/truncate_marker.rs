//! The `TRUNCATE` marker's bytes: written (durably) by `truncate_after` before
//! it removes anything, so that an open after a crash finishes the same cut.
//! Reading and writing the file is the log's (`log::truncation`); this module
//! only encodes and checks the 20 bytes (FORMAT.md, "TRUNCATE marker").
//!
//! ```text
//! 0   [u8; 8] magic "CHRNLTRC"
//! 8   u64     position: the last position kept
//! 16  u32     crc32 of bytes 0..16
//! ```

use byteorder::{ByteOrder, LittleEndian};

use crate::error::CorruptionKind;

/// Name of the marker file in a log directory.
pub const TRUNCATE_MARKER_FILE_NAME: &str = "TRUNCATE";
/// Magic number of the marker.
pub const TRUNCATE_MAGIC: [u8; 8] = *b"CHRNLTRC";
/// Offset of the position field.
pub const TRUNCATE_POSITION_OFFSET: usize = TRUNCATE_MAGIC.len();
/// Offset of the CRC.
pub const TRUNCATE_CRC_OFFSET: usize = TRUNCATE_POSITION_OFFSET + size_of::<u64>();
/// Size of the marker file: it is exactly this long.
pub const TRUNCATE_MARKER_SIZE: usize = TRUNCATE_CRC_OFFSET + size_of::<u32>();

const _: () = assert!(TRUNCATE_MARKER_SIZE == 20);

/// The marker's bytes for a cut after `position`.
pub fn encode(position: u64) -> [u8; TRUNCATE_MARKER_SIZE] {
    let mut bytes = [0u8; TRUNCATE_MARKER_SIZE];
    bytes[..TRUNCATE_POSITION_OFFSET].copy_from_slice(&TRUNCATE_MAGIC);
    LittleEndian::write_u64(&mut bytes[TRUNCATE_POSITION_OFFSET..TRUNCATE_CRC_OFFSET], position);
    let crc = crc32fast::hash(&bytes[..TRUNCATE_CRC_OFFSET]);
    LittleEndian::write_u32(&mut bytes[TRUNCATE_CRC_OFFSET..], crc);
    bytes
}

/// Checks a marker's bytes and returns the last position it keeps; on
/// failure, the offset of the fault and what it is. A marker of the wrong
/// size, magic or CRC is refused rather than guessed at: it names a cut.
pub fn decode(bytes: &[u8]) -> Result<u64, (u64, CorruptionKind)> {
    if bytes.len() != TRUNCATE_MARKER_SIZE {
        let kind = CorruptionKind::Truncated { needed: TRUNCATE_MARKER_SIZE as u64, available: bytes.len() as u64 };
        return Err((0, kind));
    }
    if bytes[..TRUNCATE_POSITION_OFFSET] != TRUNCATE_MAGIC {
        return Err((0, CorruptionKind::BadMagic));
    }
    let stored = LittleEndian::read_u32(&bytes[TRUNCATE_CRC_OFFSET..]);
    let computed = crc32fast::hash(&bytes[..TRUNCATE_CRC_OFFSET]);
    if stored != computed {
        return Err((TRUNCATE_CRC_OFFSET as u64, CorruptionKind::ChecksumMismatch { stored, computed }));
    }
    Ok(LittleEndian::read_u64(&bytes[TRUNCATE_POSITION_OFFSET..TRUNCATE_CRC_OFFSET]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_decodes_to_its_position() {
        for position in [0, 1, 41, u64::MAX] {
            assert_eq!(decode(&encode(position)), Ok(position));
        }
    }

    #[test]
    fn every_flipped_bit_and_every_wrong_length_is_refused() {
        let bytes = encode(1234);
        for bit in 0..TRUNCATE_MARKER_SIZE * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            let (offset, kind) = decode(&damaged).expect_err("a flipped bit");
            let expected_offset = if bit / 8 < TRUNCATE_POSITION_OFFSET { 0 } else { TRUNCATE_CRC_OFFSET as u64 };
            assert_eq!(offset, expected_offset, "bit {bit}: {kind:?}");
        }
        for length in [0, 19, 21, 40] {
            let mut resized = bytes.to_vec();
            resized.resize(length, 0);
            assert_eq!(
                decode(&resized),
                Err((0, CorruptionKind::Truncated { needed: 20, available: length as u64 })),
                "length {length}"
            );
        }
    }
}
