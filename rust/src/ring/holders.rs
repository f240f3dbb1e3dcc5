//! Holder registration, liveness and reclaiming; taking, releasing and
//! handing over holds on frames.

use super::*;

impl Ring {
    /// Registers this handle as holder `name`. A dead holder of the same name is
    /// replaced, its holds reclaimed (see `inherited`); a live one is `Busy`.
    pub fn register(&self, name: &str) -> Result<u64> {
        self.check_open()?;
        check_name("holder", name, ".:")?;
        let mut guard = lock_guard(&self.holder);
        if let Some(h) = guard.as_ref() {
            return Err(RingError::Hold(format!("this handle is already registered as holder {:?}", h.name)));
        }
        let paths = self.paths();
        let _registration = paths.lock_registration()?;
        let header = self.header();
        let mut chosen = self.find_holder(name);
        let mut inherited = Reclaimed::default();
        if let Some(i) = chosen {
            if paths.holder_alive(i, &header.holders[i])? {
                return Err(RingError::Busy(format!(
                    "holder {name:?} is already attached to ring {:?} (pid {}); stop it or choose another name",
                    self.name,
                    header.holders[i].pid.load(Ordering::Relaxed)
                )));
            }
            inherited = self.clear_holder_bit(i, None, None);
        }
        if chosen.is_none() {
            chosen = header.holders.iter().position(|e| e.state.load(Ordering::Acquire) == HOLDER_FREE);
        }
        if chosen.is_none() {
            // Reuse the entry of a dead holder, reclaiming its holds.
            for (i, e) in header.holders.iter().enumerate() {
                if e.state.load(Ordering::Acquire) == HOLDER_ATTACHED && !paths.holder_alive(i, e)? {
                    inherited = self.clear_holder_bit(i, None, None);
                    chosen = Some(i);
                    break;
                }
            }
        }
        let index = chosen.ok_or_else(|| {
            RingError::Hold(format!("all {MAX_HOLDERS} holder entries of ring {:?} are in use by live processes", self.name))
        })?;
        let lock = shm::open_lock_file(&paths.holder_lock(index))?;
        if !shm::try_lock(&lock)? {
            return Err(RingError::Busy(format!("holder entry {index} of ring {:?} is locked by another process", self.name)));
        }
        let e = &header.holders[index];
        let epoch = header.epoch_clock.fetch_add(1, Ordering::Relaxed) + 1;
        let pid = std::process::id();
        for (w, v) in e.name.iter().zip(layout::encode_name(name)) {
            w.store(v, Ordering::Relaxed);
        }
        e.pid.store(pid, Ordering::Relaxed);
        e.epoch.store(epoch, Ordering::Relaxed);
        e.start_time.store(shm::process_start_time(pid), Ordering::Relaxed);
        // Release: whoever sees ATTACHED (Acquire) sees the name, pid and epoch.
        e.state.store(HOLDER_ATTACHED, Ordering::Release);
        *guard = Some(HolderState {
            index,
            epoch,
            name: name.to_string(),
            _lock: lock,
            counts: vec![0; self.slot_count()],
            inherited,
        });
        Ok(epoch)
    }

    /// The entry of the attached holder called `name`.
    fn find_holder(&self, name: &str) -> Option<usize> {
        self.header()
            .holders
            .iter()
            .position(|e| e.state.load(Ordering::Acquire) == HOLDER_ATTACHED && entry_name(e) == name)
    }

    /// Clears holder `index`'s bit in every slot, adding each frame it owned to
    /// `tally` as it goes.
    /// With `frames`, the undecided frames' metadata is collected there (read
    /// while the hold still pins the slot, so it is the frame's own).
    pub(super) fn clear_holder_bit(
        &self,
        index: usize,
        tally: Option<&AtomicU64>,
        mut frames: Option<&mut Vec<FrameMeta>>,
    ) -> Reclaimed {
        let mut out = Reclaimed::default();
        for i in 0..self.slot_count() {
            if self.map.slot(i).holds.load(Ordering::Relaxed) & slot::bit(index) == 0 {
                continue;
            }
            let meta = if frames.is_some() { self.map.published_meta(i) } else { None };
            let clock = self.header().free_clock.fetch_add(1, Ordering::Relaxed);
            if let Ok(r) = self.map.words(i).release(index, free_key::released(clock)) {
                out.released += 1;
                if r.was_owner {
                    out.undecided += 1;
                    if let Some(c) = tally {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    if let (Some(v), Some(m)) = (frames.as_deref_mut(), meta) {
                        v.push(m);
                    }
                }
            }
        }
        out
    }

    /// Reclaims the holds of holder `name`, which must be dead (its process gone).
    /// The supervisor calls this for a stage it saw die; the frames the stage
    /// owned are `undecided` and count as dropped(stage_crashed).
    /// With `count`, the undecided frames are added to that shared counter.
    /// With `frames`, the undecided frames are listed there (for their events).
    pub fn reclaim(&self, name: &str, count: Option<usize>, frames: Option<&mut Vec<FrameMeta>>) -> Result<Reclaimed> {
        self.check_open()?;
        let tally = self.tally_counter(count)?;
        let paths = self.paths();
        let _registration = paths.lock_registration()?;
        let header = self.header();
        let index = self
            .find_holder(name)
            .ok_or_else(|| RingError::Hold(format!("no holder named {name:?} is registered on ring {:?}", self.name)))?;
        if paths.holder_alive(index, &header.holders[index])? {
            return Err(RingError::Busy(format!(
                "holder {name:?} (pid {}) is alive; stop it before reclaiming its holds",
                header.holders[index].pid.load(Ordering::Relaxed)
            )));
        }
        let n = self.clear_holder_bit(index, tally, frames);
        header.holders[index].state.store(HOLDER_FREE, Ordering::Release);
        Ok(n)
    }

    /// Reclaims the holds of every dead holder.
    pub fn reclaim_dead(&self, count: Option<usize>) -> Result<Vec<(String, Reclaimed)>> {
        self.check_open()?;
        let tally = self.tally_counter(count)?;
        let paths = self.paths();
        let _registration = paths.lock_registration()?;
        let mut out = Vec::new();
        for (i, e) in self.header().holders.iter().enumerate() {
            if e.state.load(Ordering::Acquire) == HOLDER_ATTACHED && !paths.holder_alive(i, e)? {
                let n = self.clear_holder_bit(i, tally, None);
                e.state.store(HOLDER_FREE, Ordering::Release);
                out.push((entry_name(e), n));
            }
        }
        Ok(out)
    }

    pub fn holders(&self) -> Result<Vec<HolderInfo>> {
        let paths = self.paths();
        let mut out = Vec::new();
        for (i, e) in self.header().holders.iter().enumerate() {
            if e.state.load(Ordering::Acquire) != HOLDER_ATTACHED {
                continue;
            }
            let bit = slot::bit(i);
            out.push(HolderInfo {
                index: i,
                name: entry_name(e),
                pid: e.pid.load(Ordering::Relaxed),
                epoch: e.epoch.load(Ordering::Relaxed),
                alive: paths.holder_alive(i, e)?,
                holds: (0..self.slot_count()).filter(|&s| self.map.slot(s).holds.load(Ordering::Relaxed) & bit != 0).count(),
            });
        }
        Ok(out)
    }

    /// Whether `epoch` is the epoch of a registered holder whose process lives
    /// (receivers drop refs sent by a dead incarnation).
    pub fn epoch_is_live(&self, epoch: u64) -> Result<bool> {
        let paths = self.paths();
        for (i, e) in self.header().holders.iter().enumerate() {
            if e.state.load(Ordering::Acquire) == HOLDER_ATTACHED && e.epoch.load(Ordering::Relaxed) == epoch {
                return paths.holder_alive(i, e);
            }
        }
        Ok(false)
    }

    pub fn slots(&self) -> Vec<SlotInfo> {
        (0..self.slot_count())
            .map(|i| {
                let s = self.map.slot(i);
                let seq = s.seq.load(Ordering::Acquire);
                let holds = s.holds.load(Ordering::Acquire);
                SlotInfo {
                    index: i,
                    seq: seq & !WRITING,
                    writing: seq & WRITING != 0 || holds & WRITER_BIT != 0,
                    holders: slot::holders(holds).collect(),
                    owner: slot::owner(holds),
                }
            })
            .collect()
    }

    fn with_holder<T>(&self, f: impl FnOnce(&mut HolderState) -> Result<T>) -> Result<T> {
        self.check_open()?;
        let mut guard = lock_guard(&self.holder);
        let h = guard.as_mut().ok_or_else(|| {
            RingError::Hold(format!(
                "this handle on ring {:?} is not a registered holder; attach with a holder name to take holds",
                self.name
            ))
        })?;
        f(h)
    }


    /// Takes a (non-owning) hold on frame `r` for this handle; nested holds are
    /// counted and the slot's bit stays set until the last is released.
    pub fn hold(&self, r: &FrameMeta) -> Result<()> {
        self.check_ref(r)?;
        self.with_holder(|h| {
            let slot = r.slot as usize;
            if h.counts[slot] > 0 {
                if self.map.slot(slot).seq.load(Ordering::Relaxed) != r.seq {
                    return Err(self.expired(r));
                }
            } else {
                self.map.words(slot).try_hold(r.seq, h.index).map_err(|_| self.expired(r))?;
                if let Err(e) = self.check_current(r) {
                    let clock = self.header().free_clock.fetch_add(1, Ordering::Relaxed);
                    let _ = self.map.words(slot).release(h.index, free_key::released(clock));
                    return Err(e);
                }
            }
            h.counts[slot] += 1;
            Ok(())
        })
    }

    /// The held slot of `r`, checked: this handle holds it and it still carries `r`.
    fn held_slot(&self, h: &HolderState, r: &FrameMeta, doing: &str) -> Result<usize> {
        let slot = r.slot as usize;
        if h.counts[slot] == 0 || self.map.slot(slot).seq.load(Ordering::Relaxed) != r.seq {
            return Err(RingError::Hold(format!(
                "holder {:?} does not hold frame seq {} (slot {slot}), so it cannot {doing} it",
                h.name, r.seq
            )));
        }
        Ok(slot)
    }

    /// Releases one hold of this handle on frame `r`. Returns true when this
    /// ended the handle's ownership of the frame: its terminal state is decided,
    /// and with `count` tallied in that shared counter in the same call.
    pub fn release(&self, r: &FrameMeta, count: Option<usize>) -> Result<bool> {
        self.check_ref(r)?;
        let tally = self.tally_counter(count)?;
        self.with_holder(|h| {
            let slot = self.held_slot(h, r, "release")?;
            h.counts[slot] -= 1;
            if h.counts[slot] > 0 {
                return Ok(false);
            }
            let clock = self.header().free_clock.fetch_add(1, Ordering::Relaxed);
            self.map
                .words(slot)
                .release(h.index, free_key::released(clock))
                .map(|rel| {
                    if let (true, Some(c)) = (rel.was_owner, tally) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    rel.was_owner
                })
                .map_err(|_| RingError::Hold(format!("the hold of {:?} on slot {slot} was reclaimed while in use", h.name)))
        })
    }

    /// Passes one hold of this handle on `r`, and its ownership if it owns the
    /// frame, to holder `to` atomically. The receiver calls `accept` when the
    /// ref arrives. With `keep`, this handle keeps its hold (not the ownership)
    /// until it releases it, and can `withdraw` the hand-over if the message
    /// could not be sent.
    pub fn hand_over(&self, r: &FrameMeta, to: &str, keep: bool) -> Result<()> {
        self.check_ref(r)?;
        let target = self
            .find_holder(to)
            .ok_or_else(|| RingError::Hold(format!("no holder named {to:?} is attached to ring {:?}", self.name)))?;
        self.with_holder(|h| {
            if target == h.index {
                return Err(RingError::Hold(format!("holder {to:?} cannot hand a frame over to itself")));
            }
            let slot = self.held_slot(h, r, "hand over")?;
            let keep_bit = keep || h.counts[slot] > 1;
            self.map
                .words(slot)
                .hand_over(h.index, target, keep_bit)
                .map_err(|_| RingError::Hold(format!("the hold of {:?} on slot {slot} was reclaimed", h.name)))?;
            if !keep {
                h.counts[slot] -= 1;
            }
            Ok(())
        })
    }

    /// Undoes `hand_over(r, to, keep=True)` when the message to `to` was not
    /// sent: clears `to`'s hold and takes the ownership back.
    pub fn withdraw(&self, r: &FrameMeta, to: &str) -> Result<()> {
        self.check_ref(r)?;
        let target = self
            .find_holder(to)
            .ok_or_else(|| RingError::Hold(format!("no holder named {to:?} is attached to ring {:?}", self.name)))?;
        self.with_holder(|h| {
            let slot = self.held_slot(h, r, "withdraw")?;
            self.map
                .words(slot)
                .withdraw(h.index, target)
                .map_err(|_| RingError::Hold(format!("holder {to:?} holds no frame seq {} to withdraw", r.seq)))
        })
    }

    /// Takes charge of a hold handed over to this handle's holder. `FrameExpired`
    /// if it is gone (reclaimed because this holder's previous incarnation died).
    pub fn accept(&self, r: &FrameMeta) -> Result<()> {
        self.check_ref(r)?;
        self.with_holder(|h| {
            let slot = r.slot as usize;
            if !self.map.words(slot).is_held_by(r.seq, h.index) {
                return Err(RingError::FrameExpired(format!(
                    "no hold on frame seq {} (slot {}) was handed to {:?}: it was reclaimed or never handed over",
                    r.seq, slot, h.name
                )));
            }
            h.counts[slot] += 1;
            Ok(())
        })
    }

    /// Frames handed over to this handle that it has not accepted yet.
    pub fn transit(&self) -> Result<Vec<FrameMeta>> {
        self.with_holder(|h| {
            Ok((0..self.slot_count())
                .filter(|&slot| {
                    h.counts[slot] == 0 && self.map.slot(slot).holds.load(Ordering::Acquire) & slot::bit(h.index) != 0
                })
                .filter_map(|slot| self.map.published_meta(slot))
                .collect())
        })
    }

    /// Gives up holds handed to this handle that never arrived: frames whose
    /// bit is set for this holder but that it never accepted, captured at least
    /// `min_age_ns` ago (their message was lost when the sender died between
    /// hand-over and send), and, with `only`, among those (slot, seq) pairs
    /// (frames seen in transit at an earlier look: the caller measures the
    /// age from the hand-over, which the capture time does not tell).
    /// Returns each with whether this holder owned it.
    pub fn reclaim_transit(
        &self,
        min_age_ns: u64,
        count: Option<usize>,
        only: Option<&[(u32, u64)]>,
    ) -> Result<Vec<(FrameMeta, bool)>> {
        let now = shm::monotonic_ns();
        let tally = self.tally_counter(count)?;
        self.with_holder(|h| {
            let mut out = Vec::new();
            for slot in 0..self.slot_count() {
                if h.counts[slot] > 0 || self.map.slot(slot).holds.load(Ordering::Acquire) & slot::bit(h.index) == 0 {
                    continue;
                }
                let Some(meta) = self.map.published_meta(slot) else { continue };
                if now.saturating_sub(meta.t_mono_ns) < min_age_ns {
                    continue;
                }
                if only.is_some_and(|pairs| !pairs.contains(&(meta.slot, meta.seq))) {
                    continue;
                }
                let clock = self.header().free_clock.fetch_add(1, Ordering::Relaxed);
                if let Ok(rel) = self.map.words(slot).release(h.index, free_key::released(clock)) {
                    if let (true, Some(c)) = (rel.was_owner, tally) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    out.push((meta, rel.was_owner));
                }
            }
            Ok(out)
        })
    }

    /// The frames this handle owns: their terminal state is its to decide.
    pub fn owned(&self) -> Result<Vec<FrameMeta>> {
        self.with_holder(|h| {
            Ok((0..self.slot_count())
                .filter(|&i| slot::owner(self.map.slot(i).holds.load(Ordering::Acquire)) == Some(h.index))
                .filter_map(|i| self.map.published_meta(i))
                .collect())
        })
    }

    /// Number of holds this handle has on slot `slot`.
    pub fn held_count(&self, slot: usize) -> u32 {
        lock_guard(&self.holder).as_ref().and_then(|h| h.counts.get(slot).copied()).unwrap_or(0)
    }
}
