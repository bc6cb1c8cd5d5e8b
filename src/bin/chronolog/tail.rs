//! `chronolog tail DIR`: the events already there, then every new one as
//! another process appends it, until interrupted.
//!
//! The log is opened read-only (no lock: the writer keeps appending) and
//! followed with `Log::wait_for_or_stop`, which refreshes the handle from the
//! files with pauses growing to 50 ms: a new event shows within about 50 ms.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use chronolog::{Log, LogOptions};

use crate::dump::Selection;
use crate::output::{self, Format, Out};
use crate::CliResult;

/// Arguments of `tail`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Without --from, --from-time or --from-end it starts at the first event, like dump.
Each line is flushed as soon as it is printed, so a pipe sees it at once. It runs
until interrupted (Ctrl-C) or until its reader goes away (exit code 0).")]
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
    // Never set: tail runs until the process is interrupted.
    let stop = AtomicBool::new(false);
    loop {
        let view = log.view();
        if view.next_position() < next {
            let message = format!(
                "chronolog: the log was truncated to end at position {}; following from there",
                view.next_position()
            );
            let _ = output::eprintln(&message);
            next = view.next_position();
        }
        next = next.max(view.first_position());
        for event in view.iter_range(next, view.next_position()) {
            let event = event?;
            next = event.position + 1;
            if selection.matches(&filter, &event) {
                line.clear();
                output::render(&event, args.format, &mut line);
                out.line(&line)?;
            }
        }
        out.flush()?;
        drop(view);
        // A refresh that races the writer's purge lists the directory again
        // (inside the library); any error left is real.
        log.wait_for_or_stop(next, None, &stop)?;
    }
}
