//! `chronolog truncate DIR --after POS` and `chronolog purge DIR --before POS`:
//! the two ways to remove events, through a writable open (so they refuse,
//! with exit code 2, while another process holds the log).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronolog::snapshot::SnapshotStore;
use chronolog::storage::StdStorage;
use chronolog::{Log, LogOptions};

use crate::output::{thousands, Out};
use crate::{CliResult, Failure};

/// Arguments of `truncate`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Atomic across crashes: a marker file makes the next open finish an interrupted cut.
Snapshots made from removed events are removed with them (the command says how many):
aggregates and projections rebuild from older ones. Refused (exit 2) while another
process has the log open for writing.")]
pub struct TruncateArgs {
    /// The log directory.
    pub directory: PathBuf,
    /// The last position to keep.
    #[arg(long, value_name = "POS")]
    pub after: u64,
}

/// Arguments of `purge`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Only whole sealed segments go, oldest first: events before POS that share a segment
with later ones stay, and the active segment is never purged. Refused (exit 2) while
another process has the log open for writing.")]
pub struct PurgeArgs {
    /// The log directory.
    pub directory: PathBuf,
    /// Delete segments whose events all come before this position.
    #[arg(long, value_name = "POS")]
    pub before: u64,
}

/// Runs `truncate`.
pub fn truncate(args: &TruncateArgs) -> CliResult {
    let log = open_existing(&args.directory)?;
    let (first, next) = (log.first_position(), log.next_position());
    if first == next {
        return Err(Failure::usage(format!("{} holds no event to truncate", args.directory.display())));
    }
    // The truncation removes the snapshots made from the events it cuts:
    // counted first, to say so.
    let cut_snapshots = SnapshotStore::at(&args.directory, Arc::new(StdStorage))
        .list_all()
        .map(|entries| {
            // By file name, as the truncation removes them (a damaged file
            // goes too).
            let next_position = |entry: &chronolog::snapshot::SnapshotEntry| {
                entry.path.file_name()?.to_str()?.strip_suffix(".snap")?.parse::<u64>().ok()
            };
            entries
                .iter()
                .filter(|entry| next_position(entry).is_some_and(|next| next > args.after.saturating_add(1)))
                .count()
        })
        .unwrap_or(0);
    log.truncate_after(args.after)?;
    let now_next = log.next_position();
    let mut out = Out::new();
    if now_next == next {
        out.line(&format!("nothing to remove: position {} is the last one of the log", args.after))?;
        return out.flush();
    }
    out.line(&format!(
        "truncated {}: removed {} events (positions {}..{}); kept positions {}..={}; the next append gets position {}",
        args.directory.display(),
        thousands(next - now_next),
        now_next,
        next,
        first,
        args.after,
        now_next
    ))?;
    if cut_snapshots > 0 {
        out.line(&format!(
            "removed {cut_snapshots} snapshots made from removed events: aggregates and projections rebuild from older ones"
        ))?;
    }
    out.flush()
}

/// Runs `purge`.
pub fn purge(args: &PurgeArgs) -> CliResult {
    let log = open_existing(&args.directory)?;
    let first = log.first_position();
    let removed = log.purge_before(args.before)?;
    let mut out = Out::new();
    if removed == 0 {
        out.line(&format!(
            "nothing to purge: no sealed segment ends before position {} (the log starts at {first}; the active segment is never purged)",
            args.before
        ))?;
    } else {
        let now_first = log.first_position();
        out.line(&format!(
            "purged {} of {}: {} events (positions {first}..{now_first}); the log now starts at position {now_first}",
            crate::output::plural(removed as u64, "segment"),
            args.directory.display(),
            thousands(now_first - first)
        ))?;
    }
    out.flush()
}

/// Opens an existing log for writing: a typo in the path must not create a
/// new log.
fn open_existing(directory: &Path) -> CliResult<Log> {
    let log = Log::open(directory, LogOptions::default().create_if_missing(false))?;
    crate::warn_about_recovery(&log, false);
    Ok(log)
}
