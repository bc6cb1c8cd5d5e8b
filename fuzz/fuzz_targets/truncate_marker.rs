//! Any bytes as a TRUNCATE marker: no panic on decode, and whatever decodes
//! is exactly the marker of the position it names.
#![no_main]

use chronolog::segment::truncate_marker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(position) = truncate_marker::decode(data) {
        assert_eq!(&truncate_marker::encode(position)[..], data, "a marker that decodes encodes back to its bytes");
    }
});
