//! Any bytes as a stream table: no panic on decode, lookups or iteration, and
//! whatever decodes merges into a table that decodes again.
#![no_main]

use chronolog::index::StreamTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(table) = StreamTable::decode(data.to_vec()) else { return };
    let names: Vec<String> = table.iter().map(|(name, _)| name.to_owned()).collect();
    for name in &names {
        let _ = table.get(name);
    }
    let _ = table.get("absent");
    let merged = table.merged_with(std::iter::empty(), table.next_position());
    assert!(StreamTable::decode(merged).is_ok());
});
