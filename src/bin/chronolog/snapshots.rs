//! `chronolog snapshots DIR`: every snapshot file beside the log, each read
//! whole and checked.

use std::path::PathBuf;
use std::sync::Arc;

use chronolog::snapshot::{SnapshotEntry, SnapshotStore};
use chronolog::storage::StdStorage;
use chronolog::{Log, LogOptions};

use crate::output::{self, json_string, Out};
use crate::time::format_rfc3339;
use crate::{CliResult, Failure};

/// Arguments of `snapshots`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Columns: name, next position (every event before it is reflected), timestamp of the
last reflected event, version (aggregates: events applied), schema version, file
size, path. A damaged file is marked DAMAGED with its error; one that reflects events
the log no longer holds (after a truncation) is marked AHEAD OF LOG. Listing never
fails on a damaged snapshot: use `chronolog verify` for an exit code.

--json prints one object per line: {\"name\":..,\"next_position\":..,\"timestamp\":..,
\"version\":..,\"schema_version\":..,\"bytes\":..,\"path\":..,\"ahead_of_log\":bool} or
{\"path\":..,\"bytes\":..,\"error\":..}.")]
pub struct Args {
    /// The log directory.
    pub directory: PathBuf,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapshots`.
pub fn run(args: &Args) -> CliResult {
    // A missing snapshots folder is an empty list; a missing log directory
    // is a mistyped path.
    if !args.directory.is_dir() {
        return Err(Failure::usage(format!("{} is not a directory", args.directory.display())));
    }
    let entries = SnapshotStore::at(&args.directory, Arc::new(StdStorage)).list_all()?;
    // Only to mark snapshots ahead of the log; the listing works without it.
    let log_next = Log::open_read_only(&args.directory, LogOptions::default()).ok().map(|log| log.next_position());
    let mut out = Out::new();
    if args.json {
        for entry in &entries {
            out.line(&entry_json(entry, log_next))?;
        }
        return out.flush();
    }
    let rows: Vec<[String; 7]> = entries.iter().map(|entry| entry_row(entry, log_next)).collect();
    let header = ["NAME", "NEXT", "TIMESTAMP", "VERSION", "SCHEMA", "SIZE", "PATH / STATE"].map(str::to_owned);
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> =
            row.iter().zip(widths).enumerate().map(|(index, (cell, width))| pad(cell, width, index)).collect();
        out.line(cells.join("  ").trim_end())?;
    }
    let damaged = entries.iter().filter(|entry| entry.meta.is_err()).count();
    out.line(&format!(
        "{}{} under {}",
        crate::output::plural(entries.len() as u64, "snapshot"),
        if damaged > 0 { format!(" ({damaged} damaged)") } else { String::new() },
        args.directory.join(chronolog::snapshot::SNAPSHOTS_FOLDER).display()
    ))?;
    out.flush()
}

/// Numbers right-aligned, text left-aligned.
fn pad(cell: &str, width: usize, column: usize) -> String {
    if matches!(column, 1 | 3 | 4 | 5) {
        format!("{cell:>width$}")
    } else {
        format!("{cell:<width$}")
    }
}

fn entry_row(entry: &SnapshotEntry, log_next: Option<u64>) -> [String; 7] {
    let size = output::bytes(entry.file_bytes);
    let path = entry.path.display().to_string();
    match &entry.meta {
        Ok(meta) => {
            let ahead = log_next.is_some_and(|next| meta.next_position > next);
            [
                meta.name.clone(),
                meta.next_position.to_string(),
                format_rfc3339(meta.timestamp_ns),
                meta.version.to_string(),
                meta.schema_version.to_string(),
                size,
                if ahead { format!("{path}  AHEAD OF LOG") } else { path },
            ]
        }
        Err(error) => {
            let dashes = || "-".to_string();
            ["?".into(), dashes(), dashes(), dashes(), dashes(), size, format!("{path}  DAMAGED: {error}")]
        }
    }
}

fn entry_json(entry: &SnapshotEntry, log_next: Option<u64>) -> String {
    let path = json_string(&entry.path.display().to_string());
    match &entry.meta {
        Ok(meta) => format!(
            "{{\"name\":{},\"next_position\":{},\"timestamp\":{},\"version\":{},\"schema_version\":{},\"bytes\":{},\"path\":{path},\"ahead_of_log\":{}}}",
            json_string(&meta.name),
            meta.next_position,
            meta.timestamp_ns,
            meta.version,
            meta.schema_version,
            entry.file_bytes,
            log_next.is_some_and(|next| meta.next_position > next)
        ),
        Err(error) => format!(
            "{{\"path\":{path},\"bytes\":{},\"error\":{}}}",
            entry.file_bytes,
            json_string(&error.to_string())
        ),
    }
}
