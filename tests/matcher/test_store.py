"""The on-disk index: round trip, checks on load, atomic replacement, incremental rebuilds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bot.synth.encode import write_wav
from bot.synth.episodes import make_episode
from matcher.build import build_index
from matcher.errors import IndexFormatError, IndexLoadError, IndexMissingError, MatcherError
from matcher.identify import Matcher
from matcher.index import FingerprintIndex
from matcher.names import EpisodeId
from matcher.params import FingerprintParams
from matcher.store import MANIFEST, load_index, read_manifest, write_index

SR = 8000


def _copy_episodes(episode_files: Path, dest: Path, names: list[str] | None = None) -> Path:
    season = dest / "Season 01"
    season.mkdir(parents=True)
    for path in sorted((episode_files / "Season 01").iterdir()):
        if names is None or any(n in path.name for n in names):
            shutil.copy2(path, season / path.name)
    return dest


@pytest.fixture
def built(episode_files: Path, tmp_path: Path) -> Path:
    index_dir = tmp_path / "index"
    build_index([episode_files], index_dir=index_dir, titles={EpisodeId(1, 2): "Second"})
    return index_dir


def test_round_trip_equals_in_memory_twin(memory_index: FingerprintIndex, tmp_path: Path) -> None:
    write_index(
        tmp_path,
        params=memory_index.params,
        episodes=memory_index.episodes,
        offsets=memory_index.offsets,
        positions=memory_index.positions,
    )
    loaded = load_index(tmp_path, params=FingerprintParams())
    assert loaded.episodes == memory_index.episodes
    assert isinstance(loaded.positions, np.memmap)
    np.testing.assert_array_equal(np.asarray(loaded.offsets), memory_index.offsets)
    np.testing.assert_array_equal(np.asarray(loaded.positions), memory_index.positions)


def test_built_index_matches_like_its_twin(built: Path, catalogue: list[np.ndarray]) -> None:
    loaded = load_index(built, params=FingerprintParams())
    assert loaded.episodes[1].title == "Second"
    result = Matcher(loaded).identify(catalogue[2][40 * SR : 45 * SR])
    assert result.status == "match" and result.best is not None
    assert result.best.episode == "S01E03"
    assert result.best.offset_s == pytest.approx(40.0, abs=0.5)


def test_manifest_records_what_operators_need(built: Path) -> None:
    manifest = read_manifest(built)
    first = manifest["episodes"][0]
    assert first["id"] == "S01E01" and first["season"] == 1 and first["number"] == 1
    assert len(first["checksum"]) >= 16
    assert first["duration_s"] == pytest.approx(150.0, abs=0.1)
    assert manifest["params"] == FingerprintParams().to_dict()


def test_loading_with_other_parameters_is_a_clear_error(built: Path) -> None:
    other = FingerprintParams(ref_peaks_per_s=20)
    with pytest.raises(IndexFormatError, match="Rebuild"):
        load_index(built, params=other)


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="citywok index build"):
        load_index(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "damage, error",
    [
        (lambda m: {**m, "format_version": 999}, IndexFormatError),
        (lambda m: {**m, "params_digest": "0" * 16}, IndexFormatError),
        (lambda m: {**m, "n_postings": m["n_postings"] + 1}, IndexLoadError),
        (lambda m: {**m, "generation": "gen-gone"}, IndexLoadError),
    ],
)
def test_damaged_manifest_is_a_clear_error(built: Path, damage, error) -> None:  # type: ignore[no-untyped-def]
    path = built / MANIFEST
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.raises(error):
        load_index(built)


def test_truncated_manifest_is_a_clear_error(built: Path) -> None:
    path = built / MANIFEST
    path.write_text(path.read_text()[:100])
    with pytest.raises(IndexLoadError, match="unreadable"):
        load_index(built)


def test_incremental_rebuild_adds_changes_and_drops(episode_files: Path, tmp_path: Path) -> None:
    media = _copy_episodes(episode_files, tmp_path / "media", ["S01E01", "S01E02", "S01E03"])
    index_dir = tmp_path / "index"
    first = build_index([media], index_dir=index_dir)
    assert len(first.fingerprinted) == 3 and first.episodes == 3

    season = media / "Season 01"
    shutil.copy2(next((episode_files / "Season 01").glob("*S01E04*")), season)
    (next(season.glob("*S01E01*"))).unlink()
    changed = next(season.glob("*S01E02*"))
    write_wav(changed, make_episode(sr=SR, duration_s=60.0, seed=99), sr=SR)
    second = build_index([media], index_dir=index_dir)

    assert sorted(Path(p).name[:22] for p in second.fingerprinted) == sorted(
        [changed.name[:22], next(season.glob("*S01E04*")).name[:22]]
    )
    assert [Path(p).name for p in second.reused] == [next(season.glob("*S01E03*")).name]
    assert second.dropped == ["S01E01"]
    manifest = read_manifest(index_dir)
    assert [e["id"] for e in manifest["episodes"]] == ["S01E02", "S01E03", "S01E04"]
    assert manifest["episodes"][0]["duration_s"] == pytest.approx(60.0, abs=0.1)
    # The cache keeps only what the index uses.
    assert len(list((index_dir / "cache").iterdir())) == 3


def test_rebuilt_index_finds_the_changed_episode(episode_files: Path, tmp_path: Path) -> None:
    media = _copy_episodes(episode_files, tmp_path / "media", ["S01E01", "S01E02"])
    index_dir = tmp_path / "index"
    build_index([media], index_dir=index_dir)
    new_audio = make_episode(sr=SR, duration_s=60.0, seed=4242)
    write_wav(next((media / "Season 01").glob("*S01E02*")), new_audio, sr=SR)
    build_index([media], index_dir=index_dir)
    result = Matcher(load_index(index_dir)).identify(new_audio[20 * SR : 28 * SR])
    assert result.status == "match" and result.best is not None
    assert result.best.episode == "S01E02"
    assert result.best.offset_s == pytest.approx(20.0, abs=1.0)


def test_unplaceable_and_duplicate_files_are_reported(episode_files: Path, tmp_path: Path) -> None:
    media = _copy_episodes(episode_files, tmp_path / "media", ["S01E01"])
    write_wav(media / "holiday video.wav", np.zeros(SR, np.float32), sr=SR)
    shutil.copy2(next((media / "Season 01").glob("*S01E01*")), media / "Demo.Show.s01e01.wav")
    report = build_index([media], index_dir=tmp_path / "index")
    assert [Path(p).name for p in report.unplaced] == ["holiday video.wav"]
    assert len(report.duplicates) == 1 and report.episodes == 1


def test_no_placeable_sources_leave_the_index_alone(built: Path, tmp_path: Path) -> None:
    before = (built / MANIFEST).read_bytes()
    (tmp_path / "junk").mkdir()
    write_wav(tmp_path / "junk" / "notes.wav", np.zeros(SR, np.float32), sr=SR)
    with pytest.raises(MatcherError):
        build_index([tmp_path / "junk"], index_dir=built)
    assert (built / MANIFEST).read_bytes() == before


# A build that dies anywhere must leave the previous index loadable and unchanged. The crash is
# injected in a child process at the two worst points: halfway through writing the arrays, and
# after the new generation is complete but before the manifest switches to it.
_CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import numpy as np
    import matcher.store as store

    where = sys.argv[3]
    if where == "arrays":
        def dying_save(path, array):
            with open(path, "wb") as f:
                np.save(f, array[: array.size // 2])
            if path.name == "positions.npy":
                os._exit(9)
        store._save_array = dying_save
    else:
        real_replace = os.replace
        def dying_replace(src, dst):
            if str(dst).endswith("manifest.json"):
                os._exit(9)
            real_replace(src, dst)
        store.os.replace = dying_replace

    from matcher.build import build_index
    build_index([Path(sys.argv[1])], index_dir=Path(sys.argv[2]))
    """
)


@pytest.mark.parametrize("where", ["arrays", "manifest"])
def test_build_killed_halfway_leaves_previous_index(
    built: Path, episode_files: Path, tmp_path: Path, where: str
) -> None:
    before = load_index(built)
    manifest_before = (built / MANIFEST).read_bytes()
    media = _copy_episodes(episode_files, tmp_path / "media", ["S01E01", "S01E05"])
    child = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(media), str(built), where],
        capture_output=True,
        cwd=Path(__file__).parents[2],
    )
    assert child.returncode == 9, child.stderr.decode()
    assert (built / MANIFEST).read_bytes() == manifest_before
    after = load_index(built)
    np.testing.assert_array_equal(np.asarray(after.positions), np.asarray(before.positions))
    # The next build succeeds and clears what the dead one left behind.
    report = build_index([media], index_dir=built)
    assert report.episodes == 2
    leftovers = [p.name for p in built.iterdir() if p.name.endswith(".partial")]
    assert leftovers == [] and len(list(built.glob("gen-*"))) == 1


def test_build_killed_by_signal_leaves_a_loadable_index(
    built: Path, episode_files: Path, tmp_path: Path
) -> None:
    """A real SIGKILL at an arbitrary moment of a CLI build: whatever it interrupts, the index
    that loads afterwards is a complete one (the old or the new), never a broken one."""
    media = _copy_episodes(episode_files, tmp_path / "media", ["S01E01", "S01E06"])
    child = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "index", "build", str(media), "--index", str(built)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parents[2],
    )
    time.sleep(1.0)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    index = load_index(built)
    assert [e.id for e in index.episodes] in (
        [f"S01E{i:02d}" for i in range(1, 7)],
        ["S01E01", "S01E06"],
    )


def test_write_index_replaces_generation(built: Path, memory_index: FingerprintIndex) -> None:
    old = read_manifest(built)["generation"]
    write_index(
        built,
        params=memory_index.params,
        episodes=memory_index.episodes,
        offsets=memory_index.offsets,
        positions=memory_index.positions,
    )
    new = read_manifest(built)["generation"]
    assert new != old and not (built / old).exists()


def test_relative_source_paths_build_and_rebuild(
    episode_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_episodes(episode_files, tmp_path / "media", ["S01E01", "S01E02"])
    monkeypatch.chdir(tmp_path)
    first = build_index([Path("media")], index_dir=Path("index"))
    second = build_index([Path("media")], index_dir=Path("index"))
    assert first.episodes == 2 and len(second.reused) == 2
    assert all(Path(e["source"]).is_absolute() for e in read_manifest(Path("index"))["episodes"])


def _save_like(path: Path, values: np.ndarray) -> None:
    np.save(path, values)


def _generation(index_dir: Path) -> Path:
    return index_dir / json.loads((index_dir / MANIFEST).read_text())["generation"]


def _edit_manifest(index_dir: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = index_dir / MANIFEST
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _random_bytes_keeping_size(path: Path) -> None:
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes())


def _random_values_keeping_header(path: Path) -> None:
    array = np.load(path)
    rng = np.random.default_rng(7)
    _save_like(path, rng.integers(0, np.iinfo(array.dtype).max, array.shape, dtype=array.dtype))


def _first_episode_with(extra: dict[str, object]):  # type: ignore[no-untyped-def]
    return lambda m: {**m, "episodes": [{**m["episodes"][0], **extra}, *m["episodes"][1:]]}


DAMAGES = {
    "no manifest": lambda d: (d / MANIFEST).unlink(),
    "manifest not JSON": lambda d: (d / MANIFEST).write_text("{not json"),
    "manifest a list": lambda d: (d / MANIFEST).write_text("[1, 2, 3]"),
    "no episode table": lambda d: _edit_manifest(
        d, lambda m: {k: v for k, v in m.items() if k != "episodes"}
    ),
    "episode with a stray key": lambda d: _edit_manifest(d, _first_episode_with({"x": 1})),
    "format from the future": lambda d: _edit_manifest(d, lambda m: {**m, "format_version": 99}),
    "generation outside the folder": lambda d: _edit_manifest(
        d, lambda m: {**m, "generation": "../../etc"}
    ),
    "offsets missing": lambda d: (_generation(d) / "offsets.npy").unlink(),
    "positions truncated": lambda d: (_generation(d) / "positions.npy").write_bytes(
        (_generation(d) / "positions.npy").read_bytes()[:1000]
    ),
    "positions random bytes": lambda d: _random_bytes_keeping_size(
        _generation(d) / "positions.npy"
    ),
    "offsets random values": lambda d: _random_values_keeping_header(
        _generation(d) / "offsets.npy"
    ),
    "positions random values": lambda d: _random_values_keeping_header(
        _generation(d) / "positions.npy"
    ),
    "positions of another type": lambda d: _save_like(
        _generation(d) / "positions.npy",
        np.load(_generation(d) / "positions.npy").astype(np.float32),
    ),
    "a file where the folder was": lambda d: (shutil.rmtree(d), d.write_text("oops")),
}


@pytest.fixture(scope="module")
def built_once(episode_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index_dir = tmp_path_factory.mktemp("damaged") / "index"
    build_index([episode_files], index_dir=index_dir)
    return index_dir


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_index_is_one_line_and_exit_1_never_a_traceback(
    built_once: Path, tmp_path: Path, damage: str
) -> None:
    index_dir = tmp_path / "index"
    shutil.copytree(built_once, index_dir)
    DAMAGES[damage](index_dir)

    for command in (["index", "info"], ["match"]):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bot.cli",
                *command,
                "--index",
                str(index_dir),
                *([str(index_dir)] if command == ["match"] else []),
            ],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
            timeout=120,
        )
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("citywok: "), done.stderr
        assert "Traceback" not in done.stderr
