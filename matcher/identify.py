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

from matcher.index import FingerprintIndex
from matcher.params import SearchParams
from matcher.peaks import Peaks, audio2peaks
from matcher.result import MatchResult, decide_full
from matcher.search import search
from matcher.segment import candidates2segments


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

    def identify(self, samples: np.ndarray) -> MatchResult:
        """The answer for the whole clip."""
        started = time.perf_counter()
        peaks = self.peaks(samples)
        return self._answer(peaks, heard_frames=peaks.n_frames, started=started, final=True)

    def identify_stages(
        self, samples: np.ndarray, *, stages_s: tuple[float, ...] | None = None
    ) -> Iterator[MatchResult]:
        """Answers after each stage's seconds of the clip, then for the whole clip.

        After the first stage whose answer is certain, a short clip stops there; a longer one
        (more than `early_stop_max_clip_s`, possibly a compilation) skips straight to the whole
        clip, whose answer carries the timeline. The last result has final=True.
        `elapsed_ms` counts from the call, fingerprinting included.
        """
        started = time.perf_counter()
        peaks = self.peaks(samples)
        frame_s = self.index.params.frame_s
        stage_frames = [round(s / frame_s) for s in (stages_s or self.search.stages_s)]
        stops = sorted({f for f in stage_frames if f < peaks.n_frames} | {peaks.n_frames})
        long_clip = peaks.n_frames * frame_s > self.search.early_stop_max_clip_s
        for stop in stops:
            result = self._answer(
                peaks.head(stop), heard_frames=stop, started=started, final=stop == stops[-1]
            )
            result = replace(result, clip_duration_s=peaks.n_frames * frame_s)
            if not result.final and self._certain(result):
                if not long_clip:
                    yield replace(result, final=True)
                    return
                yield result
                whole = self._answer(
                    peaks, heard_frames=peaks.n_frames, started=started, final=True
                )
                yield replace(whole, clip_duration_s=peaks.n_frames * frame_s)
                return
            yield result

    def _certain(self, result: MatchResult) -> bool:
        return (
            result.status == "match"
            and result.best is not None
            and result.best.false_alarm_p <= self.search.certain_false_alarm_p
        )

    def _answer(
        self, peaks: Peaks, *, heard_frames: int, started: float, final: bool
    ) -> MatchResult:
        candidates = search(peaks, index=self.index, search=self.search)
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
