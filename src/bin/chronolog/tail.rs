//! `chronolog tail DIR`: the events already there, then every new one as
//! another process appends it, until interrupted.
//!
//! The log is opened read-only (no lock: the writer keeps appending) and
//! followed with `Log::wait_for_or_stop`, which refreshes the handle from the
//! files with pauses growing to 50 ms: a new event shows within about 50 ms.
//! A truncation under tail (even one the log has grown back over) is noticed
//! by checking that the events it read are still there, and tail goes on
//! from the first one replaced, saying so on stderr.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chronolog::{Log, LogOptions, LogView};

use crate::dump::Selection;
use crate::output::{self, Format, Out};
use crate::CliResult;

/// Arguments of `tail`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Without --from, --from-time or --from-end it starts at the first event, like dump.
Each line is flushed as soon as it is printed, so a pipe sees it at once. It runs
until interrupted (Ctrl-C) or until its reader goes away (exit code 0; noticed at
the next line it prints). A truncation under tail is reported on stderr, and tail
goes on from the first event replaced.")]
pub struct Args {
    /// The log directory (opened read-only: a writer may be appending).
    pub directory: PathBuf,
    #[command(flatten)]
    pub selection: Selection,
    /// Only events appended from now on.
    #[arg(long, conflicts_with_all = ["from", "from_time"])]
    pub from_end: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// What tells an event from one appended at its position after a
/// truncation: its timestamp and record CRC (`LogView::fingerprint`); the
/// timestamp alone is the same when the new events were given the old ones'.
type Fingerprint = (u64, u32);

/// Events remembered (position and fingerprint) to find where a truncation
/// under tail cut the log.
const REMEMBERED: usize = 1024;
/// How often tail looks for a truncation while the log is idle.
const TRUNCATION_CHECK: Duration = Duration::from_millis(250);

/// Runs `tail`.
pub fn run(args: &Args) -> CliResult {
    let log = Log::open_read_only(&args.directory, LogOptions::default())?;
    let selection = &args.selection;
    let filter = selection.filter();
    let view = log.view();
    let mut next = if args.from_end { view.next_position() } else { selection.start(&view)? };
    drop(view);
    let mut out = Out::new();
    let mut line = String::new();
    // The newest events read: a truncation (then new appends) replaces some
    // of them, and tail goes on from the first one replaced.
    let mut read: VecDeque<(u64, Fingerprint)> = VecDeque::with_capacity(REMEMBERED);
    // Never set: tail runs until the process is interrupted.
    let stop = AtomicBool::new(false);
    loop {
        let view = log.view();
        if let Some(resume) = replaced_from(&view, &mut read)? {
            let message = format!(
                "chronolog: the log was truncated under tail; events from position {resume} on were replaced, following from there"
            );
            let _ = output::eprintln(&message);
            next = resume;
        }
        next = next.max(view.first_position());
        let mut events = view.iter_range(next, view.next_position());
        while let Some(event) = events.next() {
            let event = event?;
            next = event.position + 1;
            if read.len() == REMEMBERED {
                read.pop_front();
            }
            if let Some(crc) = events.last_crc() {
                read.push_back((event.position, (event.timestamp_ns, crc)));
            }
            if selection.matches(&filter, &event) {
                line.clear();
                output::render(&event, args.format, &mut line);
                out.line(&line)?;
            }
        }
        out.flush()?;
        drop(view);
        // Bounded, so that a truncation with nothing appended after it is
        // noticed too. A refresh racing the writer's purge lists the
        // directory again inside the library; any error left is real.
        log.wait_for_or_stop(next, Some(TRUNCATION_CHECK), &stop)?;
    }
}

/// When events tail already read are no longer in the log as read (a
/// truncation, perhaps followed by new appends): the first position to read
/// again, forgetting the replaced events.
fn replaced_from(view: &LogView, read: &mut VecDeque<(u64, Fingerprint)>) -> CliResult<Option<u64>> {
    let unchanged = |view: &LogView, (position, fingerprint): (u64, Fingerprint)| -> CliResult<bool> {
        // Purged events cannot be compared, and a purge rewrites nothing.
        if position < view.first_position() {
            return Ok(true);
        }
        let (timestamp_ns, crc) = fingerprint;
        Ok(view.holds_fingerprint(position, Some(timestamp_ns), Some(crc))?)
    };
    let Some(&newest) = read.back() else { return Ok(None) };
    if unchanged(view, newest)? {
        return Ok(None);
    }
    let mut resume = newest.0;
    while let Some(&entry) = read.back() {
        if unchanged(view, entry)? {
            break;
        }
        resume = entry.0;
        read.pop_back();
    }
    Ok(Some(resume))
}
