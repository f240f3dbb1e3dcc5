//! Putting frames into slots (reserve, commit, abort, write) and getting them
//! out (zero-copy views, validated copies, the list of published frames).

use super::*;

impl Ring {

    /// Claims a slot for a frame of the given geometry; the caller fills the
    /// pixels at `mapping().slot_ptr(slot)` (rows `stride` apart) and then calls
    /// `commit` or `abort`.
    pub fn reserve(&self, width: usize, height: usize, format: PixelFormat, monitor: u32) -> Result<FrameMeta> {
        self.check_open()?;
        let mut guard = lock_guard(&self.writer);
        let w = guard.as_mut().ok_or_else(|| {
            RingError::Busy(format!(
                "this handle on ring {:?} is not its writer; create the ring or attach with writer=True",
                self.name
            ))
        })?;
        if w.pending.is_some() {
            return Err(RingError::Busy("a reserved slot is still open; commit or abort it first".into()));
        }
        if width == 0 || height == 0 {
            return Err(RingError::FrameGeometry(format!("a frame needs at least one pixel, got {width}x{height}")));
        }
        let stride = ring_stride(width, format);
        let needed = stride.saturating_mul(height);
        if needed > self.slot_bytes() {
            let (mw, mh) = self.max_frame();
            return Err(RingError::FrameGeometry(format!(
                "a {width}x{height} {} frame needs {needed} bytes but a slot of ring {:?} holds {} \
                 (made for {mw}x{mh}); create the ring with a larger max_width/max_height",
                format.name(),
                self.name,
                self.slot_bytes()
            )));
        }
        let slot = self.claim_slot()?;
        let seq = self.header().next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.words(slot).begin_write(seq);
        let meta = FrameMeta {
            ring_gen: self.generation(),
            slot: slot as u32,
            seq,
            epoch: 0,
            monitor,
            width: width as u32,
            height: height as u32,
            stride: stride as u32,
            format,
            t_mono_ns: shm::monotonic_ns(),
            t_wall_ns: shm::wall_ns(),
        };
        w.pending = Some(meta);
        Ok(meta)
    }

    fn claim_slot(&self) -> Result<usize> {
        // Readers can take a hold on a free slot between our scan and our CAS,
        // so a failed claim rescans; each pass is a few cache lines.
        for _ in 0..8 {
            let best = (0..self.slot_count())
                .filter(|&i| self.map.slot(i).holds.load(Ordering::Relaxed) == 0)
                .max_by_key(|&i| self.map.slot(i).free_key.load(Ordering::Relaxed));
            match best {
                None => break,
                Some(i) if self.map.words(i).try_claim() => return Ok(i),
                Some(_) => continue,
            }
        }
        Err(RingError::RingFull(self.full_message()))
    }

    fn full_message(&self) -> String {
        let holders = self.holders().unwrap_or_default();
        let detail: Vec<String> =
            holders.iter().filter(|h| h.holds > 0).map(|h| format!("{} (pid {}) holds {}", h.name, h.pid, h.holds)).collect();
        format!(
            "all {} slots of ring {:?} are held ({}); the frame was not written. A stage is not releasing \
             frames fast enough, or the ring is too small for the configured credits",
            self.slot_count(),
            self.name,
            if detail.is_empty() { "by nobody registered".to_string() } else { detail.join(", ") }
        )
    }

    /// Publishes the reserved frame. With `hold`, this handle keeps a hold on it
    /// and owns it (decides its terminal state, or hands that on).
    /// With `count`, adds 1 to that shared counter right after publishing (the
    /// capture stage's `captured`), in the same call so a crash can only fall
    /// between two adjacent atomic instructions.
    pub fn commit(&self, hold: bool, times: (Option<u64>, Option<u64>), count: Option<usize>) -> Result<FrameMeta> {
        self.check_open()?;
        let (t_mono_ns, t_wall_ns) = times;
        let tally = self.tally_counter(count)?;
        let mut guard = lock_guard(&self.writer);
        let w = guard.as_mut().ok_or_else(|| RingError::Busy("this handle is not the ring's writer".into()))?;
        let mut meta = w.pending.ok_or_else(|| RingError::Hold("no reserved slot to commit; call reserve first".into()))?;
        let mut holder = lock_guard(&self.holder);
        let owner = match (hold, holder.as_ref()) {
            (true, Some(h)) => Some(h.index),
            (true, None) => {
                return Err(RingError::Hold("commit(hold=True) needs a registered holder; attach with a holder name".into()))
            }
            (false, _) => None,
        };
        meta.epoch = holder.as_ref().map(|h| h.epoch).unwrap_or(0);
        if let Some(t) = t_mono_ns {
            meta.t_mono_ns = t;
        }
        if let Some(t) = t_wall_ns {
            meta.t_wall_ns = t;
        }
        let s = self.map.slot(meta.slot as usize);
        // Metadata are atomics so that hold-free readers race on nothing; their
        // visibility comes from the Release store of seq in publish().
        s.width.store(meta.width, Ordering::Relaxed);
        s.height.store(meta.height, Ordering::Relaxed);
        s.stride.store(meta.stride, Ordering::Relaxed);
        s.format.store(meta.format as u32, Ordering::Relaxed);
        s.monitor.store(meta.monitor, Ordering::Relaxed);
        s.epoch.store(meta.epoch, Ordering::Relaxed);
        s.t_mono_ns.store(meta.t_mono_ns, Ordering::Relaxed);
        s.t_wall_ns.store(meta.t_wall_ns, Ordering::Relaxed);
        let clock = self.header().free_clock.fetch_add(1, Ordering::Relaxed);
        self.map.words(meta.slot as usize).publish(meta.seq, owner, free_key::unheld(clock));
        if let Some(c) = tally {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let (true, Some(h)) = (hold, holder.as_mut()) {
            h.counts[meta.slot as usize] += 1;
        }
        w.pending = None;
        Ok(meta)
    }

    /// Gives up the reserved slot; nothing is published.
    pub fn abort(&self) -> Result<()> {
        let mut guard = lock_guard(&self.writer);
        let w = guard.as_mut().ok_or_else(|| RingError::Busy("this handle is not the ring's writer".into()))?;
        let meta = w.pending.take().ok_or_else(|| RingError::Hold("no reserved slot to abort".into()))?;
        let clock = self.header().free_clock.fetch_add(1, Ordering::Relaxed);
        self.map.words(meta.slot as usize).abort(free_key::released(clock));
        Ok(())
    }

    /// Copies a frame into a slot and publishes it. `run_copy` runs the byte copy
    /// it is given (directly, or with the GIL released).
    pub fn write_frame(
        &self,
        src: &SourceFrame,
        monitor: u32,
        hold: bool,
        times: (Option<u64>, Option<u64>),
        count: Option<usize>,
        run_copy: impl FnOnce(&CopyJob),
    ) -> Result<FrameMeta> {
        self.tally_counter(count)?;
        let meta = self.reserve(src.width, src.height, src.format, monitor)?;
        let dst_addr = self.map.slot_ptr(meta.slot as usize) as usize;
        let row = src.width * src.format.channels();
        let (stride, height) = (meta.stride as usize, src.height);
        let (src_addr, src_stride) = (src.ptr as usize, src.stride);
        let copy = move || {
            let (src, dst) = (src_addr as *const u8, dst_addr as *mut u8);
            // SAFETY: the slot is claimed by us (WRITER_BIT) so nobody reads it
            // under a hold; `stride * height <= slot_bytes` was checked by
            // reserve; the source rows are valid per SourceFrame's contract.
            unsafe {
                if src_stride == stride {
                    std::ptr::copy_nonoverlapping(src, dst, stride * (height - 1) + row);
                } else {
                    for y in 0..height {
                        std::ptr::copy_nonoverlapping(src.add(y * src_stride), dst.add(y * stride), row);
                    }
                }
            }
        };
        run_copy(&copy);
        match self.commit(hold, times, count) {
            Ok(m) => Ok(m),
            Err(e) => {
                let _ = self.abort();
                Err(e)
            }
        }
    }

    // ---------------------------------------------------------------- reading

    /// Checks that `r` belongs to this ring and names a slot in it.
    pub(super) fn check_ref(&self, r: &FrameMeta) -> Result<()> {
        if r.ring_gen != self.generation() {
            return Err(RingError::FrameExpired(format!(
                "frame seq {} belongs to ring generation {:#x}, not the current {:#x} (the ring was recreated)",
                r.seq,
                r.ring_gen,
                self.generation()
            )));
        }
        if r.slot as usize >= self.slot_count() {
            return Err(RingError::Format(format!(
                "ref names slot {} but ring {:?} has {} slots",
                r.slot,
                self.name,
                self.slot_count()
            )));
        }
        Ok(())
    }

    pub(super) fn expired(&self, r: &FrameMeta) -> RingError {
        RingError::FrameExpired(format!(
            "frame seq {} in slot {} of ring {:?} is gone (overwritten or never published); \
             take a hold to keep a frame alive",
            r.seq, r.slot, self.name
        ))
    }

    /// The current frame of `r`'s slot must be `r` itself, geometry included.
    pub(super) fn check_current(&self, r: &FrameMeta) -> Result<()> {
        self.check_ref(r)?;
        match self.map.published_meta(r.slot as usize) {
            Some(m) if m.seq == r.seq => {
                if (m.width, m.height, m.stride, m.format) != (r.width, r.height, r.stride, r.format) {
                    return Err(RingError::Format(format!(
                        "ref for frame seq {} says {}x{} {} stride {} but the slot holds {}x{} {} stride {}",
                        r.seq, r.width, r.height, r.format.name(), r.stride, m.width, m.height, m.format.name(), m.stride
                    )));
                }
                Ok(())
            }
            _ => Err(self.expired(r)),
        }
    }

    /// Validates `r` for a zero-copy view and returns a pointer to its first
    /// pixel. The view is only stable under a hold.
    pub fn view_ptr(&self, r: &FrameMeta) -> Result<*const u8> {
        self.check_open()?;
        self.check_current(r)?;
        Ok(self.map.slot_ptr(r.slot as usize))
    }

    /// Copies frame `r` into `dst` (rows of `width * channels` bytes, packed) and
    /// validates the copy: `FrameExpired` if the writer touched the slot.
    pub fn read_copy(&self, r: &FrameMeta, dst: &mut [u8], run_copy: impl FnOnce(&CopyJob)) -> Result<()> {
        self.check_open()?;
        self.check_current(r)?;
        let row = r.width as usize * r.channels();
        let (stride, height) = (r.stride as usize, r.height as usize);
        assert_eq!(dst.len(), row * height, "destination has the wrong size");
        let words = self.map.words(r.slot as usize);
        if !words.copy_begin(r.seq) {
            return Err(self.expired(r));
        }
        let src_addr = self.map.slot_ptr(r.slot as usize) as usize;
        let dst_addr = dst.as_mut_ptr() as usize;
        let copy = move || {
            // SAFETY: geometry was checked against the slot (stride * height <=
            // slot_bytes); a concurrent writer may change the bytes, which the
            // seqlock check below detects.
            unsafe {
                let (src, dst) = (src_addr as *const u8, dst_addr as *mut u8);
                if stride == row {
                    std::ptr::copy_nonoverlapping(src, dst, row * height);
                } else {
                    for y in 0..height {
                        std::ptr::copy_nonoverlapping(src.add(y * stride), dst.add(y * row), row);
                    }
                }
            }
        };
        run_copy(&copy);
        if words.copy_is_valid(r.seq) {
            Ok(())
        } else {
            Err(self.expired(r))
        }
    }

    /// The published frames of the ring, oldest first.
    pub fn frames(&self) -> Vec<FrameMeta> {
        let mut v: Vec<FrameMeta> = (0..self.slot_count()).filter_map(|i| self.map.published_meta(i)).collect();
        v.sort_by_key(|m| m.seq);
        v
    }
}
