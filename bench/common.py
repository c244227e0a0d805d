"""What every benchmark records beside its numbers: the machine, the code version, and its section
of bench/RESULTS.md. Also the small timing helpers the speed benchmarks share.

Never measures anything itself and never imports bot/: a benchmark that does not need the bot
must not pay for importing it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

RESULTS_MD = Path(__file__).parent / "RESULTS.md"
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    """The CPU's model name as lscpu reports it (platform.processor() when there is no lscpu)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
        if found:
            return found.group(1).strip()
    return platform.processor() or "unknown CPU"


def ram_gb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: the machines are shared, so wall times carry it."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """What the numbers were measured on. Each benchmark's report picks the fields it shows."""
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "pinned_to_cpu": sorted(os.sched_getaffinity(0)),
        "niceness": os.nice(0),
        "ram_gb": ram_gb(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


# ---------------------------------------------------------------------------------------------
# The code


def code_version(*paths: str) -> str:
    """The short commit of the checkout the matcher is imported from, and whether `paths` in it
    (folders such as "matcher") have uncommitted changes: the results then describe the work
    tree, not the commit."""
    import matcher

    # The checkout the matcher was imported from, which need not be this file's.
    root = Path(matcher.__file__).resolve().parent.parent
    try:
        head = _git(root, "rev-parse", "--short", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--", *paths)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not dirty:
        return head
    folders = [f"{p.rstrip('/')}/" for p in paths]
    named = folders[0] if len(folders) == 1 else ", ".join(folders[:-1]) + " or " + folders[-1]
    return f"{head} with uncommitted changes in {named}"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


# ---------------------------------------------------------------------------------------------
# Timing


def cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (ffmpeg)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds of the block, filled in when it ends."""
    out: dict[str, float] = {}
    wall, cpu = time.perf_counter(), cpu_s()
    try:
        yield out
    finally:
        out["wall_s"] = time.perf_counter() - wall
        out["cpu_s"] = cpu_s() - cpu


def progress_log(
    started: float, *, decimals: int = 0, stream: TextIO | None = None
) -> Callable[[str], None]:
    """A `log(msg)` printing msg after the seconds since `started` (a `time.perf_counter()`),
    to `stream` (standard output by default)."""

    def log(msg: str) -> None:
        elapsed_s = time.perf_counter() - started
        print(f"[{elapsed_s:6.{decimals}f} s] {msg}", file=stream or sys.stdout, flush=True)

    return log


def run_head(module: str, argv: Sequence[str] | None, *code_paths: str) -> dict[str, Any]:
    """What a run records before it starts: its command, the time, the machine, the code
    version of `code_paths` and the load average."""
    return {
        "command": f"python -m {module}" + (" " + " ".join(argv) if argv else ""),
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": machine(),
        "code": code_version(*code_paths),
        "loadavg_start": loadavg(),
    }


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile, NaN for no values."""
    return float(np.percentile(np.asarray(values, np.float64), q)) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# bench/RESULTS.md


def write_section(
    body: str,
    *,
    name: str,
    heading: str,
    path: Path = RESULTS_MD,
    placeholders: Sequence[str] = (),
) -> None:
    """Replace one benchmark's section of RESULTS.md, leaving every other byte alone.

    The section's text sits between `<!-- name:begin -->` and `<!-- name:end -->`, so that
    reruns replace exactly what they wrote. Without the markers, the text goes under the
    `heading` line (or a `placeholders` heading, which is renamed to `heading`) if there is one,
    else it is appended under a new `heading`.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    if begin in text and end in text:
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        lines = text.splitlines(keepends=True)
        at = next((i for i, ln in enumerate(lines) if ln.strip() in (heading, *placeholders)), None)
        if at is not None:
            lines[at] = f"{heading}\n\n{block}\n"
            text = "".join(lines)
        else:
            text = (text.rstrip("\n") or "# Benchmark results") + f"\n\n{heading}\n\n{block}\n"
    path.write_text(text)
