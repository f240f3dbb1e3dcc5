"""SharedVisionMemory in one process: frames in and out, holds, errors, files."""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest

import jarvis_rust_core as jrc


def frame(h: int, w: int, c: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def mem(shm_base: Path) -> Iterator[jrc.SharedVisionMemory]:
    m = jrc.SharedVisionMemory(name="t", slots=4, max_width=256, max_height=128, holder="me")
    yield m
    m.close()


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 1), (7, 13, 3), (128, 256, 4), (5, 250), (3, 17, 4)])
def test_frames_round_trip_in_every_format(mem: jrc.SharedVisionMemory, shape: tuple[int, ...]) -> None:
    f = frame(shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
    ref = mem.write_frame(f)
    assert (ref.h, ref.w) == f.shape[:2] and ref.fmt == {4: "BGRA", 3: "RGB", 1: "GRAY"}[ref.channels]
    assert ref.stride % 64 == 0 and ref.stride >= ref.w * ref.channels
    with mem.lease(ref) as view:
        assert view.shape == f.shape and np.array_equal(view, f)
    assert np.array_equal(mem.read_copy(ref), f)


def test_padded_rows_and_bytes_with_geometry(mem: jrc.SharedVisionMemory) -> None:
    big = frame(20, 40, 4)
    padded = big[:, :33]  # rows 160 bytes apart, 132 used
    ref = mem.write_frame(padded)
    assert np.array_equal(mem.read_copy(ref), padded)
    raw = frame(6, 10, 3)
    ref2 = mem.write_frame(raw.tobytes(), width=10, height=6, fmt="RGB")
    assert np.array_equal(mem.read_copy(ref2), raw)
    strided = np.zeros((6, 40), np.uint8)
    strided[:, :30] = raw.reshape(6, 30)
    ref3 = mem.write_frame(strided.tobytes(), width=10, height=6, fmt="RGB", stride=40)
    assert np.array_equal(mem.read_copy(ref3), raw)
    blob = mem.write_frame(b"opaque bytes")
    assert blob.fmt == "GRAY" and mem.read_copy(blob).tobytes() == b"opaque bytes"


def test_read_is_zero_copy_and_read_only(mem: jrc.SharedVisionMemory) -> None:
    ref = mem.write_frame(frame(64, 64), hold=True)
    a, b = mem.read(ref), mem.read(ref)
    assert np.shares_memory(a, b)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0, 0] = 1
    assert not np.shares_memory(mem.read_copy(ref), a)
    mem.release(ref)


def test_views_outlive_the_handle(shm_base: Path) -> None:
    m = jrc.SharedVisionMemory(name="gone", slots=2, max_width=32, max_height=32, holder="h")
    f = frame(32, 32)
    ref = m.write_frame(f, hold=True)
    view = m.read(ref)
    m.close()
    del m
    gc.collect()
    assert not (shm_base / f"jarvis-{os.geteuid()}" / "gone.ring").exists()
    assert np.array_equal(view, f)  # the mapping lives on in the view's base


def test_errors_are_clear(mem: jrc.SharedVisionMemory) -> None:
    with pytest.raises(jrc.FrameGeometryError, match="larger max_width"):
        mem.write_frame(frame(129, 256))
    with pytest.raises(jrc.FrameGeometryError, match="dtype float32"):
        mem.write_frame(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(jrc.FrameGeometryError, match="contiguous"):
        mem.write_frame(frame(8, 8)[:, ::2])
    with pytest.raises(jrc.FrameGeometryError, match="5 channels|not 5"):
        mem.write_frame(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(jrc.FrameGeometryError, match="needs 120 bytes"):
        mem.write_frame(b"x" * 100, width=10, height=3, fmt="BGRA")
    with pytest.raises(jrc.FrameGeometryError, match="unknown pixel format"):
        mem.write_frame(b"x" * 100, width=10, height=1, fmt="CMYK")
    with pytest.raises(jrc.FrameGeometryError, match="numpy uint8 array or a bytes-like"):
        mem.write_frame([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(jrc.RingConfigError, match="at least 2"):
        jrc.SharedVisionMemory(size_mb=1, name="tiny")
    with pytest.raises(jrc.RingConfigError, match="invalid ring name"):
        jrc.SharedVisionMemory(name="../etc", slots=2)
    with pytest.raises(jrc.RingNotFound, match="no ring named"):
        jrc.SharedVisionMemory.attach("nope")
    assert issubclass(jrc.FrameExpired, jrc.RingError)


def test_overwritten_frames_expire_and_copies_never_lie(mem: jrc.SharedVisionMemory) -> None:
    first = mem.write_frame(frame(8, 8, seed=1))
    for i in range(mem.slot_count):
        mem.write_frame(frame(8, 8, seed=2 + i))
    with pytest.raises(jrc.FrameExpired):
        mem.read(first)
    with pytest.raises(jrc.FrameExpired):
        mem.read_copy(first)
    with pytest.raises(jrc.FrameExpired):
        mem.hold(first)
    forged = jrc.FrameRef.from_dict(first.to_dict() | {"ring_gen": first.ring_gen ^ 1})
    with pytest.raises(jrc.FrameExpired, match="generation"):
        mem.read(forged)


def test_a_ref_cannot_lie_about_geometry(mem: jrc.SharedVisionMemory) -> None:
    ref = mem.write_frame(frame(8, 8))
    lie = jrc.FrameRef.from_dict(ref.to_dict() | {"h": 128, "w": 256, "stride": 1024})
    with pytest.raises(jrc.RingFormatError, match="slot holds"):
        mem.read(lie)
    with pytest.raises(jrc.RingFormatError, match="4 slots"):
        mem.read(jrc.FrameRef.from_dict(ref.to_dict() | {"slot": 9}))


def test_held_slots_are_never_reused_and_full_ring_fails_fast(mem: jrc.SharedVisionMemory) -> None:
    refs = [mem.write_frame(frame(16, 16, seed=i), hold=True) for i in range(mem.slot_count)]
    assert len({r.slot for r in refs}) == mem.slot_count
    with pytest.raises(jrc.RingFull, match=r"me \(pid \d+\) holds 4"):
        mem.write_frame(frame(16, 16))
    for i, r in enumerate(refs):
        assert np.array_equal(mem.read(r), frame(16, 16, seed=i))
    mem.release(refs[2])
    again = mem.write_frame(frame(16, 16))
    assert again.slot == refs[2].slot
    with pytest.raises(jrc.HoldError, match="does not hold frame"):
        mem.release(refs[2])


def test_most_recently_freed_slot_is_reused_first(mem: jrc.SharedVisionMemory) -> None:
    refs = [mem.write_frame(frame(4, 4), hold=True) for _ in range(3)]
    for r in (refs[1], refs[0], refs[2]):
        mem.release(r)
    assert mem.write_frame(frame(4, 4)).slot == refs[2].slot


def test_unheld_frames_are_kept_as_long_as_possible(mem: jrc.SharedVisionMemory) -> None:
    refs = [mem.write_frame(frame(4, 4, seed=i)) for i in range(mem.slot_count)]
    assert [r.seq for r in mem.get_frame_pointers()] == [r.seq for r in refs]
    newer = mem.write_frame(frame(4, 4))
    assert newer.slot == refs[0].slot  # the oldest unheld frame goes first
    assert [r.seq for r in mem.get_frame_pointers()] == [r.seq for r in refs[1:]] + [newer.seq]


def test_nested_holds_and_leases(mem: jrc.SharedVisionMemory) -> None:
    ref = mem.write_frame(frame(4, 4))
    mem.hold(ref)
    with mem.lease(ref) as view:
        assert mem.held_count(ref.slot) == 2 and view.shape == (4, 4, 4)
    assert mem.held_count(ref.slot) == 1
    mem.release(ref)
    assert mem.held_count(ref.slot) == 0
    assert mem.slots()[ref.slot]["holders"] == []


def test_reserve_commit_abort(mem: jrc.SharedVisionMemory) -> None:
    with mem.reserve(10, 5, "RGB", monitor=2) as res:
        res.array[:] = 9
        ref = res.commit(hold=True)
    assert (ref.w, ref.h, ref.fmt, ref.monitor) == (10, 5, "RGB", 2)
    assert (mem.read(ref) == 9).all()
    mem.release(ref)
    with mem.reserve(8, 8) as res:
        res.array[:] = 1
        slot = res.slot
        with pytest.raises(jrc.RingBusy, match="still open"):
            mem.reserve(8, 8)
    assert all(not s["writing"] for s in mem.slots()), "leaving the block aborts"
    assert slot not in {r.slot for r in mem.get_frame_pointers() if r.seq > ref.seq}
    with pytest.raises(jrc.HoldError, match="no reserved slot"):
        mem.commit()


def test_hand_over_and_accept(shm_base: Path) -> None:
    writer = jrc.SharedVisionMemory(name="h", slots=2, max_width=16, max_height=16, holder="capture")
    dedup = jrc.SharedVisionMemory.attach("h", holder="dedup")
    ref = writer.write_frame(frame(16, 16), hold=True)
    with pytest.raises(jrc.HoldError, match="no holder named"):
        writer.hand_over(ref, "analysis")
    assert writer.owned() == [ref]
    writer.hand_over(ref, "dedup")
    assert writer.held_count(ref.slot) == 0 and writer.owned() == []
    dedup.accept(ref)
    assert dedup.held_count(ref.slot) == 1 and dedup.owned() == [ref]
    with pytest.raises(jrc.HoldError, match="does not hold"):
        writer.hand_over(ref, "dedup")
    assert dedup.release(ref) is True, "the owner's release decides the frame"
    with pytest.raises(jrc.FrameExpired, match="never handed over"):
        dedup.accept(ref)
    dedup.close()
    writer.close()


def test_kept_hand_over_can_be_withdrawn_and_ownership_is_single(shm_base: Path) -> None:
    a = jrc.SharedVisionMemory(name="own", slots=2, max_width=8, max_height=8, holder="a")
    b = jrc.SharedVisionMemory.attach("own", holder="b")
    ref = a.write_frame(frame(8, 8), hold=True)
    a.hand_over(ref, "b", keep=True)
    (slot,) = [s for s in a.slots() if s["index"] == ref.slot]
    assert slot["owner"] == 1 and slot["holders"] == [0, 1]
    a.withdraw(ref, "b")  # the message could not be sent
    assert a.owned() == [ref] and b.owned() == []
    with pytest.raises(jrc.FrameExpired):
        b.accept(ref)
    a.hand_over(ref, "b", keep=True)
    assert a.release(ref) is False, "a kept hold does not own"
    b.accept(ref)
    a.hold(ref)  # a reference hold, e.g. analysis keeping the last forwarded frame
    assert b.release(ref) is True and a.release(ref) is False
    b.close()
    a.close()


def test_lost_hand_overs_are_given_up_by_the_receiver(shm_base: Path) -> None:
    a = jrc.SharedVisionMemory(name="lost", slots=2, max_width=8, max_height=8, holder="a")
    b = jrc.SharedVisionMemory.attach("lost", holder="b")
    ref = a.write_frame(frame(8, 8), hold=True)
    a.hand_over(ref, "b")  # ... and the message is lost
    assert b.transit() == [ref]
    assert b.reclaim_transit(3600) == [], "too recent: the message may still come"
    assert b.reclaim_transit(0, only=[]) == [], "not seen in transit before: it may have been handed over just now"
    other = a.write_frame(frame(8, 8), hold=True)
    a.hand_over(other, "b")
    assert sorted(b.transit(), key=lambda r: r.seq) == [ref, other]
    assert b.reclaim_transit(0, only=[ref]) == [(ref, True)], "only what an earlier look saw"
    assert b.transit() == [other]
    b.accept(other)
    assert b.transit() == [] and b.reclaim_transit(0) == []
    assert not next(s for s in a.slots() if s["index"] == ref.slot)["holders"]
    with pytest.raises(jrc.FrameExpired):
        b.accept(ref)  # the late message finds nothing
    b.close()
    a.close()


def test_credits_and_epochs(shm_base: Path) -> None:
    with jrc.SharedVisionMemory(name="c", slots=2, max_width=8, max_height=8) as mem:
        assert mem.credit_take(0, 2) and mem.credit_take(0, 2) and not mem.credit_take(0, 2)
        assert mem.credit_in_flight(0) == 2
        assert mem.credit_return(0) == 1
        assert mem.credit_reset(0) == 1
        assert mem.credit_return(0) == 0, "credits of frames from before a reset may come back: saturates"
        assert mem.epoch_is_live(mem.epoch)
        other = jrc.SharedVisionMemory.attach("c", holder="x")
        assert other.epoch > mem.epoch
        epoch = other.epoch
        other.close()
        assert not mem.epoch_is_live(epoch)


def test_files_are_private(mem: jrc.SharedVisionMemory, ring_dir: Path) -> None:
    assert stat.S_IMODE(ring_dir.stat().st_mode) == 0o700
    for f in ring_dir.iterdir():
        st = f.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, f
        assert st.st_uid == os.geteuid()
    assert Path(mem.path).stat().st_size == mem.total_bytes


def test_foreign_stale_and_unsafe_files_are_refused(shm_base: Path, ring_dir: Path) -> None:
    ring_dir.mkdir(mode=0o700, exist_ok=True)
    foreign = ring_dir / "foreign.ring"
    foreign.write_bytes(b"not a ring" * 10000)
    foreign.chmod(0o600)
    with pytest.raises(jrc.RingFormatError, match="not a jarvis ring"):
        jrc.SharedVisionMemory.attach("foreign")
    if os.geteuid() == 0:  # a file of another user in our directory: never deleted
        os.chown(foreign, 65123, 65123)
        with pytest.raises(jrc.RingPermissionError, match="not a private file of this user"):
            jrc.SharedVisionMemory(name="foreign", slots=2)
        assert foreign.exists()
        os.chown(foreign, os.geteuid(), os.getegid())
    # Ours, cut short or overwritten, nobody's lock on it: a stale leftover, replaced.
    fresh = jrc.SharedVisionMemory(name="foreign", slots=2, max_width=8, max_height=8)
    assert fresh.replaced_stale and Path(fresh.path).stat().st_size == fresh.total_bytes
    fresh.close()

    m = jrc.SharedVisionMemory(name="old", slots=2, max_width=8, max_height=8)
    data = bytearray(Path(m.path).read_bytes())
    data[8:12] = (999).to_bytes(4, "little")  # another layout version
    (ring_dir / "older.ring").write_bytes(bytes(data))
    (ring_dir / "older.ring").chmod(0o600)
    with pytest.raises(jrc.RingFormatError, match="layout version 999"):
        jrc.SharedVisionMemory.attach("older")

    os.symlink(m.path, ring_dir / "link.ring")
    with pytest.raises(jrc.RingError):
        jrc.SharedVisionMemory.attach("link")

    loose = ring_dir / "loose.ring"
    loose.write_bytes(Path(m.path).read_bytes())
    loose.chmod(0o644)
    with pytest.raises(jrc.RingPermissionError, match="not a private file"):
        jrc.SharedVisionMemory.attach("loose")
    m.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_other_users_ring_is_refused(shm_base: Path, ring_dir: Path) -> None:
    m = jrc.SharedVisionMemory(name="mine", slots=2, max_width=8, max_height=8)
    os.chown(m.path, 65534, 65534)
    with pytest.raises(jrc.RingPermissionError, match="uid 65534"):
        jrc.SharedVisionMemory.attach("mine")
    os.chown(m.path, 0, 0)
    m.close()


def test_too_little_shared_memory_is_a_clear_error(shm_base: Path) -> None:
    free_mb = os.statvfs(shm_base).f_bavail * os.statvfs(shm_base).f_frsize / 2**20
    slots = int(free_mb / 31.6) + 8  # 3840x2160 BGRA slots are 31.6 MiB
    if slots > 1024:  # (a ring on a disk, as on a Mac, with more room than a ring can ask for)
        pytest.skip(f"{free_mb:.0f} MB free in {shm_base}: more than a ring of 1024 4K slots needs")
    with pytest.raises(jrc.InsufficientSharedMemory, match=r"needs [\d.]+ MB in .* only [\d.]+ MB are free"):
        jrc.SharedVisionMemory(name="huge", slots=slots)
    assert not list(shm_base.rglob("*.ring")) and not list(shm_base.rglob("*.tmp"))


def test_second_writer_is_refused(mem: jrc.SharedVisionMemory) -> None:
    with pytest.raises(jrc.RingBusy, match="live writer"):
        jrc.SharedVisionMemory.attach("t", writer=True)
    with pytest.raises(jrc.RingBusy, match="already attached"):
        jrc.SharedVisionMemory.attach("t", holder="me")
    with pytest.raises(jrc.RingBusy, match="live writer"):
        jrc.SharedVisionMemory(name="t", slots=2)
    reader = jrc.SharedVisionMemory.attach("t")
    with pytest.raises(jrc.RingBusy, match="not its writer"):
        reader.write_frame(frame(2, 2))
    with pytest.raises(jrc.HoldError, match="not a registered holder"):
        reader.hold(mem.write_frame(frame(2, 2)))
    reader.close()
    with pytest.raises(jrc.RingClosed):
        reader.read_copy(mem.get_frame_pointers()[0])


def test_holder_table_reports_holds(mem: jrc.SharedVisionMemory) -> None:
    ref = mem.write_frame(frame(2, 2), hold=True)
    (me,) = mem.holders()
    assert (me["name"], me["pid"], me["alive"], me["holds"]) == ("me", os.getpid(), True, 1)
    mem.release(ref)


def test_frame_ring_buffer_copies_and_holds(mem: jrc.SharedVisionMemory) -> None:
    buf = jrc.FrameRingBuffer(capacity_mb=1 / 1024)  # 1 KiB
    for t in range(5):
        buf.add_frame(bytes([t]) * 300, t * 10)
    assert len(buf) == 3 and buf.used_bytes == 900
    assert [t for t, _ in buf.latest(2)] == [30, 40]
    assert [bytes(cast(bytes, d))[0] for _, d in buf.between(25, 45)] == [3, 4]  # no ring: copies
    with pytest.raises(jrc.RingConfigError, match="time order"):
        buf.add_frame(b"x", 5)
    held = jrc.FrameRingBuffer(1, ring=mem, max_frames=2)
    refs = [mem.write_frame(frame(2, 2, seed=i)) for i in range(3)]
    for r in refs:
        held.add_ref(r)
    assert [mem.held_count(r.slot) for r in refs] == [0, 1, 1]
    assert [r for _, r in held.latest(5)] == refs[1:]
    held.clear()
    assert all(mem.held_count(r.slot) == 0 for r in refs)


def test_closing_in_any_order_leaves_no_files(shm_base: Path, ring_dir: Path) -> None:
    creator = jrc.SharedVisionMemory(name="order", slots=2, max_width=8, max_height=8)
    reader = jrc.SharedVisionMemory.attach("order", holder="late")
    ref = creator.write_frame(np.ones((8, 8, 4), np.uint8))
    reader.hold(ref)
    creator.close()
    assert np.array_equal(reader.read(ref), np.ones((8, 8, 4), np.uint8)), "the mapping outlives the files"
    reader.close()
    assert list(ring_dir.iterdir()) == []


def test_terminal_counts_are_tallied_with_the_decision(shm_base: Path) -> None:
    a = jrc.SharedVisionMemory(name="tally", slots=3, max_width=8, max_height=8, holder="a")
    b = jrc.SharedVisionMemory.attach("tally", holder="b")
    refs = [a.write_frame(frame(8, 8), hold=True, count=0) for _ in range(2)]
    assert a.counters()[0] == 2
    a.hand_over(refs[0], "b")
    b.accept(refs[0])
    b.hold(refs[0])
    assert b.release(refs[0], count=1) is False and a.counters()[1] == 0, "only the last hold decides"
    assert b.release(refs[0], count=1) is True and a.counters()[1] == 1
    with pytest.raises(jrc.RingConfigError):
        a.release(refs[1], count=jrc.COUNTERS)
    assert a.owned() == [refs[1]], "a bad counter index leaves the hold untouched"
    b.close()
    a.close()
