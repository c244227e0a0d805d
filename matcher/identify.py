"""The one place that wires the stages: samples → peaks → candidates → answer, in stages.

`Matcher.identify_stages` is what the bot drives: it answers after the first few seconds of a
clip, then after more, and stops as soon as the answer is certain, so a reply can be edited live.
Synchronous; callers that must not block run it in a thread pool.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from matcher.budget import Budget
from matcher.index import FingerprintIndex
from matcher.params import SearchParams
from matcher.peaks import Peaks, audio2peaks
from matcher.result import MatchResult, decide_full
from matcher.search import Candidate, search
from matcher.segment import candidates2segments
from matcher.windows import hear_windows


class Matcher:
    """Identifies clips against one index. Thread-safe: it holds no per-query state."""

    def __init__(self, index: FingerprintIndex, *, search: SearchParams | None = None) -> None:
        self.index = index
        self.search = search or SearchParams()

    @property
    def sr(self) -> int:
        return self.index.params.sr

    def peaks(self, samples: np.ndarray) -> Peaks:
        """Dense query peaks of mono float32 samples at `self.sr`."""
        return audio2peaks(
            samples, params=self.index.params, peaks_per_s=self.search.query_peaks_per_s
        )

    def warm_up(self) -> None:
        """Match a few seconds of quiet noise once, so that loading the compiled kernels and
        the first look-ups (~0.6 s) are paid at start, not by the first user."""
        noise = np.random.default_rng(0).standard_normal(4 * self.sr).astype(np.float32)
        self.identify(noise * 0.01)

    def identify(self, samples: np.ndarray, *, budget: Budget | None = None) -> MatchResult:
        """The answer for the whole clip (a long one heard within `budget`, as below)."""
        *_, final = self.identify_stages(samples, stages_s=(), budget=budget)
        return final

    def identify_stages(
        self,
        samples: np.ndarray,
        *,
        stages_s: tuple[float, ...] | None = None,
        budget: Budget | None = None,
    ) -> Iterator[MatchResult]:
        """Answers after each stage's seconds of the clip, then for the whole clip.

        After the first stage whose answer is certain, a short clip stops there; a longer one
        (more than `early_stop_max_clip_s`, possibly a compilation) goes on to the whole clip,
        whose answer carries the timeline. A clip over 1.5 `long_window_s` is heard in windows
        (`matcher.windows`), with an interim answer after each, until `budget` is exhausted;
        the final result is then `cut_short` and its `heard_s` says how much was heard. The
        last result has final=True. `elapsed_ms` counts from the call, fingerprinting included.
        The generator may be resumed on another thread between results.
        """
        started = time.perf_counter()
        budget = budget or Budget()
        with budget.charge():
            peaks = self.peaks(samples)
        frame_s = self.index.params.frame_s
        clip_s = peaks.n_frames * frame_s
        stages = self.search.stages_s if stages_s is None else stages_s
        for stop in sorted({f for f in (round(s / frame_s) for s in stages) if f < peaks.n_frames}):
            with budget.charge():
                result = self._answer(peaks.head(stop), started=started, final=False)
            result = replace(result, clip_duration_s=clip_s)
            if self._certain(result) and clip_s <= self.search.early_stop_max_clip_s:
                yield replace(result, final=True)
                return
            yield result
            if self._certain(result):
                break
        if clip_s <= 1.5 * self.search.long_window_s:
            with budget.charge():
                whole = self._answer(peaks, started=started, final=True)
            yield whole
            return
        yield from self._windows(peaks, started=started, budget=budget)

    def _windows(self, peaks: Peaks, *, started: float, budget: Budget) -> Iterator[MatchResult]:
        """A long clip, window by window: interim answers, then the final one."""
        clip_s = peaks.n_frames * self.index.params.frame_s
        for heard in hear_windows(
            peaks, index=self.index, search_params=self.search, budget=budget
        ):
            with budget.charge():
                result = self._decide(
                    heard.candidates,
                    heard_frames=heard.heard_frames,
                    started=started,
                    final=heard.last,
                )
            cut_short = heard.last and heard.heard_frames < peaks.n_frames
            yield replace(result, clip_duration_s=clip_s, cut_short=cut_short)

    def _certain(self, result: MatchResult) -> bool:
        return (
            result.status == "match"
            and result.best is not None
            and result.best.false_alarm_p <= self.search.certain_false_alarm_p
        )

    def _answer(self, peaks: Peaks, *, started: float, final: bool) -> MatchResult:
        candidates = search(peaks, index=self.index, search=self.search)
        return self._decide(candidates, heard_frames=peaks.n_frames, started=started, final=final)

    def _decide(
        self, candidates: list[Candidate], *, heard_frames: int, started: float, final: bool
    ) -> MatchResult:
        decision = decide_full(candidates, index=self.index, search=self.search)
        status, matches = decision.status, decision.matches
        segments = (
            candidates2segments(
                candidates, index=self.index, search=self.search, n_frames=heard_frames
            )
            if status == "match"
            else []
        )
        frame_s = self.index.params.frame_s
        return MatchResult(
            status=status,
            best=matches[0] if status == "match" else None,
            candidates=matches,
            segments=segments or (matches[:1] if status == "match" else []),
            heard_s=heard_frames * frame_s,
            clip_duration_s=heard_frames * frame_s,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            final=final,
            repeated=decision.repeated,
            repeated_count=decision.repeated_count,
        )
