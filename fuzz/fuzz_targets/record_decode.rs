//! Any bytes given to the record decoder and to the segment scanner: no panic,
//! no unbounded work, and a decoded record always lies inside the input.
#![no_main]

use chronolog::record::{self, Decoded};
use chronolog::segment::scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Record(found)) = record::decode(data) {
        assert!(found.encoded_length as usize <= data.len());
        assert_eq!(
            record::encoded_size(found.stream.len(), found.event_type.len(), found.metadata.len(), found.payload.len()),
            found.encoded_length as usize
        );
    }
    let _ = record::preceding_length(data, data.len());
    let first_position = data.first().map_or(0, |&b| u64::from(b));
    let outcome = scan(data, 0, data.len() as u64, first_position, 0, |found, offset| {
        assert!(offset as usize + found.encoded_length as usize <= data.len());
    });
    assert!(outcome.valid_end as usize <= data.len());
});
