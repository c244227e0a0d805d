"""Compilations: a clip cut together from scenes of several episodes comes back as a timeline of
segments, each with its episode, clip span and episode time (boundaries within ±1 s)."""

from __future__ import annotations

import numpy as np
import pytest

from bot.synth.degrade import change_speed
from matcher.identify import Matcher
from matcher.index import FingerprintIndex

SR = 8000


def _compilation(
    catalogue: list[np.ndarray], rng: np.random.Generator, *, n_scenes: int
) -> tuple[np.ndarray, list[tuple[str, float, float, float]]]:
    """Scenes of 4-8 s from different episodes, after the intro; truth is
    (episode, clip start s, clip stop s, episode start s) per scene."""
    parts, truth, at = [], [], 0.0
    episodes = rng.permutation(len(catalogue))[:n_scenes]
    for e in episodes:
        dur = float(rng.uniform(4.0, 8.0))
        start = float(rng.uniform(20.0, 140.0 - dur))
        parts.append(catalogue[e][round(start * SR) : round((start + dur) * SR)])
        truth.append((f"S01E{e + 1:02d}", at, at + parts[-1].size / SR, start))
        at += parts[-1].size / SR
    return np.concatenate(parts), truth


def _scenes_right(result_segments: list, truth: list[tuple[str, float, float, float]]) -> int:
    right = 0
    for episode, q0, q1, ref0 in truth:
        hit = [
            s
            for s in result_segments
            if s.episode == episode
            and abs(s.query_start_s - q0) <= 1.0
            and abs(s.query_stop_s - q1) <= 1.0
            and abs(s.ref_start_s - (ref0 + s.query_start_s - q0)) <= 1.0
        ]
        right += bool(hit)
    return right


def test_single_scene_is_one_segment(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    result = Matcher(memory_index).identify(catalogue[1][60 * SR : 70 * SR])
    assert result.status == "match"
    assert len(result.segments) == 1
    seg = result.segments[0]
    assert seg.episode == "S01E02"
    assert seg.query_start_s == pytest.approx(0.0, abs=1.0)
    assert seg.query_stop_s == pytest.approx(10.0, abs=1.0)
    assert seg.ref_start_s == pytest.approx(60.0, abs=1.0)


@pytest.mark.slow
def test_compilations_give_each_scene(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    rng = np.random.default_rng(21)
    matcher = Matcher(memory_index)
    right = total = 0
    for _ in range(3):
        clip, truth = _compilation(catalogue, rng, n_scenes=4)
        result = matcher.identify(clip)
        assert result.status == "match"
        starts = [s.query_start_s for s in result.segments]
        assert starts == sorted(starts)
        right += _scenes_right(result.segments, truth)
        total += len(truth)
    assert right >= 0.9 * total


def test_sped_up_compilation(memory_index: FingerprintIndex, catalogue: list[np.ndarray]) -> None:
    """A compilation played 25% fast: scenes in clip time, episode times at episode speed."""
    rng = np.random.default_rng(5)
    clip, truth = _compilation(catalogue, rng, n_scenes=3)
    fast = change_speed(clip, factor=1.25)
    result = Matcher(memory_index).identify(fast)
    scaled = [(e, q0 / 1.25, q1 / 1.25, r0) for e, q0, q1, r0 in truth]
    right = 0
    for episode, q0, q1, ref0 in scaled:
        right += any(
            s.episode == episode
            and abs(s.query_start_s - q0) <= 1.0
            and abs(s.query_stop_s - q1) <= 1.0
            and abs(s.ref_start_s - (ref0 + (s.query_start_s - q0) * 1.25)) <= 1.0
            and s.speed == pytest.approx(1.25, rel=0.02)
            for s in result.segments
        )
    assert right >= 2


def test_staged_answers_of_a_compilation_end_with_its_timeline(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    """The bot's staged path: a certain answer after 3 s must not end a long clip early, or a
    compilation would be answered as its first scene."""
    clip, truth = _compilation(catalogue, np.random.default_rng(33), n_scenes=3)
    stages = list(Matcher(memory_index).identify_stages(np.concatenate([clip, clip[:8000]])))
    assert stages[-1].final and stages[-1].heard_s == pytest.approx(clip.size / SR + 1, abs=0.25)
    assert _scenes_right(stages[-1].segments, truth) == len(truth)


def test_short_clips_still_stop_early(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    stages = list(Matcher(memory_index).identify_stages(catalogue[1][60 * SR : 72 * SR]))
    assert stages[-1].final and stages[-1].heard_s < 12.0
    assert stages[-1].best is not None and stages[-1].best.episode == "S01E02"
