//! The promise checked here: `FORMAT.md` and the code agree. Every byte table in
//! `FORMAT.md` (record, segment header and footer, stream table, segment index,
//! TRUNCATE marker, snapshot file) gives the offsets and sizes the code uses,
//! the limits, flag bits, capacities, index interval, magic numbers, format
//! versions (written and read) and CRC variant it states are the ones in the
//! code, the bytes the engine actually writes to disk can be decoded with
//! nothing but the tables of the document, and the files it leaves in a
//! directory (after a seal, a clean close, a truncation, a purge, a snapshot)
//! are the ones the document lists.
//!
//! The tables are parsed from the document: a heading this test expects that is
//! missing, a table that is missing or has other columns, a row that is missing
//! or unexpected, and a number that differs all fail with a message naming the
//! heading, the field and the constant.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chronolog::index::{segment_index, stream_table};
use chronolog::record::{self, Decoded, RecordHeader};
use chronolog::segment::layout;
use chronolog::segment::truncate_marker::{TRUNCATE_MAGIC, TRUNCATE_MARKER_SIZE};
use chronolog::snapshot::{self, file as snapshot_file, SnapshotBound, SnapshotMeta, SnapshotStore};
use chronolog::{limits, CorruptionKind, Durability, Error, Log, LogOptions, NewEvent, RecoveryMode};

const FORMAT_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/FORMAT.md");

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
    index_header: BTreeMap<String, FieldRow>,
    index_body: BTreeMap<String, FieldRow>,
    index_entry: BTreeMap<String, FieldRow>,
    index_stream: BTreeMap<String, FieldRow>,
    truncate: BTreeMap<String, FieldRow>,
    snapshot: BTreeMap<String, FieldRow>,
    manifest_header: BTreeMap<String, FieldRow>,
    manifest_entry: BTreeMap<String, FieldRow>,
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
        check_field_table(
            doc,
            "### Stream table header",
            &[
                ("magic", num!(0), num!(STREAM_TABLE_MAGIC.len())),
                ("format_version", num!(VERSION_OFFSET), num!(size_of::<u32>())),
                ("anchor_crc", num!(ANCHOR_CRC_OFFSET), num!(ENTRY_COUNT_OFFSET - ANCHOR_CRC_OFFSET)),
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

    let (index_header, index_body, index_entry, index_stream) = segment_index_tables(doc);

    let truncate = check_field_table(
        doc,
        "## TRUNCATE marker",
        &[
            ("magic", num!(0), num!(TRUNCATE_MAGIC.len())),
            ("position", num!(TRUNCATE_MAGIC.len()), num!(size_of::<u64>())),
            ("crc", num!(TRUNCATE_MAGIC.len() + size_of::<u64>()), num!(size_of::<u32>())),
        ],
    );
    check_contiguous("## TRUNCATE marker", &truncate, (TRUNCATE_MARKER_SIZE, "TRUNCATE_MARKER_SIZE"));
    check_magic("## TRUNCATE marker", &truncate["magic"], &TRUNCATE_MAGIC);

    let snapshot = snapshot_table(doc);
    let (manifest_header, manifest_entry) = manifest_tables(doc);

    Layouts {
        record,
        segment_header,
        segment_footer,
        table_header,
        table_entry,
        index_header,
        index_body,
        index_entry,
        index_stream,
        truncate,
        snapshot,
        manifest_header,
        manifest_entry,
    }
}

/// The tables of `## Manifest file`, checked against the constants of
/// `chronolog::segment::manifest`.
fn manifest_tables(doc: &str) -> (FieldRows, FieldRows) {
    use chronolog::segment::manifest::*;
    let header = check_field_table(
        doc,
        "### Manifest header",
        &[
            ("magic", num!(0), num!(MANIFEST_MAGIC.len())),
            ("format_version", num!(MANIFEST_VERSION_OFFSET), num!(MANIFEST_RESERVED_OFFSET - MANIFEST_VERSION_OFFSET)),
            ("reserved", num!(MANIFEST_RESERVED_OFFSET), num!(MANIFEST_ENTRY_COUNT_OFFSET - MANIFEST_RESERVED_OFFSET)),
            (
                "entry_count",
                num!(MANIFEST_ENTRY_COUNT_OFFSET),
                num!(MANIFEST_HEADER_SIZE - MANIFEST_ENTRY_COUNT_OFFSET),
            ),
        ],
    );
    check_contiguous("### Manifest header", &header, (MANIFEST_HEADER_SIZE, "manifest::MANIFEST_HEADER_SIZE"));
    check_magic("### Manifest header", &header["magic"], &MANIFEST_MAGIC);
    let (h, e) = (MANIFEST_HEADER_SIZE, MANIFEST_ENTRY_SIZE);
    check_field_table(
        doc,
        "### Manifest body",
        &[
            ("header", num!(0), num!(h)),
            ("entries", num!(h), text(format!("{e} * N"))),
            ("crc", text(format!("{h} + {e} * N")), num!(MANIFEST_CRC_SIZE)),
        ],
    );
    let entry = check_field_table(
        doc,
        "### Manifest entry",
        &[
            ("segment_header", num!(0), num!(layout::HEADER_SIZE)),
            ("segment_footer", num!(layout::HEADER_SIZE), num!(layout::FOOTER_SIZE)),
        ],
    );
    check_contiguous("### Manifest entry", &entry, (MANIFEST_ENTRY_SIZE, "manifest::MANIFEST_ENTRY_SIZE"));
    (header, entry)
}

/// The entries of a `MANIFEST` file, read with the document's tables and
/// checked against its CRC: (segment header bytes, segment footer bytes).
fn manifest_with_doc(directory: &Path, layouts: &Layouts) -> Vec<(Vec<u8>, Vec<u8>)> {
    let bytes = fs::read(directory.join("MANIFEST")).expect("read MANIFEST");
    let header = &layouts.manifest_header;
    assert_eq!(slice(&bytes, header, "magic"), b"CHRNLMAN");
    assert_eq!(field(&bytes, header, "format_version"), u64::from(layout::FORMAT_VERSION));
    assert_eq!(field(&bytes, header, "reserved"), 0);
    let count = field(&bytes, header, "entry_count") as usize;
    let header_size = span(header, "entry_count").0 + 8;
    let entry_size = span(&layouts.manifest_entry, "segment_footer").0 + layout::FOOTER_SIZE;
    assert_eq!(bytes.len(), header_size + entry_size * count + 4, "header, N entries and a CRC");
    let crc_at = bytes.len() - 4;
    assert_eq!(u64_at(&bytes, (crc_at, 4)), u64::from(crc32fast::hash(&bytes[..crc_at])), "manifest CRC coverage");
    bytes[header_size..crc_at]
        .chunks(entry_size)
        .map(|entry| {
            (
                slice(entry, &layouts.manifest_entry, "segment_header").to_vec(),
                slice(entry, &layouts.manifest_entry, "segment_footer").to_vec(),
            )
        })
        .collect()
}

/// Checks that the manifest describes exactly the segments `firsts`, with the
/// header and footer bytes those segments hold.
fn check_manifest(directory: &Path, layouts: &Layouts, firsts: &[u64]) {
    let entries = manifest_with_doc(directory, layouts);
    assert_eq!(entries.len(), firsts.len(), "one manifest entry per sealed segment");
    for ((header, footer), first) in entries.iter().zip(firsts) {
        let segment = fs::read(directory.join(chronolog::segment::file_name(*first))).expect("read segment");
        assert_eq!(header[..], segment[..layout::HEADER_SIZE], "segment {first}: the header as in the segment");
        assert_eq!(
            footer[..],
            segment[segment.len() - layout::FOOTER_SIZE..],
            "segment {first}: the footer as in the segment"
        );
    }
}

/// The table of `### Snapshot file layout`, checked against the constants of
/// `chronolog::snapshot::file`: the 64-byte header, then the name and the
/// payload.
fn snapshot_table(doc: &str) -> FieldRows {
    use snapshot_file::*;
    let heading = "### Snapshot file layout";
    let h = SNAPSHOT_HEADER_SIZE;
    let rows = check_field_table(
        doc,
        heading,
        &[
            ("magic", num!(0), num!(SNAPSHOT_MAGIC.len())),
            ("format_version", num!(SNAPSHOT_VERSION_OFFSET), num!(SNAPSHOT_CRC_OFFSET - SNAPSHOT_VERSION_OFFSET)),
            ("crc", num!(SNAPSHOT_CRC_OFFSET), num!(SNAPSHOT_NEXT_POSITION_OFFSET - SNAPSHOT_CRC_OFFSET)),
            (
                "next_position",
                num!(SNAPSHOT_NEXT_POSITION_OFFSET),
                num!(SNAPSHOT_TIMESTAMP_OFFSET - SNAPSHOT_NEXT_POSITION_OFFSET),
            ),
            (
                "timestamp_ns",
                num!(SNAPSHOT_TIMESTAMP_OFFSET),
                num!(SNAPSHOT_VERSION_COUNTER_OFFSET - SNAPSHOT_TIMESTAMP_OFFSET),
            ),
            (
                "version",
                num!(SNAPSHOT_VERSION_COUNTER_OFFSET),
                num!(SNAPSHOT_SCHEMA_OFFSET - SNAPSHOT_VERSION_COUNTER_OFFSET),
            ),
            (
                "schema_version",
                num!(SNAPSHOT_SCHEMA_OFFSET),
                num!(SNAPSHOT_NAME_LENGTH_OFFSET - SNAPSHOT_SCHEMA_OFFSET),
            ),
            (
                "name_length",
                num!(SNAPSHOT_NAME_LENGTH_OFFSET),
                num!(SNAPSHOT_RESERVED_OFFSET - SNAPSHOT_NAME_LENGTH_OFFSET),
            ),
            (
                "reserved",
                num!(SNAPSHOT_RESERVED_OFFSET),
                num!(SNAPSHOT_PAYLOAD_LENGTH_OFFSET - SNAPSHOT_RESERVED_OFFSET),
            ),
            (
                "payload_length",
                num!(SNAPSHOT_PAYLOAD_LENGTH_OFFSET),
                num!(SNAPSHOT_ANCHOR_CRC_OFFSET - SNAPSHOT_PAYLOAD_LENGTH_OFFSET),
            ),
            ("anchor_crc", num!(SNAPSHOT_ANCHOR_CRC_OFFSET), num!(SNAPSHOT_FLAGS_OFFSET - SNAPSHOT_ANCHOR_CRC_OFFSET)),
            ("flags", num!(SNAPSHOT_FLAGS_OFFSET), num!(SNAPSHOT_RESERVED2_OFFSET - SNAPSHOT_FLAGS_OFFSET)),
            ("reserved2", num!(SNAPSHOT_RESERVED2_OFFSET), num!(SNAPSHOT_HEADER_SIZE - SNAPSHOT_RESERVED2_OFFSET)),
            ("name", num!(SNAPSHOT_HEADER_SIZE), text("name_length")),
            ("payload", text(format!("{h} + name_length")), text("payload_length")),
        ],
    );
    let header: FieldRows = rows
        .iter()
        .filter(|(field, _)| !["name", "payload"].contains(&field.as_str()))
        .map(|(field, row)| (field.clone(), row.clone()))
        .collect();
    check_contiguous(heading, &header, (SNAPSHOT_HEADER_SIZE, "snapshot::file::SNAPSHOT_HEADER_SIZE"));
    assert_eq!(SNAPSHOT_HEADER_SIZE, 64, "the snapshot header is 64 bytes");
    check_magic(heading, &rows["magic"], &SNAPSHOT_MAGIC);
    let name_length = &rows["name_length"].meaning;
    assert!(
        name_length.contains(&format!("1 to {SNAPSHOT_NAME_MAX}")),
        "FORMAT.md, `{heading}`, field `name_length`: should say `1 to {SNAPSHOT_NAME_MAX}` (SNAPSHOT_NAME_MAX), says \
         `{name_length}`"
    );
    let crc = &rows["crc"].meaning;
    assert!(
        crc.contains(&format!("from offset {SNAPSHOT_NEXT_POSITION_OFFSET} to its end")),
        "FORMAT.md, `{heading}`, field `crc`: should say it covers the file from offset \
         {SNAPSHOT_NEXT_POSITION_OFFSET} to its end, says `{crc}`"
    );
    rows
}

type FieldRows = BTreeMap<String, FieldRow>;

/// The four tables of `## Segment index file`, checked against the constants of
/// `chronolog::index::segment_index`.
fn segment_index_tables(doc: &str) -> (FieldRows, FieldRows, FieldRows, FieldRows) {
    use segment_index::*;
    let (u16_size, u32_size, u64_size) = (size_of::<u16>(), size_of::<u32>(), size_of::<u64>());

    let header = check_field_table(
        doc,
        "### Segment index header",
        &[
            ("magic", num!(0), num!(SEGMENT_INDEX_MAGIC.len())),
            ("format_version", num!(INDEX_VERSION_OFFSET), num!(INDEX_INTERVAL_OFFSET - INDEX_VERSION_OFFSET)),
            ("interval_bytes", num!(INDEX_INTERVAL_OFFSET), num!(INDEX_FIRST_POSITION_OFFSET - INDEX_INTERVAL_OFFSET)),
            (
                "first_position",
                num!(INDEX_FIRST_POSITION_OFFSET),
                num!(INDEX_DATA_END_OFFSET - INDEX_FIRST_POSITION_OFFSET),
            ),
            ("data_end", num!(INDEX_DATA_END_OFFSET), num!(INDEX_ENTRY_COUNT_OFFSET - INDEX_DATA_END_OFFSET)),
            ("entry_count", num!(INDEX_ENTRY_COUNT_OFFSET), num!(INDEX_STREAM_COUNT_OFFSET - INDEX_ENTRY_COUNT_OFFSET)),
            (
                "stream_count",
                num!(INDEX_STREAM_COUNT_OFFSET),
                num!(INDEX_POSTING_COUNT_OFFSET - INDEX_STREAM_COUNT_OFFSET),
            ),
            (
                "posting_count",
                num!(INDEX_POSTING_COUNT_OFFSET),
                num!(INDEX_ANCHOR_CRC_OFFSET - INDEX_POSTING_COUNT_OFFSET),
            ),
            ("anchor_crc", num!(INDEX_ANCHOR_CRC_OFFSET), num!(INDEX_HEADER_SIZE - INDEX_ANCHOR_CRC_OFFSET)),
        ],
    );
    check_contiguous("### Segment index header", &header, (INDEX_HEADER_SIZE, "segment_index::INDEX_HEADER_SIZE"));
    check_magic("### Segment index header", &header["magic"], &SEGMENT_INDEX_MAGIC);
    assert_eq!(INDEX_VERSION_OFFSET, SEGMENT_INDEX_MAGIC.len(), "the version follows the magic");

    let (h, e, st, p) = (INDEX_HEADER_SIZE, INDEX_ENTRY_SIZE, INDEX_STREAM_FIXED_SIZE, INDEX_POSTING_SIZE);
    let body = check_field_table(
        doc,
        "### Segment index body",
        &[
            ("header", num!(0), num!(INDEX_HEADER_SIZE)),
            ("entries", num!(INDEX_HEADER_SIZE), text(format!("{e} * E"))),
            ("streams", text(format!("{h} + {e} * E")), text(format!("{st} * S + name_bytes"))),
            ("postings", text(format!("file_length - {u32_size} - {p} * P")), text(format!("{p} * P"))),
            ("crc", text(format!("file_length - {u32_size}")), num!(size_of::<u32>())),
        ],
    );

    // The fields of `IndexEntry` (position: u64, timestamp_ns: u64, offset: u32),
    // in the order the encoder writes them; the real files decoded below check
    // the order.
    let entry = check_field_table(
        doc,
        "### Segment index entry",
        &[
            ("position", num!(0), num!(size_of::<u64>())),
            ("timestamp_ns", num!(u64_size), num!(size_of::<u64>())),
            ("offset", num!(2 * u64_size), num!(size_of::<u32>())),
        ],
    );
    check_contiguous("### Segment index entry", &entry, (INDEX_ENTRY_SIZE, "segment_index::INDEX_ENTRY_SIZE"));

    let after_name = |bytes: usize| text(format!("{bytes} + name_length"));
    let stream = check_field_table(
        doc,
        "### Segment index stream record",
        &[
            ("name_length", num!(0), num!(size_of::<u16>())),
            ("name", num!(size_of::<u16>()), text("name_length")),
            ("first_version", after_name(u16_size), num!(size_of::<u64>())),
            ("previous_position", after_name(u16_size + u64_size), num!(size_of::<u64>())),
            ("last_position", after_name(u16_size + 2 * u64_size), num!(size_of::<u64>())),
            ("count", after_name(u16_size + 3 * u64_size), num!(size_of::<u32>())),
            ("first_posting", after_name(u16_size + 3 * u64_size + u32_size), num!(size_of::<u32>())),
        ],
    );
    let fixed: usize = stream.keys().filter(|field| *field != "name").map(|field| size_of_field(&stream, field)).sum();
    assert_eq!(
        fixed, INDEX_STREAM_FIXED_SIZE,
        "FORMAT.md, table under `### Segment index stream record`: the fixed fields add up to {fixed} bytes but the \
         code has segment_index::INDEX_STREAM_FIXED_SIZE = {INDEX_STREAM_FIXED_SIZE}"
    );
    (header, body, entry, stream)
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
        format!("A sparse entry takes {} bytes", segment_index::INDEX_ENTRY_SIZE),
        format!("A stream record takes {} bytes plus its name", segment_index::INDEX_STREAM_FIXED_SIZE),
        format!("The file is exactly {TRUNCATE_MARKER_SIZE} bytes"),
        format!("A snapshot file is a {}-byte header", snapshot_file::SNAPSHOT_HEADER_SIZE),
        format!("`{} + name_length + payload_length` bytes long", snapshot_file::SNAPSHOT_HEADER_SIZE),
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

/// FNV-1a 64 with the parameters FORMAT.md states (checked against the document
/// in `snapshot_folders_are_named_as_documented`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME))
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[test]
fn limits_flags_and_capacities_match_the_constants() {
    let doc = read_doc();
    check_constant_table(
        &doc,
        "### Snapshot limits",
        &[
            ("SNAPSHOT_NAME_MAX", snapshot::SNAPSHOT_NAME_MAX as u64),
            ("KEEP_LAST_DEFAULT", snapshot::KEEP_LAST_DEFAULT as u64),
        ],
    );
    assert_eq!(snapshot::SNAPSHOT_NAME_MAX, snapshot_file::SNAPSHOT_NAME_MAX);
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
    // The cap exists so that every offset inside a segment (below `capacity -
    // footer`) fits the u32 offsets of segment indexes, as the document says.
    let largest_offset = layout::SEGMENT_CAPACITY_BYTES_MAX - layout::FOOTER_SIZE as u64 - 1;
    assert!(largest_offset <= u64::from(u32::MAX), "SEGMENT_CAPACITY_BYTES_MAX no longer keeps offsets within u32");
    let too_large = layout::SEGMENT_CAPACITY_BYTES_MAX + 1;
    let directory = tempfile::tempdir().expect("tempdir");
    let refused = Log::open(directory.path(), LogOptions::default().segment_capacity_bytes(too_large));
    assert!(matches!(refused, Err(Error::InvalidOptions(_))), "a capacity above the maximum must be refused");
    check_constant_table(
        &doc,
        "### Segment index interval",
        &[("INDEX_INTERVAL_BYTES_DEFAULT", u64::from(segment_index::INDEX_INTERVAL_BYTES_DEFAULT))],
    );
    let refused = Log::open(directory.path(), LogOptions::default().index_interval_bytes(0));
    assert!(matches!(refused, Err(Error::InvalidOptions(_))), "an index interval of 0 must be refused");

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
    let oldest = layout::FORMAT_VERSION_OLDEST_READABLE;
    assert_eq!(chronolog::segment::FORMAT_VERSION_OLDEST_READABLE, oldest);
    let sentence = format!("The current format version is {version}.");
    assert!(doc.contains(&sentence), "FORMAT.md should say `{sentence}` (layout::FORMAT_VERSION = {version})");
    // The versions read, as the code decides them.
    let readable: Vec<u32> = (0..=version + 1).filter(|&v| layout::is_readable_format_version(v)).collect();
    assert_eq!(readable, (oldest..=version).collect::<Vec<_>>(), "versions read: FORMAT_VERSION_OLDEST_READABLE..=");
    assert!(readable.len() > 2, "the sentences below say `{oldest} to {version}`; rewrite them for two versions");
    let flat_doc = flat(&doc);
    for sentence in [
        format!("This build reads versions {oldest} to {version}"),
        format!("This build writes version {version} (`FORMAT_VERSION`) and reads versions {oldest} to {version}"),
    ] {
        assert!(flat_doc.contains(&sentence), "FORMAT.md should say `{sentence}`");
    }
    for heading in [
        "### Segment header",
        "### Stream table header",
        "### Segment index header",
        "### Manifest header",
        "### Snapshot file layout",
    ] {
        let table = table(&doc, heading, &FIELD_COLUMNS);
        let row = table.rows.iter().find(|row| row[2] == "format_version").expect("a format_version row");
        assert!(
            row[3].contains(&format!("currently {version}")),
            "FORMAT.md, `{heading}`: format_version should say `currently {version}`"
        );
        assert!(
            row[3].contains(&format!("readers accept {oldest} to {version}")),
            "FORMAT.md, `{heading}`: format_version should say `readers accept {oldest} to {version}`"
        );
    }
    let versions = table(&doc, "## Version changes", &["version", "changes"]);
    let listed: Vec<u32> = versions
        .rows
        .iter()
        .map(|row| row[0].parse::<u32>().unwrap_or_else(|_| panic!("`## Version changes`: version `{}`", row[0])))
        .collect();
    assert_eq!(
        listed,
        (1..=version).collect::<Vec<_>>(),
        "FORMAT.md, `## Version changes`: one row per version, 1 to FORMAT_VERSION = {version}, in order"
    );

    // The row of the current version says what happened to the older ones.
    let current = &versions.rows[versions.rows.len() - 1][1];
    assert!(
        current.contains(&format!("A directory of version {oldest} to {}", version - 1)),
        "FORMAT.md, `## Version changes`: the row of version {version} should say how directories of versions \
         {oldest} to {} are read",
        version - 1
    );

    // The magic numbers are distinct, and each is spelt out in the document.
    let magics = [
        layout::SEGMENT_MAGIC,
        layout::FOOTER_MAGIC,
        stream_table::STREAM_TABLE_MAGIC,
        segment_index::SEGMENT_INDEX_MAGIC,
        TRUNCATE_MAGIC,
        snapshot_file::SNAPSHOT_MAGIC,
        chronolog::segment::manifest::MANIFEST_MAGIC,
    ];
    for (index, magic) in magics.iter().enumerate() {
        assert!(magics[..index].iter().all(|other| other != magic), "magic numbers must be distinct");
        let ascii = std::str::from_utf8(magic).expect("ASCII magic");
        assert!(doc.contains(&format!("\"{ascii}\"")), "FORMAT.md does not mention the magic {ascii:?}");
    }

    // File names.
    for name in [
        chronolog::segment::file_name(0),
        stream_table::file_name(0),
        segment_index::file_name(0),
        chronolog::segment::file_name(16),
        stream_table::file_name(16),
        segment_index::file_name(16),
        format!("{}.tmp", segment_index::file_name(16)),
        format!("{}.tmp", chronolog::segment::manifest::MANIFEST_FILE_NAME),
    ] {
        assert!(doc.contains(&name), "FORMAT.md should show the file name `{name}`");
    }
    assert_eq!(chronolog::segment::parse_file_name("00000000000000000016.seg"), Some(16));
    assert_eq!(stream_table::parse_file_name("00000000000000000016.streams"), Some(16));
    assert_eq!(segment_index::parse_file_name("00000000000000000016.idx"), Some(16));
    assert_eq!(chronolog::segment::parse_file_name("16.seg"), None, "names are exactly 20 digits");
    assert_eq!(segment_index::parse_file_name("16.idx"), None, "names are exactly 20 digits");
    let files = table(&doc, "## Files in a log directory", &["name", "kind", "written by"]);
    for name in [
        chronolog::segment::file_name(0),
        stream_table::file_name(0),
        segment_index::file_name(0),
        "LOCK".into(),
        chronolog::segment::manifest::MANIFEST_FILE_NAME.into(),
        "TRUNCATE".into(),
        "salvage/".into(),
        format!("{}/", snapshot::SNAPSHOTS_FOLDER),
        "*.tmp".into(),
    ] {
        assert!(files.rows.iter().any(|row| row[0] == name), "`## Files in a log directory` lists no `{name}`");
    }
    // Snapshot file names, their temporaries and folder names, with the
    // examples the document gives.
    let snapshot_name = format!("{:020}.{}", 42, snapshot::SNAPSHOT_EXTENSION);
    for name in [
        snapshot_name.clone(),
        format!("{snapshot_name}.tmp-4242-9f86d081-0"),
        snapshot::folder_name("account-7"),
        snapshot::folder_name("order/42"),
        format!("{:016x}", fnv1a64(b"a")),
    ] {
        assert!(doc.contains(&name), "FORMAT.md should show the name `{name}`");
    }
    assert_eq!(snapshot::folder_name("a"), format!("a-{:016x}", fnv1a64(b"a")), "the FNV-1a 64 of the document");

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

/// Every record of a segment from the end of its header, decoded with the
/// document's tables, with its offset; up to `data_end` when given (a sealed
/// segment), otherwise up to a zero `length` (the documented end of data).
/// Returns the records and the offset where they end.
fn walk_records(bytes: &[u8], layouts: &Layouts, data_end: Option<u64>) -> (Vec<(u64, DocRecord)>, u64) {
    let header_size: usize = layouts.segment_header.keys().map(|name| span(&layouts.segment_header, name).1).sum();
    let mut offset = header_size;
    let mut records = Vec::new();
    loop {
        if data_end.is_some_and(|end| offset as u64 >= end) || field(&bytes[offset..], &layouts.record, "length") == 0 {
            break;
        }
        let record = decode_with_doc(&bytes[offset..], &layouts.record);
        let length = record.length;
        records.push((offset as u64, record));
        offset += length;
    }
    (records, offset as u64)
}

/// A segment index as decoded with the document's tables only.
#[derive(Debug, PartialEq, Eq)]
struct DocIndex {
    interval_bytes: u64,
    first_position: u64,
    data_end: u64,
    /// (position, timestamp_ns, offset) of each sparse entry.
    entries: Vec<(u64, u64, u64)>,
    streams: Vec<DocStream>,
    postings: Vec<u64>,
}

/// One stream record of a segment index.
#[derive(Debug, PartialEq, Eq)]
struct DocStream {
    name: String,
    first_version: u64,
    previous_position: u64,
    last_position: u64,
    count: u64,
    first_posting: u64,
}

/// The `N` of an offset cell that reads `N + name_length`.
fn before_name(rows: &FieldRows, field: &str) -> usize {
    let cell = &rows[field].offset;
    cell.strip_suffix(" + name_length")
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("offset of `{field}` reads `{cell}`, not `N + name_length`"))
}

/// The `N` of a size cell that reads `N * item`.
fn per_item(cell: &str, item: &str) -> usize {
    cell.strip_suffix(&format!(" * {item}"))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("size `{cell}` does not read `N * {item}`"))
}

/// Decodes a `.idx` file using only FORMAT.md's offsets, checking the magic,
/// version, CRC and that the parts follow each other as the body table says
/// (its anchor is checked where the segment is at hand).
fn decode_index_with_doc(bytes: &[u8], layouts: &Layouts) -> DocIndex {
    let header = &layouts.index_header;
    let body = &layouts.index_body;
    assert_eq!(slice(bytes, header, "magic"), b"CHRNLIDX", "magic of the segment index");
    assert_eq!(field(bytes, header, "format_version"), u64::from(layout::FORMAT_VERSION), "index format_version");
    let crc_size = size_of_field(body, "crc");
    let crc_at = bytes.len() - crc_size;
    assert_eq!(
        u64_at(bytes, (crc_at, crc_size)),
        u64::from(crc32fast::hash(&bytes[..crc_at])),
        "the segment index CRC covers every byte before it"
    );
    let entry_count = field(bytes, header, "entry_count") as usize;
    let stream_count = field(bytes, header, "stream_count") as usize;
    let posting_count = field(bytes, header, "posting_count") as usize;

    let entries_start: usize = body["entries"].offset.parse().expect("the entries offset is a number");
    let header_size: usize = header.keys().map(|name| span(header, name).1).sum();
    assert_eq!(entries_start, header_size, "the entries follow the header");
    let entry_size = per_item(&body["entries"].size, "E");
    let entry_rows = &layouts.index_entry;
    let entries: Vec<(u64, u64, u64)> = (0..entry_count)
        .map(|index| {
            let entry = &bytes[entries_start + index * entry_size..];
            (
                field(entry, entry_rows, "position"),
                field(entry, entry_rows, "timestamp_ns"),
                field(entry, entry_rows, "offset"),
            )
        })
        .collect();

    let mut at = entries_start + entry_count * entry_size;
    assert_eq!(body["streams"].offset, format!("{entries_start} + {entry_size} * E"), "where the stream records start");
    let stream_rows = &layouts.index_stream;
    let name_at: usize = stream_rows["name"].offset.parse().expect("the name offset is a number");
    let fixed: usize =
        stream_rows.keys().filter(|name| *name != "name").map(|name| size_of_field(stream_rows, name)).sum();
    let posting_size = per_item(&body["postings"].size, "P");
    let postings_start = crc_at - posting_count * posting_size;
    let mut streams = Vec::new();
    for _ in 0..stream_count {
        let record = &bytes[at..postings_start];
        let name_length = field(record, stream_rows, "name_length") as usize;
        let name = std::str::from_utf8(&record[name_at..name_at + name_length]).expect("UTF-8 stream name");
        let value = |name: &str| {
            u64_at(record, (before_name(stream_rows, name) + name_length, size_of_field(stream_rows, name)))
        };
        streams.push(DocStream {
            name: name.to_string(),
            first_version: value("first_version"),
            previous_position: value("previous_position"),
            last_position: value("last_position"),
            count: value("count"),
            first_posting: value("first_posting"),
        });
        at += fixed + name_length;
    }
    assert_eq!(at, postings_start, "the postings follow the stream records and end at the CRC");
    let postings =
        (0..posting_count).map(|index| u64_at(bytes, (postings_start + index * posting_size, posting_size))).collect();
    DocIndex {
        interval_bytes: field(bytes, header, "interval_bytes"),
        first_position: field(bytes, header, "first_position"),
        data_end: field(bytes, header, "data_end"),
        entries,
        streams,
        postings,
    }
}

/// The index FORMAT.md describes for a segment holding `records` (with their
/// offsets): an entry for the first record and for each record starting at
/// least `interval` bytes after the previous entry's; one stream record per
/// stream, sorted by name, with its postings in log order, the streams'
/// postings one after the other. `previous` holds the last position of each
/// stream in earlier segments.
fn expected_index(
    first_position: u64,
    interval: u64,
    data_end: u64,
    records: &[(u64, DocRecord)],
    previous: &BTreeMap<String, u64>,
) -> DocIndex {
    let mut entries: Vec<(u64, u64, u64)> = Vec::new();
    let mut by_stream: BTreeMap<&str, Vec<&(u64, DocRecord)>> = BTreeMap::new();
    for item in records {
        let (offset, record) = item;
        if entries.last().is_none_or(|&(_, _, last)| *offset >= last + interval) {
            entries.push((record.position, record.timestamp_ns, *offset));
        }
        by_stream.entry(record.stream.as_str()).or_default().push(item);
    }
    let mut streams = Vec::new();
    let mut postings = Vec::new();
    for (name, events) in by_stream {
        let (_, first) = events[0];
        let (_, last) = events[events.len() - 1];
        streams.push(DocStream {
            name: name.to_string(),
            first_version: first.stream_version,
            previous_position: previous.get(name).copied().unwrap_or(u64::MAX),
            last_position: last.position,
            count: events.len() as u64,
            first_posting: postings.len() as u64,
        });
        postings.extend(events.iter().map(|(offset, _)| *offset));
    }
    DocIndex { interval_bytes: interval, first_position, data_end, entries, streams, postings }
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

    // A clean close leaves the active segment's index beside it, built with the
    // default interval and covering the record written.
    drop(log);
    assert_eq!(file_names(directory.path()), ["00000000000000000000.idx", "00000000000000000000.seg", "LOCK"]);
    let index = decode_index_with_doc(
        &fs::read(directory.path().join("00000000000000000000.idx")).expect("read index"),
        &layouts,
    );
    assert_eq!(index.interval_bytes, u64::from(segment_index::INDEX_INTERVAL_BYTES_DEFAULT), "interval_bytes");
    assert_eq!(index.data_end, data_end as u64, "data_end of the clean-close index");
    assert_eq!(index.entries, [(0, appended.timestamp_ns, header_size as u64)]);
    let stream = DocStream {
        name: "s".into(),
        first_version: 0,
        previous_position: u64::MAX,
        last_position: 0,
        count: 1,
        first_posting: 0,
    };
    assert_eq!(index.streams, [stream]);
    assert_eq!(index.postings, [header_size as u64]);
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
            "00000000000000000000.idx".to_string(),
            "00000000000000000000.seg".into(),
            "00000000000000000000.streams".into(),
            chronolog::segment::file_name(next),
            "LOCK".into(),
            "MANIFEST".into()
        ],
        "a sealed segment has its stream table and its index beside it, and the manifest describes it"
    );
    check_manifest(directory.path(), &layouts, &[0]);

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
    let mut last_start = offset;
    for position in 0..next {
        last_start = offset;
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
    // Both hints are anchored to the segment's last record, by its crc.
    let last_crc = field(&bytes[last_start..], &layouts.record, "crc");
    assert_eq!(field(&table_bytes, header, "anchor_crc"), last_crc, "the table's anchor");
    let index_bytes = fs::read(directory.path().join("00000000000000000000.idx")).expect("read index");
    assert_eq!(field(&index_bytes, &layouts.index_header, "anchor_crc"), last_crc, "the index's anchor");
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
    let (options, plan) =
        common::with_faults(LogOptions::default().segment_capacity_bytes(64 * 1024).durability(Durability::None));
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
    for payload in [b"first", b"other", b"third", b"forth"] {
        log.append(&NewEvent::new("s", "t", payload)).expect("append");
    }
    drop(log);

    // Damage the second record: a bad record followed by valid ones. (Two of
    // them: the code currently misses a valid record that is the very last of
    // the segment, whose length copy ends in zero bytes past the last non-zero
    // byte it searches up to.)
    let path = directory.path().join("00000000000000000000.seg");
    let mut bytes = fs::read(&path).expect("read");
    let first_length = record::encoded_size(1, 1, 0, 5);
    let damaged = layout::HEADER_SIZE + first_length + record::HEADER_SIZE + 2;
    bytes[damaged] ^= 0xFF;
    fs::write(&path, &bytes).expect("write damage");

    // After a clean close the active segment is not scanned: the damage is
    // found when the record is read.
    let index_path = directory.path().join("00000000000000000000.idx");
    assert!(index_path.exists(), "a clean close leaves the active segment's index");
    let log = Log::open(directory.path(), options.clone()).expect("open after a clean close");
    assert!(!log.recovery_report().active_segment_scanned);
    let error = log.read(1).expect_err("the damaged record is refused when read");
    assert!(error.is_corruption(), "{error}");
    drop(log);
    // Without the index (as after a crash) the scan finds it, and refuses it.
    fs::remove_file(&index_path).expect("remove the clean-close index");
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

#[test]
fn segment_indexes_match_the_tables() {
    let layouts = layouts(&read_doc());
    let directory = tempfile::tempdir().expect("tempdir");
    let capacity = layout::SEGMENT_CAPACITY_BYTES_MIN;
    let interval = 700u32;
    let options = LogOptions::default()
        .segment_capacity_bytes(capacity)
        .index_interval_bytes(interval)
        .durability(Durability::None);
    let log = Log::open(directory.path(), options).expect("open");
    let streams = ["order-7", "account-1", "zebra", "account-10", "b"];
    let index_count = |directory: &Path| file_names(directory).iter().filter(|name| name.ends_with(".idx")).count();
    let mut appended = 0usize;
    // Until two segments are sealed: the second one's index has back links.
    while index_count(directory.path()) < 2 {
        let payload = vec![b'x'; 40 + (appended * 37) % 260];
        log.append(&NewEvent::new(streams[(appended * 3) % streams.len()], "Happened", &payload)).expect("append");
        appended += 1;
    }
    let names = file_names(directory.path());
    let firsts: Vec<u64> = names.iter().filter_map(|name| chronolog::segment::parse_file_name(name)).collect();
    assert_eq!(firsts.len(), 3, "two sealed segments and the active one: {names:?}");
    let mut expected_names: Vec<String> = Vec::new();
    for &first in &firsts[..2] {
        expected_names.extend([
            segment_index::file_name(first),
            chronolog::segment::file_name(first),
            stream_table::file_name(first),
        ]);
    }
    expected_names.extend([chronolog::segment::file_name(firsts[2]), "LOCK".into(), "MANIFEST".into()]);
    assert_eq!(names, expected_names, "every sealed segment has a .idx beside it; the open active one has none");
    check_manifest(directory.path(), &layouts, &firsts[..2]);

    // Each sealed segment's index, decoded with the document, is the one the
    // document describes for the records walked with the document.
    let mut previous: BTreeMap<String, u64> = BTreeMap::new();
    let mut linked = 0;
    for &first in &firsts[..2] {
        let bytes = fs::read(directory.path().join(chronolog::segment::file_name(first))).expect("read segment");
        let footer = &bytes[capacity as usize - layout::FOOTER_SIZE..];
        let data_end = field(footer, &layouts.segment_footer, "data_end");
        let (records, end) = walk_records(&bytes, &layouts, Some(data_end));
        assert_eq!(end, data_end, "the records end at the footer's data_end");
        let index_bytes = fs::read(directory.path().join(segment_index::file_name(first))).expect("read index");
        let index = decode_index_with_doc(&index_bytes, &layouts);
        assert!(index.entries.len() > 1, "the test should give the segment several sparse entries");
        assert!(index.streams.iter().all(|stream| stream.count >= 1));
        linked += index.streams.iter().filter(|stream| stream.previous_position != u64::MAX).count();
        assert_eq!(
            index,
            expected_index(first, u64::from(interval), data_end, &records, &previous),
            "index of {first}"
        );
        for (_, record) in &records {
            previous.insert(record.stream.clone(), record.position);
        }
    }
    assert!(linked > 0, "the second segment's streams should have back links to the first");

    // A clean close writes the active segment's index too.
    let last_position = log.next_position() - 1;
    drop(log);
    let active = firsts[2];
    assert!(directory.path().join(segment_index::file_name(active)).exists(), "a clean close writes the active .idx");
    let bytes = fs::read(directory.path().join(chronolog::segment::file_name(active))).expect("read segment");
    let (records, data_end) = walk_records(&bytes, &layouts, None);
    assert_eq!(records.last().map(|(_, record)| record.position), Some(last_position));
    let index_bytes = fs::read(directory.path().join(segment_index::file_name(active))).expect("read index");
    let index = decode_index_with_doc(&index_bytes, &layouts);
    assert_eq!(index, expected_index(active, u64::from(interval), data_end, &records, &previous), "active index");
}

#[test]
fn clean_close_rules_are_as_documented() {
    let directory = tempfile::tempdir().expect("tempdir");
    let options = LogOptions::default().segment_capacity_bytes(64 * 1024).durability(Durability::None);
    let log = Log::open(directory.path(), options.clone()).expect("open");
    for payload in [b"one", b"two"] {
        log.append(&NewEvent::new("s", "t", payload)).expect("append");
    }
    drop(log);
    let index_path = directory.path().join(segment_index::file_name(0));
    let index_bytes = fs::read(&index_path).expect("a clean close writes the active segment's index");

    // TolerateTornTail trusts it and scans nothing; nothing appended, so the
    // index stays as it is when the handle is dropped.
    let log = Log::open(directory.path(), options.clone()).expect("open");
    assert!(!log.recovery_report().active_segment_scanned, "a clean close spares the scan");
    assert_eq!(log.next_position(), 2);
    assert_eq!(log.durable_position(), 0, "after open only sealed segments count as durable");
    drop(log);
    assert_eq!(fs::read(&index_path).expect("index"), index_bytes, "no append: the index stays");

    // Strict always scans, and leaves the index where it is.
    let log = Log::open(directory.path(), options.clone().recovery_mode(RecoveryMode::Strict)).expect("open strict");
    assert!(log.recovery_report().active_segment_scanned, "Strict always scans the active segment");
    assert!(index_path.exists());
    drop(log);

    // The first append after a trusting open removes the index; a clean close
    // writes a new one.
    let log = Log::open(directory.path(), options.clone()).expect("open");
    assert!(!log.recovery_report().active_segment_scanned);
    log.append(&NewEvent::new("s", "t", b"three")).expect("append");
    assert!(!index_path.exists(), "the first append removes the clean-close index");
    drop(log);
    let index_bytes = fs::read(&index_path).expect("a clean close writes the index again");
    let data_end = segment_index::SegmentIndex::peek_data_end(&index_bytes).expect("data end");

    // Bytes where the next record header would be: the index is not trusted.
    // Writable and read-only leftovers are handled as documented first.
    let segment_path = directory.path().join(chronolog::segment::file_name(0));
    let mut bytes = fs::read(&segment_path).expect("read segment");
    bytes[data_end as usize + 9] = 0x5A;
    fs::write(&segment_path, &bytes).expect("write");
    for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::Strict] {
        let reader = Log::open_read_only(directory.path(), options.clone().recovery_mode(mode)).expect("read-only");
        assert!(reader.recovery_report().active_segment_scanned);
        let torn = reader.recovery_report().torn_tail.clone().expect("a read-only open reports the tail");
        assert_eq!((torn.offset, torn.saved_to), (data_end, None), "reported, not repaired ({mode:?})");
        assert_eq!(reader.next_position(), 3, "a read-only open hides the bytes after the last batch");
    }
    assert_eq!(fs::read(&segment_path).expect("read"), bytes, "a read-only open changes nothing");
    let leftover = directory.path().join(format!("{}.tmp", segment_index::file_name(0)));
    let foreign = directory.path().join("notes.tmp");
    fs::write(&leftover, b"half written").expect("write leftover");
    fs::write(&foreign, b"not ours").expect("write foreign file");
    let log = Log::open(directory.path(), options).expect("open");
    assert!(log.recovery_report().active_segment_scanned, "a non-zero byte after data_end forces a scan");
    let torn = log.recovery_report().torn_tail.clone().expect("the bytes are cut as a torn tail");
    assert_eq!(torn.offset, data_end, "cut at the clean-close data end");
    assert_eq!(log.next_position(), 3);
    assert!(!leftover.exists(), "a writable open deletes `.idx.tmp` leftovers");
    assert!(foreign.exists(), "other `.tmp` files are left alone");
}

#[test]
fn truncate_and_purge_remove_the_documented_files() {
    let layouts = layouts(&read_doc());
    let directory = tempfile::tempdir().expect("tempdir");
    let options = LogOptions::default().segment_capacity_bytes(4096).durability(Durability::None);
    let log = Log::open(directory.path(), options).expect("open");
    let segments = |directory: &Path| -> Vec<u64> {
        file_names(directory).iter().filter_map(|name| chronolog::segment::parse_file_name(name)).collect()
    };
    let mut count = 0u64;
    while segments(directory.path()).len() < 5 {
        log.append(&NewEvent::new(["a", "b", "c"][count as usize % 3], "t", &[1u8; 200])).expect("append");
        count += 1;
    }
    let firsts = segments(directory.path());
    let all = |firsts: &[u64]| -> Vec<String> {
        firsts
            .iter()
            .flat_map(|&first| {
                [segment_index::file_name(first), chronolog::segment::file_name(first), stream_table::file_name(first)]
            })
            .collect()
    };

    // A cut inside sealed segment 3: later segments go, segment 3 is cut and
    // loses its stream table and index; earlier ones keep theirs.
    log.truncate_after(firsts[3] + 1).expect("truncate");
    let mut expected = all(&firsts[..3]);
    expected.extend([chronolog::segment::file_name(firsts[3]), "LOCK".into()]);
    assert_eq!(file_names(directory.path()), expected, "files after truncate_after: the manifest is gone too");

    // Purging segments 0 and 1 removes their segment files and indexes, and
    // keeps the newest stream table and the one covering everything before the
    // new first segment (named after the last purged segment), and writes the
    // manifest of the segments left (here the one the truncation left sealed).
    assert_eq!(log.purge_before(firsts[2]).expect("purge"), 2);
    let mut expected = vec![stream_table::file_name(firsts[1])];
    expected.extend(all(&firsts[2..3]));
    expected.extend([chronolog::segment::file_name(firsts[3]), "LOCK".into(), "MANIFEST".into()]);
    assert_eq!(file_names(directory.path()), expected, "files after purge_before");
    check_manifest(directory.path(), &layouts, &firsts[2..3]);
    let base = fs::read(directory.path().join(stream_table::file_name(firsts[1]))).expect("read table");
    assert_eq!(field(&base, &layouts.table_header, "next_position"), firsts[2], "covers everything before");
    let newest = fs::read(directory.path().join(stream_table::file_name(firsts[2]))).expect("read table");
    assert_eq!(field(&newest, &layouts.table_header, "next_position"), firsts[3], "the newest table");

    // The clean close leaves it as it is.
    drop(log);
    check_manifest(directory.path(), &layouts, &firsts[2..3]);
}

#[test]
fn version_1_segments_are_refused() {
    let layouts = layouts(&read_doc());
    let directory = tempfile::tempdir().expect("tempdir");
    let options = LogOptions::default().segment_capacity_bytes(64 * 1024).durability(Durability::None);
    let log = Log::open(directory.path(), options.clone()).expect("open");
    log.append(&NewEvent::new("s", "t", b"p")).expect("append");
    drop(log);
    // The same segment as version 1 would have written it.
    let path = directory.path().join(chronolog::segment::file_name(0));
    let mut bytes = fs::read(&path).expect("read");
    let header = &layouts.segment_header;
    let (version_at, version_size) = span(header, "format_version");
    bytes[version_at..version_at + version_size].copy_from_slice(&1u32.to_le_bytes()[..version_size]);
    let (crc_at, crc_size) = span(header, "crc");
    let crc = crc32fast::hash(&bytes[..crc_at]);
    bytes[crc_at..crc_at + crc_size].copy_from_slice(&crc.to_le_bytes()[..crc_size]);
    fs::write(&path, &bytes).expect("write");
    let unsupported = |result: Result<Log, Error>| {
        matches!(
            result,
            Err(Error::Corrupted { offset, kind: CorruptionKind::UnsupportedVersion { found: 1 }, .. })
                if offset == version_at as u64
        )
    };
    assert!(unsupported(Log::open(directory.path(), options.clone())), "default mode");
    assert!(unsupported(Log::open(directory.path(), options.clone().recovery_mode(RecoveryMode::Strict))), "Strict");
    assert!(unsupported(Log::open_read_only(directory.path(), options.clone())), "read-only");
    // Salvage sets such a segment aside like any unreadable one.
    let log = Log::open(directory.path(), options.recovery_mode(RecoveryMode::Salvage)).expect("salvage");
    assert_eq!(log.next_position(), 0);
    let saved = log.recovery_report().salvaged[0].saved_to.clone().expect("set aside");
    assert_eq!(fs::read(saved).expect("read copy"), bytes, "the version 1 segment is kept in salvage/");
}

// ---------------------------------------------------------------------------
// Snapshot files
// ---------------------------------------------------------------------------

/// The number of characters of a name kept in its folder's name, as FORMAT.md
/// states it.
const FOLDER_READABLE_CHARS: usize = 48;

/// The folder of a snapshot name, by the rules of `### Snapshot names and
/// folders`.
fn documented_folder(name: &str) -> String {
    let readable: String = name
        .chars()
        .take(FOLDER_READABLE_CHARS)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    format!("{readable}-{:016x}", fnv1a64(name.as_bytes()))
}

#[test]
fn snapshot_folders_are_named_as_documented() {
    let doc = flat(&section(&read_doc(), "### Snapshot names and folders").join("\n"));
    for stated in [
        format!("the first {FOLDER_READABLE_CHARS} characters (Unicode scalar values, not bytes) of the name"),
        format!("offset basis `{FNV_OFFSET_BASIS:#x}`"),
        format!("the prime `{FNV_PRIME:#x}`"),
        "16 lowercase hexadecimal digits with leading zeros".to_string(),
        "1 to `SNAPSHOT_NAME_MAX` bytes of UTF-8".to_string(),
    ] {
        assert!(doc.contains(&flat(&stated)), "FORMAT.md, `### Snapshot names and folders` should say `{stated}`");
    }
    // The published FNV-1a 64 test vectors, so the parameters above are FNV's.
    assert_eq!(fnv1a64(b""), FNV_OFFSET_BASIS);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    let long = format!("{}tail", "é/x".repeat(30));
    let longest = "n".repeat(snapshot::SNAPSHOT_NAME_MAX);
    for name in ["account-7", "order/42", "a", "Résumé 2024: totals_by-day", long.as_str(), longest.as_str(), "0"] {
        let folder = snapshot::folder_name(name);
        assert_eq!(folder, documented_folder(name), "folder of {name:?}");
        assert!((18..=65).contains(&folder.len()) && folder.is_ascii(), "folder names are 18 to 65 ASCII bytes");
        assert!(doc.contains(&format!("`{folder}`")) || !["account-7", "order/42"].contains(&name), "example {name:?}");
    }
    // Names outside 1 ..= SNAPSHOT_NAME_MAX bytes are refused.
    let directory = tempfile::tempdir().expect("tempdir");
    let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None)).expect("open");
    let store = SnapshotStore::open(&log);
    let meta = |name: &str| SnapshotMeta {
        name: name.into(),
        next_position: 0,
        timestamp_ns: 0,
        version: 0,
        schema_version: 1,
    };
    let too_long = "n".repeat(snapshot::SNAPSHOT_NAME_MAX + 1);
    for name in ["", too_long.as_str()] {
        assert!(
            matches!(store.write(&meta(name), b""), Err(Error::InvalidSnapshotName { .. })),
            "a name of {} bytes is refused",
            name.len()
        );
    }
    let path = store.write(&meta(&longest), b"").expect("the longest name is accepted");
    assert_eq!(
        path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()),
        Some(documented_folder(&longest).as_str())
    );
}

/// A snapshot file as decoded with the document's table only.
#[derive(Debug, PartialEq, Eq)]
struct DocSnapshot {
    format_version: u64,
    next_position: u64,
    timestamp_ns: u64,
    version: u64,
    schema_version: u64,
    name: String,
    payload: Vec<u8>,
}

/// Decodes a snapshot file with FORMAT.md's offsets only, checking the magic,
/// the CRC's coverage, the reserved fields and that the file ends with the
/// payload.
fn decode_snapshot_with_doc(bytes: &[u8], rows: &FieldRows) -> DocSnapshot {
    assert_eq!(slice(bytes, rows, "magic"), b"CHRNLSNP", "magic of the snapshot file");
    let (crc_at, crc_size) = span(rows, "crc");
    assert_eq!(
        field(bytes, rows, "crc"),
        u64::from(crc32fast::hash(&bytes[crc_at + crc_size..])),
        "the snapshot CRC covers every byte from the end of the CRC field to the end of the file"
    );
    assert!(slice(bytes, rows, "reserved").iter().all(|&b| b == 0), "reserved is zero");
    assert!(slice(bytes, rows, "reserved2").iter().all(|&b| b == 0), "reserved2 is zero");
    let name_length = field(bytes, rows, "name_length") as usize;
    let payload_length = field(bytes, rows, "payload_length") as usize;
    let name_at: usize = rows["name"].offset.parse().expect("the name offset is a number");
    let payload_at = before_name(rows, "payload") + name_length;
    assert_eq!(payload_at, name_at + name_length, "the payload follows the name");
    assert_eq!(bytes.len(), payload_at + payload_length, "the file ends with the payload");
    DocSnapshot {
        format_version: field(bytes, rows, "format_version"),
        next_position: field(bytes, rows, "next_position"),
        timestamp_ns: field(bytes, rows, "timestamp_ns"),
        version: field(bytes, rows, "version"),
        schema_version: field(bytes, rows, "schema_version"),
        name: String::from_utf8(bytes[name_at..payload_at].to_vec()).expect("UTF-8 name"),
        payload: bytes[payload_at..].to_vec(),
    }
}

/// Writes `value` into the field `name` of `bytes`, little-endian, at the
/// document's offset, and recomputes the CRC as the document says.
fn set_snapshot_field(bytes: &mut [u8], rows: &FieldRows, name: &str, value: u64) {
    let (offset, size) = span(rows, name);
    bytes[offset..offset + size].copy_from_slice(&value.to_le_bytes()[..size]);
    let (crc_at, crc_size) = span(rows, "crc");
    let crc = crc32fast::hash(&bytes[crc_at + crc_size..]);
    bytes[crc_at..crc_at + crc_size].copy_from_slice(&crc.to_le_bytes()[..crc_size]);
}

#[test]
fn snapshot_files_match_the_table() {
    let layouts = layouts(&read_doc());
    let rows = &layouts.snapshot;
    let directory = tempfile::tempdir().expect("tempdir");
    let log = Log::open(directory.path(), LogOptions::default().durability(Durability::None)).expect("open");
    let appended = log
        .append_batch(&[
            NewEvent::new("account/7 é", "Opened", b"{}"),
            NewEvent::new("account/7 é", "Deposited", b"10"),
            NewEvent::new("other", "Happened", b""),
        ])
        .expect("append");
    let name = "account/7 é";
    let last = &appended[1];
    let meta = SnapshotMeta {
        name: name.into(),
        next_position: last.position + 1,
        timestamp_ns: last.timestamp_ns,
        version: 2,
        schema_version: 7,
    };
    let payload = b"balance: 10, \x00\xff opaque".to_vec();
    // A store without the log writes what it is given (the checks of a store
    // opened from the log are tested with the lookups, in tests/regressions.rs
    // and the snapshot module): this test also writes snapshots the log does
    // not back, to see lookups skip them.
    let store = SnapshotStore::at(directory.path(), std::sync::Arc::new(chronolog::storage::StdStorage));
    let path = store.write(&meta, &payload).expect("write snapshot");

    // Where the document says: snapshots/<folder>/<20 digits>.snap, and
    // nothing else (no temporary left).
    let folder = documented_folder(name);
    assert_eq!(folder, snapshot::folder_name(name));
    let file_name = format!("{:020}.snap", meta.next_position);
    let root = directory.path().join("snapshots");
    assert_eq!(path, root.join(&folder).join(&file_name), "path of the snapshot file");
    assert_eq!(store.root(), root.as_path());
    assert_eq!(file_names(&root), [folder.as_str()], "one folder per name");
    assert_eq!(file_names(&root.join(&folder)), [file_name], "one file, no temporary left");

    // Decoded with nothing but the table.
    let bytes = fs::read(&path).expect("read snapshot");
    assert_eq!(&bytes[..8], b"CHRNLSNP");
    let decoded = decode_snapshot_with_doc(&bytes, rows);
    let expected = DocSnapshot {
        format_version: u64::from(layout::FORMAT_VERSION),
        next_position: 2,
        timestamp_ns: last.timestamp_ns,
        version: 2,
        schema_version: 7,
        name: name.into(),
        payload: payload.clone(),
    };
    assert_eq!(decoded, expected, "the snapshot file read with FORMAT.md's table");
    assert_eq!(field(&bytes, rows, "name_length"), name.len() as u64);
    assert_eq!(field(&bytes, rows, "payload_length"), payload.len() as u64);
    assert_eq!(bytes.len(), snapshot_file::SNAPSHOT_HEADER_SIZE + name.len() + payload.len());
    assert_eq!(snapshot_file::decode(&bytes).map(|(meta, _)| meta), Ok(meta.clone()), "the code reads it back");
    assert_eq!((field(&bytes, rows, "flags"), field(&bytes, rows, "anchor_crc")), (0, 0), "`write`: no anchor");

    // `write_anchored`: flag bit 0 and the CRC stored in the log's record at
    // next_position - 1 (its first 4 bytes, per the record header table).
    let anchored = store.write_anchored(&meta, &payload, &log.view()).expect("write anchored");
    let anchored_bytes = fs::read(&anchored).expect("read snapshot");
    assert_eq!(field(&anchored_bytes, rows, "flags"), 1, "flag bit 0: anchor_crc present");
    let segment = fs::read(directory.path().join(chronolog::segment::file_name(0))).expect("read segment");
    let record_crc = |position: u64| {
        let (records, _) = walk_records(&segment, &layouts, None);
        let (offset, _) = records.into_iter().find(|(_, r)| r.position == position).expect("the record");
        u64::from(u32::from_le_bytes(segment[offset as usize..offset as usize + 4].try_into().expect("4 bytes")))
    };
    assert_eq!(field(&anchored_bytes, rows, "anchor_crc"), record_crc(meta.next_position - 1));
    assert_eq!(snapshot_file::anchor_crc(&anchored_bytes).map(u64::from), Some(record_crc(meta.next_position - 1)));

    // The decode checks of the document, in its order, with the offsets it gives.
    let offset_of = |name: &str| span(rows, name).0 as u64;
    let refused = |bytes: &[u8], offset: u64, kind: &str, what: &str| {
        let (found_offset, found_kind) = snapshot_file::decode(bytes).expect_err("damage must be refused");
        let found_name = format!("{found_kind:?}");
        let found_name = found_name.split(' ').next().unwrap_or_default();
        assert_eq!((found_offset, found_name), (offset, kind), "{what}: {found_kind:?}");
    };
    refused(&bytes[..63], 0, "Truncated", "shorter than the header");
    let mut damaged = bytes.clone();
    damaged[0] ^= 1;
    refused(&damaged, offset_of("magic"), "BadMagic", "magic");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "format_version", 1);
    assert_eq!(
        snapshot_file::decode(&damaged).map(|_| ()),
        Err((offset_of("format_version"), CorruptionKind::UnsupportedVersion { found: 1 })),
        "version 1"
    );
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "format_version", u64::from(layout::FORMAT_VERSION_OLDEST_READABLE));
    assert!(snapshot_file::decode(&damaged).is_ok(), "a reader accepts every readable version");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "name_length", 0);
    refused(&damaged, offset_of("name_length"), "LengthOutOfRange", "empty name");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "name_length", snapshot::SNAPSHOT_NAME_MAX as u64 + 1);
    refused(&damaged, offset_of("name_length"), "LengthOutOfRange", "name too long");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "payload_length", u64::MAX);
    refused(&damaged, offset_of("payload_length"), "LengthOutOfRange", "lengths overflow");
    refused(&bytes[..bytes.len() - 1], offset_of("payload_length"), "Truncated", "file shorter than its lengths");
    let mut longer = bytes.clone();
    longer.push(0);
    refused(&longer, bytes.len() as u64, "LengthOutOfRange", "bytes after the payload");
    let mut damaged = bytes.clone();
    let last_byte = damaged.len() - 1;
    damaged[last_byte] ^= 1;
    refused(&damaged, offset_of("crc"), "ChecksumMismatch", "payload byte");
    let mut damaged = bytes.clone();
    damaged[span(rows, "reserved").0] = 1;
    refused(&damaged, offset_of("crc"), "ChecksumMismatch", "the CRC is checked before the reserved fields");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "reserved", 1);
    refused(&damaged, offset_of("reserved"), "InvalidField", "reserved");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "flags", 2);
    refused(&damaged, offset_of("flags"), "UnknownFlags", "flags");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "anchor_crc", 7);
    refused(&damaged, offset_of("anchor_crc"), "InvalidField", "anchor_crc without flag bit 0");
    let mut damaged = bytes.clone();
    set_snapshot_field(&mut damaged, rows, "reserved2", 1);
    refused(&damaged, offset_of("reserved2"), "InvalidField", "reserved2");
    let mut damaged = bytes.clone();
    let name_at: usize = rows["name"].offset.parse().expect("number");
    damaged[name_at] = 0xFF;
    let (crc_at, crc_size) = span(rows, "crc");
    let crc = crc32fast::hash(&damaged[crc_at + crc_size..]);
    damaged[crc_at..crc_at + crc_size].copy_from_slice(&crc.to_le_bytes());
    refused(&damaged, name_at as u64, "InvalidUtf8", "name");

    // Lookups: the snapshot is found; other schemas, names and positions are
    // skipped and reported, as the document says.
    let view = log.view();
    let found = store.find(name, SnapshotBound::Latest, 7, &view).expect("find");
    assert_eq!(found.snapshot.as_ref().map(|s| s.payload()), Some(payload.as_slice()));
    assert!(found.skipped.is_empty());
    let found = store.find(name, SnapshotBound::Latest, 8, &view).expect("find");
    assert!(found.snapshot.is_none());
    assert!(matches!(
        found.skipped[..],
        [snapshot::SkippedSnapshot { reason: snapshot::SkipReason::SchemaVersion { found: 7, expected: 8 }, .. }]
    ));
    let found = store.find(name, SnapshotBound::Before(meta.next_position - 1), 7, &view).expect("find");
    assert!(found.snapshot.is_none() && found.skipped.is_empty(), "outside the bound: neither used nor reported");
    // A file whose name says another position is damaged.
    let moved = root.join(&folder).join(format!("{:020}.snap", 3));
    fs::copy(&path, &moved).expect("copy snapshot");
    let found = store.find(name, SnapshotBound::Latest, 7, &view).expect("find");
    assert_eq!(found.snapshot.as_ref().map(|s| s.meta.next_position), Some(2));
    assert!(matches!(
        &found.skipped[..],
        [snapshot::SkippedSnapshot { reason: snapshot::SkipReason::Damaged(Error::Corrupted { offset, .. }), path }]
            if *offset == offset_of("next_position") && *path == moved
    ));
    fs::remove_file(&moved).expect("remove copy");
    // A snapshot made from an event the log no longer holds at that position.
    let diverged = SnapshotMeta { timestamp_ns: last.timestamp_ns + 1, next_position: 3, ..meta.clone() };
    store.write(&diverged, b"diverged").expect("write");
    let found = store.find(name, SnapshotBound::Latest, 7, &view).expect("find");
    assert_eq!(found.snapshot.as_ref().map(|s| s.meta.next_position), Some(2));
    assert!(matches!(
        &found.skipped[..],
        [snapshot::SkippedSnapshot { reason: snapshot::SkipReason::Diverged { position: 2, .. }, .. }]
    ));

    // Retention keeps the newest KEEP_LAST_DEFAULT of the name.
    for next_position in 4..4 + snapshot::KEEP_LAST_DEFAULT as u64 {
        store.write(&SnapshotMeta { next_position, ..meta.clone() }, b"later").expect("write");
    }
    let kept: Vec<String> = file_names(&root.join(&folder));
    let expected: Vec<String> = (4..4 + snapshot::KEEP_LAST_DEFAULT as u64).map(|p| format!("{p:020}.snap")).collect();
    assert_eq!(kept, expected, "the newest {} snapshots are kept", snapshot::KEEP_LAST_DEFAULT);

    // A temporary left by a crashed writer (another process id; or this one's,
    // reused after a restart, with other random digits or none) is ignored by
    // lookups and removed by the next write into the folder.
    let leftover = root.join(&folder).join(format!("{:020}.snap.tmp-{}-9f86d081-0", 9, u32::MAX));
    let same_id = root.join(&folder).join(format!("{:020}.snap.tmp-{}-0", 9, std::process::id()));
    for path in [&leftover, &same_id] {
        fs::write(path, b"half written").expect("write leftover");
    }
    assert_eq!(store.list(name).expect("list").len(), snapshot::KEEP_LAST_DEFAULT);
    drop(view);
    drop(log);
    let _log = Log::open(directory.path(), LogOptions::default()).expect("reopen");
    assert!(leftover.exists(), "opening the log does not look into snapshots/");
    SnapshotStore::at(directory.path(), std::sync::Arc::new(chronolog::storage::StdStorage))
        .write(&SnapshotMeta { next_position: 8, ..meta }, b"x")
        .expect("write");
    assert!(!leftover.exists(), "the next write removes another process's temporary");
    assert!(!same_id.exists(), "and a temporary of an earlier process with this one's id");
}

/// Rewrites the `format_version` of every segment, stream table and segment
/// index in `directory` to `version`, recomputing their CRCs, with the
/// document's offsets: the directory as that version would have written it.
fn rewrite_versions(directory: &Path, layouts: &Layouts, version: u32, which: impl Fn(&str) -> bool) {
    let put = |bytes: &mut [u8], (offset, size): (usize, usize), value: u64| {
        bytes[offset..offset + size].copy_from_slice(&value.to_le_bytes()[..size]);
    };
    for name in file_names(directory).into_iter().filter(|name| which(name)) {
        let path = directory.join(&name);
        let mut bytes = fs::read(&path).expect("read");
        if chronolog::segment::parse_file_name(&name).is_some() {
            let header = &layouts.segment_header;
            put(&mut bytes, span(header, "format_version"), u64::from(version));
            let (crc_at, crc_size) = span(header, "crc");
            let crc = crc32fast::hash(&bytes[..crc_at]);
            put(&mut bytes, (crc_at, crc_size), u64::from(crc));
        } else {
            let header = if stream_table::parse_file_name(&name).is_some() {
                &layouts.table_header
            } else if segment_index::parse_file_name(&name).is_some() {
                &layouts.index_header
            } else {
                continue;
            };
            put(&mut bytes, span(header, "format_version"), u64::from(version));
            // Anchors came with version 6: the field was reserved, zero.
            if version < 6 {
                put(&mut bytes, span(header, "anchor_crc"), 0);
            }
            // Both files end with a CRC of every byte before it.
            let crc_at = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..crc_at]);
            put(&mut bytes, (crc_at, 4), u64::from(crc));
        }
        fs::write(&path, &bytes).expect("write");
    }
}

/// (position, timestamp, stream, stream version, payload) of every event.
type EventRow = (u64, u64, String, u64, Vec<u8>);

fn all_events(log: &Log) -> Vec<EventRow> {
    let view = log.view();
    view.iter()
        .map(|event| {
            let event = event.expect("read event");
            (event.position, event.timestamp_ns, event.stream.to_string(), event.stream_version, event.payload.to_vec())
        })
        .collect()
}

fn stream_versions(log: &Log, stream: &str) -> Vec<u64> {
    let view = log.view();
    view.read_stream(stream, 0).expect("read stream").map(|event| event.expect("event").stream_version).collect()
}

#[test]
fn version_2_directories_are_read_as_they_are() {
    let layouts = layouts(&read_doc());
    assert_eq!(layout::FORMAT_VERSION_OLDEST_READABLE, 2, "this test writes a version 2 directory");
    let directory = tempfile::tempdir().expect("tempdir");
    let options =
        LogOptions::default().segment_capacity_bytes(layout::SEGMENT_CAPACITY_BYTES_MIN).durability(Durability::None);
    let log = Log::open(directory.path(), options.clone()).expect("open");
    let mut count = 0usize;
    let append = |log: &Log, count: &mut usize| {
        log.append(&NewEvent::new(["a", "b", "c"][*count % 3], "t", &[*count as u8; 300])).expect("append");
        *count += 1;
    };
    while !directory.path().join(stream_table::file_name(0)).exists() {
        append(&log, &mut count);
    }
    for _ in 0..3 {
        append(&log, &mut count);
    }
    let events = all_events(&log);
    let versions_of_a = stream_versions(&log, "a");
    drop(log);
    // A sealed segment with its stream table and index, and the active segment
    // with its clean-close index: every kind of versioned file, all made version 2.
    let names = file_names(directory.path());
    let active = chronolog::segment::parse_file_name(&names[names.len() - 3]).expect("the active segment");
    let expected_names = [
        segment_index::file_name(0),
        chronolog::segment::file_name(0),
        stream_table::file_name(0),
        segment_index::file_name(active),
        chronolog::segment::file_name(active),
        "LOCK".into(),
        "MANIFEST".into(),
    ];
    assert_eq!(names, expected_names);
    // Version 2 had no manifest.
    fs::remove_file(directory.path().join("MANIFEST")).expect("remove MANIFEST");
    rewrite_versions(directory.path(), &layouts, 2, |_| true);
    let sealed_files = [chronolog::segment::file_name(0), stream_table::file_name(0), segment_index::file_name(0)];
    let read_all = |names: &[String]| -> Vec<Vec<u8>> {
        names.iter().map(|name| fs::read(directory.path().join(name)).expect("read")).collect()
    };
    let sealed_bytes = read_all(&sealed_files);

    // Every mode reads it as it is: the version 2 stream table is used (not
    // rebuilt), the version 2 indexes too, the clean-close one trusted.
    let check = |log: &Log, what: &str| {
        assert_eq!(log.next_position(), events.len() as u64, "{what}");
        assert_eq!(all_events(log), events, "{what}: the events");
        assert_eq!(stream_versions(log, "a"), versions_of_a, "{what}: a stream read");
        assert!(log.recovery_report().rebuilt_indexes.is_empty(), "{what}: {:?}", log.recovery_report());
        assert!(log.rebuilt_indexes().is_empty(), "{what}: version 2 indexes are used");
    };
    let log = Log::open(directory.path(), options.clone()).expect("a version 2 directory opens");
    check(&log, "default mode");
    assert!(!log.recovery_report().active_segment_scanned, "the version 2 clean-close index is trusted");
    drop(log);
    let log = Log::open_read_only(directory.path(), options.clone()).expect("read-only");
    check(&log, "read-only");
    assert!(!log.recovery_report().active_segment_scanned, "the version 2 clean-close index is trusted");
    drop(log);
    let log = Log::open(directory.path(), options.clone().recovery_mode(RecoveryMode::Strict)).expect("Strict");
    check(&log, "Strict");
    drop(log);
    let log = Log::open(directory.path(), options.clone().recovery_mode(RecoveryMode::Salvage)).expect("Salvage");
    check(&log, "Salvage");
    assert!(log.recovery_report().salvaged.is_empty(), "nothing is set aside");
    drop(log);
    assert_eq!(read_all(&sealed_files), sealed_bytes, "the version 2 files are used as they are, not rewritten");

    // Appending goes on; the files written from now on have the current version.
    let log = Log::open(directory.path(), options.clone()).expect("open");
    let last_segment = |directory: &Path| {
        file_names(directory).iter().rev().find_map(|name| chronolog::segment::parse_file_name(name))
    };
    while last_segment(directory.path()) == Some(active) {
        append(&log, &mut count);
    }
    let events = all_events(&log);
    assert_eq!(events.len(), count);
    drop(log);
    let version_of = |name: String, rows: &FieldRows| {
        field(&fs::read(directory.path().join(name)).expect("read"), rows, "format_version")
    };
    assert_eq!(version_of(chronolog::segment::file_name(0), &layouts.segment_header), 2, "old segments keep version 2");
    assert_eq!(version_of(chronolog::segment::file_name(active), &layouts.segment_header), 2);
    assert_eq!(version_of(stream_table::file_name(active), &layouts.table_header), u64::from(layout::FORMAT_VERSION));
    assert_eq!(version_of(segment_index::file_name(active), &layouts.index_header), u64::from(layout::FORMAT_VERSION));
    let newest = *file_names(directory.path())
        .iter()
        .filter_map(|name| chronolog::segment::parse_file_name(name))
        .collect::<Vec<_>>()
        .last()
        .expect("segments");
    assert_eq!(
        version_of(chronolog::segment::file_name(newest), &layouts.segment_header),
        u64::from(layout::FORMAT_VERSION)
    );
    // The manifest copies the version 2 headers as they are.
    check_manifest(directory.path(), &layouts, &[0, active]);
    let log = Log::open(directory.path(), options.clone()).expect("a directory of versions 2 and 5 opens");
    assert_eq!(all_events(&log), events);
    drop(log);

    // Version 1 is still refused: a stream table of version 1 is rebuilt, a
    // segment of version 1 refuses the directory.
    let newest_table = stream_table::file_name(active);
    rewrite_versions(directory.path(), &layouts, 1, |name| name == newest_table);
    let log = Log::open(directory.path(), options.clone()).expect("open");
    assert_eq!(log.recovery_report().rebuilt_indexes, [directory.path().join(&newest_table)], "rebuilt, not trusted");
    assert_eq!(all_events(&log), events);
    drop(log);
    assert_eq!(version_of(newest_table, &layouts.table_header), u64::from(layout::FORMAT_VERSION), "written back");
    rewrite_versions(directory.path(), &layouts, 1, |name| name == chronolog::segment::file_name(0));
    let (version_at, _) = span(&layouts.segment_header, "format_version");
    let refused = |result: &Result<_, Error>| {
        matches!(
            result,
            Err(Error::Corrupted { offset, kind: CorruptionKind::UnsupportedVersion { found: 1 }, .. })
                if *offset == version_at as u64
        )
    };
    // The manifest still describes the segment as it was: the segment is
    // opened, and refused, when it is first read.
    let log = Log::open(directory.path(), options.clone()).expect("opens from the manifest");
    let first_read = log.view().iter().next().expect("an event").map(|_| ());
    assert!(refused(&first_read), "the version 1 segment is refused at its first read: {first_read:?}");
    drop(log);
    // A version 1 directory has no manifest: the segment refuses the open.
    fs::remove_file(directory.path().join("MANIFEST")).expect("remove MANIFEST");
    for (what, result) in [
        ("default mode", Log::open(directory.path(), options.clone())),
        ("read-only", Log::open_read_only(directory.path(), options.clone())),
    ] {
        assert!(refused(&result.map(|_| ())), "{what}: a version 1 segment is refused");
    }
}
