//! `chronolog demo [DIR]`: the main job on an embedded default.
//!
//! A year of a bank's history, event-sourced: accounts are opened, credited,
//! debited, and transfer money to each other (a transfer is one atomic batch
//! over two streams). The history is imported with explicit timestamps in
//! batches of 1,000 events (durability `None`, one sync at the end) while a
//! balances read model follows the log live on its own thread and snapshots
//! itself; some accounts get aggregate snapshots at mid-year and at the end.
//! Then a few commands go through the CQRS write path, the log is reopened,
//! replayed with every CRC checked, queried as of past moments (with
//! snapshots and by brute force, checked equal), read stream by stream, and
//! verified. Every phase prints what it did and how fast.
//!
//! Events are generated directly as batches rather than through
//! `AggregateStore::execute` (which loads the aggregate for every command):
//! the generator keeps each account's version and balance, so the streams
//! are exactly what the commands would have written, at import speed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronolog::cqrs::{project_as_of, Aggregate, AggregateStore, AsOf, CommandError, JsonCodec, ProjectionRunner};
use chronolog::snapshot::SnapshotStore;
use chronolog::storage::StdStorage;
use chronolog::{Durability, ExpectedVersion, Log, LogOptions, NewEvent};

use crate::bank::{Account, AccountCommand, AccountEvent, Balances};
use crate::output::{plural, thousands, Out};
use crate::time::format_rfc3339;
use crate::{progress, CliResult, Failure};

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The directory belongs to the demo: a first run creates it (or uses it when empty) and
leaves a .chronolog-demo marker in it; a later run resets it, deleting only
chronolog's own files. A directory holding anything else, or a log the demo did not
make, is refused (exit 2).

Look inside afterwards:
  chronolog info chronolog-data
  chronolog dump chronolog-data --stream account-7 --format text
  chronolog verify chronolog-data")]
pub struct Args {
    /// The demo's directory.
    #[arg(default_value = "chronolog-data")]
    pub directory: PathBuf,
    /// Events to write (accounts: one per 100 events, from 10 to 10,000).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
    pub events: u64,
}

/// Events per appended batch.
const BATCH: usize = 1_000;
/// The file that marks a directory as the demo's own.
const MARKER: &str = ".chronolog-demo";
/// Accounts given aggregate snapshots (at mid-year and at the end).
const SNAPSHOT_ACCOUNTS: u64 = 25;
/// The account whose history is queried as of a past moment.
const HISTORY_ACCOUNT: u64 = 7;
const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;
/// The metadata of each event: the channel the operation came through.
const CHANNELS: [&[u8]; 4] =
    [br#"{"channel":"web"}"#, br#"{"channel":"mobile"}"#, br#"{"channel":"branch"}"#, br#"{"channel":"atm"}"#];

/// xorshift64: a workload that is the same on every run.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One generated event, before it is borrowed into a `NewEvent`.
struct Planned {
    account: usize,
    event_type: &'static str,
    payload: Vec<u8>,
    metadata: &'static [u8],
    timestamp_ns: u64,
    expected_version: ExpectedVersion,
}

/// The bank's year, event by event, with the ledger the events imply.
struct Workload {
    random: Random,
    total: u64,
    generated: u64,
    opened: usize,
    streams: Vec<String>,
    versions: Vec<Option<u64>>,
    balances: Vec<i64>,
    start_ns: u64,
    step_ns: u64,
}

impl Workload {
    fn new(total: u64, accounts: u64, start_ns: u64, step_ns: u64) -> Workload {
        Workload {
            random: Random(0x9e37_79b9_7f4a_7c15),
            total,
            generated: 0,
            opened: 0,
            streams: (0..accounts).map(|id| AggregateStore::<Account, JsonCodec>::stream_of(&id.to_string())).collect(),
            versions: vec![None; accounts as usize],
            balances: vec![0; accounts as usize],
            start_ns,
            step_ns,
        }
    }

    /// Fills `batch` with the next `target` events (one more when a transfer
    /// straddles the end: its two events go in one atomic batch).
    fn fill(&mut self, batch: &mut Vec<Planned>, target: usize) -> CliResult {
        let accounts = self.streams.len() as u64;
        while batch.len() < target && self.generated < self.total {
            let timestamp_ns = self.start_ns + self.generated * self.step_ns;
            if self.opened < self.streams.len() {
                let account = self.opened;
                self.opened += 1;
                self.push(
                    batch,
                    account,
                    &AccountEvent::Opened { owner: format!("customer {account}") },
                    timestamp_ns,
                )?;
                continue;
            }
            let account = self.random.below(accounts) as usize;
            let roll = self.random.below(100);
            let cents = 1 + self.random.below(50_000) as i64;
            let affordable = self.balances[account] >= cents;
            if roll < 25 && affordable && self.total - self.generated >= 2 {
                let mut other = self.random.below(accounts - 1) as usize;
                if other >= account {
                    other += 1;
                }
                let out = AccountEvent::TransferredOut { cents, to: self.streams[other].clone() };
                let r#in = AccountEvent::TransferredIn { cents, from: self.streams[account].clone() };
                self.push(batch, account, &out, timestamp_ns)?;
                self.push(batch, other, &r#in, timestamp_ns)?;
            } else if roll < 55 && affordable {
                self.push(batch, account, &AccountEvent::Debited { cents }, timestamp_ns)?;
            } else {
                self.push(batch, account, &AccountEvent::Credited { cents }, timestamp_ns)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, batch: &mut Vec<Planned>, account: usize, event: &AccountEvent, timestamp_ns: u64) -> CliResult {
        let version = self.versions[account];
        self.versions[account] = Some(version.map_or(0, |v| v + 1));
        self.balances[account] += event.delta();
        let payload =
            serde_json::to_vec(event).map_err(|error| Failure::usage(format!("encoding an event: {error}")))?;
        let metadata = CHANNELS[self.random.below(CHANNELS.len() as u64) as usize];
        let expected_version = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        batch.push(Planned {
            account,
            event_type: Account::event_type(event),
            payload,
            metadata,
            timestamp_ns,
            expected_version,
        });
        self.generated += 1;
        Ok(())
    }
}

/// Runs `demo`.
pub fn run(args: &Args) -> CliResult {
    let started = Instant::now();
    let directory = &args.directory;
    let mut out = Out::new();
    let events = args.events;
    let accounts = (events / 100).clamp(10, 10_000);
    out.line(&format!(
        "chronolog demo: a year of a bank's history, {} events over {} accounts, in {}",
        thousands(events),
        thousands(accounts),
        directory.display()
    ))?;
    let prepared = prepare(directory)?;
    out.line(&format!("  {prepared}"))?;
    out.flush()?;

    // --- Write: the year imported in atomic batches, a read model following.
    let options = LogOptions::default().durability(Durability::None);
    let log = Log::open(directory, options.clone())?;
    let store = SnapshotStore::open(&log).keep_last(32);
    let accounts_store = AggregateStore::<Account, _>::new(&log, JsonCodec).snapshot_store(store.clone());
    let snapshot_every = (events / 10).max(1);
    let (runner, _) = ProjectionRunner::<Balances>::start(&log, store.clone(), snapshot_every)?;
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64);
    // The year ends at the start of today, before anything the log's clock
    // will stamp (the commands below).
    let end_ns = now_ns - now_ns % NANOS_PER_DAY;
    let start_ns = end_ns.saturating_sub(365 * NANOS_PER_DAY);
    let mut workload = Workload::new(events, accounts, start_ns, (365 * NANOS_PER_DAY) / events);
    let bar = progress::bar(events, "write");
    let mut batch = Vec::with_capacity(BATCH + 1);
    let (mut record_bytes, mut batches, mut transfers) = (0u64, 0u64, 0u64);
    let mut mid_year = None;
    let write_started = Instant::now();
    let mut last_append = write_started;
    let mut snapshot_time = Duration::ZERO;
    while workload.generated < events {
        batch.clear();
        workload.fill(&mut batch, BATCH)?;
        let new_events: Vec<NewEvent<'_>> = batch
            .iter()
            .map(|planned| {
                record_bytes += chronolog::record::encoded_size(
                    workload.streams[planned.account].len(),
                    planned.event_type.len(),
                    planned.metadata.len(),
                    planned.payload.len(),
                ) as u64;
                transfers += u64::from(planned.event_type == "TransferredOut");
                NewEvent::new(&workload.streams[planned.account], planned.event_type, &planned.payload)
                    .with_metadata(planned.metadata)
                    .with_timestamp_ns(planned.timestamp_ns)
                    .with_expected_version(planned.expected_version)
            })
            .collect();
        log.append_batch(&new_events)?;
        last_append = Instant::now();
        batches += 1;
        bar.set_position(workload.generated);
        if mid_year.is_none() && workload.generated >= events / 2 {
            // Aggregate snapshots half-way: as-of loads after mid-year start
            // from them.
            let snapshots_started = Instant::now();
            for id in 0..SNAPSHOT_ACCOUNTS.min(accounts) {
                accounts_store.snapshot(&id.to_string())?;
            }
            snapshot_time += snapshots_started.elapsed();
            mid_year = Some(log.last_timestamp_ns());
        }
    }
    log.sync()?;
    // The mid-year aggregate snapshots are timed on their own line.
    let write_time = write_started.elapsed().saturating_sub(snapshot_time);
    bar.finish_and_clear();
    let last_position = log.next_position().saturating_sub(1);
    let year_last_ns = log.last_timestamp_ns();
    out.line(&format!(
        "write      {} events in {} atomic batches in {:.2} s: {} events/s, {:.1} MB/s of records; durability None, synced at the end (the mid-year snapshots, timed below, not counted)",
        thousands(events),
        thousands(batches),
        write_time.as_secs_f64(),
        thousands(per_second(events, write_time)),
        record_bytes as f64 / write_time.as_secs_f64() / 1e6
    ))?;
    out.line(&format!(
        "           {} to {}: {} accounts opened, {} transfers (two streams in one batch, each with its expected version)",
        format_rfc3339(start_ns),
        format_rfc3339(year_last_ns),
        thousands(accounts),
        thousands(transfers)
    ))?;
    let caught_up = runner.wait_for(last_position, Some(Duration::from_secs(600)))?;
    // From the last append, not from the end of the final sync above.
    let lag = last_append.elapsed();
    let balances = runner.stop()?;
    let projection_snapshots = store.list(&chronolog::cqrs::snapshot_name::<Balances>())?.len();
    if !caught_up {
        return Err(Failure::data("the balances projection did not catch up within 10 minutes"));
    }
    let ledger_matches = workload
        .streams
        .iter()
        .zip(&workload.balances)
        .all(|(stream, balance)| balances.0.get(stream).copied().unwrap_or(0) == *balance);
    if !ledger_matches || balances.0.len() != workload.streams.len() {
        return Err(Failure::data("the balances read model differs from the generator's ledger"));
    }
    out.line(&format!(
        "project    balances read model followed the log live on its own thread: caught up {:.1} ms after the last append, {}; matches the ledger",
        lag.as_secs_f64() * 1e3,
        plural(projection_snapshots as u64, "snapshot")
    ))?;
    let snapshots_started = Instant::now();
    for id in 0..SNAPSHOT_ACCOUNTS.min(accounts) {
        accounts_store.snapshot(&id.to_string())?;
    }
    snapshot_time += snapshots_started.elapsed();
    out.line(&format!(
        "snapshot   aggregate snapshots of {} accounts at mid-year and at year end ({:.0} ms, each written and synced atomically)",
        SNAPSHOT_ACCOUNTS.min(accounts),
        snapshot_time.as_secs_f64() * 1e3
    ))?;
    out.flush()?;

    // --- Commands through the CQRS write path.
    let commands = (events / 1_000).clamp(10, 1_000);
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let (mut executed, mut refused) = (0u64, 0u64);
    let commands_started = Instant::now();
    for _ in 0..commands {
        let id = random.below(accounts).to_string();
        let cents = 1 + random.below(20_000) as i64;
        let command =
            if random.below(2) == 0 { AccountCommand::Deposit(cents) } else { AccountCommand::Withdraw(cents) };
        match accounts_store.execute(&id, &command) {
            Ok(_) => executed += 1,
            Err(CommandError::Rejected(_)) => refused += 1,
            Err(CommandError::Store(error)) => return Err(error.into()),
        }
    }
    log.sync()?;
    let commands_time = commands_started.elapsed();
    out.line(&format!(
        "commands   {} deposits and withdrawals through AggregateStore::execute ({} refused for insufficient funds): {} commands/s, each a load from snapshot + stream, a decision, an append with its expected version",
        thousands(commands),
        thousands(refused),
        thousands(per_second(commands, commands_time))
    ))?;
    let total_events = log.next_position();
    drop(accounts_store);
    drop(log);
    debug_assert!(executed + refused == commands);

    // --- Reopen after the clean close.
    let reopen_started = Instant::now();
    let log = Log::open(directory, options)?;
    let reopen_time = reopen_started.elapsed();
    let view = log.view();
    out.line(&format!(
        "reopen     {:.1} ms: positions {}..{}, {}",
        reopen_time.as_secs_f64() * 1e3,
        thousands(view.first_position()),
        thousands(view.next_position()),
        if log.recovery_report().active_segment_scanned {
            "active segment scanned"
        } else {
            "nothing scanned (clean close)"
        }
    ))?;
    out.flush()?;

    // --- Replay every event, CRC checked.
    let bar = progress::bar(view.len(), "replay");
    let replay_started = Instant::now();
    let (mut replayed, mut replayed_bytes) = (0u64, 0u64);
    for event in view.iter() {
        let event = event?;
        replayed += 1;
        replayed_bytes += chronolog::record::encoded_size(
            event.stream.len(),
            event.event_type.len(),
            event.metadata.len(),
            event.payload.len(),
        ) as u64;
        if replayed % 65_536 == 0 {
            bar.set_position(replayed);
        }
    }
    let replay_time = replay_started.elapsed();
    bar.finish_and_clear();
    if replayed != total_events {
        return Err(Failure::data(format!("replayed {replayed} events of {total_events}")));
    }
    out.line(&format!(
        "replay     {} events, every CRC checked, in {:.2} s: {} events/s, {:.0} MB/s",
        thousands(replayed),
        replay_time.as_secs_f64(),
        thousands(per_second(replayed, replay_time)),
        replayed_bytes as f64 / replay_time.as_secs_f64() / 1e6
    ))?;
    out.flush()?;

    // --- As-of queries: every balance at a past moment.
    let store = SnapshotStore::open(&log).keep_last(32);
    // A store over a folder that does not exist: no snapshot, a full replay.
    let no_snapshots = SnapshotStore::at(&directory.join("no-snapshots-here"), Arc::new(StdStorage));
    let mut as_of_75 = start_ns;
    for quarter in 1..=3u64 {
        let time = start_ns + (year_last_ns - start_ns) / 4 * quarter;
        as_of_75 = time;
        let spinner = progress::spinner(&format!("balances as of {}", format_rfc3339(time)));
        let timed = Instant::now();
        let (with_snapshot, report) = project_as_of::<Balances>(&log, &store, AsOf::Time(time))?;
        let snapshot_time = timed.elapsed();
        let timed = Instant::now();
        let (brute_force, brute_report) = project_as_of::<Balances>(&log, &no_snapshots, AsOf::Time(time))?;
        let brute_time = timed.elapsed();
        spinner.finish_and_clear();
        if with_snapshot != brute_force {
            return Err(Failure::data(format!(
                "balances as of {} differ between snapshot and replay",
                format_rfc3339(time)
            )));
        }
        let total: i64 = with_snapshot.0.values().sum();
        let from = match report.snapshot {
            Some(position) => {
                format!("snapshot at position {} + {} events", thousands(position), thousands(report.events_read))
            }
            None => format!("no snapshot, {} events", thousands(report.events_read)),
        };
        out.line(&format!(
            "{}  {} accounts worth {} as of {} ({}% of the year): {:.1} ms from {from}; {:.0} ms replaying {} events without snapshots; identical",
            if quarter == 1 { "as-of    " } else { "         " },
            thousands(with_snapshot.0.len() as u64),
            money(total),
            format_rfc3339(time),
            quarter * 25,
            snapshot_time.as_secs_f64() * 1e3,
            brute_time.as_secs_f64() * 1e3,
            thousands(brute_report.events_read)
        ))?;
        out.flush()?;
    }

    // --- One account's history as of a moment, through its snapshots.
    let history = AggregateStore::<Account, _>::new(&log, JsonCodec).snapshot_store(store.clone());
    let id = HISTORY_ACCOUNT.min(accounts - 1).to_string();
    let timed = Instant::now();
    let then = history.load_as_of(&id, AsOf::Time(as_of_75))?;
    let load_time = timed.elapsed();
    let mut replayed_state = Account::default();
    let mut replayed_events = 0u64;
    for event in log.view().read_stream_as_of(&then.stream, as_of_75)? {
        let event = event?;
        let decoded: AccountEvent = serde_json::from_slice(event.payload)
            .map_err(|error| Failure::data(format!("event at position {}: {error}", event.position)))?;
        replayed_state.apply(&decoded);
        replayed_events += 1;
    }
    if replayed_state != then.state || then.version.map_or(0, |v| v + 1) != replayed_events {
        return Err(Failure::data(format!("{} as of then differs between its snapshot and its stream", then.stream)));
    }
    let from = match then.report.snapshot {
        Some((_, version)) => {
            format!("its mid-year snapshot (after {version} events) + {} events", then.report.events_replayed)
        }
        None => format!("{} events of its stream", then.report.events_replayed),
    };
    out.line(&format!(
        "history    {} as of {}: balance {}, {} events, loaded in {:.2} ms from {from}; matches a replay of its stream",
        then.stream,
        format_rfc3339(as_of_75),
        money(then.state.balance),
        replayed_events,
        load_time.as_secs_f64() * 1e3
    ))?;

    // --- Stream reads through the stream index.
    let view = log.view();
    let read_accounts = accounts.min(1_000);
    let timed = Instant::now();
    let mut stream_events = 0u64;
    for stream in workload.streams.iter().take(read_accounts as usize) {
        for event in view.read_stream(stream, 0)? {
            event?;
            stream_events += 1;
        }
    }
    let streams_time = timed.elapsed();
    let timed = Instant::now();
    let newest = view.read_stream_backward(&then.stream, None)?.next().transpose()?.map(|event| event.stream_version);
    let newest_time = timed.elapsed();
    out.line(&format!(
        "streams    {} account streams read whole through the stream index: {} events in {:.1} ms ({} events/s); newest event of {} (version {}) in {:.0} µs",
        thousands(read_accounts),
        thousands(stream_events),
        streams_time.as_secs_f64() * 1e3,
        thousands(per_second(stream_events, streams_time)),
        then.stream,
        newest.map_or_else(|| "-".to_string(), |version| version.to_string()),
        newest_time.as_secs_f64() * 1e6
    ))?;
    out.flush()?;
    drop(view);

    // --- Verify the files.
    let spinner = progress::spinner("verifying");
    let timed = Instant::now();
    let report = log.verify()?;
    let snapshot_problems = store.verify()?;
    let snapshot_count = store.list_all()?.len();
    let verify_time = timed.elapsed();
    spinner.finish_and_clear();
    let problems = report.problems.len() + snapshot_problems.len();
    out.line(&format!(
        "verify     {}, {} records, {}, {} in {:.2} s ({:.0} MB/s): {}",
        plural(report.segments_checked as u64, "segment"),
        thousands(report.records_checked),
        plural(report.indexes_checked as u64, "index file"),
        plural(snapshot_count as u64, "snapshot"),
        verify_time.as_secs_f64(),
        replayed_bytes as f64 / verify_time.as_secs_f64() / 1e6,
        if problems == 0 { "clean".to_string() } else { format!("{problems} problems") }
    ))?;
    for problem in report.problems.iter().chain(&snapshot_problems) {
        out.line(&format!("           problem: {problem}"))?;
    }
    out.line(&format!(
        "done in {:.1} s. Look inside: chronolog info {dir}; chronolog dump {dir} --stream {} --format text",
        started.elapsed().as_secs_f64(),
        then.stream,
        dir = directory.display()
    ))?;
    out.flush()?;
    if problems > 0 {
        return Err(Failure::Reported(crate::EXIT_DATA));
    }
    Ok(())
}

fn per_second(count: u64, elapsed: Duration) -> u64 {
    (count as f64 / elapsed.as_secs_f64().max(1e-9)) as u64
}

/// Cents as money: `1,234.56`.
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", thousands(cents / 100), cents % 100)
}

/// What the demo did with its directory.
enum Prepared {
    Created(PathBuf),
    Empty(PathBuf),
    Reset(PathBuf, Option<u64>),
}

impl std::fmt::Display for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prepared::Created(directory) => write!(f, "creating {}", directory.display()),
            Prepared::Empty(directory) => write!(f, "using the empty directory {}", directory.display()),
            Prepared::Reset(directory, Some(events)) => {
                write!(
                    f,
                    "resetting {} (an earlier demo run left {} events in it)",
                    directory.display(),
                    thousands(*events)
                )
            }
            Prepared::Reset(directory, None) => {
                write!(f, "resetting {} (left by an earlier demo run)", directory.display())
            }
        }
    }
}

/// Makes `directory` an empty directory the demo owns. Deletes only what a
/// previous demo run left there; refuses anything else.
fn prepare(directory: &Path) -> CliResult<Prepared> {
    let io = |error: std::io::Error| Failure::io(directory.display(), &error);
    let mark =
        || std::fs::write(directory.join(MARKER), b"made by chronolog demo; the next demo run resets this directory\n");
    match std::fs::metadata(directory) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(directory).map_err(io)?;
            mark().map_err(io)?;
            return Ok(Prepared::Created(directory.to_path_buf()));
        }
        Err(error) => return Err(io(error)),
        Ok(metadata) if !metadata.is_dir() => {
            return Err(Failure::usage(format!("{} is not a directory", directory.display())));
        }
        Ok(_) => {}
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let Some(name) = name.to_str() else {
            return Err(refusal(directory, &name.to_string_lossy()));
        };
        names.push(name.to_owned());
    }
    if names.is_empty() {
        mark().map_err(io)?;
        return Ok(Prepared::Empty(directory.to_path_buf()));
    }
    if !names.iter().any(|name| name == MARKER) {
        return Err(Failure::usage(format!(
            "{} is not empty and was not made by the demo (it has no {MARKER} file); not touching it: give another directory",
            directory.display()
        )));
    }
    if let Some(stranger) = names.iter().find(|name| !is_demo_file(name)) {
        return Err(refusal(directory, stranger));
    }
    // A demo (or any writer) still running there holds the lock: leave it.
    let lock_path = directory.join("LOCK");
    let _lock = match std::fs::File::open(&lock_path) {
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Failure::usage(format!(
                    "{} is in use by another process (it holds {}); not resetting it",
                    directory.display(),
                    lock_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(Failure::io(lock_path.display(), &error)),
        },
        Err(_) => None,
    };
    let events = Log::open_read_only(directory, LogOptions::default()).ok().map(|log| log.next_position());
    for name in &names {
        if name == MARKER {
            continue;
        }
        let path = directory.join(name);
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(|error| Failure::io(path.display(), &error))?;
    }
    Ok(Prepared::Reset(directory.to_path_buf(), events))
}

/// True for the files a demo run leaves: the log's own (the library names
/// them, so that a file it adds is never taken for a stranger's) and the
/// marker.
fn is_demo_file(name: &str) -> bool {
    name == MARKER || chronolog::log::is_log_file_name(name)
}

fn refusal(directory: &Path, name: &str) -> Failure {
    Failure::usage(format!(
        "{} holds {name}, which is not a chronolog file; not resetting it: move it away or give another directory",
        directory.display()
    ))
}
