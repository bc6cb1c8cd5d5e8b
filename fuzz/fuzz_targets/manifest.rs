//! Any bytes as a manifest: no panic and no allocation beyond the input's
//! size on decode, and whatever decodes encodes back to the same entries (and
//! to the same bytes, when it has this build's version).
#![no_main]

use chronolog::segment::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = manifest::decode(data) else { return };
    for entry in &entries {
        assert_eq!(entry.header.first_position + entry.footer.record_count - 1, entry.footer.last_position);
        let _ = entry.format_version();
    }
    let encoded = manifest::encode(entries.iter());
    if data[manifest::MANIFEST_VERSION_OFFSET..manifest::MANIFEST_RESERVED_OFFSET]
        == chronolog::segment::FORMAT_VERSION.to_le_bytes()
    {
        assert_eq!(encoded, data, "a manifest that decodes encodes back to its bytes");
    }
    assert_eq!(manifest::decode(&encoded), Ok(entries));
});
