"""Files generated from the code are current, and the documented defaults are
what the loader uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline import config

ROOT = Path(__file__).resolve().parents[1]


def test_generated_files_are_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_default_toml_loads_to_the_defaults() -> None:
    assert config.load(ROOT / "configs" / "default.toml", env={}) == config.Config()


def test_environment_overrides_name_their_source() -> None:
    cfg = config.load(env={"JARVIS__CAPTURE__FPS": "2", "JARVIS__CAPTURE__SOURCE": "synthetic"})
    assert (cfg.capture.fps, cfg.capture.source) == (2.0, "synthetic")
    try:
        config.load(env={"JARVIS__CAPTURE__FPS": "0"})
    except config.ConfigError as exc:
        assert "JARVIS__CAPTURE__FPS" in str(exc) and "below the minimum" in str(exc)
    else:
        raise AssertionError("fps = 0 was accepted")
