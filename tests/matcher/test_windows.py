"""Long clips heard in bounded windows: the same answers as one search, memory of one window, and
a CPU budget that ends the hearing early with an answer for what was heard (seeded)."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from bot.synth.episodes import make_dialogue
from matcher.budget import Budget
from matcher.identify import Matcher
from matcher.index import FingerprintIndex
from matcher.params import SearchParams
from matcher.windows import window_spans

SR = 8000
# Scenes of a long compilation: (episode index, episode start s, length s). The second scene
# straddles the first window edge (30 s), the fourth the second (58 s).
SCENES = [(0, 30.0, 20.0), (3, 40.0, 16.0), (1, 60.0, 12.0), (5, 20.0, 24.0), (2, 90.0, 18.0)]


def _long_compilation(catalogue: list[np.ndarray]) -> tuple[np.ndarray, list[tuple]]:
    parts, truth, at = [], [], 0.0
    for e, start, dur in SCENES:
        parts.append(catalogue[e][round(start * SR) : round((start + dur) * SR)])
        truth.append((f"S01E{e + 1:02d}", at, at + dur, start))
        at += dur
    return np.concatenate(parts), truth


def _found(segments: list, truth: list[tuple]) -> list[str]:
    return [
        episode
        for episode, q0, q1, ref0 in truth
        if any(
            s.episode == episode
            and abs(s.query_start_s - q0) <= 1.0
            and abs(s.query_stop_s - q1) <= 1.0
            and abs(s.ref_start_s - (ref0 + s.query_start_s - q0)) <= 1.0
            for s in segments
        )
    ]


@pytest.mark.parametrize("n_frames", [1, 500, 1875, 2800, 4000, 5000, 37_500])
def test_windows_cover_the_clip_in_order_with_overlap(n_frames: int) -> None:
    spans = window_spans(n_frames, window_frames=1875, overlap_frames=125)
    assert spans[0][0] == 0 and spans[-1][1] == n_frames
    for (a0, a1), (b0, b1) in itertools.pairwise(spans):
        assert a0 < b0 < a1 <= b1  # in order, each overlapping the next
        assert a1 - b0 == 125
    assert all(stop - start <= 1.5 * 1875 for start, stop in spans)


def test_a_long_compilation_is_heard_window_by_window(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    clip, truth = _long_compilation(catalogue)
    assert clip.size / SR > 1.5 * SearchParams().long_window_s  # takes the windowed path
    result = Matcher(memory_index).identify(clip)
    assert result.status == "match" and not result.cut_short
    assert result.heard_s == pytest.approx(clip.size / SR, abs=0.25)
    assert _found(result.segments, truth) == [t[0] for t in truth]
    starts = [s.query_start_s for s in result.segments]
    assert starts == sorted(starts)


def test_one_long_scene_reads_as_one_search_would_read_it(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    """The windows' candidates for one scene are pooled, not listed once per window: the
    timeline is the one a single search over the whole clip gives."""
    clip = catalogue[4][10 * SR : 80 * SR]
    windowed = Matcher(memory_index).identify(clip)
    single = Matcher(memory_index, search=SearchParams(long_window_s=1000.0)).identify(clip)
    assert windowed.best is not None and windowed.best.episode == "S01E05"
    assert windowed.best.offset_s == pytest.approx(10.0, abs=0.3)
    assert len(windowed.segments) == len(single.segments)
    for w, s in zip(windowed.segments, single.segments, strict=True):
        assert w.episode == s.episode == "S01E05"
        assert w.query_start_s == pytest.approx(s.query_start_s, abs=0.5)
        assert w.query_stop_s == pytest.approx(s.query_stop_s, abs=0.5)
        assert w.ref_start_s - w.query_start_s == pytest.approx(10.0, abs=0.3)


def test_a_spent_budget_answers_for_what_was_heard(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    clip, truth = _long_compilation(catalogue)
    stages = list(Matcher(memory_index).identify_stages(clip, budget=Budget(cpu_s=0.0)))
    final = stages[-1]
    assert final.final and final.cut_short
    window_s = SearchParams().long_window_s
    assert final.heard_s == pytest.approx(window_s, abs=0.25)  # the first window, always heard
    assert final.clip_duration_s == pytest.approx(clip.size / SR, abs=0.25)
    assert final.status == "match" and final.best is not None
    assert final.best.episode == truth[0][0]
    assert all(s.query_stop_s <= window_s + 0.5 for s in final.segments)


def test_should_stop_ends_the_windows(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    clip, _ = _long_compilation(catalogue)
    stop = threading.Event()
    stop.set()
    budget = Budget(should_stop=stop.is_set)
    stages = list(Matcher(memory_index).identify_stages(clip, budget=budget))
    assert stages[-1].cut_short and stages[-1].heard_s < clip.size / SR / 2


def test_a_long_clip_reports_progress_window_by_window(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    clip, truth = _long_compilation(catalogue)
    budget = Budget()
    stages = list(Matcher(memory_index).identify_stages(clip, budget=budget))
    windows = [r for r in stages if r.heard_s > 10.5]
    assert len(windows) >= 3 and all(not r.final for r in windows[:-1]) and windows[-1].final
    heard = [r.heard_s for r in windows]
    assert heard == sorted(heard) and heard[-1] == pytest.approx(clip.size / SR, abs=0.25)
    assert windows[0].best is not None and windows[0].best.episode == truth[0][0]
    assert budget.spent_s > 0


def test_long_null_clip_is_not_a_match(memory_index: FingerprintIndex) -> None:
    """More windows are more chances for chance: the chance model counts them all."""
    clip = make_dialogue(sr=SR, duration_s=150.0, seed=77_000)
    result = Matcher(memory_index).identify(clip)
    assert result.status != "match"
    assert not result.cut_short and result.heard_s == pytest.approx(150.0, abs=0.25)
