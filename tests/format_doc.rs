//! The promise checked here: `FORMAT.md` and the code agree. Every byte table in
//! `FORMAT.md` (record, segment header and footer, stream table, TRUNCATE
//! marker) gives the offsets and sizes the code uses, the limits, flag bits,
//! capacities, magic numbers, format version and CRC variant it states are the
//! ones in the code, and the bytes the engine actually writes to disk can be
//! decoded with nothing but the tables of the document.
//!
//! The tables are parsed from the document: a heading this test expects that is
//! missing, a table that is missing or has other columns, a row that is missing
//! or unexpected, and a number that differs all fail with a message naming the
//! heading, the field and the constant.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chronolog::index::stream_table;
use chronolog::record::{self, Decoded, RecordHeader};
use chronolog::segment::layout;
use chronolog::storage::FaultyStorage;
use chronolog::{limits, CorruptionKind, Durability, Error, Log, LogOptions, NewEvent, RecoveryMode};

const FORMAT_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/FORMAT.md");

/// Size of the TRUNCATE marker. The code's `TRUNCATE_MARKER_SIZE` lives in the
/// private module `log::truncation`, so the number is written here; the marker
/// the code writes is checked against it in `truncate_marker_bytes_match_the_table`.
const TRUNCATE_MARKER_SIZE: usize = 20;
/// Magic number of the TRUNCATE marker (`TRUNCATE_MAGIC` is private too).
const TRUNCATE_MAGIC: [u8; 8] = *b"CHRNLTRC";

fn read_doc() -> String {
    fs::read_to_string(FORMAT_MD).unwrap_or_else(|error| panic!("cannot read {FORMAT_MD}: {error}"))
}

// ---------------------------------------------------------------------------
// Parsing FORMAT.md
// ---------------------------------------------------------------------------

/// The lines of the section under `heading` (exact line, e.g. `### Segment
/// header`), up to the next heading, without fenced code blocks (diagrams):
/// their lines are never taken for headings or tables.
fn section<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = doc.lines();
    if !lines.by_ref().any(|line| line.trim_end() == heading) {
        panic!("FORMAT.md has no heading `{heading}`: the test expects a table under it");
    }
    let mut body = Vec::new();
    let mut in_fence = false;
    for line in lines {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if in_fence {
            continue;
        } else if line.starts_with('#') {
            break;
        } else {
            body.push(line);
        }
    }
    body
}

/// Text with every run of whitespace made one space, to find sentences
/// whatever the line wrapping.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A markdown table: the cells of each row, backticks removed and trimmed.
struct Table {
    heading: String,
    rows: Vec<Vec<String>>,
}

/// The first table under `heading`, which must have exactly `columns`.
fn table(doc: &str, heading: &str, columns: &[&str]) -> Table {
    let lines = section(doc, heading);
    let table_lines: Vec<&str> = lines
        .iter()
        .skip_while(|line| !line.trim_start().starts_with('|'))
        .take_while(|line| line.trim_start().starts_with('|'))
        .copied()
        .collect();
    assert!(table_lines.len() >= 2, "FORMAT.md: no table under `{heading}` (expected columns {columns:?})");
    let split = |line: &str| -> Vec<String> {
        let line = line.trim();
        let inner = line.strip_prefix('|').unwrap_or(line);
        let inner = inner.strip_suffix('|').unwrap_or(inner);
        inner.split('|').map(|cell| cell.replace('`', "").split_whitespace().collect::<Vec<_>>().join(" ")).collect()
    };
    let header = split(table_lines[0]);
    assert_eq!(header, columns, "FORMAT.md: the table under `{heading}` has other columns than expected");
    assert!(
        split(table_lines[1]).iter().all(|cell| !cell.is_empty() && cell.chars().all(|c| c == '-' || c == ':')),
        "FORMAT.md: the table under `{heading}` has no separator line"
    );
    let rows: Vec<Vec<String>> = table_lines[2..].iter().map(|line| split(line)).collect();
    for row in &rows {
        assert_eq!(row.len(), columns.len(), "FORMAT.md: a row of the table under `{heading}` has {row:?}");
    }
    assert!(!rows.is_empty(), "FORMAT.md: the table under `{heading}` has no rows");
    Table { heading: heading.to_string(), rows }
}

/// What a cell of an `offset` or `size` column must say.
#[derive(Debug, Clone)]
enum Cell {
    /// A plain decimal integer equal to this constant (named for the message).
    Num(usize, &'static str),
    /// An expression, compared as text (its numbers come from constants too).
    Text(String),
}

/// `Cell::Num` of a constant, named after the expression that gives it.
macro_rules! num {
    ($value:expr) => {
        Cell::Num(($value) as usize, stringify!($value))
    };
}

fn text(value: impl Into<String>) -> Cell {
    Cell::Text(value.into())
}

/// One row of an `| offset | size | field | meaning |` table.
#[derive(Debug, Clone)]
struct FieldRow {
    offset: String,
    size: String,
    meaning: String,
}

const FIELD_COLUMNS: [&str; 4] = ["offset", "size", "field", "meaning"];

/// Checks a field table against `expected` (field, offset, size), in order: the
/// same fields, none missing, none added, each offset and size matching.
/// Returns the rows by field name.
fn check_field_table(doc: &str, heading: &str, expected: &[(&str, Cell, Cell)]) -> BTreeMap<String, FieldRow> {
    let table = table(doc, heading, &FIELD_COLUMNS);
    let found: Vec<&str> = table.rows.iter().map(|row| row[2].as_str()).collect();
    let wanted: Vec<&str> = expected.iter().map(|(field, _, _)| *field).collect();
    for field in &wanted {
        assert!(found.contains(field), "FORMAT.md, table under `{heading}`: field `{field}` is missing");
    }
    for field in &found {
        assert!(wanted.contains(field), "FORMAT.md, table under `{heading}`: unexpected field `{field}`");
    }
    assert_eq!(found, wanted, "FORMAT.md, table under `{heading}`: fields are not in the order of the layout");
    let mut rows = BTreeMap::new();
    for (row, (field, offset, size)) in table.rows.iter().zip(expected) {
        check_cell(&table, field, "offset", &row[0], offset);
        check_cell(&table, field, "size", &row[1], size);
        rows.insert(
            (*field).to_string(),
            FieldRow { offset: row[0].clone(), size: row[1].clone(), meaning: row[3].clone() },
        );
    }
    rows
}

fn check_cell(table: &Table, field: &str, column: &str, cell: &str, expected: &Cell) {
    let heading = &table.heading;
    match expected {
        Cell::Num(value, constant) => {
            let stated: usize = cell.parse().unwrap_or_else(|_| {
                panic!(
                    "FORMAT.md, table under `{heading}`, field `{field}`: {column} `{cell}` is not a plain \
                     decimal integer (the code has {constant} = {value})"
                )
            });
            assert_eq!(
                stated, *value,
                "FORMAT.md, table under `{heading}`, field `{field}`: {column} is {stated} but the code has \
                 {constant} = {value}"
            );
        }
        Cell::Text(text) => {
            assert_eq!(cell, text, "FORMAT.md, table under `{heading}`, field `{field}`: {column} should read `{text}`")
        }
    }
}

/// For a table of fixed fields: offsets follow each other without a gap from 0,
/// and the sizes add up to `total`.
fn check_contiguous(heading: &str, rows: &BTreeMap<String, FieldRow>, total: (usize, &str)) {
    let mut spans: Vec<(usize, usize, &str)> = rows
        .iter()
        .map(|(field, row)| {
            let offset = row.offset.parse().unwrap_or_else(|_| panic!("`{heading}`, `{field}`: offset not numeric"));
            let size = row.size.parse().unwrap_or_else(|_| panic!("`{heading}`, `{field}`: size not numeric"));
            (offset, size, field.as_str())
        })
        .collect();
    spans.sort_unstable();
    let mut next = 0;
    for (offset, size, field) in spans {
        assert_eq!(offset, next, "FORMAT.md, table under `{heading}`: field `{field}` leaves a gap or overlaps");
        next = offset + size;
    }
    assert_eq!(
        next, total.0,
        "FORMAT.md, table under `{heading}`: the fields add up to {next} bytes but the code has {} = {}",
        total.1, total.0
    );
}

/// `| name | value | meaning |` tables of named constants: every constant has a
/// row whose value matches, and no row names an unknown constant.
fn check_constant_table(doc: &str, heading: &str, expected: &[(&str, u64)]) {
    let table = table(doc, heading, &["limit", "value", "meaning"]);
    for (name, value) in expected {
        let row = table
            .rows
            .iter()
            .find(|row| row[0] == *name)
            .unwrap_or_else(|| panic!("FORMAT.md, table under `{heading}`: no row for `{name}`"));
        let stated: u64 = row[1].parse().unwrap_or_else(|_| {
            panic!("FORMAT.md, table under `{heading}`, `{name}`: value `{}` is not a plain integer", row[1])
        });
        assert_eq!(stated, *value, "FORMAT.md, table under `{heading}`: `{name}` is {stated} but the code has {value}");
    }
    for row in &table.rows {
        assert!(
            expected.iter().any(|(name, _)| row[0] == *name),
            "FORMAT.md, table under `{heading}`: unexpected row `{}`",
            row[0]
        );
    }
}

/// The magic row must give the magic as ASCII and as hex bytes.
fn check_magic(heading: &str, row: &FieldRow, magic: &[u8; 8]) {
    let ascii = format!("\"{}\"", std::str::from_utf8(magic).expect("magic numbers are ASCII"));
    let hex = magic.iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(" ");
    assert!(
        row.meaning.contains(&ascii),
        "FORMAT.md, table under `{heading}`, field `magic`: should say {ascii}, says `{}`",
        row.meaning
    );
    assert!(
        row.meaning.contains(&hex),
        "FORMAT.md, table under `{heading}`, field `magic`: should give the bytes {hex}, says `{}`",
        row.meaning
    );
}

/// Offset and size of a field as the document states them (numbers only).
fn span(rows: &BTreeMap<String, FieldRow>, field: &str) -> (usize, usize) {
    let row = &rows[field];
    let offset = row.offset.parse().unwrap_or_else(|_| panic!("offset of `{field}` is not a number"));
    let size = row.size.parse().unwrap_or_else(|_| panic!("size of `{field}` is not a number"));
    (offset, size)
}

/// Size of a field as the document states it (a number).
fn size_of_field(rows: &BTreeMap<String, FieldRow>, field: &str) -> usize {
    rows[field].size.parse().unwrap_or_else(|_| panic!("size of `{field}` is not a number"))
}

/// The field tables of the document, checked against the constants.
struct Layouts {
    record: BTreeMap<String, FieldRow>,
    segment_header: BTreeMap<String, FieldRow>,
    segment_footer: BTreeMap<String, FieldRow>,
    table_header: BTreeMap<String, FieldRow>,
    table_entry: BTreeMap<String, FieldRow>,
    truncate: BTreeMap<String, FieldRow>,
}

fn record_header_table(doc: &str) -> BTreeMap<String, FieldRow> {
    use record::*;
    let rows = check_field_table(
        doc,
        "### Record header",
        &[
            ("crc", num!(CRC_OFFSET), num!(LENGTH_OFFSET - CRC_OFFSET)),
            ("length", num!(LENGTH_OFFSET), num!(POSITION_OFFSET - LENGTH_OFFSET)),
            ("position", num!(POSITION_OFFSET), num!(TIMESTAMP_OFFSET - POSITION_OFFSET)),
            ("timestamp_ns", num!(TIMESTAMP_OFFSET), num!(STREAM_VERSION_OFFSET - TIMESTAMP_OFFSET)),
            ("stream_version", num!(STREAM_VERSION_OFFSET), num!(METADATA_LENGTH_OFFSET - STREAM_VERSION_OFFSET)),
            ("metadata_length", num!(METADATA_LENGTH_OFFSET), num!(STREAM_LENGTH_OFFSET - METADATA_LENGTH_OFFSET)),
            ("stream_length", num!(STREAM_LENGTH_OFFSET), num!(TYPE_LENGTH_OFFSET - STREAM_LENGTH_OFFSET)),
            ("type_length", num!(TYPE_LENGTH_OFFSET), num!(FLAGS_OFFSET - TYPE_LENGTH_OFFSET)),
            ("flags", num!(FLAGS_OFFSET), num!(HEADER_SIZE - FLAGS_OFFSET)),
        ],
    );
    check_contiguous("### Record header", &rows, (HEADER_SIZE, "record::HEADER_SIZE"));
    rows
}

fn layouts(doc: &str) -> Layouts {
    let record = record_header_table(doc);

    let h = record::HEADER_SIZE;
    check_field_table(
        doc,
        "### Record body",
        &[
            ("stream", num!(record::HEADER_SIZE), text("stream_length")),
            ("event_type", text(format!("{h} + stream_length")), text("type_length")),
            ("metadata", text(format!("{h} + stream_length + type_length")), text("metadata_length")),
            (
                "payload",
                text(format!("{h} + stream_length + type_length + metadata_length")),
                text(format!("length - {} - stream_length - type_length - metadata_length", record::RECORD_OVERHEAD)),
            ),
            ("length_copy", text(format!("length - {}", record::TRAILER_SIZE)), num!(record::TRAILER_SIZE)),
        ],
    );

    let (hs, fs) = (layout::HEADER_SIZE, layout::FOOTER_SIZE);
    check_field_table(
        doc,
        "### Segment file layout",
        &[
            ("header", num!(0), num!(layout::HEADER_SIZE)),
            ("records", num!(layout::HEADER_SIZE), text(format!("data_end - {hs}"))),
            ("padding", text("data_end"), text(format!("capacity - {fs} - data_end"))),
            ("footer", text(format!("capacity - {fs}")), num!(layout::FOOTER_SIZE)),
        ],
    );

    let segment_header = {
        use layout::*;
        let reserved = HEADER_CAPACITY_OFFSET + size_of::<u64>();
        check_field_table(
            doc,
            "### Segment header",
            &[
                ("magic", num!(HEADER_MAGIC_OFFSET), num!(SEGMENT_MAGIC.len())),
                ("format_version", num!(HEADER_VERSION_OFFSET), num!(HEADER_SIZE_OFFSET - HEADER_VERSION_OFFSET)),
                ("header_size", num!(HEADER_SIZE_OFFSET), num!(HEADER_FIRST_POSITION_OFFSET - HEADER_SIZE_OFFSET)),
                (
                    "first_position",
                    num!(HEADER_FIRST_POSITION_OFFSET),
                    num!(HEADER_CAPACITY_OFFSET - HEADER_FIRST_POSITION_OFFSET),
                ),
                ("capacity", num!(HEADER_CAPACITY_OFFSET), num!(size_of::<u64>())),
                ("reserved", num!(reserved), num!(HEADER_CRC_OFFSET - reserved)),
                ("crc", num!(HEADER_CRC_OFFSET), num!(HEADER_SIZE - HEADER_CRC_OFFSET)),
            ],
        )
    };
    check_contiguous("### Segment header", &segment_header, (layout::HEADER_SIZE, "segment::layout::HEADER_SIZE"));
    check_magic("### Segment header", &segment_header["magic"], &layout::SEGMENT_MAGIC);

    let segment_footer = {
        use layout::*;
        let reserved = FOOTER_DATA_END_OFFSET + size_of::<u64>();
        check_field_table(
            doc,
            "### Segment footer",
            &[
                ("magic", num!(FOOTER_MAGIC_OFFSET), num!(FOOTER_MAGIC.len())),
                (
                    "last_position",
                    num!(FOOTER_LAST_POSITION_OFFSET),
                    num!(FOOTER_RECORD_COUNT_OFFSET - FOOTER_LAST_POSITION_OFFSET),
                ),
                (
                    "record_count",
                    num!(FOOTER_RECORD_COUNT_OFFSET),
                    num!(FOOTER_MIN_TIMESTAMP_OFFSET - FOOTER_RECORD_COUNT_OFFSET),
                ),
                (
                    "min_timestamp_ns",
                    num!(FOOTER_MIN_TIMESTAMP_OFFSET),
                    num!(FOOTER_MAX_TIMESTAMP_OFFSET - FOOTER_MIN_TIMESTAMP_OFFSET),
                ),
                (
                    "max_timestamp_ns",
                    num!(FOOTER_MAX_TIMESTAMP_OFFSET),
                    num!(FOOTER_DATA_END_OFFSET - FOOTER_MAX_TIMESTAMP_OFFSET),
                ),
                ("data_end", num!(FOOTER_DATA_END_OFFSET), num!(size_of::<u64>())),
                ("reserved", num!(reserved), num!(FOOTER_CRC_OFFSET - reserved)),
                ("crc", num!(FOOTER_CRC_OFFSET), num!(FOOTER_SIZE - FOOTER_CRC_OFFSET)),
            ],
        )
    };
    check_contiguous("### Segment footer", &segment_footer, (layout::FOOTER_SIZE, "segment::layout::FOOTER_SIZE"));
    check_magic("### Segment footer", &segment_footer["magic"], &layout::FOOTER_MAGIC);

    let table_header = {
        use stream_table::*;
        let reserved = VERSION_OFFSET + size_of::<u32>();
        check_field_table(
            doc,
            "### Stream table header",
            &[
                ("magic", num!(0), num!(STREAM_TABLE_MAGIC.len())),
                ("format_version", num!(VERSION_OFFSET), num!(size_of::<u32>())),
                ("reserved", num!(reserved), num!(ENTRY_COUNT_OFFSET - reserved)),
                ("entry_count", num!(ENTRY_COUNT_OFFSET), num!(NEXT_POSITION_OFFSET - ENTRY_COUNT_OFFSET)),
                ("next_position", num!(NEXT_POSITION_OFFSET), num!(TABLE_HEADER_SIZE - NEXT_POSITION_OFFSET)),
            ],
        )
    };
    check_contiguous(
        "### Stream table header",
        &table_header,
        (stream_table::TABLE_HEADER_SIZE, "stream_table::TABLE_HEADER_SIZE"),
    );
    check_magic("### Stream table header", &table_header["magic"], &stream_table::STREAM_TABLE_MAGIC);

    let th = stream_table::TABLE_HEADER_SIZE;
    check_field_table(
        doc,
        "### Stream table body",
        &[
            ("header", num!(0), num!(stream_table::TABLE_HEADER_SIZE)),
            ("entry_offsets", num!(stream_table::TABLE_HEADER_SIZE), text("8 * N")),
            (
                "entries",
                text(format!("{th} + 8 * N")),
                text(format!("{} * N + name_bytes", stream_table::ENTRY_FIXED_SIZE)),
            ),
            (
                "crc",
                text(format!("file_length - {}", stream_table::TABLE_CRC_SIZE)),
                num!(stream_table::TABLE_CRC_SIZE),
            ),
        ],
    );

    let table_entry = check_field_table(
        doc,
        "### Stream table entry",
        &[
            ("name_length", num!(0), num!(size_of::<u16>())),
            ("name", num!(size_of::<u16>()), text("name_length")),
            ("last_version", text(format!("{} + name_length", size_of::<u16>())), num!(size_of::<u64>())),
            ("last_position", text(format!("{} + name_length", size_of::<u16>() + 8)), num!(size_of::<u64>())),
        ],
    );
    let fixed: usize =
        ["name_length", "last_version", "last_position"].iter().map(|field| size_of_field(&table_entry, field)).sum();
    assert_eq!(
        fixed,
        stream_table::ENTRY_FIXED_SIZE,
        "FORMAT.md, table under `### Stream table entry`: the fixed fields add up to {fixed} bytes but the code has \
         stream_table::ENTRY_FIXED_SIZE = {}",
        stream_table::ENTRY_FIXED_SIZE
    );

    let truncate = check_field_table(
        doc,
        "## TRUNCATE marker",
        &[
            ("magic", num!(0), num!(TRUNCATE_MAGIC.len())),
            ("position", num!(TRUNCATE_MAGIC.len()), num!(size_of::<u64>())),
            ("crc", num!(TRUNCATE_MAGIC.len() + size_of::<u64>()), num!(size_of::<u32>())),
        ],
    );
    check_contiguous("## TRUNCATE marker", &truncate, (TRUNCATE_MARKER_SIZE, "TRUNCATE_MARKER_SIZE (private; 20)"));
    check_magic("## TRUNCATE marker", &truncate["magic"], &TRUNCATE_MAGIC);

    Layouts { record, segment_header, segment_footer, table_header, table_entry, truncate }
}

// ---------------------------------------------------------------------------
// The document against the constants
// ---------------------------------------------------------------------------

#[test]
fn byte_tables_match_the_constants() {
    let doc = read_doc();
    let layouts = layouts(&doc);
    assert_eq!(record::RECORD_OVERHEAD, record::HEADER_SIZE + record::TRAILER_SIZE);
    // Sizes the prose states beside the tables.
    let data_region_overhead = layout::HEADER_SIZE + layout::FOOTER_SIZE;
    let stated = [
        format!("every record costs {} bytes", record::RECORD_OVERHEAD),
        format!("the encoded size, from {}", record::RECORD_OVERHEAD),
        format!("The fixed header is {} bytes and the trailer {}", record::HEADER_SIZE, record::TRAILER_SIZE),
        format!("Records start at offset {}", layout::HEADER_SIZE),
        format!("The footer is at offset `capacity - {}`", layout::FOOTER_SIZE),
        format!("holds at most `capacity - {data_region_overhead}` bytes of records"),
        format!("larger than the data region of a segment (`capacity - {data_region_overhead}` bytes"),
        format!("An entry takes {} bytes plus its name", stream_table::ENTRY_FIXED_SIZE),
        format!("The file is exactly {TRUNCATE_MARKER_SIZE} bytes"),
    ];
    let flat_doc = flat(&doc);
    for sentence in stated {
        assert!(flat_doc.contains(&flat(&sentence)), "FORMAT.md should say `{sentence}`");
    }
    let header_size = &layouts.segment_header["header_size"].meaning;
    assert!(
        header_size.ends_with(&format!(", {}", layout::HEADER_SIZE)),
        "FORMAT.md, `### Segment header`: header_size should be {}, says `{header_size}`",
        layout::HEADER_SIZE
    );
}

#[test]
fn limits_flags_and_capacities_match_the_constants() {
    let doc = read_doc();
    check_constant_table(
        &doc,
        "### Record limits",
        &[
            ("RECORD_SIZE_BYTES_MAX", limits::RECORD_SIZE_BYTES_MAX as u64),
            ("STREAM_NAME_BYTES_MAX", limits::STREAM_NAME_BYTES_MAX as u64),
            ("EVENT_TYPE_BYTES_MAX", limits::EVENT_TYPE_BYTES_MAX as u64),
        ],
    );
    check_constant_table(
        &doc,
        "### Segment capacity",
        &[
            ("SEGMENT_CAPACITY_BYTES_MIN", layout::SEGMENT_CAPACITY_BYTES_MIN),
            ("SEGMENT_CAPACITY_BYTES_MAX", layout::SEGMENT_CAPACITY_BYTES_MAX),
            ("SEGMENT_CAPACITY_BYTES_DEFAULT", chronolog::log::SEGMENT_CAPACITY_BYTES_DEFAULT),
        ],
    );

    let flags = table(&doc, "### Record flags", &["bit", "mask", "name", "meaning"]);
    let mut covered = 0u8;
    for row in &flags.rows {
        let mask: u8 = row[1].parse().unwrap_or_else(|_| {
            panic!("FORMAT.md, `### Record flags`: mask `{}` of `{}` is not a number", row[1], row[2])
        });
        assert_eq!(covered & mask, 0, "FORMAT.md, `### Record flags`: `{}` overlaps another row", row[2]);
        covered |= mask;
        if let Ok(bit) = row[0].parse::<u32>() {
            assert_eq!(1u8 << bit, mask, "FORMAT.md, `### Record flags`: bit {bit} of `{}` has mask {mask}", row[2]);
        }
    }
    assert_eq!(covered, u8::MAX, "FORMAT.md, `### Record flags`: the rows do not cover the 8 bits of the flag byte");
    let batch_end = flags
        .rows
        .iter()
        .find(|row| row[2] == "FLAG_BATCH_END")
        .unwrap_or_else(|| panic!("FORMAT.md, `### Record flags`: no row for `FLAG_BATCH_END`"));
    assert_eq!(
        batch_end[1],
        record::FLAG_BATCH_END.to_string(),
        "FORMAT.md, `### Record flags`: mask of `FLAG_BATCH_END` differs from record::FLAG_BATCH_END"
    );
    let reserved = flags.rows.iter().find(|row| row[2] == "reserved").expect("a `reserved` row in `### Record flags`");
    assert_eq!(reserved[1], (!record::FLAG_BATCH_END).to_string(), "reserved flag bits in FORMAT.md");
    // Reserved bits really are rejected.
    let mut bytes = Vec::new();
    let header = RecordHeader { position: 0, timestamp_ns: 1, stream_version: 0, flags: !record::FLAG_BATCH_END };
    record::encode_into(&mut bytes, &header, "s", "t", b"", b"p");
    assert!(matches!(record::decode(&bytes), Err(CorruptionKind::UnknownFlags { .. })));
}

#[test]
fn version_magic_names_and_crc_variant_match_the_code() {
    let doc = read_doc();
    let version = layout::FORMAT_VERSION;
    assert_eq!(chronolog::segment::FORMAT_VERSION, version);
    let sentence = format!("The current format version is {version}.");
    assert!(doc.contains(&sentence), "FORMAT.md should say `{sentence}` (layout::FORMAT_VERSION = {version})");
    for heading in ["### Segment header", "### Stream table header"] {
        let table = table(&doc, heading, &FIELD_COLUMNS);
        let row = table.rows.iter().find(|row| row[2] == "format_version").expect("a format_version row");
        assert!(
            row[3].contains(&format!("currently {version}")),
            "FORMAT.md, `{heading}`: format_version should say `currently {version}`"
        );
    }
    let versions = table(&doc, "## Version changes", &["version", "changes"]);
    let newest = versions
        .rows
        .iter()
        .map(|row| row[0].parse::<u32>().unwrap_or_else(|_| panic!("`## Version changes`: version `{}`", row[0])))
        .max();
    assert_eq!(newest, Some(version), "FORMAT.md, `## Version changes`: newest version differs from FORMAT_VERSION");

    // The four magic numbers are distinct, and each is spelt out in the document.
    let magics = [layout::SEGMENT_MAGIC, layout::FOOTER_MAGIC, stream_table::STREAM_TABLE_MAGIC, TRUNCATE_MAGIC];
    for (index, magic) in magics.iter().enumerate() {
        assert!(magics[..index].iter().all(|other| other != magic), "magic numbers must be distinct");
        let ascii = std::str::from_utf8(magic).expect("ASCII magic");
        assert!(doc.contains(&format!("\"{ascii}\"")), "FORMAT.md does not mention the magic {ascii:?}");
    }

    // File names.
    for name in [
        chronolog::segment::file_name(0),
        stream_table::file_name(0),
        chronolog::segment::file_name(16),
        stream_table::file_name(16),
    ] {
        assert!(doc.contains(&name), "FORMAT.md should show the file name `{name}`");
    }
    assert_eq!(chronolog::segment::parse_file_name("00000000000000000016.seg"), Some(16));
    assert_eq!(stream_table::parse_file_name("00000000000000000016.streams"), Some(16));
    assert_eq!(chronolog::segment::parse_file_name("16.seg"), None, "names are exactly 20 digits");
    let files = table(&doc, "## Files in a log directory", &["name", "kind", "written by"]);
    for name in ["LOCK", "TRUNCATE", "salvage/", "*.tmp"] {
        assert!(files.rows.iter().any(|row| row[0] == name), "`## Files in a log directory` lists no `{name}`");
    }

    // The CRC variant: crc32fast is CRC-32/ISO-HDLC, whose check value is stated.
    let check = crc32fast::hash(b"123456789");
    let stated = format!("check value `{check:#010X}`").replace("0X", "0x");
    assert!(doc.contains(&stated), "FORMAT.md should state the CRC {stated} (crc32fast gives {check:#010x})");
    assert_eq!(check, 0xCBF4_3926, "crc32fast is no longer CRC-32/ISO-HDLC");
}

// ---------------------------------------------------------------------------
// The document against the bytes the engine writes
// ---------------------------------------------------------------------------

fn u64_at(bytes: &[u8], (offset, size): (usize, usize)) -> u64 {
    let mut buffer = [0u8; 8];
    buffer[..size].copy_from_slice(&bytes[offset..offset + size]);
    u64::from_le_bytes(buffer)
}

fn field(bytes: &[u8], rows: &BTreeMap<String, FieldRow>, name: &str) -> u64 {
    u64_at(bytes, span(rows, name))
}

fn slice<'a>(bytes: &'a [u8], rows: &BTreeMap<String, FieldRow>, name: &str) -> &'a [u8] {
    let (offset, size) = span(rows, name);
    &bytes[offset..offset + size]
}

/// A record as decoded with the document's tables only.
#[derive(Debug)]
struct DocRecord {
    length: usize,
    position: u64,
    timestamp_ns: u64,
    stream_version: u64,
    flags: u8,
    stream: String,
    event_type: String,
    metadata: Vec<u8>,
    payload: Vec<u8>,
}

/// Decodes the record at the start of `bytes` using only FORMAT.md's offsets,
/// and checks its CRC and trailer as the document describes them.
fn decode_with_doc(bytes: &[u8], rows: &BTreeMap<String, FieldRow>) -> DocRecord {
    let length = field(bytes, rows, "length") as usize;
    let (_, flags_size) = span(rows, "flags");
    let header_size: usize = rows.keys().map(|name| span(rows, name).1).sum();
    let trailer_size = 4;
    assert_eq!(flags_size, 1);
    let record = &bytes[..length];
    let crc_end = span(rows, "crc").0 + span(rows, "crc").1;
    assert_eq!(
        field(record, rows, "crc"),
        u64::from(crc32fast::hash(&record[crc_end..])),
        "the record CRC does not cover bytes {crc_end}..length as FORMAT.md says"
    );
    assert_eq!(
        u64_at(record, (length - trailer_size, trailer_size)) as usize,
        length,
        "the last {trailer_size} bytes of a record are not the copy of its length"
    );
    let stream_length = field(record, rows, "stream_length") as usize;
    let type_length = field(record, rows, "type_length") as usize;
    let metadata_length = field(record, rows, "metadata_length") as usize;
    let stream_start = header_size;
    let type_start = stream_start + stream_length;
    let metadata_start = type_start + type_length;
    let payload_start = metadata_start + metadata_length;
    DocRecord {
        length,
        position: field(record, rows, "position"),
        timestamp_ns: field(record, rows, "timestamp_ns"),
        stream_version: field(record, rows, "stream_version"),
        flags: field(record, rows, "flags") as u8,
        stream: String::from_utf8(record[stream_start..type_start].to_vec()).expect("UTF-8 stream"),
        event_type: String::from_utf8(record[type_start..metadata_start].to_vec()).expect("UTF-8 type"),
        metadata: record[metadata_start..payload_start].to_vec(),
        payload: record[payload_start..length - trailer_size].to_vec(),
    }
}

fn file_names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(directory)
        .expect("list directory")
        .map(|entry| entry.expect("directory entry").file_name().into_string().expect("UTF-8 name"))
        .collect();
    names.sort();
    names
}

#[test]
fn first_record_and_segment_header_match_the_tables() {
    let layouts = layouts(&read_doc());
    let directory = tempfile::tempdir().expect("tempdir");
    let log = Log::open(directory.path(), LogOptions::default()).expect("open");
    let appended = log.append(&NewEvent::new("s", "t", b"p")).expect("append");
    assert_eq!(file_names(directory.path()), ["00000000000000000000.seg", "LOCK"]);
    assert_eq!(fs::metadata(directory.path().join("LOCK")).expect("LOCK").len(), 0, "LOCK is an empty file");

    let path = directory.path().join("00000000000000000000.seg");
    let bytes = fs::read(&path).expect("read segment");
    let header = &layouts.segment_header;
    // The documented magic is what the file starts with.
    assert_eq!(&bytes[..8], b"CHRNLSEG");
    assert_eq!(slice(&bytes, header, "magic"), layout::SEGMENT_MAGIC);
    assert_eq!(field(&bytes, header, "format_version"), u64::from(layout::FORMAT_VERSION));
    let header_size = field(&bytes, header, "header_size") as usize;
    assert_eq!(header_size, layout::HEADER_SIZE, "the header_size field");
    assert_eq!(field(&bytes, header, "first_position"), 0);
    let capacity = field(&bytes, header, "capacity");
    assert_eq!(capacity, chronolog::log::SEGMENT_CAPACITY_BYTES_DEFAULT, "capacity field");
    assert_eq!(bytes.len() as u64, capacity, "a segment is allocated to its capacity when created");
    assert!(slice(&bytes, header, "reserved").iter().all(|&b| b == 0), "reserved header bytes are zero");
    let (crc_offset, _) = span(header, "crc");
    assert_eq!(field(&bytes, header, "crc"), u64::from(crc32fast::hash(&bytes[..crc_offset])), "header CRC coverage");

    // The first record starts right after the header, with the documented length.
    let record = decode_with_doc(&bytes[header_size..], &layouts.record);
    let expected_length = 40 + "s".len() + "t".len() + b"p".len() + 4;
    assert_eq!(record.length, expected_length, "length of the first record");
    assert_eq!(record.length, record::encoded_size(1, 1, 0, 1));
    assert_eq!(record.position, 0);
    assert_eq!(record.timestamp_ns, appended.timestamp_ns);
    assert_eq!(record.stream_version, 0);
    assert_eq!(record.flags, record::FLAG_BATCH_END);
    assert_eq!((record.stream.as_str(), record.event_type.as_str()), ("s", "t"));
    assert_eq!((record.metadata.as_slice(), record.payload.as_slice()), (&b""[..], &b"p"[..]));
    // After it, zeros up to the end of the file: padding and an unsealed footer.
    let data_end = header_size + record.length;
    assert!(bytes[data_end..].iter().all(|&b| b == 0), "bytes after the last record are zero");
    // Zero where a header would be is the end, as the document says.
    assert_eq!(record::decode(&bytes[data_end..data_end + 64]), Ok(Decoded::End));
}

#[test]
fn batch_framing_matches_the_flags_table() {
    let layouts = layouts(&read_doc());
    let directory = tempfile::tempdir().expect("tempdir");
    let options = LogOptions::default().segment_capacity_bytes(64 * 1024).durability(Durability::None);
    let log = Log::open(directory.path(), options).expect("open");
    log.append_batch(&[
        NewEvent::new("cart-1", "ItemAdded", b"apple").with_metadata(b"{\"user\":1}"),
        NewEvent::new("cart-2", "ItemAdded", b"pear"),
        NewEvent::new("cart-1", "CheckedOut", b""),
    ])
    .expect("append batch");
    log.sync().expect("sync");
    let bytes = fs::read(directory.path().join("00000000000000000000.seg")).expect("read");
    let mut offset = layout::HEADER_SIZE;
    let mut records = Vec::new();
    for _ in 0..3 {
        let record = decode_with_doc(&bytes[offset..], &layouts.record);
        offset += record.length;
        records.push(record);
    }
    let flags: Vec<u8> = records.iter().map(|r| r.flags).collect();
    assert_eq!(flags, [0, 0, record::FLAG_BATCH_END], "only the last record of a batch has FLAG_BATCH_END");
    let positions: Vec<u64> = records.iter().map(|r| r.position).collect();
    assert_eq!(positions, [0, 1, 2]);
    let versions: Vec<u64> = records.iter().map(|r| r.stream_version).collect();
    assert_eq!(versions, [0, 0, 1]);
    assert_eq!(records[0].metadata, b"{\"user\":1}");
    assert_eq!(records[2].payload, b"");
    assert!(records.windows(2).all(|pair| pair[0].timestamp_ns <= pair[1].timestamp_ns));
    // No gap between records, and zeros right after the batch.
    assert!(bytes[offset..].iter().all(|&b| b == 0));
}

#[test]
fn sealed_segment_footer_and_stream_table_match_the_tables() {
    let layouts = layouts(&read_doc());
    let directory = tempfile::tempdir().expect("tempdir");
    let capacity = layout::SEGMENT_CAPACITY_BYTES_MIN;
    let options = LogOptions::default().segment_capacity_bytes(capacity).durability(Durability::None);
    let log = Log::open(directory.path(), options).expect("open");
    let streams = ["order-7", "account-1", "zebra", "account-10"];
    let mut appended = Vec::new();
    while !directory.path().join("00000000000000000000.streams").exists() {
        let index = appended.len();
        let event = NewEvent::new(streams[index % streams.len()], "Happened", &[7u8; 300]);
        appended.push(log.append(&event).expect("append"));
    }
    let next = appended.last().expect("appended").position;
    assert_eq!(
        file_names(directory.path()),
        [
            "00000000000000000000.seg".to_string(),
            "00000000000000000000.streams".into(),
            chronolog::segment::file_name(next),
            "LOCK".into()
        ]
    );

    // The footer, at capacity - 64, read with the document's offsets.
    let bytes = fs::read(directory.path().join("00000000000000000000.seg")).expect("read");
    assert_eq!(bytes.len() as u64, capacity);
    let footer_bytes = &bytes[capacity as usize - 64..];
    let footer = &layouts.segment_footer;
    assert_eq!(slice(footer_bytes, footer, "magic"), b"CHRNLEND");
    assert_eq!(field(footer_bytes, footer, "last_position"), next - 1);
    assert_eq!(field(footer_bytes, footer, "record_count"), next);
    assert_eq!(field(footer_bytes, footer, "min_timestamp_ns"), appended[0].timestamp_ns);
    assert_eq!(field(footer_bytes, footer, "max_timestamp_ns"), appended[next as usize - 1].timestamp_ns);
    let (crc_offset, _) = span(footer, "crc");
    assert_eq!(
        field(footer_bytes, footer, "crc"),
        u64::from(crc32fast::hash(&footer_bytes[..crc_offset])),
        "footer CRC coverage"
    );
    assert!(slice(footer_bytes, footer, "reserved").iter().all(|&b| b == 0));
    // data_end is where the walk over the records, by their lengths, ends.
    let mut offset = span(&layouts.segment_header, "crc").0 + 4;
    let mut last_versions: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for position in 0..next {
        let record = decode_with_doc(&bytes[offset..], &layouts.record);
        assert_eq!(record.position, position);
        last_versions.insert(record.stream.clone(), (record.stream_version, record.position));
        offset += record.length;
    }
    assert_eq!(field(footer_bytes, footer, "data_end"), offset as u64, "data_end");
    assert!(bytes[offset..capacity as usize - 64].iter().all(|&b| b == 0), "padding is zero");

    // The stream table of the sealed segment, read with the document's offsets.
    let table_bytes = fs::read(directory.path().join("00000000000000000000.streams")).expect("read table");
    let header = &layouts.table_header;
    assert_eq!(slice(&table_bytes, header, "magic"), b"CHRNLSTR");
    assert_eq!(field(&table_bytes, header, "format_version"), u64::from(layout::FORMAT_VERSION));
    assert_eq!(field(&table_bytes, header, "reserved"), 0);
    assert_eq!(field(&table_bytes, header, "next_position"), next, "covers every position of the sealed segment");
    let count = field(&table_bytes, header, "entry_count") as usize;
    assert_eq!(count, last_versions.len());
    let crc_at = table_bytes.len() - 4;
    assert_eq!(
        u64_at(&table_bytes, (crc_at, 4)),
        u64::from(crc32fast::hash(&table_bytes[..crc_at])),
        "the stream table CRC covers every byte before it"
    );
    let offsets_start: usize = header.keys().map(|name| span(header, name).1).sum();
    let entry = &layouts.table_entry;
    let mut expected_start = offsets_start + 8 * count;
    let mut names = Vec::new();
    for index in 0..count {
        let start = u64_at(&table_bytes, (offsets_start + 8 * index, 8)) as usize;
        assert_eq!(start, expected_start, "entries follow the offset array back to back");
        let entry_bytes = &table_bytes[start..];
        let name_length = field(entry_bytes, entry, "name_length") as usize;
        let name_start = span(entry, "name_length").1;
        let name = std::str::from_utf8(&entry_bytes[name_start..name_start + name_length]).expect("UTF-8");
        let version = u64_at(entry_bytes, (name_start + name_length, 8));
        let position = u64_at(entry_bytes, (name_start + name_length + 8, 8));
        assert_eq!(last_versions.get(name), Some(&(version, position)), "entry of stream `{name}`");
        names.push(name.to_string());
        expected_start = start + stream_table::ENTRY_FIXED_SIZE + name_length;
    }
    assert_eq!(expected_start, crc_at, "the CRC follows the last entry");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted by name");
}

#[test]
fn truncate_marker_bytes_match_the_table() {
    let layouts = layouts(&read_doc());
    let directory = tempfile::tempdir().expect("tempdir");
    let storage = FaultyStorage::new();
    let plan = storage.plan();
    let options = LogOptions::default()
        .segment_capacity_bytes(64 * 1024)
        .durability(Durability::None)
        .storage(std::sync::Arc::new(storage));
    let log = Log::open(directory.path(), options).expect("open");
    for i in 0..5u8 {
        log.append(&NewEvent::new("s", "t", &[i])).expect("append");
    }
    // Let the marker be written, fail the rewrite of the segment that follows:
    // the marker stays on disk, as after a crash in the middle of the cut.
    plan.fail_write_after(1, false);
    assert!(log.truncate_after(1).is_err(), "the injected fault should fail the truncation");
    drop(log);

    let marker = fs::read(directory.path().join("TRUNCATE")).expect("the TRUNCATE marker is left behind");
    let rows = &layouts.truncate;
    assert_eq!(marker.len(), TRUNCATE_MARKER_SIZE, "size of the TRUNCATE marker");
    assert_eq!(slice(&marker, rows, "magic"), TRUNCATE_MAGIC);
    assert_eq!(field(&marker, rows, "position"), 1, "the marker holds the last position kept");
    let (crc_offset, _) = span(rows, "crc");
    assert_eq!(field(&marker, rows, "crc"), u64::from(crc32fast::hash(&marker[..crc_offset])), "marker CRC coverage");

    // The next writable open finishes the cut and removes the marker.
    let log = Log::open(directory.path(), LogOptions::default().segment_capacity_bytes(64 * 1024)).expect("reopen");
    assert_eq!(log.recovery_report().completed_truncation, Some(1));
    assert_eq!(log.next_position(), 2);
    assert!(!directory.path().join("TRUNCATE").exists());
}

#[test]
fn lock_file_and_salvage_folder_are_as_documented() {
    let directory = tempfile::tempdir().expect("tempdir");
    let options = LogOptions::default().segment_capacity_bytes(64 * 1024).durability(Durability::None);
    let log = Log::open(directory.path(), options.clone()).expect("open");
    assert!(matches!(Log::open(directory.path(), options.clone()), Err(Error::Locked { .. })), "LOCK is held");
    for payload in [b"first", b"other", b"third"] {
        log.append(&NewEvent::new("s", "t", payload)).expect("append");
    }
    drop(log);

    // Damage the middle record: a bad record followed by a valid one.
    let path = directory.path().join("00000000000000000000.seg");
    let mut bytes = fs::read(&path).expect("read");
    let first_length = record::encoded_size(1, 1, 0, 5);
    let damaged = layout::HEADER_SIZE + first_length + record::HEADER_SIZE + 2;
    bytes[damaged] ^= 0xFF;
    fs::write(&path, &bytes).expect("write damage");

    let error = Log::open(directory.path(), options.clone()).expect_err("mid-log damage is refused by default");
    assert!(error.is_corruption(), "{error}");
    let salvage = options.recovery_mode(RecoveryMode::Salvage);
    let log = Log::open(directory.path(), salvage).expect("salvage");
    assert_eq!(log.next_position(), 1);
    let report = log.recovery_report();
    assert_eq!(report.salvaged.len(), 1);
    let saved = report.salvaged[0].saved_to.as_ref().expect("a copy is kept");
    assert_eq!(saved.parent(), Some(directory.path().join("salvage").as_path()));
    let name = saved.file_name().and_then(|name| name.to_str()).expect("name");
    let stamp = name.strip_prefix("00000000000000000000.seg.").expect("named after the segment");
    assert!(stamp.parse::<u128>().is_ok(), "followed by the time in nanoseconds: {name}");
    assert_eq!(fs::read(saved).expect("read copy"), bytes, "the copy is the whole original file");
}
