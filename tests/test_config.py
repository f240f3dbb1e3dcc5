"""The configuration loader refuses what it cannot use with a ConfigError that
names the key and where it came from, and never fails any other way: not on
nan or inf, not on a file that is not a TOML text file, not on whatever a fuzzer
puts into a file, the environment or the supervisor's JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config


def _leaves(cls: type = config.Config, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(path, type, field) of every key of the schema."""
    out = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out += _leaves(t, prefix + (f.name,))  # type: ignore[arg-type]
        else:
            out.append((prefix + (f.name,), t, f))
    return out


LEAVES = _leaves()
FLOAT_KEYS = [path for path, t, _ in LEAVES if t is float]
SECTIONS = sorted({path[:i] for path, _, _ in LEAVES for i in range(1, len(path))})
NON_FINITE = ["nan", "inf", "-inf"]


def _env_name(path: tuple[str, ...]) -> str:
    return config.ENV_PREFIX + "__".join(p.upper() for p in path)


def _json_with(*items: tuple[tuple[str, ...], Any]) -> str:
    """The supervisor's JSON of the defaults with each value at its path (one
    that runs through something other than a table is left out)."""
    data = json.loads(config.to_json(config.Config()))
    for path, value in items:
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[path[-1]] = value
    return json.dumps(data)


def _load_file(tmp_path: Path, text: str | bytes) -> config.Config:
    path = tmp_path / "c.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return config.load(path, env={})


# ---------------------------------------------------------------------------
# Non-finite numbers


def test_the_schema_has_float_keys_and_every_one_is_bounded_above() -> None:
    """A finite cap on every float key: the sizes in MB are multiplied by 2**20
    in the stages, where 1e308 would overflow to inf as surely as inf itself."""
    assert len(FLOAT_KEYS) > 20
    unbounded = [".".join(p) for p, t, f in LEAVES if t is float and f.metadata["hi"] is None]
    assert unbounded == []


@pytest.mark.parametrize("word", NON_FINITE)
def test_non_finite_floats_in_a_file_are_refused(tmp_path: Path, word: str) -> None:
    for path in FLOAT_KEYS:
        key = ".".join(path)
        with pytest.raises(config.ConfigError) as exc:
            _load_file(tmp_path, f"{key} = {word}\n")
        assert str(exc.value) == f"{tmp_path / 'c.toml'}: {key} = {word} is not a finite number"


@pytest.mark.parametrize("word", NON_FINITE)
def test_non_finite_floats_in_the_environment_are_refused(word: str) -> None:
    for path in FLOAT_KEYS:
        name = _env_name(path)
        with pytest.raises(config.ConfigError) as exc:
            config.load(None, env={name: word})
        assert str(exc.value) == f"environment ({name}): {'.'.join(path)} = {word} is not a finite number"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_from_the_supervisor_are_refused(value: float) -> None:
    for path in FLOAT_KEYS:
        with pytest.raises(config.ConfigError, match=f"^the supervisor's resolved configuration: "
                                                     f"{'.'.join(path)} = .* is not a finite number$"):
            config.from_json(_json_with((path, value)))


def test_an_integer_too_large_for_a_float_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"c\.toml: memory\.budget_mb = 1000.* is too large$"):
        _load_file(tmp_path, f"memory.budget_mb = {10**400}\n")
    with pytest.raises(config.ConfigError, match=r"c\.toml: forward\.outbox_max_mb = 1e\+300 is above the maximum"):
        _load_file(tmp_path, "forward.outbox_max_mb = 1e300\n")


# ---------------------------------------------------------------------------
# The -c file


def _load_soon(path: Path) -> BaseException | None:
    """What loading `path` raises; fails the test instead of hanging when the
    loader waits on a FIFO."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            config.load(path, env={})
            result.append(None)
        except BaseException as exc:  # whatever it is, the test judges it
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert result, f"loading {path} did not return"
    return result[0]


def test_a_file_that_is_not_utf8_names_the_file_and_the_offset(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as exc:
        _load_file(tmp_path, b"[capture]\nfps = 2\n# caf\xe9\n")
    assert str(exc.value).startswith(f"{tmp_path / 'c.toml'}: not UTF-8 text: byte offset 23 (line 3)")


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # /dev/null stands for every device: like /dev/zero it is one, and it is
    # harmless to read where the check is missing
    cases = {tmp_path: "a directory", fifo: "a FIFO", Path("/dev/null"): "a device"}
    for path, kind in cases.items():
        exc = _load_soon(path)
        assert isinstance(exc, config.ConfigError), (path, exc)
        assert str(exc) == f"{path}: a configuration file must be a regular file, and this is {kind}"


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "real.toml").write_text("capture.fps = 2\n")
    (tmp_path / "link.toml").symlink_to("real.toml")
    assert config.load(tmp_path / "link.toml", env={}).capture.fps == 2.0


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    big = "# a comment\n" * (config.MAX_FILE_BYTES // 12 + 1)
    assert len(big) > config.MAX_FILE_BYTES
    with pytest.raises(config.ConfigError) as exc:
        _load_file(tmp_path, big)
    assert str(exc.value) == f"{tmp_path / 'c.toml'}: larger than 1 MiB, the most a configuration file may be"
    assert _load_file(tmp_path, big[: config.MAX_FILE_BYTES]) == config.Config()


@pytest.mark.parametrize("text", ["v = " + "[" * 5000, "capture.fps = 1" + "0" * 5000])
def test_toml_the_parser_cannot_take_is_invalid_toml(tmp_path: Path, text: str) -> None:
    with pytest.raises(config.ConfigError, match=r"c\.toml: not valid TOML: "):
        _load_file(tmp_path, text)


# ---------------------------------------------------------------------------
# Environment and template


def test_environment_variables_that_clash_are_refused() -> None:
    for env in ({"JARVIS__CAPTURE": "1", "JARVIS__CAPTURE__FPS": "2"},
                {"JARVIS__CAPTURE__FPS": "2", "JARVIS__capture__fps": "3"}):
        with pytest.raises(config.ConfigError, match=r"^environment JARVIS__\w+: clashes with another variable "
                                                     r"for capture(\.fps)?$"):
            config.load(None, env=env)


@pytest.mark.parametrize("prompt", ["{count[0]}", "{count.real}", "{times:>1000000000}", "{count!r}", "{0}", "{"])
def test_user_prompt_takes_only_plain_count_and_times(prompt: str) -> None:
    with pytest.raises(config.ConfigError, match=r"^environment \(JARVIS__FORWARD__USER_PROMPT\): "
                                                 r"forward\.user_prompt (may use only|is not a valid template)"):
        config.load(None, env={"JARVIS__FORWARD__USER_PROMPT": json.dumps(prompt)})


def test_user_prompt_with_both_fields_and_braces_is_accepted() -> None:
    cfg = config.load(None, env={"JARVIS__FORWARD__USER_PROMPT": '"{{ {times}: {count} }}"'})
    assert cfg.forward.user_prompt.format(count=2, times="now") == "{ now: 2 }"


# ---------------------------------------------------------------------------
# Fuzzing: nothing but ConfigError, and nothing non-finite gets through


def _toml(v: Any) -> str:
    """`v` as a TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml, v)) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml(x)}" for k, x in v.items()) + "}"


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**309, -(10**400), 10**4000]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
    TEXT,
    st.sampled_from(["{count[0]}", "{times.x}", "replay", "live", "https://x"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT | st.just("fps"), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from([p for p, _, _ in LEAVES] + SECTIONS + [("capture", "nope"), ("nope",)])


def _typed(t: Any) -> st.SearchStrategy[Any]:
    """Values of the key's own type, so that bounds and the checks across keys
    are reached, not only the type check."""
    ints = st.integers() | st.integers(-2, 100)
    return {bool: st.booleans(), int: ints, float: st.floats(), str: TEXT | st.sampled_from(["replay", "live"]),
            list[int]: st.lists(ints, max_size=5), list[list[int]]: st.lists(st.lists(ints, max_size=6), max_size=3),
            dict[str, int]: st.dictionaries(TEXT, ints, max_size=4)}[t]


KEY_VALUES = st.one_of(
    st.sampled_from(LEAVES).flatmap(lambda leaf: st.tuples(st.just(leaf[0]), _typed(leaf[1]))),
    st.tuples(KEYS, VALUES),
)
TOML_LINES = st.one_of(
    KEY_VALUES.map(lambda kv: f"{'.'.join(kv[0])} = {_toml(kv[1])}"),
    KEYS.map(lambda k: f"[{'.'.join(k)}]"),
    KEY_VALUES.map(lambda kv: f"{kv[0][-1]} = {_toml(kv[1])}"),
    TEXT,
    st.sampled_from(["[[capture]]", "\ufeff", "v = " + "[" * 3000, "x = 1" + "0" * 5000, "a = {", '"""', "\x00"]),
)
FILES = st.lists(TOML_LINES, max_size=6, unique=True).map(lambda lines: "\n".join(lines).encode()) | st.binary()
ENV_NAMES = KEYS.flatmap(lambda k: st.sampled_from([_env_name(k), config.ENV_PREFIX + "__".join(k)])) | TEXT.map(
    lambda s: config.ENV_PREFIX + s)
ENV_VALUES = VALUES.map(_toml) | KEY_VALUES.map(lambda kv: _toml(kv[1])) | TEXT
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _finite_everywhere(cfg: config.Config) -> bool:
    def get(path: tuple[str, ...]) -> Any:
        obj: Any = cfg
        for part in path:
            obj = getattr(obj, part)
        return obj

    return all(math.isfinite(get(p)) for p in FLOAT_KEYS)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(content=FILES, env=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=3))
def test_fuzz_file_and_environment(fuzz_dir: Path, content: bytes, env: dict[str, str]) -> None:
    path = fuzz_dir / "c.toml"
    path.write_bytes(content)
    try:
        cfg = config.load(path, env=env)
    except config.ConfigError as exc:
        assert str(exc).startswith((str(path), "environment")), exc
    else:
        assert _finite_everywhere(cfg)


@FUZZ
@given(items=st.lists(KEY_VALUES | st.tuples(KEYS, st.none()), min_size=1, max_size=3))
def test_fuzz_supervisor_json(items: list[tuple[tuple[str, ...], Any]]) -> None:
    try:
        cfg = config.from_json(_json_with(*items))
    except config.ConfigError as exc:
        assert str(exc).startswith("the supervisor's resolved configuration: "), exc
    else:
        assert _finite_everywhere(cfg)


def test_a_table_of_integers_is_checked_value_by_value(tmp_path: Path) -> None:
    """forward.cache_min_tokens: a table given replaces the default one, and
    each of its values keeps to the key's bounds."""
    cfg = _load_file(tmp_path, '[forward]\ncache_min_tokens = { "claude-x" = 2048, "*" = 1024 }\n')
    assert cfg.forward.cache_min_tokens == {"claude-x": 2048, "*": 1024}
    with pytest.raises(config.ConfigError, match=r"forward\.cache_min_tokens\.'claude-x' = 0 is below the minimum 1"):
        _load_file(tmp_path, '[forward]\ncache_min_tokens = { "claude-x" = 0 }\n')
    with pytest.raises(config.ConfigError, match="forward.cache_min_tokens must be a table of integers"):
        _load_file(tmp_path, '[forward]\ncache_min_tokens = { "claude-x" = "many" }\n')
