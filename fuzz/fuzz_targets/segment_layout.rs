//! Any bytes as a segment header and footer: no panic; whatever decodes
//! encodes back to the same bytes.
#![no_main]

use chronolog::segment::layout::{SegmentFooter, SegmentHeader, FOOTER_SIZE, HEADER_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = SegmentHeader::decode(data) {
        assert_eq!(&header.encode()[..], &data[..HEADER_SIZE]);
        let footer_bytes = data.get(HEADER_SIZE..).unwrap_or(&[]);
        if let Ok(Some(footer)) = SegmentFooter::decode(footer_bytes, &header) {
            assert_eq!(&footer.encode()[..], &footer_bytes[..FOOTER_SIZE]);
            assert!(footer.last_position < u64::MAX);
        }
    }
});
