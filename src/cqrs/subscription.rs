//! Subscriptions: every event from a point on, catch-up then live.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::log::{Event, Filter, Log};

/// Events copied out of the log per refill of a subscription's buffer.
const BATCH_EVENTS: usize = 256;
/// Events looked at per refill, passing the filter or not.
const SCAN_EVENTS: u64 = 4096;

/// Every event that passes a filter, from a position or a time on: first
/// those already in the log (catch-up), then new ones as they are appended
/// (live), waiting on the log's signal rather than polling.
///
/// ```
/// use chronolog::cqrs::Subscription;
/// use chronolog::{Filter, Log, LogOptions, NewEvent};
/// use std::time::Duration;
///
/// let directory = tempfile::tempdir()?;
/// let log = Log::open(directory.path(), LogOptions::default())?;
/// log.append(&NewEvent::new("cart-1", "Added", b"apple"))?;
/// let mut subscription = Subscription::from_position(&log, 0, Filter::default().stream_prefix("cart-"));
///
/// let writer = log.clone();
/// std::thread::spawn(move || writer.append(&NewEvent::new("cart-2", "Added", b"pear")));
/// let wait = Some(Duration::from_secs(10));
/// assert_eq!(subscription.next_timeout(wait)?.map(|e| e.payload), Some(b"apple".to_vec()));
/// assert_eq!(subscription.next_timeout(wait)?.map(|e| e.payload), Some(b"pear".to_vec()));
/// assert_eq!(subscription.next_timeout(Some(Duration::from_millis(1)))?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Subscription {
    log: Log,
    filter: Filter,
    /// Next position to read.
    next: u64,
    buffer: VecDeque<Event>,
    stop: Arc<AtomicBool>,
    /// Position and fingerprint (timestamp and record CRC) of the last event
    /// read from the log: how a truncation under the subscription is
    /// noticed, even when the events appended since took the same positions
    /// and timestamps.
    last_read: Option<(u64, (u64, u32))>,
}

/// Stops a [`Subscription`] from another thread: its blocked
/// [`Subscription::next_timeout`] returns `Ok(None)` and its iterator ends.
#[derive(Debug, Clone)]
pub struct SubscriptionStopper {
    log: Log,
    stop: Arc<AtomicBool>,
}

impl SubscriptionStopper {
    /// Stops the subscription.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.log.wake_waiters();
    }
}

impl Subscription {
    /// From `position` on (positions before the log's first are skipped: they
    /// were purged).
    pub fn from_position(log: &Log, position: u64, filter: Filter) -> Subscription {
        // The event just before the start, as if the subscription had read
        // it: a truncation below the start (then a regrowth over it) is
        // noticed like one below an event it read, rather than skipping the
        // new events at the positions it had not reached. (Best effort: an
        // event that cannot be read leaves only the later events' checks.)
        let last_read = position.checked_sub(1).and_then(|before| {
            let fingerprint = log.view().fingerprint(before).ok().flatten();
            fingerprint.map(|fingerprint| (before, fingerprint))
        });
        Subscription {
            log: log.clone(),
            filter,
            next: position,
            buffer: VecDeque::new(),
            stop: Arc::new(AtomicBool::new(false)),
            last_read,
        }
    }

    /// From the first event whose timestamp is at or after `timestamp_ns`.
    pub fn from_time(log: &Log, timestamp_ns: u64, filter: Filter) -> Result<Subscription> {
        let view = log.view();
        let start = match timestamp_ns.checked_sub(1) {
            None => view.first_position(),
            Some(before) => view.position_at(before)?.map_or(view.first_position(), |p| p + 1),
        };
        Ok(Subscription::from_position(log, start, filter))
    }

    /// From the end of the log: only events appended from now on.
    pub fn live(log: &Log, filter: Filter) -> Subscription {
        Subscription::from_position(log, log.next_position(), filter)
    }

    /// The next position the subscription will look at.
    pub fn position(&self) -> u64 {
        self.buffer.front().map_or(self.next, |event| event.position)
    }

    /// A handle that stops this subscription from another thread.
    pub fn stopper(&self) -> SubscriptionStopper {
        SubscriptionStopper { log: self.log.clone(), stop: Arc::clone(&self.stop) }
    }

    /// The next event, waiting at most `timeout` for one to be appended
    /// (`None`: for ever). `Ok(None)` when the time is up or the subscription
    /// was stopped.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Some(event));
            }
            if self.stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(None);
            }
            let view = self.log.view();
            if let Some((position, fingerprint)) = self.last_read.filter(|&(p, _)| p >= view.first_position()) {
                let (timestamp_ns, crc) = fingerprint;
                if !view.holds_fingerprint(position, Some(timestamp_ns), Some(crc))? {
                    return Err(Error::LogRewritten { position });
                }
            }
            let end = view.next_position();
            if self.next < end {
                let start = self.next.max(view.first_position());
                // A bounded scan per turn, so that a selective filter over a
                // long backlog still sees the deadline and `stop` in time.
                let scan_end = end.min(start.saturating_add(SCAN_EVENTS));
                let mut failure = None;
                let mut events = view.iter_range(start, scan_end);
                while let Some(event) = events.next() {
                    let event = match event {
                        Ok(event) => event,
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    };
                    self.next = event.position + 1;
                    if let Some(crc) = events.last_crc() {
                        self.last_read = Some((event.position, (event.timestamp_ns, crc)));
                    }
                    if self.filter.matches(event.stream, event.event_type) {
                        self.buffer.push_back(event.to_event());
                        if self.buffer.len() >= BATCH_EVENTS {
                            break;
                        }
                    }
                }
                if failure.is_none() && self.buffer.is_empty() {
                    self.next = self.next.max(scan_end);
                }
                // Events read before a failure are delivered first; the
                // failure comes back at the next refill, from the same place.
                match failure {
                    Some(error) if self.buffer.is_empty() => return Err(error),
                    _ => continue,
                }
            }
            let remaining = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(remaining) => Some(remaining),
                    None => return Ok(None),
                },
                None => None,
            };
            // Woken by an append, and by a truncation, which the check at the
            // top of the loop then reports (waiting for the event at
            // `self.next` would sleep through it, and on until the log grew
            // past the old end).
            if !self.log.wait_for_change(&view, remaining, &self.stop)? && deadline.is_some() {
                // Woken without the event: by the timeout, or by `stop`, which
                // the top of the loop checks.
                if self.stop.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
            }
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<Event>;

    /// Blocks until the next event; ends when stopped.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_timeout(None).transpose()
    }
}
