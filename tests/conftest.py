"""Shared fixtures: seeded randomness and a small generated catalogue (never real episodes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.synth.encode import write_wav
from bot.synth.episodes import make_catalogue
from matcher.hashes import peaks2hashes
from matcher.index import Episode, FingerprintIndex
from matcher.params import FingerprintParams
from matcher.peaks import audio2peaks
from matcher.repeats import find_repeats

SR = 8000
CATALOGUE_EPISODES = 6
CATALOGUE_DURATION_S = 150.0
CATALOGUE_SEED = 7


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def catalogue() -> list[np.ndarray]:
    """Episode audio at 8 kHz: a shared intro, shared cues, distinct scenes."""
    return make_catalogue(
        sr=SR,
        n_episodes=CATALOGUE_EPISODES,
        duration_s=CATALOGUE_DURATION_S,
        seed=CATALOGUE_SEED,
    )


def index_in_memory(
    episodes_audio: list[np.ndarray], params: FingerprintParams
) -> FingerprintIndex:
    """The in-memory twin of a built index, straight from audio."""
    episodes, hashes, start = [], [], 0
    for i, samples in enumerate(episodes_audio):
        peaks = audio2peaks(samples, params=params, peaks_per_s=params.ref_peaks_per_s)
        episodes.append(
            Episode(
                id=f"S01E{i + 1:02d}",
                season=1,
                number=i + 1,
                title=f"Episode {i + 1}",
                duration_s=samples.size / params.sr,
                checksum=f"c{i}",
                start_frame=start,
                n_frames=peaks.n_frames,
            )
        )
        hashes.append(peaks2hashes(peaks, params=params))
        start += peaks.n_frames
    index = FingerprintIndex.from_hashes(params=params, episodes=episodes, hashes=hashes)
    index.set_repeats(find_repeats(index))
    return index


@pytest.fixture(scope="session")
def memory_index(catalogue: list[np.ndarray]) -> FingerprintIndex:
    return index_in_memory(catalogue, FingerprintParams())


@pytest.fixture(scope="session")
def episode_files(
    catalogue: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The catalogue as WAV files in a media-folder layout."""
    root = tmp_path_factory.mktemp("episodes")
    season = root / "Season 01"
    season.mkdir()
    for i, samples in enumerate(catalogue):
        write_wav(season / f"Demo Show - S01E{i + 1:02d} - Episode {i + 1}.wav", samples, sr=SR)
    yield root
