//! A thin CQRS layer on the engine's public API (the engine knows nothing of
//! it): aggregates and commands on the write side, projections and
//! subscriptions on the read side, and as-of queries on both.
//!
//! - [`Aggregate`] and [`AggregateStore`]: state rebuilt from the latest
//!   snapshot plus the stream's events after it (through the stream index),
//!   commands appended with the expected version of the loaded state, bounded
//!   retries on conflicts, automatic snapshots every N events.
//! - [`Projection`] and [`ProjectionRunner`]: read models that catch up from
//!   their checkpoint and then follow the log live; checkpoint and state are
//!   saved together in one snapshot, so a restart neither repeats nor misses
//!   an event.
//! - [`Subscription`]: catch-up then live delivery of filtered events.
//! - [`AsOf`]: [`AggregateStore::load_as_of`] and [`project_as_of`] rebuild
//!   any aggregate or read model as it was at a time or position, starting
//!   from the latest snapshot at or before it.
//! - [`Codec`]: how events and states become bytes; [`JsonCodec`] (feature
//!   `serde`) for serde types.

mod aggregate;
mod as_of;
mod codec;
mod projection;
mod runner;
mod subscription;

pub use aggregate::{Aggregate, AggregateStore, CommandError, Executed, LoadReport, Loaded, MAX_ATTEMPTS_DEFAULT};
pub use as_of::AsOf;
#[cfg(feature = "serde")]
pub use codec::JsonCodec;
pub use codec::{Codec, CodecError};
pub use projection::{project_as_of, snapshot_name, snapshot_projection_as_of, Projection, RebuildReport};
pub use runner::{ProjectionRunner, SNAPSHOT_EVERY_DEFAULT};
pub use subscription::{Subscription, SubscriptionStopper};
