//! Where producers that met a full queue wait for room.
//!
//! A producer in [`Client::send_timeout`](crate::Client::send_timeout) that finds the
//! queue full sleeps here until the writer has drained it to half full, its deadline
//! passes, or the client stops. Half, not one free slot: a producer woken for every slot
//! would be woken once per record, and a producer that spins burns the CPU the writer
//! needs. The writer's cost while nobody waits is one load per batch of records it
//! takes (a plain load on x86), of a cache line only waiting producers write.

use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crossbeam_utils::CachePadded;

pub(crate) struct Room {
    /// Set (to 1) by a producer about to sleep; taken by the writer, which wakes the
    /// sleepers once per setting, not once per record.
    armed: CachePadded<AtomicU64>,
    lock: Mutex<()>,
    cond: Condvar,
    /// Sleepers are woken once the queue holds this many items or fewer.
    low: usize,
}

impl Room {
    pub(crate) fn new(capacity: usize) -> Self {
        Room {
            armed: CachePadded::default(),
            lock: Mutex::new(()),
            cond: Condvar::new(),
            low: capacity / 2,
        }
    }

    /// Sleeps until `len()` is at most half the capacity, `stopped()` is true, or
    /// `deadline` passes. May return early (the caller looks again and may come back).
    pub(crate) fn wait(
        &self,
        deadline: Instant,
        len: impl Fn() -> usize,
        stopped: impl Fn() -> bool,
    ) {
        let mut guard = self.lock.lock();
        while !stopped() {
            // Armed before looking at the queue, and the writer looks at `armed` after
            // taking from it (with a fence when it goes idle): either this sees the room
            // the writer made, or the writer sees this sleeper and wakes it.
            self.armed.store(1, Ordering::SeqCst);
            if len() <= self.low || self.cond.wait_until(&mut guard, deadline).timed_out() {
                break;
            }
        }
    }

    /// The writer took items: wakes the sleepers once the queue is down to half.
    #[inline]
    pub(crate) fn taken(&self, len: impl FnOnce() -> usize) {
        // SeqCst, like the producer's store and its look at the queue: the writer's take
        // and this load may not pass each other.
        if self.armed.load(Ordering::SeqCst) != 0 && len() <= self.low {
            self.wake_armed();
        }
    }

    /// The writer found the queue empty, or is stopping: wakes any sleeper, including
    /// one that registered just as the writer looked (hence the fence).
    pub(crate) fn wake_if_waiting(&self) {
        fence(Ordering::SeqCst);
        if self.armed.load(Ordering::Relaxed) != 0 {
            self.wake_armed();
        }
    }

    #[cold]
    fn wake_armed(&self) {
        if self.armed.swap(0, Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }

    /// Wakes every sleeper: the queue has room, or the client is stopping.
    #[cold]
    pub(crate) fn wake_all(&self) {
        let _guard = self.lock.lock();
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    /// Starts a thread asleep in `room` (60 s deadline); returns what it reports.
    fn sleeper(
        room: &Arc<Room>,
        len: &Arc<AtomicUsize>,
        stop: &Arc<AtomicBool>,
    ) -> mpsc::Receiver<usize> {
        let (r, len, stop) = (Arc::clone(room), Arc::clone(len), Arc::clone(stop));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            r.wait(
                Instant::now() + Duration::from_secs(60),
                || len.load(Ordering::SeqCst),
                || stop.load(Ordering::SeqCst),
            );
            let _ = tx.send(len.load(Ordering::SeqCst));
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while room.armed.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the sleeper never registered");
            std::thread::yield_now();
        }
        rx
    }

    #[test]
    fn a_sleeper_wakes_once_the_queue_is_down_to_half() {
        let room = Arc::new(Room::new(8));
        let len = Arc::new(AtomicUsize::new(8));
        let woke = sleeper(&room, &len, &Arc::new(AtomicBool::new(false)));
        // The writer drains one item at a time, down to half. A wake disarms the room
        // (the sleeper re-arms only once it has run again): after each take above half
        // the room is still armed, so that take woke nobody.
        for left in (5..8).rev() {
            len.store(left, Ordering::SeqCst);
            room.taken(|| len.load(Ordering::SeqCst));
            assert_eq!(
                room.armed.load(Ordering::SeqCst),
                1,
                "a take with {left} left woke the sleeper"
            );
        }
        assert!(woke.try_recv().is_err(), "awake above half");
        len.store(4, Ordering::SeqCst);
        room.taken(|| len.load(Ordering::SeqCst));
        let seen = woke.recv_timeout(Duration::from_secs(20));
        assert_eq!(seen, Ok(4), "woken at half, well before its deadline");
    }

    #[test]
    fn a_stop_wakes_a_sleeper() {
        let room = Arc::new(Room::new(8));
        let stop = Arc::new(AtomicBool::new(false));
        let woke = sleeper(&room, &Arc::new(AtomicUsize::new(8)), &stop);
        stop.store(true, Ordering::SeqCst);
        room.wake_all();
        assert_eq!(woke.recv_timeout(Duration::from_secs(20)), Ok(8));
    }
}
