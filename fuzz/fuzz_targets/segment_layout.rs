//! Any bytes as a segment header and footer: no panic; whatever decodes
//! encodes back to the same bytes (a header of an older readable version
//! encodes as the current version, with every other field the same).
#![no_main]

use chronolog::segment::layout::{SegmentFooter, SegmentHeader, FOOTER_SIZE, HEADER_SIZE, HEADER_VERSION_OFFSET};
use chronolog::segment::FORMAT_VERSION;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = SegmentHeader::decode(data) {
        let encoded = header.encode();
        let version = u32::from_le_bytes([
            data[HEADER_VERSION_OFFSET],
            data[HEADER_VERSION_OFFSET + 1],
            data[HEADER_VERSION_OFFSET + 2],
            data[HEADER_VERSION_OFFSET + 3],
        ]);
        if version == FORMAT_VERSION {
            assert_eq!(&encoded[..], &data[..HEADER_SIZE]);
        } else {
            assert_eq!(SegmentHeader::decode(&encoded).ok(), Some(header));
        }
        let footer_bytes = data.get(HEADER_SIZE..).unwrap_or(&[]);
        if let Ok(Some(footer)) = SegmentFooter::decode(footer_bytes, &header) {
            assert_eq!(&footer.encode()[..], &footer_bytes[..FOOTER_SIZE]);
            assert!(footer.last_position < u64::MAX);
        }
    }
});
