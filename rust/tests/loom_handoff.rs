//! loom model of the hand-off queue (run with RUSTFLAGS="--cfg loom"): records
//! are loom `UnsafeCell`s, so loom reports a read not ordered after its write
//! (or a write over a record not yet read); the wake-up object is a flag under
//! a loom `Mutex` and `Condvar`, like an eventfd's counter, so a wake-up lost
//! behind a sleeping consumer is a deadlock loom reports.
#![cfg(loom)]

use jarvis_rust_core::handoff::{index, Next, QueueWords, RECORDS};
use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

struct Queue {
    tail: AtomicU64,
    head: AtomicU64,
    armed: AtomicU64,
    records: Vec<UnsafeCell<u64>>,
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Queue {
    fn new() -> Arc<Queue> {
        Arc::new(Queue {
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            armed: AtomicU64::new(0),
            records: (0..RECORDS).map(|_| UnsafeCell::new(0)).collect(),
            woken: Mutex::new(false),
            cv: Condvar::new(),
        })
    }
    fn words(&self) -> QueueWords<'_> {
        QueueWords { tail: &self.tail, head: &self.head, armed: &self.armed }
    }
    fn send(&self, value: u64) {
        let w = self.words();
        let pos = loop {
            match w.claim() {
                Some(p) => break p,
                None => thread::yield_now(),
            }
        };
        self.records[index(pos)].with_mut(|p| unsafe { *p = value });
        if w.publish(pos) {
            *self.woken.lock().unwrap() = true;
            self.cv.notify_one();
        }
    }
    /// Receives `n` values, sleeping whenever the queue is empty.
    fn receive(&self, n: u64) -> Vec<u64> {
        let w = self.words();
        let mut got = Vec::new();
        while (got.len() as u64) < n {
            match w.next() {
                Next::Record(pos) => {
                    got.push(self.records[index(pos)].with(|p| unsafe { *p }));
                    w.consumed(pos);
                }
                Next::Empty => {
                    if w.arm() == 0 {
                        let mut woken = self.woken.lock().unwrap();
                        while !*woken {
                            woken = self.cv.wait(woken).unwrap();
                        }
                        *woken = false; // spurious or coalesced wake-ups just loop
                    }
                }
                Next::Corrupt { .. } => panic!("the protocol never makes corrupt indices"),
            }
        }
        got
    }
}

#[test]
fn records_arrive_in_order_and_no_wake_up_is_lost() {
    // Bounded preemptions keep the search to minutes; the bugs this model is
    // for (a lost wake-up, a record read before it is written) need one or two.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let q = Queue::new();
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                for v in 1..=2 {
                    q.send(v);
                }
            })
        };
        assert_eq!(q.receive(2), vec![1, 2]);
        producer.join().unwrap();
    });
}
