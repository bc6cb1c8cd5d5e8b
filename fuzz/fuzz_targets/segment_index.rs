//! Any bytes as a segment index file: no panic, no allocation beyond what the
//! input's size allows, and what decodes encodes back to the same bytes (an
//! index of an older readable version encodes as the current version, and
//! that encoding decodes to the same index).
#![no_main]

use chronolog::index::SegmentIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(data_end) = SegmentIndex::peek_data_end(data) else { return };
    let first_position = data.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let Ok(index) = SegmentIndex::decode(data, first_position, data_end) else { return };
    for entry in index.entries() {
        let _ = index.seek_position(entry.position);
        let _ = index.seek_timestamp(entry.timestamp_ns);
    }
    let encoded = index.encode();
    let version = data.get(8..12).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
    if version == chronolog::segment::FORMAT_VERSION {
        assert_eq!(encoded, data);
    } else {
        let again = SegmentIndex::decode(&encoded, first_position, data_end).expect("re-encoded index decodes");
        assert_eq!(again.encode(), encoded);
    }
});
