//! Multi-threaded stress test of the ring: one writer, two holders receiving
//! handed-over frames, one thread holding the newest frame by ref, one reading
//! without a hold. Every pixel of every frame is a function of the frame's seq,
//! so any torn or overwritten frame is caught byte for byte.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jarvis_rust_core::error::RingError;
use jarvis_rust_core::frame::{FrameMeta, PixelFormat};
use jarvis_rust_core::ring::{Ring, RingOptions};
use rand::{Rng, SeedableRng};

fn pixel(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64 * 0x2545_F491) >> 29) as u8
}

/// Checks every pixel byte of a frame laid out with `stride` at `base`.
fn check(meta: &FrameMeta, base: *const u8, stride: usize) -> bool {
    let row = meta.width as usize * meta.channels();
    (0..meta.height as usize).all(|y| {
        // SAFETY: callers pass memory holding the whole frame.
        let line = unsafe { std::slice::from_raw_parts(base.add(y * stride), row) };
        line.iter().enumerate().all(|(x, &b)| b == pixel(meta.seq, y * row + x))
    })
}

fn test_dir() -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    let dir = base.join(format!("jarvis-stress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn stress_writer_holders_and_copy_readers() {
    let dir = test_dir();
    let opts = RingOptions { slots: Some(6), max_width: 512, max_height: 256, dir: Some(dir.clone()), ..Default::default() };
    let writer = Arc::new(Ring::create("stress", &opts, true, Some("writer"), true).unwrap());
    let attach = |holder: &str| Arc::new(Ring::attach("stress", false, Some(holder), Some(&dir)).unwrap());
    let (a, b, newest_holder, copier) = (attach("a"), attach("b"), attach("newest"), attach("copier"));

    let stop = Arc::new(AtomicBool::new(false));
    let newest: Arc<Mutex<Option<FrameMeta>>> = Arc::new(Mutex::new(None));
    let verified = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));

    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for ring in [a.clone(), b.clone()] {
        let (tx, rx) = mpsc::channel::<FrameMeta>();
        senders.push(tx);
        let (verified, bad) = (verified.clone(), bad.clone());
        receivers.push(thread::spawn(move || {
            for meta in rx {
                ring.accept(&meta).unwrap();
                let p = ring.view_ptr(&meta).unwrap();
                if check(&meta, p, meta.stride as usize) {
                    verified.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                ring.release(&meta, None).unwrap();
            }
        }));
    }

    let side_readers: Vec<_> = [(newest_holder.clone(), true), (copier.clone(), false)]
        .into_iter()
        .map(|(ring, holding)| {
            let (stop, newest, bad) = (stop.clone(), newest.clone(), bad.clone());
            thread::spawn(move || {
                let (mut ok, mut expired) = (0u64, 0u64);
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Some(meta) = *newest.lock().unwrap() else { continue };
                    let good = if holding {
                        match ring.hold(&meta) {
                            Ok(()) => {
                                let g = check(&meta, ring.view_ptr(&meta).unwrap(), meta.stride as usize);
                                ring.release(&meta, None).unwrap();
                                Some(g)
                            }
                            Err(RingError::FrameExpired(_)) => None,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        buf.resize(meta.width as usize * meta.height as usize * meta.channels(), 0);
                        match ring.read_copy(&meta, &mut buf, |job| job()) {
                            Ok(()) => Some(check(&meta, buf.as_ptr(), meta.width as usize * meta.channels())),
                            Err(RingError::FrameExpired(_)) => None,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    match good {
                        Some(true) => ok += 1,
                        Some(false) => {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                        None => expired += 1,
                    }
                }
                (ok, expired)
            })
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let formats = [PixelFormat::Bgra, PixelFormat::Rgb, PixelFormat::Gray];
    let (mut written, mut refused) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline || written < 2000 {
        let (w, h) = (rng.random_range(1..=512), rng.random_range(1..=256));
        let fmt = formats[rng.random_range(0..3)];
        let meta = match writer.reserve(w, h, fmt, 0) {
            Ok(m) => m,
            Err(RingError::RingFull(_)) => {
                refused += 1;
                thread::yield_now();
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let base = writer.mapping().slot_ptr(meta.slot as usize);
        let row = w * fmt.channels();
        for y in 0..h {
            // SAFETY: the reserved slot is ours; rows are within the slot.
            let line = unsafe { std::slice::from_raw_parts_mut(base.add(y * meta.stride as usize), row) };
            for (x, byte) in line.iter_mut().enumerate() {
                *byte = pixel(meta.seq, y * row + x);
            }
        }
        let meta = writer.commit(true, (None, None), None).unwrap();
        *newest.lock().unwrap() = Some(meta);
        let target = (written % 2) as usize;
        writer.hand_over(&meta, ["a", "b"][target], false).unwrap();
        senders[target].send(meta).unwrap();
        written += 1;
    }
    drop(senders);
    for r in receivers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let side: Vec<(u64, u64)> = side_readers.into_iter().map(|t| t.join().unwrap()).collect();

    assert_eq!(bad.load(Ordering::Relaxed), 0, "torn or overwritten frames were seen");
    assert_eq!(verified.load(Ordering::Relaxed), written, "every written frame reaches one holder intact");
    assert!(side.iter().all(|(ok, _)| *ok > 0), "side readers saw no frame at all: {side:?}");
    for s in writer.slots() {
        assert!(s.holders.is_empty() && !s.writing, "slot left held after the run: {s:?}");
    }
    eprintln!("written {written}, refused {refused} (ring full), side readers (ok, expired): {side:?}");
    drop((a, b, newest_holder, copier));
    writer.close();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn writer_is_exclusive_and_never_waits() {
    let dir = test_dir().join("exclusive");
    std::fs::create_dir_all(&dir).unwrap();
    let opts = RingOptions { slots: Some(3), max_width: 64, max_height: 64, dir: Some(dir.clone()), ..Default::default() };
    let creator = Ring::create("excl", &opts, false, None, true).unwrap();
    let writer = Ring::attach("excl", true, Some("w1"), Some(&dir)).unwrap();
    assert!(matches!(Ring::attach("excl", true, None, Some(&dir)), Err(RingError::Busy(_))), "a second writer");
    let reader = Ring::attach("excl", false, Some("r"), Some(&dir)).unwrap();
    let data = vec![1u8; 64 * 64 * 4];
    let src = jarvis_rust_core::frame::SourceFrame::from_slice(&data, 64, 64, None, PixelFormat::Bgra).unwrap();
    for _ in 0..3 {
        let m = writer.write_frame(&src, 0, true, (None, None), None, |job| job()).unwrap();
        writer.hand_over(&m, "r", false).unwrap();
        reader.accept(&m).unwrap();
    }
    let start = Instant::now();
    assert!(matches!(writer.write_frame(&src, 0, false, (None, None), None, |job| job()), Err(RingError::RingFull(_))));
    assert!(start.elapsed() < Duration::from_secs(1), "RingFull must be immediate");
    assert!(matches!(creator.reclaim("r", None, None), Err(RingError::Busy(_))), "a live holder must not be reclaimed");
    // Closing the reader gives its holds back; the writer can write again.
    reader.close();
    writer.write_frame(&src, 0, false, (None, None), None, |job| job()).unwrap();
    writer.close();
    creator.close();
    std::fs::remove_dir_all(&dir).ok();
}
