//! `chronolog`: the operator's tool for a chronolog log directory.
//!
//! Look inside a data directory (`info`, `dump`, `snapshots`), check it
//! (`verify`), feed it (`append`), follow it (`tail`), cut it (`truncate`,
//! `purge`), and run the engine's main job on a default workload (`demo`).
//!
//! Exit codes, for every command: 0 success; 1 corruption found, or data
//! rejected (a malformed input line, a concurrency conflict); 2 a usage or
//! I/O error (clap's own usage errors exit 2 as well).

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod append;
mod bank;
mod demo;
mod dump;
mod info;
mod maintenance;
mod output;
mod progress;
mod snapshots;
mod tail;
mod time;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: corruption found, or data rejected.
pub const EXIT_DATA: u8 = 1;
/// Exit code: a usage or I/O error.
pub const EXIT_USAGE: u8 = 2;

const AFTER_HELP: &str = "\
Times (--from-time, --as-of, and \"timestamp\" in append's input) are RFC 3339
(2025-03-01T12:00:00Z, 2025-03-01T13:00:00.5+01:00) or integer nanoseconds since
the Unix epoch.

Exit codes: 0 success; 1 corruption found (verify, or a damaged record met while
reading) or input rejected (append: malformed line, concurrency conflict,
timestamp out of order); 2 usage or I/O error (including a log locked by another
writer).

dump, tail, info, verify and snapshots open the log read-only: they work while
another process appends, without its lock, and never report the half-written
end of a batch being written as corruption.";

/// Operate, inspect and verify a chronolog event log from the shell.
#[derive(Debug, Parser)]
#[command(name = "chronolog", version, after_help = AFTER_HELP, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the main job on an embedded default: write a year of a bank's
    /// history (about a million events, with snapshots), replay it, query it
    /// as of past times, verify it, and print throughput.
    Demo(demo::Args),
    /// Segments, positions, time range, streams, events, sizes on disk,
    /// snapshots, format version.
    Info(info::Args),
    /// Check every record's CRC, every index and snapshot file; exit 1 when
    /// anything is corrupt.
    Verify(verify::Args),
    /// Append events read as JSON lines from stdin; print one JSON
    /// acknowledgement per event.
    Append(append::Args),
    /// Print events as JSON lines (or text), filtered by position, time,
    /// stream, category or type.
    Dump(dump::Args),
    /// Print events like dump, then follow new ones as another process
    /// appends them, until interrupted.
    Tail(tail::Args),
    /// Remove every event after a position (kept: the position itself).
    Truncate(maintenance::TruncateArgs),
    /// Delete whole segments whose events all come before a position.
    Purge(maintenance::PurgeArgs),
    /// List every snapshot file, damaged ones marked with their error.
    Snapshots(snapshots::Args),
}

/// How a command ended, when not with success.
#[derive(Debug)]
pub enum Failure {
    /// Stdout's reader went away (a closed pipe): a normal end, exit 0.
    Closed,
    /// Print `message` on stderr and exit with `code`.
    Message {
        /// Exit code.
        code: u8,
        /// One line naming the problem (and its file and offset when known).
        message: String,
    },
    /// The command already reported the problem; exit with this code.
    Reported(u8),
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Message { code: EXIT_USAGE, message: message.into() }
    }

    /// A data error (exit 1).
    pub fn data(message: impl Into<String>) -> Failure {
        Failure::Message { code: EXIT_DATA, message: message.into() }
    }

    /// The message of a failure, for a report of its own (a JSON line).
    pub fn message(&self) -> String {
        match self {
            Failure::Message { message, .. } => message.clone(),
            Failure::Closed => "stdout was closed".into(),
            Failure::Reported(code) => format!("failed with exit code {code}"),
        }
    }

    /// An I/O error on `what` (exit 2).
    pub fn io(what: impl std::fmt::Display, error: &std::io::Error) -> Failure {
        Failure::usage(format!("{what}: {error}"))
    }
}

/// The exit code for an engine error: corruption is 1, anything else
/// (I/O, a lock held by another writer, a position out of range) is 2.
pub fn exit_code_of(error: &chronolog::Error) -> u8 {
    if error.is_corruption() {
        EXIT_DATA
    } else {
        EXIT_USAGE
    }
}

impl From<chronolog::Error> for Failure {
    fn from(error: chronolog::Error) -> Failure {
        let code = exit_code_of(&error);
        let message = match &error {
            chronolog::Error::Locked { path } => {
                format!("{error}: stop the process writing to it first (the lock file is {})", path.display())
            }
            _ => error.to_string(),
        };
        Failure::Message { code, message }
    }
}

/// Tells the operator, on stderr, what opening the log for writing repaired:
/// an unfinished batch cut from the end, damage set aside, a truncation
/// finished. As one JSON line each when `json` (for `append`, whose stderr is
/// JSON lines), as text otherwise.
pub fn warn_about_recovery(log: &chronolog::Log, json: bool) {
    let report = log.recovery_report();
    let mut warnings: Vec<(&str, String, serde_json::Value)> = Vec::new();
    for (kind, dropped) in
        report.torn_tail.iter().map(|d| ("torn_tail", d)).chain(report.salvaged.iter().map(|d| ("salvaged", d)))
    {
        let text = format!(
            "opening cut {} bytes at byte offset {} of {} ({})",
            dropped.length_bytes,
            dropped.offset,
            dropped.path.display(),
            if kind == "torn_tail" { "an unfinished write" } else { "damage, set aside in salvage/" }
        );
        let details = serde_json::json!({"file": dropped.path.display().to_string(), "offset": dropped.offset, "bytes": dropped.length_bytes});
        warnings.push((kind, text, details));
    }
    if let Some(position) = report.completed_truncation {
        let text = format!("opening finished an interrupted truncation after position {position}");
        warnings.push(("completed_truncation", text, serde_json::json!({"position": position})));
    }
    for (kind, text, details) in warnings {
        let line = if json {
            let mut value = serde_json::json!({"warning": kind, "message": text});
            if let (Some(object), serde_json::Value::Object(details)) = (value.as_object_mut(), details) {
                object.extend(details);
            }
            value.to_string()
        } else {
            format!("chronolog: warning: {text}")
        };
        // Nothing is left to warn when stderr itself is gone.
        let _ = output::eprintln(&line);
    }
}

/// What every command returns.
pub type CliResult<T = ()> = Result<T, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Append(args) => append::run(&args),
        Command::Dump(args) => dump::run(&args),
        Command::Tail(args) => tail::run(&args),
        Command::Truncate(args) => maintenance::truncate(&args),
        Command::Purge(args) => maintenance::purge(&args),
        Command::Snapshots(args) => snapshots::run(&args),
    };
    match result {
        Ok(()) | Err(Failure::Closed) => ExitCode::from(EXIT_OK),
        Err(Failure::Reported(code)) => ExitCode::from(code),
        Err(Failure::Message { code, message }) => {
            // Stderr may be closed too; there is nowhere left to report that.
            let _ = output::eprintln(&format!("chronolog: {message}"));
            ExitCode::from(code)
        }
    }
}
