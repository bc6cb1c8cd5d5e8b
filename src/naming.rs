//! File names of the log's per-segment files: the segment's first position as
//! 20 decimal digits (enough for any `u64`, and sorting as text sorts by
//! position), a dot, an extension.

/// `<first position, 20 digits>.<extension>`.
pub fn numbered(first_position: u64, extension: &str) -> String {
    format!("{first_position:020}.{extension}")
}

/// The first position in a name made by [`numbered`] with this extension.
pub fn parse_numbered(name: &str, extension: &str) -> Option<u64> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_others() {
        assert_eq!(numbered(42, "seg"), "00000000000000000042.seg");
        assert_eq!(parse_numbered("00000000000000000042.seg", "seg"), Some(42));
        assert_eq!(parse_numbered(&numbered(u64::MAX, "idx"), "idx"), Some(u64::MAX));
        for bad in ["42.seg", "00000000000000000042.idx", "0000000000000000004x.seg", "99999999999999999999.seg"] {
            assert_eq!(parse_numbered(bad, "seg"), None, "{bad}");
        }
    }
}
