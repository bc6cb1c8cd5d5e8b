//! `chronolog verify DIR`: every record's CRC and framing, every footer,
//! padding byte, index and snapshot file; each problem with its file and
//! byte offset. Exit 0 when clean, 1 when anything is corrupt, 2 when the
//! directory cannot be read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronolog::snapshot::SnapshotStore;
use chronolog::storage::StdStorage;
use chronolog::{CorruptionKind, Error, Log, LogOptions};

use crate::output::{json_string, plural, thousands, Out};
use crate::{progress, CliResult, Failure, EXIT_DATA};

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The log is opened read-only, so a writer may be appending: the batch it is
writing at the end of the active segment is not shown, and not reported.

--json prints one object:
  {\"clean\":false,\"segments_checked\":3,\"records_checked\":1200,\"indexes_checked\":5,
   \"snapshots_checked\":2,\"problems\":[{\"file\":\"DIR/00000000000000000000.seg\",
   \"offset\":1234,\"kind\":\"checksum_mismatch\",\"message\":\"corrupted data in ...\"}]}

Exit codes: 0 clean, 1 corruption found, 2 the directory could not be read.")]
pub struct Args {
    /// The log directory.
    pub directory: PathBuf,
    /// One machine-readable JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What was checked and what was found.
#[derive(Debug, Default)]
struct Report {
    segments_checked: usize,
    records_checked: u64,
    indexes_checked: usize,
    snapshots_checked: usize,
    problems: Vec<Error>,
    /// Bytes after the active segment's last complete batch: a writer
    /// appending, or a torn write or damage that the writer's next open
    /// judges (a read-only check cannot tell them apart).
    unfinished_tail: Option<chronolog::log::DroppedBytes>,
}

/// Runs `verify`.
pub fn run(args: &Args) -> CliResult {
    let spinner = progress::spinner("verifying every record, index and snapshot");
    let report = check(&args.directory);
    spinner.finish_and_clear();
    let report = report?;
    let mut out = Out::new();
    if args.json {
        out.line(&json_report(&report))?;
    } else {
        for problem in &report.problems {
            out.line(&format!("problem: {problem}"))?;
        }
        if let Some(tail) = &report.unfinished_tail {
            out.line(&format!(
                "note: {} bytes after the last complete batch at byte offset {} of {}: a writer appending now, or, if none is, a torn write or damage that the next writable open will cut or refuse",
                tail.length_bytes,
                tail.offset,
                tail.path.display()
            ))?;
        }
        let verdict = match report.problems.len() {
            0 => "clean".to_string(),
            1 => "1 problem".to_string(),
            count => format!("{count} problems"),
        };
        out.line(&format!(
            "{}: {}, {} records, {}, {} checked: {verdict}",
            args.directory.display(),
            plural(report.segments_checked as u64, "segment"),
            thousands(report.records_checked),
            plural(report.indexes_checked as u64, "index file"),
            plural(report.snapshots_checked as u64, "snapshot")
        ))?;
    }
    out.flush()?;
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Reported(EXIT_DATA))
    }
}

fn check(directory: &Path) -> CliResult<Report> {
    let mut report = Report::default();
    match Log::open_read_only(directory, LogOptions::default()) {
        Ok(log) => match log.verify() {
            Ok(verified) if log.recovery_report().torn_tail.is_some() => {
                report.unfinished_tail = log.recovery_report().torn_tail.clone();
                report.segments_checked = verified.segments_checked;
                report.records_checked = verified.records_checked;
                report.indexes_checked = verified.indexes_checked;
                report.problems.extend(verified.problems);
            }
            Ok(verified) => {
                report.segments_checked = verified.segments_checked;
                report.records_checked = verified.records_checked;
                report.indexes_checked = verified.indexes_checked;
                report.problems.extend(verified.problems);
            }
            Err(error) if error.is_corruption() => report.problems.push(error),
            Err(error) => return Err(error.into()),
        },
        // Damage that stops the log from opening (a bad segment header or
        // footer, a damaged active segment) is a finding, not a failure to
        // check.
        Err(error) if error.is_corruption() => report.problems.push(error),
        Err(error) => return Err(error.into()),
    }
    let entries = SnapshotStore::at(directory, Arc::new(StdStorage)).list_all()?;
    report.snapshots_checked = entries.len();
    report.problems.extend(entries.into_iter().filter_map(|entry| entry.meta.err()));
    Ok(report)
}

fn json_report(report: &Report) -> String {
    let problems: Vec<String> = report.problems.iter().map(problem_json).collect();
    format!(
        "{{\"clean\":{},\"segments_checked\":{},\"records_checked\":{},\"indexes_checked\":{},\"snapshots_checked\":{},\"problems\":[{}],\"unfinished_tail\":{}}}",
        report.problems.is_empty(),
        report.segments_checked,
        report.records_checked,
        report.indexes_checked,
        report.snapshots_checked,
        problems.join(","),
        report.unfinished_tail.as_ref().map_or_else(
            || "null".to_string(),
            |tail| format!(
                "{{\"file\":{},\"offset\":{},\"bytes\":{}}}",
                json_string(&tail.path.display().to_string()),
                tail.offset,
                tail.length_bytes
            )
        )
    )
}

/// `{"file":..,"offset":..,"kind":..,"message":..}`; `offset` is null and
/// `kind` is `"io"` for a file that could not be read.
fn problem_json(problem: &Error) -> String {
    let (file, offset, kind) = match problem {
        Error::Corrupted { path, offset, kind } => (Some(path), offset.to_string(), kind_name(kind)),
        Error::Io { path, .. } => (Some(path), "null".to_string(), "io"),
        _ => (None, "null".to_string(), "other"),
    };
    let file = file.map_or_else(|| "null".to_string(), |path| json_string(&path.display().to_string()));
    format!(
        "{{\"file\":{file},\"offset\":{offset},\"kind\":\"{kind}\",\"message\":{}}}",
        json_string(&problem.to_string())
    )
}

/// A stable name for a kind of damage.
fn kind_name(kind: &CorruptionKind) -> &'static str {
    match kind {
        CorruptionKind::ChecksumMismatch { .. } => "checksum_mismatch",
        CorruptionKind::LengthOutOfRange { .. } => "length_out_of_range",
        CorruptionKind::Truncated { .. } => "truncated",
        CorruptionKind::TrailerMismatch => "trailer_mismatch",
        CorruptionKind::FieldLengths => "field_lengths",
        CorruptionKind::InvalidUtf8 => "invalid_utf8",
        CorruptionKind::UnknownFlags { .. } => "unknown_flags",
        CorruptionKind::BadMagic => "bad_magic",
        CorruptionKind::UnsupportedVersion { .. } => "unsupported_version",
        CorruptionKind::PositionMismatch { .. } => "position_mismatch",
        CorruptionKind::TimestampRegression => "timestamp_regression",
        CorruptionKind::SegmentMismatch => "segment_mismatch",
        CorruptionKind::MissingFooter => "missing_footer",
        CorruptionKind::NonZeroPadding => "non_zero_padding",
        CorruptionKind::IncompleteBatch => "incomplete_batch",
        CorruptionKind::MissingSegment { .. } => "missing_segment",
        CorruptionKind::InvalidField { .. } => "invalid_field",
        // The enum is non-exhaustive: a kind added later still gets a name.
        _ => "other",
    }
}
