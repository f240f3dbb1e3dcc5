"""The dedup and change policy on the labelled desktop session
(tests/data/session, made by scripts/record_session.py: a real Xvfb desktop
with an xterm, an xclock, a browser page and dialogs, driven by xdotool, 1080p
at 4 fps, every frame labelled meaningful / trivial / none).

The whole pipeline replays the session, faster than recorded, with the frames
stamped with their recorded capture times; every frame's fate comes from the
tapped events. Targets (the issue's, not loosened): at least 99 % of the
meaningful frames kept (forwarded by analysis), at least 90 % of the trivial
ones dropped, and every byte-identical repeat dropped.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import zmq
from pipeline_harness import pipeline

from pipeline.config import Config

SESSION = Path(__file__).resolve().parent / "data" / "session"
HELD_OUT = Path(__file__).resolve().parent / "data" / "corpus" / "heldout" / "h13-ember"  # held out, scored once
AGREEMENT = 0.99  # frames judged as offline: a hand-off forward could not take changes the model's course
# Its animations make analysis's frames dearer (about 5-15 ms each, up to 30 on a busy
# machine): 1.5x the recorded pace leaves it 167 ms a frame, a 5x margin and more.
HELD_OUT_FPS = 6.0
REPLAY_FPS = 12.0  # 3x the recorded pace; the 1080p pipeline keeps up on two busy cores
DEADLINE_MARGIN = 3.0  # the replay's own length times this, plus start-up
MEANINGFUL_KEPT, TRIVIAL_DROPPED = 0.99, 0.90

# Dedup at its defaults: its 30 s window must not hide a return to an earlier
# picture once a different frame went on (a character typed and deleted within
# one clock second brings back a frame seen half a second before).
CONFIG = """
[capture]
source = "replay"
fps = {fps}
[capture.replay]
path = "{video}"
times = "{labels}"
[forward]
# one frame per request every 5 s (the rest overflow forward's queue): encoding a 1080p PNG
# for every forwarded frame would compete with the stages under test
min_interval_s = 5.0
batch = 1
[supervisor]
stats_interval_s = 0.5
stop_grace_s = 5.0
drain_s = 5.0
"""

DECIDED = ("frame.changed", "frame.unchanged", "frame.duplicate", "frame.dropped")


def labels(session: Path = SESSION) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((session / "labels.json").read_text())
    return data


def replay(fps: float, session: Path = SESSION) -> dict[int, str]:
    """Runs the pipeline over the session; what became of each frame, by index:
    changed (analysis judged it meaningful; changed:handoff_failed when forward
    could not take it), keepalive, unchanged, duplicate, or dropped:<stage>:<reason>."""
    meta = labels(session)
    index_of = {round((e["t"] - meta["frames"][0]["t"]) * 1e9): e["index"] for e in meta["frames"]}
    config = CONFIG.format(fps=fps, video=session / meta["video"], labels=session / "labels.json")
    fate: dict[int, str] = {}
    with pipeline(config) as p:
        p.rt.prepare()
        with p.tap("frame.") as tap:  # subscribed before up: no frame event is missed
            tap.sock.setsockopt(zmq.RCVTIMEO, 500)
            p.up()
            origin: int | None = None
            pending: list[tuple[int, str]] = []  # (t_mono_ns, outcome) until the first frame is known
            deadline = time.monotonic() + DEADLINE_MARGIN * len(index_of) / fps + 60.0
            while len(fate) < len(index_of):
                if time.monotonic() > deadline:
                    missing = sorted(set(index_of.values()) - set(fate))
                    raise AssertionError(f"timed out: {len(fate)} of {len(index_of)} frames decided; "
                                         f"first undecided {missing[:10]}")
                for topic, body in tap:
                    ref: dict[str, Any] = body.get("ref") or {}
                    if topic == "frame.captured" and origin is None:
                        origin = ref["t_mono_ns"]  # the first frame replayed: recorded offset 0
                    elif topic in DECIDED:
                        outcome = topic.split(".")[1]
                        if topic == "frame.changed" and body["keepalive"]:
                            outcome = "keepalive"
                        elif topic == "frame.dropped" and body["stage"] == "analysis":
                            # analysis drops a frame only when handing on one it judged meaningful fails
                            # (forward busy); it tries again with the next frame
                            outcome = "changed:handoff_failed"
                        elif topic == "frame.dropped" and body["stage"] == "forward":
                            outcome = "changed"  # forward only gets frames analysis judged meaningful
                        elif topic == "frame.dropped":
                            outcome = f"dropped:{body['stage']}:{body['reason']}"
                        pending.append((ref["t_mono_ns"], outcome))
                    break
                if origin is not None:
                    for t, outcome in pending:
                        index = index_of[t - origin]
                        if fate.get(index) != "keepalive":
                            fate[index] = outcome
                    pending.clear()
            p.cli("down")
    return fate


def kept(outcome: str) -> bool:
    return outcome.startswith("changed") or outcome == "keepalive"


def score(fate: dict[int, str], session: Path = SESSION) -> dict[str, float]:
    frames = labels(session)["frames"][1:]  # the first frame is forwarded as the first reference
    n_kept = Counter(e["label"] for e in frames if kept(fate[e["index"]]))
    total = Counter(e["label"] for e in frames)
    return {
        "meaningful kept": n_kept["meaningful"] / total["meaningful"],
        "trivial dropped": 1 - n_kept["trivial"] / total["trivial"],
        "none dropped": 1 - n_kept["none"] / total["none"],
    }


def test_the_pipeline_meets_the_targets_on_the_labelled_session() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("needs ffmpeg and ffprobe (Debian package ffmpeg, in scripts/system-packages.txt)")
    fate = replay(REPLAY_FPS)
    lost = {i: f for i, f in fate.items() if f.startswith("dropped")}
    assert not lost, f"frames dropped before analysis judged them (the machine too slow for {REPLAY_FPS} fps?): {lost}"
    result = score(fate)
    frames = labels()["frames"]
    missed = [(e["index"], e["category"]) for e in frames[1:] if e["label"] == "meaningful" and not kept(fate[e["index"]])]
    trivial_kept = Counter(e["category"] for e in frames[1:] if e["label"] == "trivial" and kept(fate[e["index"]]))
    # A repeat is kept only as a keep-alive, or as the retry of a change forward could not take.
    repeats_kept = [e["index"] for e in frames[1:] if e["label"] == "none" and kept(fate[e["index"]])
                    and fate[e["index"]] != "keepalive" and fate[e["index"] - 1] != "changed:handoff_failed"]
    retries = sum(f == "changed:handoff_failed" for f in fate.values())
    print(f"session replay: {result}; meaningful missed {missed}; trivial kept {dict(trivial_kept)}; "
          f"hand-offs to forward that failed (retried) {retries}")
    assert result["meaningful kept"] >= MEANINGFUL_KEPT, f"{result}; meaningful frames missed: {missed}"
    assert result["trivial dropped"] >= TRIVIAL_DROPPED, f"{result}; trivial frames kept by category: {dict(trivial_kept)}"
    assert not repeats_kept, f"byte-identical repeats kept: {repeats_kept}"


def offline(session: Path) -> list[bool]:
    """Whether dedup and the change model, run in this process exactly as
    the stages run them (scripts/eval_policy.py), keep each frame."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import eval_policy

    meta = labels(session)
    ours = eval_policy.Ours(Config())
    return [ours.keep(frame, float(e["t"])) for e, frame in
            zip(meta["frames"], eval_policy.decode(session / meta["video"], meta["width"], meta["height"]), strict=False)]


def test_a_held_out_session_end_to_end_is_judged_as_offline() -> None:
    """A session recorded with another layout, theme and fonts than any the
    model was tuned on, through the real pipeline: every frame decided, the
    repeats dropped, and the frames kept the ones the model keeps offline
    (its scores against the labels are benchmarks: BENCHMARKS.md section 6)."""
    fate = replay(HELD_OUT_FPS, HELD_OUT)
    lost = {i: f for i, f in fate.items() if f.startswith("dropped")}
    assert not lost, f"frames dropped before analysis judged them (the machine too slow for {HELD_OUT_FPS} fps?): {lost}"
    expected = offline(HELD_OUT)
    frames = labels(HELD_OUT)["frames"]
    differ = [(e["index"], e["label"], e["category"], fate[e["index"]]) for e in frames[1:]
              if kept(fate[e["index"]]) != expected[e["index"]] and fate[e["index"]] != "keepalive"]
    result = score(fate, HELD_OUT)
    print(f"held-out replay: {result}; differing from offline: {differ}")
    assert len(differ) <= (1 - AGREEMENT) * len(frames), differ
    repeats_kept = [e["index"] for e in frames[1:] if e["label"] == "none" and kept(fate[e["index"]])
                    and fate[e["index"]] != "keepalive" and fate[e["index"] - 1] != "changed:handoff_failed"]
    assert not repeats_kept, f"byte-identical repeats kept: {repeats_kept}"
