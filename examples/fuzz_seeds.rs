//! Writes the seed corpora of the fuzz targets from real files: a small log
//! (4 KiB segments, several sealed) is written, and its records, segment
//! header and footer, stream tables, segment indexes, the manifest, two
//! snapshot files and a TRUNCATE marker become seeds in `fuzz/seeds/<target>/`.
//!
//! ```text
//! cargo run --example fuzz_seeds
//! ```

use std::path::Path;

use chronolog::{Durability, Log, LogOptions, NewEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("seeds");
    let directory = tempfile::tempdir()?;
    {
        let options = LogOptions::default().segment_capacity_bytes(4096).index_interval_bytes(256);
        let log = Log::open(directory.path(), options.durability(Durability::None))?;
        for position in 0..120u64 {
            // Names that share prefixes, differ in length and hold
            // multi-byte characters: the stream table sorts them by bytes.
            let stream = ["stream-0", "stream-01", "str\u{f6}m-2", "s", "\u{65e5}\u{672c}-4"][(position % 5) as usize];
            let payload = vec![position as u8; (position % 90) as usize];
            log.append(&NewEvent::new(stream, "E", &payload).with_metadata(b"{\"m\":1}"))?;
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(directory.path())?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let folder = seeds.join(target);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join(name), bytes)
    };
    let mut segments_seeded = 0;
    for path in &files {
        let bytes = std::fs::read(path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("seg") if segments_seeded < 2 => {
                segments_seeded += 1;
                let data_end = bytes.len() - 64;
                write("record_decode", &format!("{name}.records"), &bytes[64..data_end])?;
                let mut layout = bytes[..64].to_vec();
                layout.extend_from_slice(&bytes[data_end..]);
                write("segment_layout", &format!("{name}.header_footer"), &layout)?;
            }
            Some("streams") => write("stream_table", &name, &bytes)?,
            Some("idx") => write("segment_index", &name, &bytes)?,
            _ if name == chronolog::segment::manifest::MANIFEST_FILE_NAME => write("manifest", &name, &bytes)?,
            _ => {}
        }
    }
    // Snapshot files: a small one and one with a long name and payload.
    {
        let log = Log::open(directory.path(), LogOptions::default())?;
        let store = chronolog::snapshot::SnapshotStore::open(&log);
        let next = log.next_position();
        let timestamp_ns = log.last_timestamp_ns();
        for (name, payload) in [("account-7", b"{\"balance\":10}".to_vec()), ("projection:balances", vec![7u8; 300])] {
            let meta = chronolog::snapshot::SnapshotMeta {
                name: name.to_owned(),
                next_position: next,
                timestamp_ns,
                version: 3,
                schema_version: 2,
            };
            // One with the anchor CRC of format version 4, one without.
            let path = if name.starts_with("account") {
                store.write_anchored(&meta, &payload, &log.view())?
            } else {
                store.write(&meta, &payload)?
            };
            write("snapshot_file", &name.replace(':', "_"), &std::fs::read(path)?)?;
        }
    }
    // A TRUNCATE marker, as `truncate_after(41)` writes it.
    write("truncate_marker", "marker-41", &chronolog::segment::truncate_marker::encode(41))?;
    // Recovery scripts: six bytes per damage (file, operation, offset, value,
    // length); operations 4 to 6 add a TRUNCATE marker, a copy of a file under
    // a segment's name, and a temporary.
    let scripts: [&[u8]; 7] = [
        &[0, 0, 100, 0, 0x40, 0],
        &[1, 1, 0, 2, 0, 200],
        &[0, 2, 200, 3, 0, 0, 3, 3, 0, 0, 0, 0],
        &[2, 0, 64, 0, 1, 0, 0, 1, 80, 0, 0, 16],
        &[0, 4, 50, 0, 0, 0],
        &[1, 5, 7, 0, 0, 0, 2, 0, 70, 0, 4, 0],
        &[0, 6, 0, 0, 0, 0, 3, 4, 90, 0, 0, 0],
    ];
    for (index, script) in scripts.iter().enumerate() {
        write("recovery", &format!("script-{index}"), script)?;
    }
    println!("seeds written to {}", seeds.display());
    Ok(())
}
