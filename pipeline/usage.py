"""What a process costs in memory, read cheaply enough to sample all day.

USS and PSS (psutil's memory_full_info) walk the process's page tables
through /proc/PID/smaps_rollup: with the ring mapped that is milliseconds per
read, and the supervisor sampling every stage every few seconds was half its
own CPU at 10 fps. The memory governor needs what each process holds on its
own, which the kernel keeps as running counters: on Linux the resident pages
that are neither file-backed nor shared memory (statm's resident minus
shared; the ring, a shared mapping, is counted once by the supervisor).
Elsewhere psutil gives no shared count, and the resident set (which includes
the ring pages a process touched) stands in. PSS, for people reading
`status`, is read only when asked (see Supervisor.cmd_status).
"""

from __future__ import annotations

import psutil


def private_mb(proc: psutil.Process) -> float:
    """The memory only `proc` holds, MB (see the module docstring)."""
    info = proc.memory_info()
    return float(max(info.rss - getattr(info, "shared", 0), 0)) / 2**20


def pss_mb(proc: psutil.Process) -> float:
    """Proportional set size, MB: costly. USS where the system has no PSS,
    and the resident set where only root may read either (macOS, for any
    process but one's own)."""
    try:
        info = proc.memory_full_info()
    except psutil.AccessDenied:
        return float(proc.memory_info().rss) / 2**20
    return float(getattr(info, "pss", info.uss)) / 2**20
