"""Thin probes around the real bot objects, for bench.bot_latency: the Service's on_step hook, a
Fetcher subclass around fetch, and a thread pool that stamps decode and match jobs. They call
the real code and only read the clock; steps_of turns one request's stamps into spans.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bot.config import Settings
from bot.core.cache import AnswerCache
from bot.core.limits import Limits
from bot.core.request import Attachment, Link
from bot.core.service import Service
from bot.fetch.fetcher import Fetcher
from matcher.identify import Matcher


class Probe:
    """Times (time.monotonic) of one request's steps; requests run one at a time."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.marks: dict[str, float] = {}
        self.stages: list[tuple[float, float]] = []  # (time, heard_s) of each stage result
        self.cpu: dict[str, float] = {}
        self.ended = asyncio.Event()

    def mark(self, name: str) -> None:
        # Called from worker threads too: a dict store is atomic under the GIL.
        self.marks.setdefault(name, time.monotonic())

    def on_step(self, request_id: str, step: str, t_monotonic: float) -> None:
        """`Service(on_step=...)`: "admitted", "fetched", "decoded", "stage:<heard_s>" for each
        stage result, "final" just before the last state."""
        if step.startswith("stage:"):
            self.stages.append((t_monotonic, float(step.removeprefix("stage:"))))
            return
        self.marks.setdefault(step, t_monotonic)
        if step == "final":
            self.ended.set()


class ProbedFetcher(Fetcher):
    def __init__(self, probe: Probe, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe = probe

    async def fetch(self, source: Link | Attachment, *, request_id: str = "-") -> bytes:
        self.probe.mark("fetch_start")
        try:
            return await super().fetch(source, request_id=request_id)
        finally:
            self.probe.mark("fetch_end")


class ProbedExecutor(ThreadPoolExecutor):
    """The matcher pool; stamps when each job was submitted, started and finished."""

    def __init__(self, probe: Probe, workers: int) -> None:
        super().__init__(workers, thread_name_prefix="bench-match")
        self.probe = probe

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        name = getattr(getattr(fn, "func", fn), "__name__", "")
        step = "decode" if "decode" in name else "match"
        probe = self.probe
        probe.mark(f"{step}_submit")

        def timed(*a: Any, **k: Any) -> Any:
            # CPU next to wall time tells computing from waiting for a core: ffmpeg's is the
            # children's rusage (one decode at a time here), the matcher's its thread's.
            probe.mark(f"{step}_start")
            children, thread = children_cpu_s(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                cpu = children_cpu_s() - children if step == "decode" else 0.0
                probe.cpu[f"{step}_cpu"] = cpu + time.thread_time() - thread
                probe.mark(f"{step}_end")

        return super().submit(timed, *args, **kwargs)


@dataclass
class Core:
    """One bot's core, built as bot.app.run builds it (fresh answer cache)."""

    probe: Probe
    service: Service
    limits: Limits
    fetcher: ProbedFetcher
    executor: ProbedExecutor

    @classmethod
    def build(cls, settings: Settings, matcher: Matcher, generation: str) -> Core:
        probe = Probe()
        executor = ProbedExecutor(probe, settings.matcher.workers)
        fetcher = ProbedFetcher(probe, settings.fetch)
        limits = Limits(settings.limits)
        service = Service(
            matcher,
            fetcher,
            limits,
            settings,
            executor,
            cache=AnswerCache(),
            generation=generation,
            on_step=probe.on_step,
        )
        return cls(probe, service, limits, fetcher, executor)

    async def close(self) -> None:
        await self.fetcher.close()
        self.executor.shutdown(wait=True)


async def settle(probe: Probe, timeout_s: float = 5.0) -> None:
    """Wait for the request's worker jobs to finish: the core returns as soon as the final
    result is posted, a moment before the thread that computed it is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(
        f"{step}_start" in probe.marks and f"{step}_end" not in probe.marks
        for step in ("decode", "match")
    ):
        await asyncio.sleep(0.005)


def steps_of(probe: Probe, delivered: float) -> dict[str, float]:
    """Where the time went, from the probes (seconds)."""
    m = probe.marks
    steps: dict[str, float] = {}

    def span(name: str, start: str, stop: str) -> None:
        if start in m and stop in m:
            steps[name] = m[stop] - m[start]

    steps["dispatch"] = m.get("admitted", delivered) - delivered
    span("fetch", "fetch_start", "fetch_end")
    span("decode_wait", "decode_submit", "decode_start")
    span("decode", "decode_start", "decode_end")
    span("match_wait", "match_submit", "match_start")
    span("match", "match_start", "match_end")
    if "final" in m:
        steps["finished_state"] = m["final"] - delivered
    # The matcher's own elapsed_ms is not among the steps; decoded → final is what the request
    # spent from audio in hand to answer, matcher thread waits and the hop back to the loop
    # included.
    span("decoded_to_final", "decoded", "final")
    if probe.stages and "match_start" in m:
        steps["first_stage"] = probe.stages[0][0] - m["match_start"]
    steps.update(probe.cpu)
    if probe.stages:
        steps["stages"] = float(len(probe.stages))
        steps["heard_s"] = probe.stages[-1][1]
    return steps


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
