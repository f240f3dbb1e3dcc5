"""The configuration schema (the one place that defines every key) and its loader.

Sources, later ones winning: the embedded defaults (configs/default.toml holds
the same values, documented), the file given with `-c FILE`, then environment
variables `JARVIS__<SECTION>__<KEY>=<TOML value>` (e.g. `JARVIS__CAPTURE__FPS=2`,
`JARVIS__CAPTURE__SOURCE='"synthetic"'`; a bare word is taken as a string).
Unknown keys, wrong types and impossible values are errors that name the key
and where it came from; numbers must be finite (no key takes inf as "no limit").
`-c` takes a regular UTF-8 file of at most MAX_FILE_BYTES.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import reprlib
import stat
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "JARVIS__"

#: The largest `-c` file read; a real configuration is a few KiB, and the cap
#: keeps a mistaken path (a log, a disk image) from being read into memory.
MAX_FILE_BYTES = 1 << 20

#: The cap of the sizes in MB (1 TiB): beyond any real use, and a finite bound
#: keeps `MB * 2**20` from overflowing where a stage turns them into bytes.
TIB_MB = 1024.0 * 1024


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and source."""


def _f(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
       choices: tuple[Any, ...] | None = None) -> Any:
    """A key: its default (a list or a section is copied per instance), its
    documentation, and the bounds or choices it must respect."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return type(value)(value)
    return dataclasses.replace(value)


@dataclass(frozen=True)
class InstanceConfig:
    name: str = _f("default", "instance name: names the runtime directory and the ring")


@dataclass(frozen=True)
class SyntheticConfig:
    width: int = _f(1920, "width of the synthetic desktop", lo=64, hi=7680)
    height: int = _f(1080, "height of the synthetic desktop", lo=64, hi=4320)
    seed: int = _f(1, "seed of the scripted activity", lo=0)
    monitors: int = _f(1, "number of synthetic monitors", lo=1, hi=4)
    mix: str = _f("desktop", "desktop (scripted activity) or unique (every frame differs: the worst case)",
                  choices=("desktop", "unique"))


@dataclass(frozen=True)
class ReplayConfig:
    path: str = _f("", "a folder of PNG images, or a video file (decoded with ffmpeg)")
    loop: bool = _f(False, "start again at the end instead of stopping capture")
    times: str = _f("", "a JSON file with each frame's recorded capture time (frames[i].t in seconds, as in the "
                        "labels.json of scripts/record_session.py); frames carry those times, so decisions that "
                        "depend on time hold when replaying faster than recorded")


@dataclass(frozen=True)
class CaptureConfig:
    source: str = _f("auto", "screen, synthetic, replay, or auto (screen when a display is usable)",
                     choices=("auto", "screen", "synthetic", "replay"))
    fps: float = _f(4.0, "frames per second per monitor", lo=0.05, hi=240.0)
    monitor: int = _f(0, "screen monitor to capture: 0 = all, 1.. = that monitor", lo=0, hi=16)
    region: list[int] = _f([], "[left, top, width, height] to capture, or [] for whole monitors")
    rescan_s: float = _f(10.0, "seconds between re-enumerations of the monitors", lo=0.5, hi=3600.0)
    screen_pixels: str = _f("physical", "macOS Retina displays: physical (every pixel; 4x the bytes per frame of "
                            "points at 2x, and as much more work in every stage) or points (half the resolution "
                            "each way: small text blurs)", choices=("physical", "points"))
    synthetic: SyntheticConfig = _f(SyntheticConfig(), "the synthetic source")
    replay: ReplayConfig = _f(ReplayConfig(), "the replay source")


@dataclass(frozen=True)
class RingConfig:
    slots: int = _f(0, "slots in the ring; 0 = the minimum the sizing formula allows", lo=0, hi=1024)
    max_width: int = _f(0, "widest frame a slot takes; 0 = the widest monitor", lo=0, hi=16384)
    max_height: int = _f(0, "tallest frame a slot takes; 0 = the tallest monitor", lo=0, hi=16384)


@dataclass(frozen=True)
class HopsConfig:
    credit: int = _f(2, "frames in flight per hop between stages", lo=1, hi=2)
    wait_ms: float = _f(10.0, "how long a stage other than capture waits for the next stage's credit before dropping "
                        "the frame (backpressure); its own inbound hop queues meanwhile; capture never waits",
                        lo=0.0, hi=1000.0)


@dataclass(frozen=True)
class DedupConfig:
    window_s: float = _f(30.0, "how long a frame hash counts as recently seen (a repeat counts only of frames "
                         "seen since the monitor's last forwarded one)", lo=0.0, hi=3600.0)
    max_hashes: int = _f(4096, "recent hashes kept at most", lo=1, hi=1_000_000)


@dataclass(frozen=True)
class AnalysisConfig:
    backend: str = _f("auto", "where the per-pixel pass runs: auto (a hardware GPU when there is one, else the CPU), "
                      "cpu, or gpu (any adapter, software ones included; `up` stops without one)",
                      choices=("auto", "cpu", "gpu"))
    threshold: int = _f(24, "a pixel changed when dr^2+dg^2+db^2 > threshold^2", lo=0, hi=255)
    tile: int = _f(32, "tile size in pixels for the change map", lo=4, hi=512)
    keepalive_s: float = _f(60.0, "send one frame on after this long without a forwarded one; 0 = never",
                            lo=0.0, hi=86400.0)
    # The change model (procs/change_policy.py says how each is used).
    large_change_px: int = _f(250_000, "a change whose box covers more pixels than this (a window-sized area) "
                              "is never trivial", lo=1, hi=10**9)
    caret_max_width_px: int = _f(24, "widest caret: a flip wider than this is not a caret", lo=1, hi=512)
    caret_max_height_px: int = _f(48, "tallest caret", lo=1, hi=512)
    caret_min_px: int = _f(6, "a caret is at least this long (an underline's width, an I-beam's height): a "
                           "smaller flip is a dot typed", lo=1, hi=512)
    caret_bar_px: int = _f(2, "thickest I-beam or underline caret: one this thin may cover the edge of a glyph, "
                           "so what it covers need not be one colour", lo=0, hi=64)
    blink_memory_s: float = _f(10.0, "a caret flip where one was seen within this long is a blink in place",
                               lo=0.0, hi=3600.0)
    caret_first_blink_s: float = _f(1.0, "a caret that input drew blinks for the first time within this long "
                                    "(toolkits keep it on or off 0.5-0.8 s); inside what input drew longer ago, "
                                    "a caret turning on or off has moved", lo=0.0, hi=60.0)
    toggle_max_px: int = _f(4096, "a change flipping back and forth may be trivial only when its box covers "
                            "at most this many pixels (larger toggles are window switches)", lo=0, hi=10**9)
    toggle_s: float = _f(10.0, "a pair of contents seen flipping is remembered this long", lo=0.0, hi=3600.0)
    flicker_s: float = _f(2.5, "A, B, A, B, A within this long is a toggle (undoing a change once is not)",
                          lo=0.0, hi=60.0)
    animated_changes: int = _f(6, "changes in quick succession or on a steady beat that make a tile animated "
                               "(frames of a new spinner or clock kept while it is learned)", lo=2, hi=8)
    relearn_changes: int = _f(6, "changes that make a tile animated again where an animation was within "
                              "relearn_s (a spinner shown again, a page loading again); as animated_changes "
                              "by default: 3 dropped more trivial frames but fewer meaningful ones held out "
                              "(BENCHMARKS.md section 6)", lo=2, hi=8)
    relearn_s: float = _f(600.0, "how long a place that animated is remembered", lo=0.0, hi=86400.0)
    animation_reach_tiles: int = _f(2, "a change counts for the rhythm of the tiles this many tiles around it "
                                    "(something moving about inside a video)", lo=0, hi=16)
    fast_gap_s: float = _f(0.4, "changes at most this far apart are in quick succession", lo=0.0, hi=60.0)
    steady_min_period_s: float = _f(0.4, "shortest beat of a steady rhythm (a clock's second)", lo=0.0, hi=3600.0)
    steady_jitter: float = _f(0.25, "largest deviation of a steady beat's intervals, as a share of the beat",
                              lo=0.0, hi=1.0)
    animated_hold_s: float = _f(2.0, "an animated tile that rests this long (or three beats) is not animated "
                                "any more", lo=0.0, hi=3600.0)
    ride_share: float = _f(0.34, "share of animated tiles that makes a connected change part of the animation "
                           "(a clock hand sweeping out from its hub)", lo=0.0, hi=1.0)
    pointer_max_px: int = _f(64, "largest pointer sprite, pixels per side", lo=1, hi=512)
    pointer_span_px: int = _f(200, "a sprite is taken for the pointer once seen moving across more than this "
                              "(a spinner's dot keeps to its place)", lo=0, hi=100_000)
    pointer_match: float = _f(0.9, "share of a sprite's pixels that must match where it is found", lo=0.5, hi=1.0)
    animation_jump: float = _f(4.0, "a change on an animated region this many times larger than its last step "
                               "is a change of state (a progress bar completing), not a step", lo=1.0, hi=1000.0)
    animation_sample_s: float = _f(30.0, "a region animated this long is sampled again (one frame goes on)",
                                   lo=0.0, hi=86400.0)


@dataclass(frozen=True)
class PriceConfig:
    input_per_mtok: float = _f(2.0, "USD per million input tokens of forward.model (yours to keep current)",
                                 lo=0.0, hi=10000.0)
    output_per_mtok: float = _f(10.0, "USD per million output tokens", lo=0.0, hi=10000.0)
    cache_write_per_mtok: float = _f(2.5, "USD per million cache-write input tokens (5-minute cache)",
                                       lo=0.0, hi=10000.0)
    cache_read_per_mtok: float = _f(0.2, "USD per million cache-read input tokens", lo=0.0, hi=10000.0)


DEFAULT_SYSTEM_PROMPT = (
    "You watch a person's screen and help them proactively. You get screenshots of what just changed, "
    "oldest first, after reference screenshots of the whole screen and your recent reports. Answer with the "
    "report tool: what the person is doing, and each thing worth their attention (an error, a warning, a "
    "question, something they may have missed), with attention_needed true only when something needs them "
    "now. Do not report again what you reported already and has not changed; report it again only when it "
    "changed or was resolved, with since set to when you first reported it. When nothing is new, report no "
    "items."
)


@dataclass(frozen=True)
class ForwardConfig:
    mode: str = _f("dry-run", "dry-run (write requests to the outbox) or live (send to Claude; needs a key too)",
                   choices=("dry-run", "live"))
    min_changed_ratio: float = _f(0.0, "significance: a changed frame goes out only when at least this fraction "
                                  "of its pixels changed (keep-alive frames always go)", lo=0.0, hi=1.0)
    min_interval_s: float = _f(2.0, "at most one request per this many seconds", lo=0.0, hi=3600.0)
    requests_per_minute: int = _f(50, "request budget (token bucket)", lo=1, hi=100000)
    input_tokens_per_minute: int = _f(30000, "input-token budget (token bucket, image tokens estimated)",
                                      lo=1000, hi=100_000_000)
    batch: int = _f(5, "frames per request at most", lo=1, hi=20)
    queue_max: int = _f(10, "frames waiting for a request at most; more are dropped", lo=1, hi=100)
    model: str = _f("claude-sonnet-5-5", "the Claude model")
    system_prompt: str = _f(DEFAULT_SYSTEM_PROMPT, "system prompt (sent with cache_control)")
    user_prompt: str = _f("{count} screenshot(s), captured at {times}.",
                          "text after the images; {count} and {times} are filled in")
    max_tokens: int = _f(1024, "answer length cap in tokens (thinking included)", lo=1, hi=128000)
    temperature: float = _f(-1.0, "sampling temperature 0..1, sent only when set (>= 0): current models refuse "
                            "it, older ones accept it", lo=-1.0, hi=1.0)
    base_url: str = _f("", "the Messages API's base URL; empty: ANTHROPIC_BASE_URL when set (as the SDK "
                       "reads it: gateways and proxies are set so), else https://api.anthropic.com")
    api_key_file: str = _f("", "file holding the API key (mode 0600) when ANTHROPIC_API_KEY is not set")
    timeout_s: float = _f(60.0, "give up on an answer after this long (then retried)", lo=0.5, hi=600.0)
    max_retries: int = _f(3, "retries of a failed request (429, 529, 5xx, timeouts)", lo=0, hi=10)
    backoff_s: float = _f(1.0, "first retry delay without retry-after; doubles per retry", lo=0.0, hi=600.0)
    backoff_max_s: float = _f(30.0, "retry delay cap; a longer retry-after gives the request up", lo=0.0, hi=3600.0)
    jpeg_quality: int = _f(80, "JPEG quality of the images sent", lo=10, hi=95)
    png_for_text: bool = _f(True, "send text-heavy crops as PNG (sharper glyphs) instead of JPEG")
    crop_margin: int = _f(32, "pixels around the changed regions kept in a crop", lo=0, hi=1024)
    min_crop: int = _f(200, "a crop is grown to at least this many pixels per side", lo=16, hi=4096)
    crop_max_fraction: float = _f(0.5, "a crop covering more of the frame than this sends the whole frame",
                                  lo=0.0, hi=1.0)
    max_long_edge: int = _f(1568, "images are downscaled to this long edge at most", lo=64, hi=8000)
    max_pixels: int = _f(1456 * 819, "and to this many pixels at most (1456x819 for 16:9)", lo=4096, hi=64_000_000)
    masks: list[list[int]] = _f([], "rectangles [monitor, x, y, w, h] blacked out before anything is encoded "
                                "(monitor 0: every monitor)")
    journal_max_mb: float = _f(64.0, "size at which the journal rotates (one old file kept)", lo=0.1, hi=TIB_MB)
    journal_images: bool = _f(False, "also keep the images sent in the journal (base64)")
    outbox_max_mb: float = _f(256.0, "size cap of the dry-run outbox; oldest requests go first", lo=1.0,
                                hi=TIB_MB)
    outbox_max_requests: int = _f(1000, "request cap of the dry-run outbox", lo=1)
    context_refresh_s: float = _f(
        300.0, "each request begins with a reference screenshot of every monitor, renewed at most this often "
        "(byte-stable in between, so the requests' common prefix can be cached); 0 = no rolling context, each "
        "request stands alone", lo=0.0, hi=86400.0)
    context_tokens: int = _f(8000, "the reference screenshots plus the recent reports repeated in each request, "
                             "tokens at most (the oldest reports leave first)", lo=0, hi=1_000_000)
    cache_min_tokens: dict[str, int] = _f(
        {"claude-opus-5": 512, "claude-sonnet-5": 1024, "claude-opus-4-8": 1024, "claude-opus-4-7": 2048,
         "claude-opus-4-6": 4096, "claude-opus-4-5": 4096, "claude-sonnet-4-6": 2048, "claude-sonnet-4-5": 1024,
         "claude-opus-4-1": 1024, "claude-opus-4": 1024, "claude-sonnet-4": 1024, "claude-haiku-4-5": 4096,
         "claude-haiku-3": 2048, "*": 4096},
        "the shortest prefix each model caches, tokens, by model name prefix (the longest that matches; \"*\" "
        "for the rest): below it nothing is cached and the API says nothing, so forward reports it in its "
        "status and journal. Anthropic's prompt-caching docs list the current figures; a table given here "
        "replaces this one", lo=1, hi=1_000_000)
    price: PriceConfig = _f(PriceConfig(), "prices for the journal's cost figures")


@dataclass(frozen=True)
class RestartConfig:
    backoff_s: float = _f(0.1, "first delay before restarting a crashed stage", lo=0.0, hi=60.0)
    backoff_max_s: float = _f(5.0, "cap of the exponential restart delay", lo=0.0, hi=600.0)
    intensity: int = _f(5, "a stage restarted this many times ...", lo=1, hi=1000)
    period_s: float = _f(30.0, "... within this many seconds is marked failed", lo=1.0, hi=86400.0)


@dataclass(frozen=True)
class SupervisorConfig:
    stop_grace_s: float = _f(3.0, "SIGTERM to SIGKILL grace period when stopping a stage", lo=0.1, hi=120.0)
    drain_s: float = _f(5.0, "deadline for the later stages to drain on shutdown", lo=0.0, hi=120.0)
    stats_interval_s: float = _f(1.0, "how often stages publish stats.<stage>", lo=0.1, hi=60.0)
    sample_interval_s: float = _f(3.0, "how often CPU and memory are sampled", lo=0.5, hi=600.0)
    tap_holds: int = _f(0, "ring slots reserved for taps that hold frames", lo=0, hi=16)
    hang_after_s: float = _f(5.0, "a stage whose main loop sends no heartbeat for this long is killed and restarted "
                                  "(stage.hung)", lo=1.0, hi=600.0)
    restart: RestartConfig = _f(RestartConfig(), "per-stage restart policy")


@dataclass(frozen=True)
class MemoryConfig:
    budget_mb: float = _f(1024.0, "memory budget of the whole pipeline, ring included", lo=1.0, hi=TIB_MB)
    levels: list[int] = _f([50, 70, 90], "medium, high and critical pressure, in % of the budget")


@dataclass(frozen=True)
class EventsConfig:
    tcp: str = _f("", "also publish events on this TCP endpoint (needs CURVE keys); empty = ipc only")


@dataclass(frozen=True)
class LogsConfig:
    max_mb: float = _f(1.0, "each log (the supervisor's, each stage's, each stage's output) is rotated at this "
                            "size, MB", lo=0.001, hi=1024.0)
    backups: int = _f(2, "rotated files kept per log (.1 the newest)", lo=1, hi=50)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = _f(False, "serve Prometheus metrics (text format) from the supervisor")
    listen: str = _f("", "where: empty = metrics.sock in the runtime directory (0600, this user only); "
                         "HOST:PORT = TCP, e.g. 127.0.0.1:9464 (a host other than loopback is allowed, with a "
                         "warning: costs and activity are visible to whoever can connect)")


@dataclass(frozen=True)
class Config:
    instance: InstanceConfig = _f(InstanceConfig(), "")
    capture: CaptureConfig = _f(CaptureConfig(), "")
    ring: RingConfig = _f(RingConfig(), "")
    hops: HopsConfig = _f(HopsConfig(), "")
    dedup: DedupConfig = _f(DedupConfig(), "")
    analysis: AnalysisConfig = _f(AnalysisConfig(), "")
    forward: ForwardConfig = _f(ForwardConfig(), "")
    supervisor: SupervisorConfig = _f(SupervisorConfig(), "")
    memory: MemoryConfig = _f(MemoryConfig(), "")
    events: EventsConfig = _f(EventsConfig(), "")
    metrics: MetricsConfig = _f(MetricsConfig(), "")
    logs: LogsConfig = _f(LogsConfig(), "")


# ---------------------------------------------------------------------------
# Loading


def _type_name(t: Any) -> str:
    if t == list[list[int]]:
        return "a list of lists of integers"
    if t == dict[str, int]:
        return "a table of integers"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        t, "a list of integers" if t == list[int] else "a table"
    )


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The schema's field types, once: get_type_hints evaluates all of a class's
    annotations on every call, and the loader asks for them once per key."""
    return get_type_hints(cls)


def _shown(value: Any) -> str:
    """A value for an error message: the offending part of a megabyte string or
    of a deeply nested table is recognisable from its start."""
    return reprlib.repr(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(cls: type, name: str, value: Any, where: str, key: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    t = _hints(cls)[name]
    meta = f.metadata
    if dataclasses.is_dataclass(t):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{key}] must be a table")
        return _build(t, value, where, key)  # type: ignore[arg-type]
    ok = (
        (t is bool and isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (t is str and isinstance(value, str))
        or (t == list[int] and isinstance(value, list) and all(_is_int(v) for v in value))
        or (t == list[list[int]] and isinstance(value, list)
            and all(isinstance(r, list) and all(_is_int(v) for v in r) for r in value))
        or (t == dict[str, int] and isinstance(value, dict) and all(_is_int(v) for v in value.values()))
    )
    if not ok:
        raise ConfigError(f"{where}: {key} must be {_type_name(t)}, not {_shown(value)}")
    if t is float:
        # nan compares false with every bound and inf means "no limit" for no
        # key, so both would pass the bounds below and break the stage using them.
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{where}: {key} = {_shown(value)} is too large") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} = {value!r} is not a finite number")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key} = {_shown(value)} is not one of {', '.join(map(repr, meta['choices']))}")
    entries: list[tuple[str, Any]] = [(f"{key}.{_shown(k)}", v) for k, v in value.items()] \
        if isinstance(value, dict) else [(key, value)]  # (a table: each of its values)
    for shown, v in entries:
        if meta["lo"] is not None and v < meta["lo"]:
            raise ConfigError(f"{where}: {shown} = {_shown(v)} is below the minimum {meta['lo']}")
        if meta["hi"] is not None and v > meta["hi"]:
            raise ConfigError(f"{where}: {shown} = {_shown(v)} is above the maximum {meta['hi']}")
    return value


def _build(cls: type, data: Mapping[str, Any], where: str, prefix: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            hint = f"[{prefix}] " if prefix else ""
            raise ConfigError(f"{where}: unknown key {hint}{_shown(key)}; known: {', '.join(sorted(names))}")
    values = {
        name: _check(cls, name, data[name], where, f"{prefix}.{name}" if prefix else name)
        for name in names
        if name in data
    }
    return dataclasses.replace(cls(), **values)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    layer: dict[str, Any] = {}
    names = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(path):
            raise ConfigError(f"environment {name}: use JARVIS__SECTION__KEY")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError
            value = raw  # a bare word: a string
        # Two variables may name one key (JARVIS__CAPTURE__FPS and JARVIS__capture__fps),
        # or a key and a section around it (JARVIS__CAPTURE=1); neither silently wins.
        clash = ConfigError(f"environment {name}: clashes with another variable for {'.'.join(path)}")
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise clash
        if path[-1] in node:
            raise clash
        node[path[-1]] = value
        names.append(name)
    return layer, names


def _validate(cfg: Config, where: str) -> None:
    region = cfg.capture.region
    if region and (len(region) != 4 or region[2] <= 0 or region[3] <= 0):
        raise ConfigError(f"{where}: capture.region must be [] or [left, top, width, height] with positive size")
    levels = cfg.memory.levels
    if len(levels) != 3 or not 0 < levels[0] < levels[1] < levels[2] <= 100:
        raise ConfigError(f"{where}: memory.levels must be three increasing percentages, e.g. [50, 70, 90]")
    r = cfg.supervisor.restart
    if r.backoff_max_s < r.backoff_s:
        raise ConfigError(f"{where}: supervisor.restart.backoff_max_s is below backoff_s")
    if (cfg.ring.max_width == 0) != (cfg.ring.max_height == 0):
        raise ConfigError(f"{where}: ring.max_width and ring.max_height are both 0 (auto) or both set")
    if cfg.capture.source == "replay" and not cfg.capture.replay.path:
        raise ConfigError(f"{where}: capture.source is 'replay' but capture.replay.path is empty")
    _validate_forward(cfg.forward, where)
    if cfg.metrics.listen:
        try:
            tcp_address(cfg.metrics.listen)
        except ValueError as exc:
            raise ConfigError(f"{where}: metrics.listen: {exc}") from None


def tcp_address(listen: str) -> tuple[str, int]:
    """metrics.listen's HOST:PORT ([IPv6]:PORT), or ValueError."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:9464), nor empty for the private socket")
    return host, int(port)


def _validate_forward(f: ForwardConfig, where: str) -> None:
    for m in f.masks:
        if len(m) != 5 or m[0] < 0 or m[3] <= 0 or m[4] <= 0:
            raise ConfigError(f"{where}: forward.masks entries are [monitor, x, y, w, h] with monitor >= 0 "
                              f"and positive size, not {m}")
    # Checked field by field rather than by formatting once: `{count.x}`, `{count[0]}`
    # or a width of a billion would fail or allocate only when forward fills it in.
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(f.user_prompt)
                  if name is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: forward.user_prompt is not a valid template ({exc})") from None
    for name, spec, conv in fields:
        if name not in ("count", "times") or spec or conv:
            field_text = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(f"{where}: forward.user_prompt may use only {{count}} and {{times}}, "
                              f"not {_shown(field_text)}")
    if f.backoff_max_s < f.backoff_s:
        raise ConfigError(f"{where}: forward.backoff_max_s is below backoff_s")
    if f.base_url and not f.base_url.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: forward.base_url must be an http(s) URL")


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The configuration from the defaults, `path` and the environment."""
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        data = _read_toml(path, where)
    cfg: Config = _build(Config, data, where, "")
    layer, names = _env_layer(os.environ if env is None else env)
    if layer:
        where = f"environment ({', '.join(names)})" + (f" over {where}" if path else "")
        cfg = _build(Config, _merge(data, layer), where, "")
    _validate(cfg, where)
    return cfg


def _read_toml(path: str | os.PathLike[str], where: str) -> dict[str, Any]:
    """The `-c` file's TOML, read up to the cap and no further."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
            raise ConfigError(f"{where}: a configuration file must be a regular file, and this is {kind}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_FILE_BYTES // 2**20} MiB, the most a configuration file may be")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{where}: not UTF-8 text: byte offset {exc.start} (line {line}): {exc.reason}") from None
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer too long to convert
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid TOML: arrays or tables nested too deeply") from None


def default_toml() -> str:
    """configs/default.toml as it should read: every key, its default and its doc."""
    def section(cls: type, prefix: str, out: list[str]) -> None:
        sub: list[tuple[Any, str, str]] = []
        out.append(f"[{prefix}]")
        for f in dataclasses.fields(cls):
            t = _hints(cls)[f.name]
            if dataclasses.is_dataclass(t):
                sub.append((t, f"{prefix}.{f.name}", f.metadata["doc"]))
                continue
            default = f.default_factory() if callable(f.default_factory) else f.default
            out.append(f"# {f.metadata['doc']}")
            out.append(f"{f.name} = {_toml_value(default)}")
        out.append("")
        for t, p, doc in sub:
            out.append(f"# {doc}")
            section(t, p, out)

    lines = ["# jarvis-pipeline configuration: every key with its default.",
             "# Generated from pipeline/config.py (the schema); `jarvis-pipeline up -c FILE` reads a file like this,",
             "# and JARVIS__SECTION__KEY=value in the environment overrides any key.", ""]
    for f in dataclasses.fields(Config):
        section(_hints(Config)[f.name], f.name, lines)
    return "\n".join(lines).rstrip() + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


DEFAULT_FILE = Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def to_json(cfg: Config) -> str:
    """The resolved configuration, as the supervisor hands it to its stages."""
    return json.dumps(dataclasses.asdict(cfg), indent=1)


def from_json(text: str) -> Config:
    cfg: Config = _build(Config, json.loads(text), "the supervisor's resolved configuration", "")
    return cfg
