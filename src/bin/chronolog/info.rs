//! `chronolog info DIR`: what a log directory holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronolog::index::stream_table;
use chronolog::segment::{self, layout};
use chronolog::snapshot::SnapshotStore;
use chronolog::storage::StdStorage;
use chronolog::{Log, LogOptions, LogView};
use serde_json::json;

use crate::output::{self, plural, thousands, Out};
use crate::time::format_rfc3339;
use crate::{CliResult, Failure};

/// Arguments of `info`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The log is opened read-only, so a writer may be appending: the figures are those of
a consistent prefix of the log. Streams are counted from the log's stream table and
the active segment's index, without a scan; streams whose events were all purged
still count.")]
pub struct Args {
    /// The log directory.
    pub directory: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One segment file.
#[derive(Debug)]
struct SegmentInfo {
    name: String,
    first_position: u64,
    file_bytes: u64,
    /// Format version in its header.
    version: u32,
    state: SegmentState,
}

#[derive(Debug)]
enum SegmentState {
    Sealed { last_position: u64, records: u64, min_ns: u64, max_ns: u64, data_end: u64 },
    Active { events: u64 },
}

/// Bytes on disk by kind of file.
#[derive(Debug, Default)]
struct Sizes {
    segments: u64,
    indexes: (u64, u64),
    stream_tables: (u64, u64),
    snapshots: (u64, u64),
    salvage: (u64, u64),
    other: u64,
}

/// Runs `info`.
pub fn run(args: &Args) -> CliResult {
    let directory = &args.directory;
    let log = Log::open_read_only(directory, LogOptions::default())?;
    let view = log.view();
    let segments = segments(&view);
    let streams = view.stream_count()?;
    let sizes = sizes(directory)?;
    let snapshots = SnapshotStore::at(directory, Arc::new(StdStorage)).list_all()?;
    let damaged_snapshots = snapshots.iter().filter(|entry| entry.meta.is_err()).count();
    let first_timestamp = view.get(view.first_position())?.map(|event| event.timestamp_ns);
    let mut versions: Vec<u32> = segments.iter().map(|segment| segment.version).collect();
    versions.sort_unstable();
    versions.dedup();
    let torn_tail = log.recovery_report().torn_tail.as_ref().map(|dropped| dropped.length_bytes);

    let mut out = Out::new();
    if args.json {
        let segments_json: Vec<serde_json::Value> = segments.iter().map(segment_json).collect();
        let value = json!({
            "directory": directory.display().to_string(),
            "format_versions": versions,
            "format_version_written": segment::FORMAT_VERSION,
            "first_position": view.first_position(),
            "next_position": view.next_position(),
            "events": view.len(),
            "first_timestamp": first_timestamp,
            "last_timestamp": first_timestamp.map(|_| view.last_timestamp_ns()),
            "streams": streams,
            "segments": segments_json,
            "bytes": {
                "segments": sizes.segments,
                "indexes": sizes.indexes.1,
                "stream_tables": sizes.stream_tables.1,
                "snapshots": sizes.snapshots.1,
                "salvage": sizes.salvage.1,
                "other": sizes.other,
            },
            "snapshots": snapshots.len(),
            "damaged_snapshots": damaged_snapshots,
            "unfinished_tail_bytes": torn_tail,
        });
        out.line(&value.to_string())?;
        return out.flush();
    }

    out.line(&format!("log directory    {}", directory.display()))?;
    let versions_text: Vec<String> = versions.iter().map(u32::to_string).collect();
    out.line(&format!(
        "format version   {} (this build writes {}, reads {} to {})",
        if versions_text.is_empty() { "unknown".into() } else { versions_text.join(", ") },
        segment::FORMAT_VERSION,
        segment::FORMAT_VERSION_OLDEST_READABLE,
        segment::FORMAT_VERSION
    ))?;
    out.line(&format!(
        "positions        {}..{} ({} events)",
        thousands(view.first_position()),
        thousands(view.next_position()),
        thousands(view.len())
    ))?;
    match first_timestamp {
        Some(first) => out.line(&format!(
            "time range       {} .. {} ({first} .. {} ns)",
            format_rfc3339(first),
            format_rfc3339(view.last_timestamp_ns()),
            view.last_timestamp_ns()
        ))?,
        None => out.line("time range       (no events)")?,
    }
    out.line(&format!("streams          {}", thousands(streams)))?;
    let sealed = segments.iter().filter(|s| matches!(s.state, SegmentState::Sealed { .. })).count();
    out.line(&format!("segments         {} ({sealed} sealed)", segments.len()))?;
    for segment in &segments {
        out.line(&format!("  {}", segment_text(segment)))?;
    }
    let total =
        sizes.segments + sizes.indexes.1 + sizes.stream_tables.1 + sizes.snapshots.1 + sizes.salvage.1 + sizes.other;
    out.line(&format!(
        "on disk          {} in all: segments {}, segment indexes {} ({}), stream tables {} ({}), snapshots {} ({}), salvage {} ({})",
        output::bytes(total),
        output::bytes(sizes.segments),
        output::bytes(sizes.indexes.1),
        plural(sizes.indexes.0, "file"),
        output::bytes(sizes.stream_tables.1),
        plural(sizes.stream_tables.0, "file"),
        output::bytes(sizes.snapshots.1),
        plural(sizes.snapshots.0, "file"),
        output::bytes(sizes.salvage.1),
        plural(sizes.salvage.0, "file")
    ))?;
    out.line(&format!(
        "snapshots        {}{}",
        snapshots.len(),
        if damaged_snapshots > 0 {
            format!(" ({damaged_snapshots} damaged: see chronolog snapshots)")
        } else {
            String::new()
        }
    ))?;
    if let Some(bytes) = torn_tail {
        out.line(&format!(
            "note             the active segment ends with {bytes} bytes of an unfinished batch (a writer is appending it, or crashed while it did); not counted"
        ))?;
    }
    out.flush()
}

/// The view's segments, with what their headers and footers say.
fn segments(view: &LogView) -> Vec<SegmentInfo> {
    view.segment_summaries()
        .into_iter()
        .map(|summary| {
            let name = summary.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let state = match summary.footer {
                Some(footer) => SegmentState::Sealed {
                    last_position: footer.last_position,
                    records: footer.record_count,
                    min_ns: footer.min_timestamp_ns,
                    max_ns: footer.max_timestamp_ns,
                    data_end: footer.data_end_offset,
                },
                None => SegmentState::Active { events: summary.next_position - summary.first_position },
            };
            SegmentInfo {
                name,
                first_position: summary.first_position,
                file_bytes: summary.capacity_bytes,
                version: summary.format_version,
                state,
            }
        })
        .collect()
}

fn segment_text(segment: &SegmentInfo) -> String {
    let head = format!("{}  {}", segment.name, output::bytes(segment.file_bytes));
    match &segment.state {
        SegmentState::Sealed { last_position, records, min_ns, max_ns, data_end } => format!(
            "{head}  sealed  positions {}..={} ({} events, {} of records)  {} .. {}",
            thousands(segment.first_position),
            thousands(*last_position),
            thousands(*records),
            output::bytes(data_end.saturating_sub(layout::HEADER_SIZE as u64)),
            format_rfc3339(*min_ns),
            format_rfc3339(*max_ns)
        ),
        SegmentState::Active { events } => {
            format!(
                "{head}  active  from position {} ({} events)",
                thousands(segment.first_position),
                thousands(*events)
            )
        }
    }
}

fn segment_json(segment: &SegmentInfo) -> serde_json::Value {
    let mut value = json!({
        "name": segment.name,
        "first_position": segment.first_position,
        "bytes": segment.file_bytes,
        "format_version": segment.version,
    });
    let fields = match &segment.state {
        SegmentState::Sealed { last_position, records, min_ns, max_ns, data_end } => json!({
            "state": "sealed",
            "last_position": last_position,
            "events": records,
            "first_timestamp": min_ns,
            "last_timestamp": max_ns,
            "data_end_offset": data_end,
        }),
        SegmentState::Active { events } => json!({ "state": "active", "events": events }),
    };
    if let (Some(object), serde_json::Value::Object(fields)) = (value.as_object_mut(), fields) {
        object.extend(fields);
    }
    value
}

/// Bytes of each kind of file in the directory.
fn sizes(directory: &Path) -> CliResult<Sizes> {
    let mut sizes = Sizes::default();
    for entry in std::fs::read_dir(directory).map_err(|error| Failure::io(directory.display(), &error))? {
        let Ok(entry) = entry else { continue };
        let Ok(metadata) = entry.metadata() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if metadata.is_dir() {
            let tree = tree_size(&entry.path());
            match name.as_str() {
                chronolog::snapshot::SNAPSHOTS_FOLDER => sizes.snapshots = tree,
                "salvage" => sizes.salvage = tree,
                _ => sizes.other += tree.1,
            }
        } else if segment::parse_file_name(&name).is_some() {
            sizes.segments += metadata.len();
        } else if chronolog::index::segment_index::parse_file_name(&name).is_some() {
            sizes.indexes.0 += 1;
            sizes.indexes.1 += metadata.len();
        } else if stream_table::parse_file_name(&name).is_some() {
            sizes.stream_tables.0 += 1;
            sizes.stream_tables.1 += metadata.len();
        } else {
            sizes.other += metadata.len();
        }
    }
    Ok(sizes)
}

/// Files and bytes under a folder (what cannot be read counts as nothing:
/// these are figures, not checks).
fn tree_size(folder: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(folder) else { return (0, 0) };
    let mut total = (0, 0);
    for entry in entries.filter_map(Result::ok) {
        let Ok(metadata) = entry.metadata() else { continue };
        if metadata.is_dir() {
            let (files, bytes) = tree_size(&entry.path());
            total = (total.0 + files, total.1 + bytes);
        } else {
            total = (total.0 + 1, total.1 + metadata.len());
        }
    }
    total
}
