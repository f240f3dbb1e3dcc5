"""Forward end to end: `jarvis-pipeline up --live` with the synthetic source,
the real SDK pointed at a local fake of the Messages API (base_url), insight
events on the tap, pause, the retry policy and the errors that stop
forwarding; and dry-run with a key but without the live switch."""

from __future__ import annotations

import io
import json
import re
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from fake_claude import FakeClaude, bad_report, error, malformed, ok, report, stall, text_only
from PIL import Image
from pipeline_harness import FAST_CONFIG, Pipeline, pipeline, wait_for

from pipeline import events, protocol
from pipeline.tap import Tap
from procs.forward import journal as journal_mod

KEY = "sk-ant-test-0123456789-never-logged"
MASK = [0, 0, 0, 320, 180]  # the top-left quarter of the 640x360 synthetic desktop


def config(api_url: str, *, fps: float = 8.0, **forward: Any) -> str:
    keys = {
        "base_url": api_url, "min_interval_s": 0.3, "backoff_s": 0.05, "backoff_max_s": 2.0,
        "timeout_s": 5.0, "masks": [MASK], **forward,
    }
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    text = FAST_CONFIG.replace("[forward]\nmin_interval_s = 0.3\n", f"[forward]\n{lines}\n")
    return text.replace("fps = 8.0", f"fps = {fps}")


def assert_balanced(final: dict[str, int]) -> None:
    assert final["captured"] > 0 and final["pending.forward"] == 0, final
    assert protocol.terminal_total(final) == final["captured"], f"frames lost or counted twice: {final}"


def assert_masked(image: Image.Image, box: list[int]) -> int:
    """The pixels of `image` (frame part `box`, not downscaled) inside MASK are
    black; JPEG may ring up to a chroma block (16 px at 4:2:0) from the
    mask's edge. Returns
    how many pixels were checked."""
    rgb = np.asarray(image.convert("RGB"))
    assert rgb.shape[:2] == (box[3], box[2])
    edge = 0 if image.format == "PNG" else 16
    x0, y0 = max(MASK[1], box[0]) - box[0], max(MASK[2], box[1]) - box[1]
    x1, y1 = min(MASK[1] + MASK[3], box[0] + box[2]) - box[0], min(MASK[2] + MASK[4], box[1] + box[3]) - box[1]
    if x1 - edge <= x0 or y1 - edge <= y0:
        return 0  # this part of the frame does not reach into the mask
    inside = rgb[y0 : y1 - edge, x0 : x1 - edge]
    if inside.size:
        assert int(inside.max()) <= (0 if edge == 0 else 24), f"masked pixels leaked: max {inside.max()}"
    return int(inside.size)


def boxes_in(text: str, w: int = 640, h: int = 360) -> list[list[int]]:
    out = []
    for line in text.splitlines():
        m = re.search(r"region x=(\d+) y=(\d+) (\d+)x(\d+)", line)
        if m:
            out.append([int(g) for g in m.groups()])
        elif line.startswith("Image "):
            out.append([0, 0, w, h])
    return out


def listening(tap: Tap, api: FakeClaude) -> None:
    """Once the tap receives forward's stats its subscription is in place:
    only then may the fake API answer (events are not replayed)."""
    next(t for t, _ in tap if t == "stats.forward")
    api.release()


def no_secret_anywhere(p: Pipeline) -> None:
    for path in p.root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the key was written to {path.relative_to(p.root)}"


def test_live_insights_on_the_tap_masks_and_pause() -> None:
    interval = 0.5  # one frame at 2 fps
    with FakeClaude() as api, pipeline(config(api.url, fps=2.0), env={"ANTHROPIC_API_KEY": KEY}) as p:
        p.up("--live")
        shown = p.cli("tap", "insight", "--count", "1", timeout=60).stdout
        insight = json.loads(shown)
        assert insight["topic"] == "insight" and insight["text"] == "The user is editing a document."
        assert insight["model"] == "claude-sonnet-5-5" and insight["refs"] and insight["usage"]["input_tokens"] > 0
        assert len(insight["capture_times"]) == len(insight["refs"]) and insight["cost_usd"] > 0
        assert "forward live" in p.cli("status").stdout
        assert not (p.rt.dir / "config.json").exists(), "stages get their configuration over their channel"
        for stage in ("capture", "dedup", "analysis"):  # the key is given only to the process that sends
            environ = psutil.Process(p.status()[stage]["pid"]).environ()
            assert "ANTHROPIC_API_KEY" not in environ and KEY not in "".join(environ.values()), stage
        assert psutil.Process(p.status()["forward"]["pid"]).environ().get("ANTHROPIC_API_KEY") == KEY

        checked = 0
        for req in api.wait_requests(2):
            assert req.body["system"][0]["cache_control"] == {"type": "ephemeral"}
            content = req.body["messages"][0]["content"]
            # The context's reference screenshots (whole screens) come first: masked as well.
            references = [c for c in content if c["type"] == "text" and c["text"].startswith("Monitor ")]
            boxes = [[0, 0, 640, 360]] * len(references) + boxes_in(content[-1]["text"])
            for img, box in zip(req.decoded(), boxes, strict=True):
                checked += assert_masked(img, box)
        assert checked > 0, "no image sent covered the mask"

        with p.tap("frame.dropped", "control.") as tap:
            p.cli("pause")
            paused_ns = time.time_ns()
            paused = 0
            for topic, body in tap:  # frames keep coming and are dropped, while no request leaves
                paused += topic == "frame.dropped" and body["reason"] == "paused"
                if paused >= 4:
                    break
        late = [r for r in api.snapshot() if r.arrival_ns > paused_ns + interval * 1e9]
        assert late == [], f"{len(late)} requests arrived more than one frame interval after pause"
        before = len(api.snapshot())
        p.cli("resume")
        api.wait_requests(before + 1)
        p.cli("down")
        final = p.final_counters()
        assert_balanced(final)
        assert final["forwarded"] > 0 and final["dropped.paused"] >= 4

        journal = p.rt.data_dir / "journal.jsonl"
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600
        lines = journal_mod.read(journal)
        answered = [x for x in lines if x["outcome"] == "answered"]
        assert answered and all(x["usage"]["input_tokens"] > 0 and x["response"] for x in answered)
        assert all("images" not in x for x in lines), "images are journaled only when enabled"
        no_secret_anywhere(p)


def test_retries_failures_and_the_stop_on_a_refused_key() -> None:
    script = [
        error(429, "rate_limit_error", "0.2"), error(529, "overloaded_error"), error(500, "api_error"), ok("first"),
        stall(30.0), ok("second"),
        malformed(),
        error(401, "authentication_error"),
    ]
    with FakeClaude(*script, held=True) as api, \
            pipeline(config(api.url, timeout_s=1.0), env={"ANTHROPIC_API_KEY": KEY}) as p:
        p.up("--live")
        errors, insights, stopped_drops = [], [], 0
        with p.tap("forward.", "insight", "frame.dropped", "stats.forward") as tap:
            listening(tap, api)
            for topic, body in tap:
                if topic == "forward.error":
                    errors.append(body)
                elif topic == "insight":
                    insights.append(body)
                elif topic == "frame.dropped" and body["reason"] == "forward_stopped":
                    stopped_drops += 1
                if stopped_drops >= 3:  # frames still arrive after the stop, and are dropped
                    break
        assert [(e["kind"], e["attempt"], e["stopped"]) for e in errors] == [
            ("rate_limited", 1, False), ("overloaded", 2, False), ("server", 3, False), ("timeout", 1, False),
            ("malformed", 1, False),  # given up: its frames are send_failed
            ("auth", 1, True),
        ]
        waits = [e["retry_in_s"] for e in errors]
        assert waits[0] == 0.2, "retry-after is honoured as given"
        # The backoff (0.05 s doubling per try) less up to a quarter at random, as the SDK's.
        for wait, backoff in zip(waits[1:4], (0.1, 0.2, 0.05), strict=True):
            assert 0.75 * backoff - 0.001 <= wait <= backoff + 0.001, waits  # (the event rounds to the millisecond)
        assert waits[4:] == [None, None]
        assert [i["text"] for i in insights] == ["first", "second"]
        assert len(api.snapshot()) == len(script), "nothing is sent after the key was refused"
        st = p.status()["forward"]
        assert st["state"] == "running" and st["restarts"] == 0, "a refused key is not a crash loop"
        # The status line is the supervisor's view, refreshed by forward's stats:
        # wait for the stats that follow the stop.
        wait_for("status saying forwarding stopped", lambda: "stopped: auth" in p.cli("status").stdout)
        p.cli("down")
        final = p.final_counters()
        assert_balanced(final)
        assert final["dropped.send_failed"] >= 1 and final["dropped.forward_stopped"] >= 3
        outcomes = [x["outcome"] for x in journal_mod.read(p.rt.data_dir / "journal.jsonl")]
        assert outcomes[:4] == ["answered", "answered", "failed", "failed"]
        no_secret_anywhere(p)


def test_answers_are_reports_a_program_can_read() -> None:
    """Claude answers through the forced report tool: each insight says
    whether the person is needed and lists what it saw, by kind; an answer
    without a usable report (a tool input off its schema, or text only) is a
    forward.error of kind malformed, journaled with its cost, counted, and not
    asked again."""
    script = [
        report("A build failed in the terminal", ("error", "make: *** [all] Error 2"),
               ("question", "Overwrite notes.txt?")),
        bad_report({"attention_needed": "yes", "summary": 3}),
        text_only("I see a terminal."),
        ok("Editing notes; nothing needs you."),
    ]
    with FakeClaude(*script, held=True) as api, pipeline(config(api.url), env={"ANTHROPIC_API_KEY": KEY}) as p:
        p.up("--live")
        errors, insights = [], []
        with p.tap("forward.error", "insight", "stats.forward") as tap:
            listening(tap, api)
            for topic, body in tap:
                events.check_event(topic, body)
                if topic == "forward.error":
                    errors.append(body)
                elif topic == "insight":
                    insights.append(body)
                if len(insights) == 2:
                    break
        assert [(e["kind"], e["attempt"], e["retry_in_s"], e["stopped"]) for e in errors] == [("malformed", 1, None, False)] * 2
        assert all("no usable report" in e["error"] for e in errors)
        first, last = insights
        assert first["attention_needed"] is True and first["summary"] == "A build failed in the terminal"
        assert [(i["kind"], i["text"], i["region"]) for i in first["items"]] == [
            ("error", "make: *** [all] Error 2", None), ("question", "Overwrite notes.txt?", None)]
        assert first["text"] == "A build failed in the terminal\nerror: make: *** [all] Error 2\nquestion: Overwrite notes.txt?"
        assert last["attention_needed"] is False and last["items"] == [] and last["text"] == "Editing notes; nothing needs you."
        ids = [e["request_id"] for e in errors] + [i["request_id"] for i in insights]
        assert len(set(ids)) == 4, "an answer without a report is not asked again"
        p.cli("down")
        journal = journal_mod.read(p.rt.data_dir / "journal.jsonl")
        bad = [x for x in journal if "no usable report" in x.get("error", "")]
        assert [x["outcome"] for x in bad] == ["answered", "answered"] and all(x["cost_usd"] > 0 for x in bad)
        assert json.loads(bad[0]["report"]) == {"attention_needed": "yes", "summary": 3}
        good = [x for x in journal if "summary" in x]
        assert [x["attention_needed"] for x in good[:2]] == [True, False]
        assert_balanced(p.final_counters())


def test_requests_share_a_cached_prefix() -> None:
    """At 1280x720 the context's reference makes each request's prefix longer
    than the default model caches: after the first request, each one reads
    from the cache what the one before wrote (the fake caches as the API
    does), the journal says the requests are cacheable, and status has no
    word about the cache being off; with a model caching only from 4096
    tokens, status says it is off."""
    with FakeClaude(held=True) as api:
        text = config(api.url).replace("width = 640\nheight = 360", "width = 1280\nheight = 720")
        assert "width = 1280" in text
        with pipeline(text, env={"ANTHROPIC_API_KEY": KEY}) as p:
            p.up("--live")
            insights = []
            with p.tap("insight", "stats.forward") as tap:
                listening(tap, api)
                for topic, body in tap:
                    if topic == "insight":
                        insights.append(body)
                    if len(insights) == 3:
                        break
            assert insights[0]["usage"]["cache_creation_input_tokens"] > 0
            assert all(i["usage"]["cache_read_input_tokens"] > 0 for i in insights[1:]), [i["usage"] for i in insights]
            assert "cache off" not in p.cli("status").stdout
            # What was spent, priced per token kind, reaches status with forward's next stats.
            wait_for("status showing what was spent", lambda: re.search(r"\$0\.\d{4} spent", p.cli("status").stdout))
            p.cli("down")
            journal = [x for x in journal_mod.read(p.rt.data_dir / "journal.jsonl") if x["outcome"] == "answered"]
            assert journal and all(x["cacheable"] and x["references"] for x in journal)
    with FakeClaude() as api:
        text = config(api.url).replace("[forward]\n", '[forward]\ncache_min_tokens = { "*" = 4096 }\n', 1)
        with pipeline(text, env={"ANTHROPIC_API_KEY": KEY}) as p:
            p.up("--live")
            wait_for("status saying the prompt cache is off", lambda: "prompt cache off" in p.cli("status").stdout)


def test_anthropic_base_url_is_honoured_as_the_sdk_honours_it() -> None:
    """With forward.base_url unset, requests go where ANTHROPIC_BASE_URL points
    (a gateway, a proxy), and doctor says which endpoint and why."""
    with FakeClaude() as api, pipeline(config(""), env={"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": api.url}) as p:
        assert f"ok  api endpoint   {api.url} (from ANTHROPIC_BASE_URL)" in p.cli("doctor", check=False).stdout
        p.up("--live")
        api.wait_requests(1, timeout=60)
        p.env["ANTHROPIC_BASE_URL"] = "ftp://elsewhere"
        assert "NO  api endpoint   ANTHROPIC_BASE_URL must be an http(s) URL" in p.cli("doctor", check=False).stdout


def test_unknown_model_stops_forwarding() -> None:
    with FakeClaude(error(404, "not_found_error"), held=True) as api, \
            pipeline(config(api.url, model="claude-no-such-model"), env={"ANTHROPIC_API_KEY": KEY}) as p:
        p.up("--live")
        with p.tap("forward.error", "stats.forward") as tap:
            listening(tap, api)
            body = next(b for t, b in tap if t == "forward.error")
        assert body["kind"] == "unknown_model" and body["stopped"] is True
        wait_for("frames dropped after the stop",
                 lambda: p.status()["forward"]["drops"].get("forward_stopped", 0) >= 2)
        assert len(api.snapshot()) == 1 and api.snapshot()[0].body["model"] == "claude-no-such-model"
        wait_for("status saying forwarding stopped", lambda: "stopped: unknown_model" in p.cli("status").stdout)
        p.cli("down")
        assert_balanced(p.final_counters())


def test_a_key_without_the_live_switch_sends_nothing() -> None:
    with FakeClaude() as api, pipeline(config(api.url), env={"ANTHROPIC_API_KEY": KEY}) as p:
        p.up()
        with p.tap("forward.") as tap:
            dry: list[dict[str, Any]] = []
            for topic, body in tap:
                if topic == "forward.dry_run":
                    dry.append(body)
                if len(dry) >= 3:
                    break
        assert "forward dry-run" in p.cli("status").stdout
        p.cli("down")
        assert api.snapshot() == [], "a key alone never sends"
        assert_balanced(p.final_counters())
        checked = 0
        for body in dry:
            folder = Path(body["path"])
            request = json.loads((folder / "request.json").read_text())
            assert request["mode"] == "dry-run" and KEY not in json.dumps(request)
            content = request["request"]["messages"][0]["content"]
            images = [c for c in content if c["type"] == "image"]
            assert content[-1]["type"] == "text" and len(images) > len(request["frames"])
            references = images[: len(images) - len(request["frames"])]
            for block in references:  # the context's reference screenshots: whole screens, masked too
                reference = Image.open(io.BytesIO((folder / block["source"]["data"]).read_bytes()))
                checked += assert_masked(reference, [0, 0, 640, 360])
            for frame, block in zip(request["frames"], images[len(references):], strict=True):
                assert block["source"]["data"] == frame["image"]
                img = Image.open(io.BytesIO((folder / frame["image"]).read_bytes()))
                assert img.format == ("PNG" if frame["image"].endswith(".png") else "JPEG")
                checked += assert_masked(img, frame["box"])
        assert checked > 0, "no image written covered the mask"
        no_secret_anywhere(p)


def test_live_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    with pipeline(config("http://127.0.0.1:9", api_key_file=str(key_file))) as p:
        p.env.pop("ANTHROPIC_API_KEY", None)
        out = p.cli("up", "-d", "-c", str(p.config_path), "--live", check=False)
        assert out.returncode == 78 and "chmod 600" in out.stderr and KEY not in out.stderr + out.stdout
        assert p.supervisor_pid() is None
