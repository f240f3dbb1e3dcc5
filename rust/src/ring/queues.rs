//! The per-hop hand-off queues in the header (protocol in `crate::handoff`).

use super::*;
use crate::handoff::{self, Next, QueueWords, RECORDS, RECORD_BYTES};
use crate::layout::HandoffQueue;

impl Ring {
    fn queue(&self, hop: usize) -> Result<&HandoffQueue> {
        self.header()
            .handoff
            .get(hop)
            .ok_or_else(|| RingError::Config(format!("hop index {hop} out of range 0..{HOPS}")))
    }

    fn queue_words(q: &HandoffQueue) -> QueueWords<'_> {
        QueueWords { tail: &q.tail, head: &q.head, armed: &q.armed }
    }

    /// Producer of `hop`: queues `message` for the hop's consumer. Returns
    /// whether the consumer is asleep and must be woken (its wake-up object is
    /// the caller's). `HandoffFull` when `RECORDS` records are waiting.
    pub fn handoff_push(&self, hop: usize, message: &[u8]) -> Result<bool> {
        let q = self.queue(hop)?;
        if message.len() > RECORD_BYTES {
            return Err(RingError::Config(format!(
                "a hand-off message of {} bytes does not fit a record of {RECORD_BYTES}",
                message.len()
            )));
        }
        let words = Self::queue_words(q);
        let pos = words.claim().ok_or_else(|| {
            RingError::HandoffFull(format!(
                "the hand-off queue of hop {hop} holds {RECORDS} records: its consumer is not taking them"
            ))
        })?;
        let rec = &q.records[handoff::index(pos)];
        // SAFETY: `claim` gave this producer the record: the consumer is done
        // with it (its Release of `head`, our Acquire) and reads it only after
        // `publish`; the copy stays within the record's bytes.
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), rec.bytes.get() as *mut u8, message.len()) };
        // Relaxed like the bytes: `publish`'s Release store of `tail` orders both.
        rec.len.store(message.len() as u32, Ordering::Relaxed);
        Ok(words.publish(pos))
    }

    /// Consumer of `hop`: the next message, or None when the queue is empty.
    /// A record that breaks the protocol (bad length or indices) is skipped
    /// and reported as `Format`; the queue stays usable.
    pub fn handoff_pop(&self, hop: usize) -> Result<Option<Vec<u8>>> {
        let q = self.queue(hop)?;
        let words = Self::queue_words(q);
        match words.next() {
            Next::Empty => Ok(None),
            Next::Corrupt { head, tail } => {
                words.skip_all(tail);
                Err(RingError::Format(format!(
                    "the hand-off queue of hop {hop} had corrupt indices (head {head}, tail {tail}): skipped to the tail"
                )))
            }
            Next::Record(pos) => {
                let rec = &q.records[handoff::index(pos)];
                // Relaxed: `next`'s Acquire load of `tail` ordered the record's writes before it.
                let len = rec.len.load(Ordering::Relaxed) as usize;
                let out = (len <= RECORD_BYTES).then(|| {
                    let mut v = vec![0u8; len];
                    // SAFETY: the record is published (Acquire of `tail` in
                    // `next`) and not reused before `consumed`; len is checked.
                    unsafe { std::ptr::copy_nonoverlapping(rec.bytes.get() as *const u8, v.as_mut_ptr(), len) };
                    v
                });
                words.consumed(pos);
                out.map(Some).ok_or_else(|| {
                    RingError::Format(format!(
                        "a hand-off record of hop {hop} claims {len} bytes, over the {RECORD_BYTES} a record has: skipped"
                    ))
                })
            }
        }
    }

    /// Consumer of `hop`, before it sleeps: asks for a wake-up on the next
    /// record; returns the records already waiting (then it must not sleep).
    pub fn handoff_arm(&self, hop: usize) -> Result<u64> {
        Ok(Self::queue_words(self.queue(hop)?).arm())
    }

    /// Records waiting in `hop`'s queue.
    pub fn handoff_pending(&self, hop: usize) -> Result<u64> {
        Ok(Self::queue_words(self.queue(hop)?).pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(tag: &str) -> (Ring, PathBuf) {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("jarvis-queues-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = RingOptions { slots: Some(2), max_width: 8, max_height: 8, dir: Some(dir.clone()), ..Default::default() };
        (Ring::create("q", &opts, false, None, true).unwrap(), dir)
    }

    #[test]
    fn records_come_out_in_order_across_wrap_around_and_a_full_queue_refuses() {
        let (r, dir) = ring("wrap");
        let mut sent = 0u32;
        let mut got = 0u32;
        for round in 0..5 {
            // Fill up to RECORDS; one more is refused without touching the queue.
            while r.handoff_pending(1).unwrap() < RECORDS as u64 {
                r.handoff_push(1, format!("m{sent}").as_bytes()).unwrap();
                sent += 1;
            }
            assert!(matches!(r.handoff_push(1, b"over"), Err(RingError::HandoffFull(_))), "round {round}");
            // Take a few out (not all: the positions wrap at different offsets each round).
            for _ in 0..(3 + round) {
                assert_eq!(r.handoff_pop(1).unwrap().unwrap(), format!("m{got}").into_bytes());
                got += 1;
            }
        }
        while let Some(m) = r.handoff_pop(1).unwrap() {
            assert_eq!(m, format!("m{got}").into_bytes());
            got += 1;
        }
        assert_eq!(got, sent);
        assert!(sent as usize > 3 * RECORDS, "the positions wrapped several times");
        assert_eq!(r.handoff_pending(0).unwrap(), 0, "hops are independent");
        let longest = vec![7u8; RECORD_BYTES];
        r.handoff_push(1, &longest).unwrap();
        assert_eq!(r.handoff_pop(1).unwrap().unwrap(), longest);
        assert!(matches!(r.handoff_push(1, &[0; RECORD_BYTES + 1]), Err(RingError::Config(_))));
        assert!(matches!(r.handoff_push(HOPS, b"x"), Err(RingError::Config(_))));
        r.close();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_producer_wakes_only_an_armed_consumer_once() {
        let (r, dir) = ring("wake");
        assert!(!r.handoff_push(0, b"a").unwrap(), "not armed: no wake-up");
        assert_eq!(r.handoff_arm(0).unwrap(), 1, "a record already waits: do not sleep");
        r.handoff_pop(0).unwrap();
        assert_eq!(r.handoff_arm(0).unwrap(), 0);
        assert!(r.handoff_push(0, b"b").unwrap(), "armed: wake it");
        assert!(!r.handoff_push(0, b"c").unwrap(), "one wake-up per arming");
        r.close();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn corrupt_lengths_and_indices_are_skipped_and_reported() {
        let (r, dir) = ring("corrupt");
        r.handoff_push(2, b"first").unwrap();
        r.handoff_push(2, b"second").unwrap();
        let q = r.queue(2).unwrap();
        q.records[0].len.store(RECORD_BYTES as u32 + 1, Ordering::Relaxed);
        assert!(matches!(r.handoff_pop(2), Err(RingError::Format(_))));
        assert_eq!(r.handoff_pop(2).unwrap().unwrap(), b"second", "the next record is intact");
        q.tail.store(q.head.load(Ordering::Relaxed) + RECORDS as u64 + 5, Ordering::Relaxed);
        assert!(matches!(r.handoff_push(2, b"x"), Err(RingError::HandoffFull(_))), "the producer never guesses");
        assert!(matches!(r.handoff_pop(2), Err(RingError::Format(_))));
        assert_eq!(r.handoff_pop(2).unwrap(), None, "skipped to the tail");
        r.handoff_push(2, b"after").unwrap();
        assert_eq!(r.handoff_pop(2).unwrap().unwrap(), b"after");
        r.close();
        std::fs::remove_dir_all(&dir).ok();
    }
}
