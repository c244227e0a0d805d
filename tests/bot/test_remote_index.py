"""Publishing and pulling an index through a real S3 API: moto's server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from bot.ops.remote_index import (
    KEEP_OLD_GENERATIONS,
    RemoteIndexError,
    RemoteLocation,
    publish_index,
    pull_index,
)
from matcher.index import FingerprintIndex
from matcher.store import load_index, read_manifest, write_index

BUCKET = "citywok-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 endpoint with one empty bucket; the server stops with the test."""
    # Credentials as operators provide them: in the environment, never in the config file.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def _write(index: FingerprintIndex, index_dir: Path, positions: np.ndarray | None = None) -> None:
    write_index(
        index_dir,
        params=index.params,
        episodes=index.episodes,
        offsets=index.offsets,
        positions=index.positions if positions is None else positions,
    )


def _objects(endpoint: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_publish_then_pull_round_trip(
    s3: str, memory_index: FingerprintIndex, tmp_path: Path
) -> None:
    _write(memory_index, tmp_path / "built")
    location = RemoteLocation.parse(f"s3://{BUCKET}/show/v1", endpoint_url=s3)
    published = publish_index(tmp_path / "built", location)
    assert set(published["files"]) == {"offsets.npy", "positions.npy"}

    assert pull_index(location, tmp_path / "served") is True
    served = load_index(tmp_path / "served")
    assert served.episodes == memory_index.episodes
    np.testing.assert_array_equal(np.asarray(served.positions), memory_index.positions)
    assert "files" not in read_manifest(tmp_path / "served")
    # Already current: nothing is downloaded again.
    assert pull_index(location, tmp_path / "served") is False


def test_pull_follows_a_new_publication(
    s3: str, memory_index: FingerprintIndex, tmp_path: Path
) -> None:
    location = RemoteLocation.parse(f"s3://{BUCKET}/idx", endpoint_url=s3)
    _write(memory_index, tmp_path / "built")
    publish_index(tmp_path / "built", location)
    pull_index(location, tmp_path / "served")
    first = read_manifest(tmp_path / "served")["generation"]

    _write(memory_index, tmp_path / "built", positions=memory_index.positions[::-1].copy())
    publish_index(tmp_path / "built", location)
    assert pull_index(location, tmp_path / "served") is True
    second = read_manifest(tmp_path / "served")["generation"]
    assert second != first and not (tmp_path / "served" / first).exists()
    served = load_index(tmp_path / "served")
    np.testing.assert_array_equal(np.asarray(served.positions), memory_index.positions[::-1])


def test_old_generations_are_trimmed(
    s3: str, memory_index: FingerprintIndex, tmp_path: Path
) -> None:
    location = RemoteLocation.parse(f"s3://{BUCKET}/trim", endpoint_url=s3)
    for _ in range(KEEP_OLD_GENERATIONS + 3):
        _write(memory_index, tmp_path / "built")
        publish_index(tmp_path / "built", location)
    generations = {k.split("/")[1] for k in _objects(s3) if k.startswith("trim/gen-")}
    assert len(generations) == KEEP_OLD_GENERATIONS + 1
    assert read_manifest(tmp_path / "built")["generation"] in generations


def test_damaged_download_leaves_the_local_index_alone(
    s3: str, memory_index: FingerprintIndex, tmp_path: Path
) -> None:
    location = RemoteLocation.parse(f"s3://{BUCKET}/dmg", endpoint_url=s3)
    _write(memory_index, tmp_path / "built")
    publish_index(tmp_path / "built", location)
    pull_index(location, tmp_path / "served")
    before = (tmp_path / "served" / "manifest.json").read_bytes()

    _write(memory_index, tmp_path / "built", positions=memory_index.positions[:-5].copy())
    published = publish_index(tmp_path / "built", location)
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    client.put_object(
        Bucket=BUCKET, Key=f"dmg/{published['generation']}/positions.npy", Body=b"truncated"
    )
    with pytest.raises(RemoteIndexError, match="checksum"):
        pull_index(location, tmp_path / "served")
    assert (tmp_path / "served" / "manifest.json").read_bytes() == before
    assert load_index(tmp_path / "served").episodes == memory_index.episodes
    assert not list((tmp_path / "served").glob("*.partial"))


def test_nothing_published_is_a_clear_error(s3: str, tmp_path: Path) -> None:
    location = RemoteLocation.parse(f"s3://{BUCKET}/empty", endpoint_url=s3)
    with pytest.raises(RemoteIndexError, match="citywok index publish"):
        pull_index(location, tmp_path / "served")


def test_foreign_format_is_refused_before_download(
    s3: str, memory_index: FingerprintIndex, tmp_path: Path
) -> None:
    location = RemoteLocation.parse(f"s3://{BUCKET}/old", endpoint_url=s3)
    _write(memory_index, tmp_path / "built")
    published = publish_index(tmp_path / "built", location)
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    client.put_object(
        Bucket=BUCKET, Key="old/manifest.json", Body=json.dumps({**published, "format_version": 0})
    )
    with pytest.raises(RemoteIndexError, match="format version"):
        pull_index(location, tmp_path / "served")
    assert not (tmp_path / "served").exists()


@pytest.mark.parametrize("url", ["https://example.com/x", "s3://", "bucket/prefix"])
def test_bad_locations_are_refused(url: str) -> None:
    with pytest.raises(RemoteIndexError, match="s3://bucket/prefix"):
        RemoteLocation.parse(url)


def test_cli_publish_and_pull(s3: str, memory_index: FingerprintIndex, tmp_path: Path) -> None:
    _write(memory_index, tmp_path / "built")
    remote = f"s3://{BUCKET}/cli"

    def citywok(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", "index", *args, "--endpoint-url", s3],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
            timeout=120,
        )

    done = citywok("publish", "--index", str(tmp_path / "built"), "--to", remote)
    assert done.returncode == 0, done.stderr
    assert "6 episodes" in done.stdout
    done = citywok("pull", "--from", remote, "--index", str(tmp_path / "served"))
    assert done.returncode == 0 and "updated" in done.stdout
    assert load_index(tmp_path / "served").episodes == memory_index.episodes
    done = citywok("pull", "--from", f"s3://{BUCKET}/nothing", "--index", str(tmp_path / "x"))
    assert done.returncode == 1 and "citywok index publish" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "field, value",
    [("files", {"../../escaped.npy": {"size": 1, "sha256": "x"}}), ("generation", "../gen-x")],
)
def test_hostile_manifest_names_are_refused(
    s3: str, memory_index: FingerprintIndex, tmp_path: Path, field: str, value: object
) -> None:
    location = RemoteLocation.parse(f"s3://{BUCKET}/evil", endpoint_url=s3)
    _write(memory_index, tmp_path / "built")
    published = publish_index(tmp_path / "built", location)
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    client.put_object(
        Bucket=BUCKET, Key="evil/manifest.json", Body=json.dumps({**published, field: value})
    )
    with pytest.raises(RemoteIndexError, match="won't write"):
        pull_index(location, tmp_path / "deep" / "served")
    assert not (tmp_path / "escaped.npy").exists() and not (tmp_path / "deep").exists()


def test_pull_recovers_from_a_pull_killed_before_its_switch(
    s3: str, memory_index: FingerprintIndex, tmp_path: Path
) -> None:
    location = RemoteLocation.parse(f"s3://{BUCKET}/killed", endpoint_url=s3)
    _write(memory_index, tmp_path / "built")
    published = publish_index(tmp_path / "built", location)
    # What a pull killed after renaming its download, before writing the manifest, leaves.
    leftover = tmp_path / "served" / published["generation"]
    leftover.mkdir(parents=True)
    (leftover / "positions.npy").write_bytes(b"half")
    assert pull_index(location, tmp_path / "served") is True
    assert load_index(tmp_path / "served").episodes == memory_index.episodes
