//! # chronolog
//!
//! An embedded event-sourcing storage engine: a segmented, checksummed,
//! memory-mapped append-only log of events, linked into your process.
//!
//! ```
//! use chronolog::{Log, LogOptions, NewEvent};
//!
//! let directory = tempfile::tempdir()?;
//! let log = Log::open(directory.path(), LogOptions::default())?;
//! let appended = log.append(&NewEvent::new("account-1", "Opened", b"{\"owner\":\"ada\"}"))?;
//! assert_eq!(appended.position, 0);
//! assert_eq!(appended.stream_version, 0);
//! log.sync()?;
//!
//! let view = log.view();
//! for event in view.iter() {
//!     let event = event?;
//!     assert_eq!(event.stream, "account-1");
//!     assert_eq!(event.payload, b"{\"owner\":\"ada\"}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The layers, from the bytes up: [`record`] (one event as checksummed bytes),
//! [`segment`] (fixed-capacity files of records), [`index`] (hints rebuilt from
//! the log), [`log`] (the API: append, read, recover, truncate, purge), with all
//! file I/O through [`storage`]. Beside the log, [`snapshot`] keeps saved
//! states with the position they reflect, and [`cqrs`] builds aggregates,
//! projections, subscriptions and as-of queries on the public API alone. The
//! on-disk format is described byte by byte in `FORMAT.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cqrs;
pub mod error;
pub mod index;
pub mod log;
mod naming;
pub mod record;
pub mod segment;
pub mod snapshot;
pub mod storage;

pub use error::{CorruptionKind, Error, Result};
pub use log::{
    Appended, Direction, Durability, Event, EventRef, ExpectedVersion, Filter, Log, LogOptions, LogView, NewEvent,
    RecoveryMode, RecoveryReport, VerifyReport,
};
pub use record::limits;

/// The README's examples, compiled and run as doc tests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
