"""Fixtures the bot's tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from matcher.index import FingerprintIndex
from matcher.store import write_index


@pytest.fixture(scope="module")
def index_dir(memory_index: FingerprintIndex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test catalogue as an index folder on disk, as `citywok run` loads it."""
    folder = tmp_path_factory.mktemp("app") / "index"
    write_index(
        folder,
        params=memory_index.params,
        episodes=memory_index.episodes,
        offsets=memory_index.offsets,
        positions=memory_index.positions,
    )
    return folder
