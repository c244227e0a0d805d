"""The `citywok` command line, run as operators run it: in a child process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.synth.episodes import make_episode
from tests.fakes.media_server import serve_media
from tests.media import make_media

SR = 8000
REPO = Path(__file__).parents[2]
JSON_KEYS = {
    "input",
    "status",
    "episode",
    "title",
    "offset_s",
    "confidence",
    "speed",
    "candidates",
    "segments",
    "elapsed_ms",
    "error",
}


def citywok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


@pytest.fixture(scope="module")
def index_dir(episode_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    titles = tmp_path_factory.mktemp("titles") / "titles.csv"
    titles.write_text("episode,title\nS01E03,The Third One\n")
    index = tmp_path_factory.mktemp("cli") / "index"
    done = citywok("index", "build", episode_files, "--index", index, "--titles", titles)
    assert done.returncode == 0, done.stderr
    assert "6 episodes" in done.stdout
    return index


@pytest.fixture(scope="module")
def clips(catalogue: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    known = make_media(folder, catalogue[2][61 * SR : 69 * SR], SR, "mp4")
    stranger = make_media(folder, make_episode(sr=SR, duration_s=8.0, seed=31337), SR, "ogg")
    junk = folder / "notes.mp4"
    junk.write_text("this is not a video\n")
    return {"known": known, "stranger": stranger, "junk": junk}


def test_match_json_has_exactly_the_documented_keys(
    index_dir: Path, clips: dict[str, Path]
) -> None:
    done = citywok("match", "--index", index_dir, "--json", *clips.values())
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["input"] for r in rows] == [str(p) for p in clips.values()]
    assert all(set(r) == JSON_KEYS for r in rows)
    known, stranger, junk = rows
    assert known["status"] == "match" and known["episode"] == "S01E03"
    assert known["title"] == "The Third One"
    assert known["offset_s"] == pytest.approx(61.0, abs=1.0)
    assert 0.5 < known["confidence"] <= 1.0 and known["error"] is None
    assert known["speed"] == pytest.approx(1.0, abs=0.02)
    assert known["segments"][0]["episode"] == "S01E03"
    assert set(known["candidates"][0]) == {"episode", "offset_s", "confidence"}
    assert stranger["status"] == "no_match" and stranger["episode"] is None
    assert junk["status"] == "error" and junk["error"] and "Traceback" not in junk["error"]
    assert all(r["elapsed_ms"] > 0 for r in rows)


def test_match_human_output(index_dir: Path, clips: dict[str, Path]) -> None:
    done = citywok("match", "--index", index_dir, clips["known"], clips["junk"])
    assert done.returncode == 0
    assert 'S01E03 "The Third One" at 1:01' in done.stdout
    assert "error" in done.stdout.splitlines()[1]


def test_index_info(index_dir: Path) -> None:
    done = citywok("index", "info", "--index", index_dir)
    assert done.returncode == 0
    assert "episodes: 6 in 1 season(s)" in done.stdout
    assert "MB per hour" in done.stdout and "parameters" in done.stdout


def test_missing_index_is_a_clear_error(tmp_path: Path, clips: dict[str, Path]) -> None:
    done = citywok("match", "--index", tmp_path / "none", clips["known"])
    assert done.returncode == 1
    assert "citywok index build" in done.stderr and "Traceback" not in done.stderr


def test_usage_errors_exit_2() -> None:
    assert citywok("match", "clip.mp4").returncode == 2
    assert citywok("frobnicate").returncode == 2


def test_build_lists_files_it_cannot_place(tmp_path: Path, catalogue: list[np.ndarray]) -> None:
    media = tmp_path / "media"
    media.mkdir()
    make_media(media, catalogue[0][: 20 * SR], SR, "wav").rename(media / "Show 1x04.wav")
    make_media(media, catalogue[1][: 20 * SR], SR, "wav").rename(media / "holiday.wav")
    done = citywok("index", "build", media, "--index", tmp_path / "index")
    assert done.returncode == 0, done.stderr
    assert "1 episodes" in done.stdout
    assert "not placed" in done.stdout and "holiday.wav" in done.stdout


@pytest.mark.slow
def test_demo_identifies_its_clip(tmp_path: Path) -> None:
    done = citywok("demo", "--out", tmp_path / "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Correct: the clip was cut from S01E04 at 1:23." in done.stdout
    assert "Getting the clip" in done.stdout and 'S01E04 "Night Market"' in done.stdout


async def _citywok_async(*args: str | Path) -> tuple[int, str]:
    """The CLI in a child process, while this test's loop keeps serving the media server."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), timeout=120)
    assert child.returncode is not None
    return child.returncode, stdout.decode() + stderr.decode()


async def test_match_takes_links_through_the_bot_fetcher(
    index_dir: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "citywok.toml"
    config.write_text('[fetch]\nallow_networks = ["127.0.0.0/8"]\n')
    async with serve_media(clips["known"].read_bytes()) as server:
        link = server.url("/video.mp4")
        code, out = await _citywok_async(
            "match",
            "--index",
            index_dir,
            "--json",
            "--config",
            config,
            link,
            "https://example.com/some/page",
        )
        assert code == 0, out
        known, unsupported = (json.loads(line) for line in out.splitlines()[:2])
        assert known["input"] == link and known["episode"] == "S01E03"
        assert known["offset_s"] == pytest.approx(61.0, abs=1.0)
        assert unsupported["status"] == "error" and "site" in unsupported["error"]
        # Without the test configuration, loopback is a private address and is refused.
        code, out = await _citywok_async("match", "--index", index_dir, "--json", link)
        row = json.loads(out.splitlines()[0])
        assert code == 0 and row["status"] == "error" and "private" in row["error"]
        assert server.hits["/video.mp4"] == 1


async def test_match_takes_a_link_whose_scheme_is_in_capitals(
    index_dir: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    """`HTTP://…` is a link like any other (schemes are case-insensitive), not a file path."""
    config = tmp_path / "citywok.toml"
    config.write_text('[fetch]\nallow_networks = ["127.0.0.0/8"]\n')
    async with serve_media(clips["known"].read_bytes()) as server:
        link = server.url("/video.mp4").replace("http://", "HTTP://")
        code, out = await _citywok_async(
            "match", "--index", index_dir, "--json", "--config", config, link
        )
        assert code == 0, out
        row = json.loads(out.splitlines()[0])
        assert row["status"] == "match" and row["episode"] == "S01E03", row
        assert server.hits["/video.mp4"] == 1
