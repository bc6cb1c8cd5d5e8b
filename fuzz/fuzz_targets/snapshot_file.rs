//! Any bytes as a snapshot file: no panic, no allocation beyond the input, and
//! whatever decodes encodes back to a file that decodes to the same snapshot.
#![no_main]

use chronolog::snapshot::file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((meta, payload)) = file::decode(data) else { return };
    assert_eq!(payload.end, data.len(), "the payload ends the file");
    let anchor = file::anchor_crc(data);
    let encoded = file::encode_anchored(&meta, anchor, &data[payload.clone()]);
    let (again, again_payload) = file::decode(&encoded).expect("re-encoded snapshot decodes");
    assert_eq!(again, meta);
    assert_eq!(file::anchor_crc(&encoded), anchor);
    assert_eq!(encoded[again_payload], data[payload]);
});
