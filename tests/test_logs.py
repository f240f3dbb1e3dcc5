"""Logs: a stage's output (a fatal error's dump included) reaches its .out
through the supervisor, after its death too; every log is rotated at
logs.max_mb and private; the final counters are kept in a file."""

from __future__ import annotations

import os
import signal
import stat

from pipeline_harness import FAST_CONFIG, pipeline, wait_for

MAX_MB = 0.0011  # logs.max_mb: one fatal error's dump (about 650 bytes) fits, two do not
MAX_BYTES = int(MAX_MB * 2**20)


def test_a_fatal_error_is_dumped_to_the_stage_output_which_is_rotated_and_private() -> None:
    config = FAST_CONFIG + f"[logs]\nmax_mb = {MAX_MB}\nbackups = 2\n"
    with pipeline(config) as p:
        p.rt.prepare()
        with p.tap("stats.dedup") as tap:
            p.up()
            for crash in range(1, 5):
                pid = wait_for("dedup running", lambda: (s := p.status()["dedup"])["state"] == "running" and s["pid"])
                # Killed once its loop runs (it published stats): a dump taken during its start-up (imports)
                # is several times longer than one from its loop, and would not leave two within the limit.
                for _, body in tap:
                    if body["pid"] == pid:
                        break
                os.kill(pid, signal.SIGSEGV)  # faulthandler dumps the stacks, then the process dies of the signal
                def restarted(n: int = crash) -> bool:
                    return bool(p.status()["dedup"]["restarts"] >= n)

                wait_for(f"dedup restarted after crash {crash}", restarted)
        def dumped() -> str | None:  # oldest first; a dump may span a rotation
            text = "".join(f.read_text() for f in sorted(p.rt.log_dir.glob("dedup.out*"), reverse=True))
            return text if "Fatal Python error: Segmentation fault" in text else None

        text = wait_for("the dumps in dedup.out", dumped)
        files = sorted(p.rt.log_dir.glob("dedup.out*"))
        assert [f.name for f in files] == ["dedup.out", "dedup.out.1", "dedup.out.2"], files
        assert text.count("Fatal Python error: Segmentation fault") >= 2, text[-2000:]
        assert "most recent call first" in text  # the Python stack of the dying thread
        for f in files:
            st = f.stat()
            assert stat.S_IMODE(st.st_mode) == 0o600, f
            assert st.st_size <= MAX_BYTES, (f, st.st_size)
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in p.rt.log_dir.iterdir())
        p.cli("down")
        final = p.final_counters()  # the file and the log line agree
        assert stat.S_IMODE(p.rt.final_counters_path.stat().st_mode) == 0o600
        assert final["captured"] > 0 and final["dropped.stage_crashed"] >= 0
