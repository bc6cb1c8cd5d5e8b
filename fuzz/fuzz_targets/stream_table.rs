//! Any bytes as a stream table: no panic on decode, lookups or iteration; in
//! a well-formed table every entry is found; and whatever decodes merges into
//! a table that decodes again.
#![no_main]

use chronolog::index::StreamTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Checked as the log checks a table, and also without its CRC, so that
    // the lookups meet structures the CRC would otherwise keep out.
    if let Ok(table) = StreamTable::decode(data.to_vec()) {
        check(&table);
    }
    if let Ok(table) = StreamTable::decode_unverified(data.to_vec()) {
        check(&table);
    }
});

fn check(table: &StreamTable) {
    let entries: Vec<(String, _)> = table.iter().map(|(name, state)| (name.to_owned(), state)).collect();
    // Every entry readable and in strictly increasing order (as a table the
    // log writes): the binary search must find each one.
    let well_formed = entries.len() == table.len() && entries.windows(2).all(|pair| pair[0].0 < pair[1].0);
    for (name, state) in &entries {
        let found = table.get(name);
        if well_formed {
            assert_eq!(found, Some(*state), "{name}");
        }
    }
    let _ = table.get("absent");
    let anchor = table.anchor_crc().unwrap_or(0);
    let merged = table.merged_with(std::iter::empty(), table.next_position(), anchor);
    let again = StreamTable::decode(merged).expect("a merged table decodes");
    assert_eq!(again.anchor_crc(), Some(anchor), "the anchor is kept");
}
