"""Forward's pieces on their own: crop and downscale geometry, masks, the
format rule, pacing and batching on a fake clock, the journal and the outbox
(whole entries or nothing when the disk is full), the key file, and the
forward section of the configuration."""

from __future__ import annotations

import errno
import io
import json
import logging
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from text_images import text_image

from pipeline import config as config_mod
from pipeline.api_key import ApiKeyError, api_key
from procs.forward import FrameCopy, Job, Sender, WriteFailures, journal
from procs.forward.image import Geometry, apply_masks, crop_box, encode, fit_size, tokens
from procs.forward.journal import Journal, cost_usd
from procs.forward.outbox import Outbox
from procs.forward.pacing import Batcher, Pacer, TokenBucket
from procs.forward.request import Shot

G = Geometry()

# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    "size, want",
    [
        ((1920, 1080), (1456, 819)),  # the vision guide's 16:9 size
        ((3840, 2160), (1456, 819)),
        ((1092, 1092), (1092, 1092)),  # fits: untouched
        ((1456, 819), (1456, 819)),
        ((5000, 100), (1568, 31)),  # long edge rule
        ((1921, 1081), (1455, 819)),  # odd sizes round down, never over the limits
        ((7, 3), (7, 3)),
    ],
)
def test_fit_size(size: tuple[int, int], want: tuple[int, int]) -> None:
    assert fit_size(*size, G) == want


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8000), st.integers(1, 8000))
def test_fit_size_limits_and_aspect(w: int, h: int) -> None:
    fw, fh = fit_size(w, h, G)
    assert 1 <= fw <= w and 1 <= fh <= h
    assert max(fw, fh) <= G.max_long_edge and fw * fh <= G.max_pixels
    if (fw, fh) != (w, h) and min(fw, fh) > 10:
        assert abs(fw / fh - w / h) / (w / h) < 0.1 + 2 / min(fw, fh)


box_st = st.tuples(st.integers(0, 2000), st.integers(0, 1200), st.integers(1, 600), st.integers(1, 600))


@settings(max_examples=300, deadline=None)
@given(st.integers(16, 2560), st.integers(16, 1600), st.lists(box_st, max_size=6))
def test_crop_box_geometry(w: int, h: int, raw: list[tuple[int, int, int, int]]) -> None:
    regions = [[x % w, y % h, min(bw, w - x % w), min(bh, h - y % h)] for x, y, bw, bh in raw]
    x, y, cw, ch = crop_box(w, h, regions, G)
    assert 0 <= x and 0 <= y and x + cw <= w and y + ch <= h, "inside the frame"
    if [x, y, cw, ch] == [0, 0, w, h]:
        return
    assert regions, "no regions: the whole frame"
    assert cw >= min(G.min_crop, w) and ch >= min(G.min_crop, h), "tiny crops grow to 200 px per side"
    assert cw * ch <= G.crop_max_fraction * w * h
    for rx, ry, rw, rh in regions:
        assert x <= rx and y <= ry and rx + rw <= x + cw and ry + rh <= y + ch, "every change is in the crop"


def test_crop_box_examples() -> None:
    assert crop_box(1920, 1080, [], G) == [0, 0, 1920, 1080]
    # A caret-sized change: margin, then grown to 200x200 around it.
    assert crop_box(1920, 1080, [[960, 540, 2, 16]], G) == [861, 448, 200, 200]
    # At the corner the growth goes inwards.
    assert crop_box(1920, 1080, [[0, 0, 8, 8]], G) == [0, 0, 200, 200]
    assert crop_box(1920, 1080, [[1910, 1070, 10, 10]], G) == [1720, 880, 200, 200]
    # Changes spread over most of the screen: the whole frame.
    assert crop_box(1920, 1080, [[0, 0, 100, 100], [1800, 1000, 100, 80]], G) == [0, 0, 1920, 1080]
    # A frame smaller than the minimum crop is sent whole.
    assert crop_box(150, 120, [[10, 10, 5, 5]], G) == [0, 0, 150, 120]


def test_tokens_estimate() -> None:
    assert tokens(1456, 819) == 1590 and tokens(200, 200) == 54 and tokens(1000, 1000) == 1334


# ---------------------------------------------------------------- masks and encoding


def desktop(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(1, 256, (h, w, 4), dtype=np.uint8)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_masks_are_black_in_the_encoded_pixels() -> None:
    frame = desktop(640, 360)
    crop = frame[100:300, 200:500].copy()  # the part of the frame at (200, 100)
    masks = [[1, 250, 150, 40, 30], [2, 0, 0, 640, 360], [0, 480, 280, 100, 100]]  # monitor 2's never applies
    assert apply_masks(crop, 1, (200, 100), masks) == 2
    rgb = decode(encode(crop, G, "png").data)
    expect = frame[100:300, 200:500, 2::-1].copy()  # BGRA -> RGB
    expect[50:80, 50:90] = 0  # mask 1 in crop coordinates
    expect[180:200, 280:300] = 0  # mask 3, clipped at the crop's edge
    assert np.array_equal(rgb, expect), "exactly the masked pixels are black, all others untouched"


def test_bgra_channel_order_survives() -> None:
    frame = np.zeros((220, 210, 4), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 200  # B, G, R
    rgb = decode(encode(frame, G, "png").data)
    assert tuple(rgb[5, 5]) == (200, 20, 10)


def test_format_rule() -> None:
    assert encode(text_image(400, 300), G).media_type == "image/png"
    assert encode(text_image(400, 300), G, whole=True).media_type == "image/jpeg", "whole frames go as JPEG"
    assert encode(desktop(400, 300), G).media_type == "image/jpeg"
    assert encode(text_image(400, 300), Geometry(png_for_text=False)).media_type == "image/jpeg"


def test_downscale_averages_instead_of_skipping() -> None:
    # One-pixel stripes: nearest-neighbour would keep only one of the two colours.
    frame = np.zeros((1080, 1920, 4), np.uint8)
    frame[::2, :, :3] = 255
    rgb = decode(encode(frame, G, "png").data)
    assert rgb.shape == (819, 1456, 3)
    assert 90 < rgb.mean() < 165, "area averaging blends the stripes into grey"


def test_large_images_stay_under_the_base64_limit() -> None:
    img = encode(desktop(3840, 2160), G)  # noise: the worst case for compression
    assert img.b64_len <= 5 * 2**20 and (img.width, img.height) == (1456, 819)


# ---------------------------------------------------------------- pacing on a fake clock


def test_token_bucket_refills_at_its_rate() -> None:
    b = TokenBucket(60, now=0.0)  # one per second
    assert b.ready_at(60, 0.0) == 0.0
    b.take(60, 0.0)
    assert b.ready_at(1, 0.0) == pytest.approx(1.0) and b.ready_at(30, 10.0) == pytest.approx(30.0)
    assert b.ready_at(61, 100.0) == math.inf, "more than the bucket holds never fits"


def test_pacer_interval_buckets_and_hold() -> None:
    p = Pacer(min_interval_s=2.0, requests_per_minute=2, tokens_per_minute=6000, now=0.0)
    assert p.ready_at(1000, 0.0) == 0.0
    p.commit(1000, 0.0)
    assert p.ready_at(1000, 0.5) == 2.0 and not p.limited(1000, 0.5), "the interval, not a budget"
    p.commit(1000, 2.0)
    assert p.ready_at(1000, 2.0) == pytest.approx(30.0), "two requests per minute: the third waits"
    assert p.limited(1000, 2.0)
    p.hold(40.0)
    assert p.ready_at(1, 31.0) == 40.0, "retry-after holds everything"
    q = Pacer(0.0, 100, 6000, now=0.0)
    q.commit(6000, 0.0)
    assert q.ready_at(3000, 0.0) == pytest.approx(30.0), "input tokens refill at 100 per second"


def test_batcher_batches_oldest_first_and_bounds_its_queue() -> None:
    pacer = Pacer(min_interval_s=1.0, requests_per_minute=1000, tokens_per_minute=100_000, now=0.0)
    b: Batcher[tuple[int, int]] = Batcher(pacer, batch=3, queue_max=4, cost=lambda item: item[1])
    assert b.take(0.0) == ([], [], None)
    b.queue.append((1, 100))
    sent, never, wake = b.take(0.0)
    assert sent == [(1, 100)] and never == [] and wake is None
    for i in range(2, 6):
        assert b.refusal(0.1) is None
        b.queue.append((i, 100))
    assert b.refusal(0.2) == "batch_overflow", "full while only the interval holds it back"
    assert b.take(0.5) == ([], [], 1.0)
    assert b.take(1.0)[0] == [(2, 100), (3, 100), (4, 100)], "the oldest, at most `batch`"
    assert list(b.queue) == [(5, 100)]


def test_batcher_names_rate_limits_and_drops_what_can_never_fit() -> None:
    pacer = Pacer(min_interval_s=0.0, requests_per_minute=1000, tokens_per_minute=3000, now=0.0)
    b: Batcher[tuple[int, int]] = Batcher(pacer, batch=2, queue_max=2, cost=lambda item: item[1])
    b.queue.extend([(1, 2000), (2, 1000)])
    assert b.take(0.0)[0] == [(1, 2000), (2, 1000)]
    b.queue.extend([(3, 1500), (4, 1500)])
    assert b.refusal(0.0) == "rate_limited", "full because the token budget is spent"
    sent, never, wake = b.take(0.0)
    assert sent == [] and wake == pytest.approx(60.0)
    assert b.take(60.0)[0] == [(3, 1500), (4, 1500)]
    b.queue.append((5, 4000))
    sent, never, _ = b.take(200.0)
    assert sent == [] and never == [(5, 4000)], "over the whole per-minute budget: dropped, not stuck"


# ---------------------------------------------------------------- journal, cost, key


def test_journal_is_private_and_rotates(tmp_path: Path) -> None:
    j = Journal(tmp_path / "data", max_bytes=2000)
    for i in range(40):
        j.write({"id": i, "pad": "x" * 100})
    assert stat.S_IMODE(j.path.stat().st_mode) == 0o600 and stat.S_IMODE(j.path.parent.stat().st_mode) == 0o700
    total = j.path.stat().st_size + j.old.stat().st_size
    assert total <= 2 * 2000 + 200, "at most twice the cap"
    ids = [json.loads(x)["id"] for f in (j.old, j.path) for x in f.read_text().splitlines()]
    assert ids == sorted(ids) and ids[-1] == 39
    assert [e["id"] for f in (j.old, j.path) for e in journal.read(f)] == ids


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def failing_writes(monkeypatch: pytest.MonkeyPatch, *steps: int | None) -> Callable[[], None]:
    """Replaces os.write: the n-th call writes only the first steps[n] bytes
    (a short write, as a nearly full disk does), or with None fails with
    ENOSPC having written nothing. Returns the undo."""
    real, plan = os.write, list(steps)

    def fake(fd: int, data: bytes) -> int:
        step = plan.pop(0)
        if step is None:
            raise ENOSPC
        return real(fd, bytes(data[:step]))

    monkeypatch.setattr(os, "write", fake)
    return monkeypatch.undo


@pytest.mark.parametrize("steps, error", [
    ((None,), errno.ENOSPC),  # nothing written
    ((20, None), errno.ENOSPC),  # a torn line, then the disk is full
    ((20, 7, None), errno.ENOSPC),
    ((20, 0), errno.EIO),  # a file system that takes nothing without saying why
])
def test_journal_appends_whole_lines_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                steps: tuple[int | None, ...], error: int) -> None:
    j = Journal(tmp_path / "data", max_bytes=1 << 20)
    j.write({"id": 1})
    before = j.path.read_bytes()
    undo = failing_writes(monkeypatch, *steps)
    try:
        with pytest.raises(OSError) as exc:
            j.write({"id": 2, "pad": "x" * 100})
    finally:
        undo()
    assert exc.value.errno == error
    assert j.path.read_bytes() == before, "a failed append leaves the file as it was"
    j.write({"id": 3})
    assert [e["id"] for e in journal.read(j.path)] == [1, 3], "the next entry is a line of its own"


def test_journal_short_write_then_room_again_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = Journal(tmp_path / "data", max_bytes=1 << 20)
    undo = failing_writes(monkeypatch, 20, 1000)  # the rest fits on the second try
    try:
        j.write({"id": 1, "pad": "x" * 100})
    finally:
        undo()
    assert [e["id"] for e in journal.read(j.path)] == [1]


def test_journal_torn_tail_from_a_crash(tmp_path: Path) -> None:
    j = Journal(tmp_path / "data", max_bytes=1 << 20)
    j.write({"id": 1})
    with open(j.path, "ab") as f:
        f.write(b'{"id":2,"pad":"xx')  # killed in the middle of an append
    assert [e["id"] for e in journal.read(j.path)] == [1], "the reader skips a torn last line"
    j.write({"id": 3})
    assert j.path.read_text().splitlines() == ['{"id":1}', '{"id":3}'], "the torn tail is cut off, not glued to"
    j.path.write_bytes(b'{"id":' + b"x" * 100_000)  # torn, and no whole line before it
    j.write({"id": 4})
    assert j.path.read_text() == '{"id":4}\n'
    assert journal.read(tmp_path / "missing.jsonl") == []


# ---------------------------------------------------------------- outbox


def shot(seq: int) -> Shot:
    ref = {"seq": seq, "monitor": 0, "w": 400, "h": 300, "t_wall_ns": 1_700_000_000 * 10**9 + seq}
    return Shot(ref, [0, 0, 400, 300], False, encode(desktop(400, 300), G))


def requests_in(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_outbox_request_is_whole_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = Outbox(tmp_path / "outbox", max_requests=10, max_bytes=1 << 30)
    done = box.write("r1", {"model": "m"}, [shot(1), shot(2)], {})
    assert requests_in(box.root) == ["r1"] and done == box.root / "r1"
    assert sorted(p.name for p in done.iterdir()) == ["frame-1.jpg", "frame-2.jpg", "request.json"]
    assert stat.S_IMODE(done.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in done.iterdir())
    real, calls = Outbox._write, []

    def full_after_one(path: Path, data: bytes) -> None:
        calls.append(path.name)
        if len(calls) > 1:
            raise ENOSPC
        real(path, data)

    monkeypatch.setattr(Outbox, "_write", staticmethod(full_after_one))
    with pytest.raises(OSError) as exc:
        box.write("r2", {"model": "m"}, [shot(3), shot(4)], {})
    assert exc.value.errno == errno.ENOSPC and calls == ["frame-3.jpg", "frame-4.jpg"]
    assert requests_in(box.root) == ["r1"], "nothing of the failed request is left, under any name"


def test_outbox_hidden_work_in_progress(tmp_path: Path) -> None:
    root = tmp_path / "outbox"
    root.mkdir(mode=0o700)
    (root / ".r0.x8k2").mkdir()  # a crash in the middle of a write
    (root / ".r0.x8k2" / "frame-1.jpg").write_bytes(b"\xff\xd8")
    box = Outbox(root, max_requests=2, max_bytes=1 << 30)
    assert requests_in(root) == [], "left-overs of a crash are removed at start"
    (root / ".r9.busy").mkdir()  # being written right now
    for i in range(1, 4):
        box.write(f"r{i}", {}, [shot(i)], {})
    assert requests_in(root) == [".r9.busy", "r2", "r3"], "the cap counts and removes requests only"
    box.remove(root / "r2")
    box.remove(root / "r2")  # removed already: nothing to do
    assert requests_in(root) == [".r9.busy", "r3"]


def test_sender_reports_an_outbox_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = Outbox(tmp_path / "outbox", max_requests=10, max_bytes=1 << 30)

    def full(*_: object) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(box.root / ".r1.x" / "frame-1.jpg"))

    monkeypatch.setattr(box, "write", full)
    wake_r, wake_w = os.pipe()
    sender = Sender(config_mod.Config().forward, G, None, box, logging.getLogger("test"), wake_w)
    sender.start()
    try:
        frame = FrameCopy(shot(1).ref, [], False, [0, 0, 400, 300], desktop(400, 300), 100)
        sender.jobs.put(Job("r1", [frame]))
        out = sender.results.get(timeout=60)
    finally:
        sender.jobs.put(None)
        sender.join(timeout=60)
        os.close(wake_r)
        os.close(wake_w)
    assert out.failure is not None and out.path is None and out.job.frames == [frame]
    assert str(out.failure) == "outbox: No space left on device", "what status shows: the reason, no temporary path"


def test_write_failures_counted_shown_and_logged_rarely(caplog: pytest.LogCaptureFixture) -> None:
    w = WriteFailures(logging.getLogger("test.writes"))
    assert w.state() is None
    with caplog.at_level(logging.WARNING, "test.writes"):
        for _ in range(50):
            w.failed("outbox", "No space left on device")
        w.failed("journal", "No space left on device")
        assert w.state() == "journal: No space left on device; outbox: No space left on device"
        w.succeeded("outbox")
        w.succeeded("outbox")
        assert w.state() == "journal: No space left on device"
        for _ in range(3):  # failing and working by turns: nothing more in the log within the interval
            w.failed("outbox", "No space left on device")
            assert w.state() == "journal: No space left on device; outbox: No space left on device"
            w.succeeded("outbox")
    assert w.state() == "journal: No space left on device" and w.count == {"outbox": 53, "journal": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "cannot write the outbox: No space left on device (1 failed writes so far)",
        "cannot write the journal: No space left on device (1 failed writes so far)",
        "the outbox is written again (50 failed writes so far)",
    ]


def test_cost_from_usage() -> None:
    price = config_mod.PriceConfig(input_per_mtok=2.0, output_per_mtok=10.0, cache_write_per_mtok=2.5,
                                   cache_read_per_mtok=0.2)
    usage = {"input_tokens": 1_000_000, "output_tokens": 100_000, "cache_creation_input_tokens": 400_000,
             "cache_read_input_tokens": 1_000_000}
    assert cost_usd(usage, price) == pytest.approx(2.0 + 1.0 + 1.0 + 0.2)


def test_api_key_sources(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-file\n")
    key_file.chmod(0o600)
    assert api_key({}, "") is None
    assert api_key({}, str(key_file)) == "sk-file"
    assert api_key({"ANTHROPIC_API_KEY": "sk-env"}, str(key_file)) == "sk-env", "the environment wins"
    for mode in (0o640, 0o604, 0o644):
        key_file.chmod(mode)
        with pytest.raises(ApiKeyError, match="chmod 600") as exc:
            api_key({}, str(key_file))
        assert "sk-file" not in str(exc.value)
    with pytest.raises(ApiKeyError, match="cannot open"):
        api_key({}, str(tmp_path / "missing"))
    link = tmp_path / "link"
    key_file.chmod(0o600)
    os.symlink(key_file, link)
    with pytest.raises(ApiKeyError):
        api_key({}, str(link))


# ---------------------------------------------------------------- configuration


def load(tmp_path: Path, text: str) -> config_mod.Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config_mod.load(path, env={})


def test_forward_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[forward]\nmasks = [[1, 0, 0, 100, 40], [0, 5, 5, 10, 10]]\nmodel = "m"\n')
    assert cfg.forward.masks == [[1, 0, 0, 100, 40], [0, 5, 5, 10, 10]]
    assert config_mod.from_json(config_mod.to_json(cfg)) == cfg
    for bad, words in [
        ("masks = [[1, 0, 0, 100]]", "forward.masks"),
        ("masks = [[1, 0, 0, 0, 10]]", "positive size"),
        ("masks = [1, 2]", "a list of lists of integers"),
        ('user_prompt = "{nope}"', "{count} and {times}"),
        ('base_url = "ftp://x"', "http(s)"),
        ("backoff_s = 5.0\nbackoff_max_s = 1.0", "backoff_max_s"),
        ("api_key = \"sk\"", "unknown key"),
    ]:
        with pytest.raises(config_mod.ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load(tmp_path, f"[forward]\n{bad}\n")
    env = config_mod.load(None, env={"JARVIS__FORWARD__PRICE__INPUT_PER_MTOK": "1.5"})
    assert env.forward.price.input_per_mtok == 1.5


def test_the_endpoint_follows_the_sdks_precedence() -> None:
    from pipeline.api_key import ApiKeyError, endpoint

    assert endpoint({}, "") == ("https://api.anthropic.com", "the default")
    assert endpoint({"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}, "") == ("http://127.0.0.1:9", "ANTHROPIC_BASE_URL")
    assert endpoint({"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}, "https://gw.example") == \
        ("https://gw.example", "forward.base_url")
    with pytest.raises(ApiKeyError, match="ANTHROPIC_BASE_URL must be an http"):
        endpoint({"ANTHROPIC_BASE_URL": "gw.example:443"}, "")
