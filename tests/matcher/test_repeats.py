"""Repeated content: the catalogue matched against itself at build time, the spans saved with the
index, and clips that lie only inside shared content answered `ambiguous` with what they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.synth.music import make_intro
from matcher.identify import Matcher
from matcher.index import FingerprintIndex, RepeatedSpan
from matcher.params import FingerprintParams
from matcher.repeats import find_repeats
from matcher.store import load_index, read_manifest, write_index

SR = 8000
N_EPISODES = 6  # conftest's catalogue


def test_intro_found_in_every_episode(memory_index: FingerprintIndex) -> None:
    intro_s = make_intro(sr=SR, seed=7).size / SR
    intros = [r for r in memory_index.repeats if r.label == "intro"]
    assert sorted(r.episode for r in intros) == [f"S01E{i:02d}" for i in range(1, 7)]
    frame_s = memory_index.params.frame_s
    for r in intros:
        assert r.start_frame == 0
        assert r.stop_frame * frame_s == pytest.approx(intro_s, abs=1.0)
        assert r.count == N_EPISODES


def test_unrelated_episodes_share_nothing_long(memory_index: FingerprintIndex) -> None:
    """Besides the intro, only the short shared cues (1-3 s stingers) are repeats."""
    frame_s = memory_index.params.frame_s
    others = [r for r in memory_index.repeats if r.label != "intro"]
    assert all((r.stop_frame - r.start_frame) * frame_s < 6.0 for r in others)
    covered = sum(r.stop_frame - r.start_frame for r in memory_index.repeats)
    assert covered < 0.2 * memory_index.total_frames


def test_find_repeats_is_deterministic(memory_index: FingerprintIndex) -> None:
    assert find_repeats(memory_index) == memory_index.repeats


def test_intro_clip_is_ambiguous_and_says_so(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    matcher = Matcher(memory_index)
    for episode in (0, 3):
        result = matcher.identify(catalogue[episode][2 * SR : 10 * SR])
        assert result.status == "ambiguous"
        assert result.best is None
        assert result.repeated == "intro"
        assert result.repeated_count == N_EPISODES
        assert len(result.candidates) >= 2


def test_clip_of_intro_and_scene_names_the_episode(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    """The unique part decides: shared votes do not drown it."""
    result = Matcher(memory_index).identify(catalogue[2][8 * SR : 18 * SR])
    assert result.status == "match" and result.best is not None
    assert result.best.episode == "S01E03"
    assert result.best.offset_s == pytest.approx(8.0, abs=1.0)
    assert result.repeated is None


def test_repeats_saved_in_manifest(memory_index: FingerprintIndex, tmp_path: Path) -> None:
    write_index(
        tmp_path,
        params=memory_index.params,
        episodes=memory_index.episodes,
        offsets=memory_index.offsets,
        positions=memory_index.positions,
        repeats=memory_index.repeats,
    )
    assert read_manifest(tmp_path)["repeats"][0]["label"] == "intro"
    loaded = load_index(tmp_path, params=FingerprintParams())
    assert loaded.repeats == memory_index.repeats
    assert np.array_equal(loaded.repeat_starts, memory_index.repeat_starts)


@pytest.mark.slow  # fingerprints six WAV files
def test_built_index_records_repeats(episode_files: Path, tmp_path: Path) -> None:
    from matcher.build import build_index

    build_index([episode_files], index_dir=tmp_path / "index")
    loaded = load_index(tmp_path / "index")
    assert sum(r.label == "intro" for r in loaded.repeats) == N_EPISODES


def test_repeat_of_positions(memory_index: FingerprintIndex) -> None:
    span = memory_index.repeats[0]
    start = memory_index.episodes[0].start_frame
    edges = np.array([start + span.start_frame, start + span.stop_frame - 1])
    inside = memory_index.repeat_of(edges)
    assert list(inside) == [0, 0]
    assert memory_index.repeat_of(np.array([start + span.stop_frame]))[0] != 0


def test_span_round_trip() -> None:
    span = RepeatedSpan(episode="S01E01", start_frame=0, stop_frame=10, label="intro", count=3)
    assert RepeatedSpan.from_dict(span.to_dict()) == span


def test_version_1_index_loads_without_repeats(
    memory_index: FingerprintIndex, tmp_path: Path
) -> None:
    """Same arrays, no `repeats`: an index built before them still serves."""
    import json

    write_index(
        tmp_path,
        params=memory_index.params,
        episodes=memory_index.episodes,
        offsets=memory_index.offsets,
        positions=memory_index.positions,
        repeats=memory_index.repeats,
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["repeats"]
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    assert load_index(tmp_path).repeats == []
