//! A bank on chronolog's CQRS layer: accounts are opened, credited, debited
//! and transferred between (a transfer is one atomic batch over two streams,
//! each with its expected version); a balances read model follows the log
//! live; then every balance is asked for as of a past moment, with and
//! without snapshots, and checked against a brute-force replay.
//!
//! ```text
//! cargo run --release --example bank [DIRECTORY]
//! ```
//!
//! Without a directory it works in a temporary one.

use std::time::{Duration, Instant};

use chronolog::cqrs::{project_as_of, AggregateStore, AsOf, CommandError, JsonCodec, ProjectionRunner};
use chronolog::snapshot::SnapshotStore;
use chronolog::{Durability, Error, ExpectedVersion, Log, LogOptions, NewEvent};

const ACCOUNTS: u64 = 2_000;
const OPERATIONS: u64 = 100_000;

/// The same accounts and balances read model as `chronolog demo`.
#[path = "../src/bin/chronolog/bank.rs"]
mod bank;

use bank::{Account, AccountCommand, AccountEvent, Balances};

/// xorshift64: a reproducible workload.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Moves money between two accounts in one atomic batch: both streams are
/// checked against the versions their states were loaded at, so a concurrent
/// change to either makes the whole transfer fail and nothing is written.
fn transfer(
    accounts: &AggregateStore<Account, JsonCodec>,
    from: &str,
    to: &str,
    cents: i64,
) -> Result<bool, Box<dyn std::error::Error>> {
    if from == to {
        return Ok(false);
    }
    let source = accounts.load(from)?;
    let target = accounts.load(to)?;
    if !source.state.open || !target.state.open || source.state.balance < cents {
        return Ok(false);
    }
    let out = serde_json::to_vec(&AccountEvent::TransferredOut { cents, to: target.stream.clone() })?;
    let r#in = serde_json::to_vec(&AccountEvent::TransferredIn { cents, from: source.stream.clone() })?;
    let expected = |version: Option<u64>| version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let batch = [
        NewEvent::new(&source.stream, "TransferredOut", &out).with_expected_version(expected(source.version)),
        NewEvent::new(&target.stream, "TransferredIn", &r#in).with_expected_version(expected(target.version)),
    ];
    accounts.log().append_batch(&batch)?;
    Ok(true)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temporary = tempfile::tempdir()?;
    let directory = std::env::args().nth(1).map_or_else(|| temporary.path().to_path_buf(), Into::into);
    let log = Log::open(&directory, LogOptions::default().durability(Durability::None))?;
    if log.next_position() > 0 {
        return Err(format!("{} already holds a log; give an empty directory", directory.display()).into());
    }
    println!("bank in {}", directory.display());

    let snapshots = SnapshotStore::open(&log).keep_last(50);
    let accounts =
        AggregateStore::<Account, _>::new(&log, JsonCodec).snapshot_every(20).snapshot_store(snapshots.clone());
    let (balances, _) = ProjectionRunner::<Balances>::start(&log, snapshots.clone(), 10_000)?;

    let started = Instant::now();
    for id in 0..ACCOUNTS {
        accounts.execute(&id.to_string(), &AccountCommand::Open { owner: format!("owner {id}") })?;
    }
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let (mut refused, mut transfers) = (0u64, 0u64);
    let mut middle = None;
    for operation in 0..OPERATIONS {
        if operation == OPERATIONS / 2 {
            middle = Some((log.last_timestamp_ns(), log.next_position()));
        }
        let id = random.below(ACCOUNTS).to_string();
        let cents = 1 + random.below(10_000) as i64;
        let outcome = match random.below(10) {
            0..=4 => accounts.execute(&id, &AccountCommand::Deposit(cents)).map(|_| true),
            5..=7 => accounts.execute(&id, &AccountCommand::Withdraw(cents)).map(|_| true),
            _ => {
                let to = random.below(ACCOUNTS).to_string();
                match transfer(&accounts, &id, &to, cents) {
                    Ok(done) => {
                        transfers += u64::from(done);
                        Ok(done)
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) | Err(CommandError::Rejected(_)) => refused += 1,
            Err(CommandError::Store(error)) => return Err(error.into()),
        }
    }
    log.sync()?;
    let elapsed = started.elapsed();
    let events = log.next_position();
    println!(
        "{} commands on {ACCOUNTS} accounts ({transfers} transfers, {refused} refused): {events} events in {:.2?} ({:.0} commands/s, durable at the end)",
        ACCOUNTS + OPERATIONS,
        elapsed,
        (ACCOUNTS + OPERATIONS) as f64 / elapsed.as_secs_f64()
    );

    let waited = Instant::now();
    balances.wait_for(events - 1, Some(Duration::from_secs(60)))?;
    let total: i64 = balances.read(|b| b.0.values().sum());
    println!(
        "balances read model: caught up {:.2?} after the last command; {} accounts, {} cents in all; {} snapshots of it",
        waited.elapsed(),
        balances.read(|b| b.0.len()),
        total,
        balances.snapshots_written()
    );
    let balances = balances.stop()?;

    let (middle_time, middle_position) = middle.ok_or("no middle")?;
    let timed = Instant::now();
    let (as_of, report) = project_as_of::<Balances>(&log, &snapshots, AsOf::Time(middle_time))?;
    let with_snapshots = timed.elapsed();
    let empty = tempfile::tempdir()?;
    let no_snapshots = SnapshotStore::open(&Log::open(empty.path(), LogOptions::default())?);
    let timed = Instant::now();
    let (brute_force, _) = project_as_of::<Balances>(&log, &no_snapshots, AsOf::Time(middle_time))?;
    let without = timed.elapsed();
    if as_of != brute_force {
        return Err(Error::ProjectionFailed {
            name: "balances".into(),
            message: "as-of differs from replay".into(),
            cause: None,
        }
        .into());
    }
    println!(
        "every balance as of the middle of the run (position {middle_position}): {:.2?} from the snapshot at {:?} plus {} events, {:.2?} replaying {} events from the start; identical",
        with_snapshots,
        report.snapshot,
        report.events_read,
        without,
        middle_position
    );
    for id in ["0", "1", "2"] {
        let stream = format!("account-{id}");
        let then = accounts.load_as_of(id, AsOf::Time(middle_time))?;
        println!(
            "  {stream}: {} cents then ({} events, {} replayed after a snapshot), {} now",
            then.state.balance,
            then.version.map_or(0, |v| v + 1),
            then.report.events_replayed,
            balances.0.get(&stream).copied().unwrap_or(0)
        );
    }
    Ok(())
}
