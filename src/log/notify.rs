//! Waking readers that wait for new events.
//!
//! A subscription or projection that has caught up sleeps on a condition
//! variable until the writer publishes more events: no polling loop burns CPU
//! while the log is idle. The writer pays for the wake-up only when someone
//! waits (a fence and one atomic load otherwise).

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// The condition "the log changed", with a count of waiting threads.
#[derive(Debug, Default)]
pub(super) struct AppendSignal {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    changed: Condvar,
}

impl AppendSignal {
    /// Wakes every waiter. Called after new events (or a truncation) are
    /// published.
    pub fn notify(&self) {
        // Pairs with the fence in `wait_until`: either the waiter sees the
        // published change when it checks, or this load sees the waiter.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this wake-up after a waiter's check, which
            // it makes under the same lock: no wake-up can fall between the
            // check and the sleep.
            drop(self.lock.lock());
            self.changed.notify_all();
        }
    }

    /// Sleeps until `ready()` holds (true) or `deadline` passes (false).
    /// `ready` is called under the signal's lock after each wake-up.
    pub fn wait_until(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let mut guard = self.lock.lock();
        let reached = loop {
            if ready() {
                break true;
            }
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut guard, deadline).timed_out() {
                        break ready();
                    }
                }
                None => self.changed.wait(&mut guard),
            }
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_waiter_wakes_on_notify_and_times_out_without_it() {
        let signal = Arc::new(AppendSignal::default());
        let flag = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!signal.wait_until(Some(deadline), || flag.load(Ordering::SeqCst)));

        let waiter = {
            let (signal, flag) = (Arc::clone(&signal), Arc::clone(&flag));
            std::thread::spawn(move || signal.wait_until(None, || flag.load(Ordering::SeqCst)))
        };
        while signal.waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        flag.store(true, Ordering::SeqCst);
        signal.notify();
        assert!(waiter.join().unwrap_or(false));
        assert_eq!(signal.waiters.load(Ordering::SeqCst), 0);
    }
}
