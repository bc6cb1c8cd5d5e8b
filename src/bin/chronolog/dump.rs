//! `chronolog dump DIR`: events as JSON lines (or text), selected by
//! position, time, stream, category and type, oldest or newest first.

use std::path::PathBuf;

use chronolog::{EventRef, Filter, Log, LogOptions, LogView};

use crate::output::{self, Format, Out};
use crate::{progress, CliResult};

/// Which events `dump` and `tail` print (every condition given applies).
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Only events at or after this position.
    #[arg(long, value_name = "POS")]
    pub from: Option<u64>,
    /// Only events at or after this time (RFC 3339 or integer ns).
    #[arg(long, value_name = "TIME", value_parser = crate::time::parse_time)]
    pub from_time: Option<u64>,
    /// Only this stream (read through the stream index).
    #[arg(long, value_name = "STREAM")]
    pub stream: Option<String>,
    /// Only streams whose name starts with this (a category, such as `account-`).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Only events of this type (repeat for several).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
}

impl Selection {
    /// The first position to look at in `view`.
    pub fn start(&self, view: &LogView) -> CliResult<u64> {
        let first = view.first_position();
        let mut start = first.max(self.from.unwrap_or(0));
        if let Some(time) = self.from_time {
            let at_time = match time.checked_sub(1) {
                None => first,
                Some(before) => view.position_at(before)?.map_or(first, |position| position + 1),
            };
            start = start.max(at_time);
        }
        Ok(start)
    }

    /// The category and type conditions.
    pub fn filter(&self) -> Filter {
        let filter = Filter::default().event_types(self.types.iter().cloned());
        match &self.prefix {
            Some(prefix) => filter.stream_prefix(prefix.clone()),
            None => filter,
        }
    }

    /// Every condition but the position range.
    pub fn matches(&self, filter: &Filter, event: &EventRef<'_>) -> bool {
        self.stream.as_deref().is_none_or(|stream| stream == event.stream)
            && self.from_time.is_none_or(|time| event.timestamp_ns >= time)
            && filter.matches(event.stream, event.event_type)
    }
}

/// Arguments of `dump`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
JSON lines: {\"position\":N,\"timestamp\":NS,\"stream\":S,\"version\":V,\"type\":T,\"data\":JSON,\"metadata\":JSON}
A payload that is compact JSON (as `chronolog append` stores it) is printed as
\"data\"; any other payload (empty, not JSON, JSON with whitespace, JSON a strict
parser refuses) as \"data_b64\" (standard base64); metadata likewise as \"metadata\" /
\"metadata_b64\" (the text `null` as base64), left out when empty. So the lines can
be fed to `chronolog append` unchanged, and the copy holds the same bytes.

Examples:
  chronolog dump DIR --stream account-7 --format text
  chronolog dump DIR --prefix account- --type Debited --as-of 2025-06-30T23:59:59Z --reverse --limit 10")]
pub struct Args {
    /// The log directory (opened read-only: a writer may be appending).
    pub directory: PathBuf,
    #[command(flatten)]
    pub selection: Selection,
    /// Only events at or before this time: the log as it was then (RFC 3339 or integer ns).
    #[arg(long, value_name = "TIME", value_parser = crate::time::parse_time)]
    pub as_of: Option<u64>,
    /// Newest first.
    #[arg(long)]
    pub reverse: bool,
    /// At most this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Events read backward per window of a reverse dump.
const REVERSE_WINDOW: u64 = 4096;

/// Runs `dump`.
pub fn run(args: &Args) -> CliResult {
    let log = Log::open_read_only(&args.directory, LogOptions::default())?;
    let view = log.view();
    let selection = &args.selection;
    let start = selection.start(&view)?;
    let end = match args.as_of {
        Some(time) => view.position_at(time)?.map_or(view.first_position(), |position| position + 1),
        None => view.next_position(),
    };
    let filter = selection.filter();
    let mut printer =
        Printer { out: Out::new(), line: String::new(), format: args.format, left: args.limit.unwrap_or(u64::MAX) };
    if printer.left == 0 || start >= end {
        return printer.out.flush();
    }
    match (&selection.stream, args.reverse) {
        (Some(stream), false) => {
            for event in view.read_stream(stream, 0)? {
                let event = event?;
                if event.position >= end {
                    break;
                }
                if event.position >= start && selection.matches(&filter, &event) && !printer.print(&event)? {
                    break;
                }
            }
        }
        (Some(stream), true) => {
            for event in view.read_stream_backward(stream, None)? {
                let event = event?;
                if event.position < start {
                    break;
                }
                if event.position < end && selection.matches(&filter, &event) && !printer.print(&event)? {
                    break;
                }
            }
        }
        (None, false) => {
            let bar = progress::bar_beside_output(end - start, "dump");
            for event in view.iter_range(start, end) {
                let event = event?;
                if event.position % 4096 == 0 {
                    bar.set_position(event.position - start);
                }
                if selection.matches(&filter, &event) && !printer.print(&event)? {
                    break;
                }
            }
            bar.finish_and_clear();
        }
        (None, true) => {
            // The log is read backward a window at a time, each window found
            // through the sparse index: an --as-of far in the past does not
            // walk back over every newer event.
            let bar = progress::bar_beside_output(end - start, "dump");
            let mut high = end;
            'windows: while high > start {
                let low = high.saturating_sub(REVERSE_WINDOW).max(start);
                let window = view.iter_range(low, high).collect::<Result<Vec<_>, _>>()?;
                for event in window.iter().rev() {
                    if selection.matches(&filter, event) && !printer.print(event)? {
                        break 'windows;
                    }
                }
                bar.set_position(end - low);
                high = low;
            }
            bar.finish_and_clear();
        }
    }
    printer.out.flush()
}

/// Prints events until the limit.
struct Printer {
    out: Out,
    line: String,
    format: Format,
    left: u64,
}

impl Printer {
    /// Prints one event; false once the limit is reached.
    fn print(&mut self, event: &EventRef<'_>) -> CliResult<bool> {
        self.line.clear();
        output::render(event, self.format, &mut self.line);
        self.out.line(&self.line)?;
        self.left -= 1;
        Ok(self.left > 0)
    }
}
