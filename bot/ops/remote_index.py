"""Publishing an index to S3-compatible storage (Cloudflare R2, MinIO, AWS) and pulling it back.

Operators build once and serve from anywhere: `citywok index publish` uploads a built index,
`citywok index pull` (and `citywok run` at start-up) brings a serving host up to date.

Remote layout, under `s3://BUCKET/PREFIX/`:

    manifest.json             the local manifest plus a `files` table (size, sha256 per array)
    gen-<id>/offsets.npy      generations are immutable: a new build is a new folder
    gen-<id>/positions.npy

The manifest is uploaded last and replaces the old one in a single PUT, so a reader sees either
the old index or the new one, never a mix; older generations are deleted only after the switch
and a few are kept for readers that are mid-download. A pull verifies every file's size and
checksum before it switches the local manifest, with the same atomicity as a local build.

Synchronous (boto3); the bot calls it from a worker thread. Credentials come from the standard
AWS environment variables or files, never from the config file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from matcher.errors import IndexLoadError
from matcher.params import INDEX_FORMAT_VERSION, READABLE_FORMAT_VERSIONS
from matcher.store import MANIFEST, read_manifest, write_json_atomic

log = logging.getLogger(__name__)

# Generations kept remotely besides the current one, for hosts still downloading them.
KEEP_OLD_GENERATIONS = 2
_CHUNK_BYTES = 1 << 20
# Names a published manifest may use. Anything else is refused: a manifest comes from a bucket,
# and a name like "../../x" must never become a path on the serving host.
_GENERATION = re.compile(r"gen-[0-9a-f]{6,32}")
_ARRAY_FILE = re.compile(r"[a-z_]{1,32}\.npy")


class RemoteIndexError(IndexLoadError):
    """The remote index is missing, unreachable or damaged (message fit for an operator)."""


@dataclass(frozen=True)
class RemoteLocation:
    """`s3://bucket/prefix` plus the endpoint of an S3-compatible service (None: AWS)."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None

    @classmethod
    def parse(cls, url: str, *, endpoint_url: str | None = None) -> RemoteLocation:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise RemoteIndexError(f"expected a location like s3://bucket/prefix, got {url!r}")
        return cls(parsed.netloc, parsed.path.strip("/"), endpoint_url)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def _client(location: RemoteLocation) -> Any:
    import boto3
    from botocore.config import Config

    # R2 wants region "auto"; retries with backoff ride out brief outages of any provider.
    return boto3.client(
        "s3",
        endpoint_url=location.endpoint_url,
        region_name="auto" if location.endpoint_url else None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def publish_index(index_dir: Path, location: RemoteLocation) -> dict[str, Any]:
    """Upload the index at `index_dir`; returns the manifest now in force remotely."""
    from botocore.exceptions import BotoCoreError, ClientError

    manifest = read_manifest(index_dir)
    generation = manifest["generation"]
    arrays = sorted((index_dir / generation).glob("*.npy"))
    files = {a.name: {"size": a.stat().st_size, "sha256": _sha256(a)} for a in arrays}
    client = _client(location)
    try:
        for array in arrays:
            key = location.key(f"{generation}/{array.name}")
            client.upload_file(str(array), location.bucket, key)
        body = json.dumps({**manifest, "files": files}, indent=1).encode()
        client.put_object(
            Bucket=location.bucket,
            Key=location.key(MANIFEST),
            Body=body,
            ContentType="application/json",
        )
        _delete_old_generations(client, location, current=generation)
    except (BotoCoreError, ClientError) as e:
        raise RemoteIndexError(f"publishing to {location} failed: {e}") from e
    log.info("published %s (%s) to %s", index_dir, generation, location)
    return {**manifest, "files": files}


def _delete_old_generations(client: Any, location: RemoteLocation, *, current: str) -> None:
    """Remove all but the newest KEEP_OLD_GENERATIONS older generations."""
    prefix = location.key("gen-")
    objects: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=prefix
    ):
        objects += page.get("Contents", [])
    newest: dict[str, Any] = {}
    for obj in objects:
        generation = obj["Key"][len(location.key("")) :].split("/", 1)[0]
        newest[generation] = max(newest.get(generation, obj["LastModified"]), obj["LastModified"])
    old = sorted((g for g in newest if g != current), key=newest.__getitem__, reverse=True)
    doomed = set(old[KEEP_OLD_GENERATIONS:])
    keys = [o["Key"] for o in objects if o["Key"][len(location.key("")) :].split("/")[0] in doomed]
    for start in range(0, len(keys), 1000):
        client.delete_objects(
            Bucket=location.bucket,
            Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]},
        )


def fetch_remote_manifest(location: RemoteLocation, client: Any | None = None) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or _client(location)
    try:
        response = client.get_object(Bucket=location.bucket, Key=location.key(MANIFEST))
        manifest: dict[str, Any] = json.loads(response["Body"].read())
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket", "404"):
            raise RemoteIndexError(
                f"no index published at {location} (publish one with `citywok index publish`)"
            ) from e
        raise RemoteIndexError(f"reading {location} failed: {e}") from e
    except (BotoCoreError, ValueError) as e:
        raise RemoteIndexError(f"reading {location} failed: {e}") from e
    if not isinstance(manifest.get("files"), dict) or "generation" not in manifest:
        raise RemoteIndexError(f"the manifest at {location} is not a published CityWok index")
    files = manifest["files"]
    if not _GENERATION.fullmatch(str(manifest["generation"])) or not all(
        _ARRAY_FILE.fullmatch(str(name)) for name in files
    ):
        raise RemoteIndexError(f"the manifest at {location} names files this CityWok won't write")
    if manifest.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise RemoteIndexError(
            f"the index at {location} has format version {manifest.get('format_version')}; "
            f"this CityWok reads version {INDEX_FORMAT_VERSION}. Rebuild and publish it again."
        )
    return manifest


def pull_index(location: RemoteLocation, index_dir: Path) -> bool:
    """Bring `index_dir` up to the published index. Returns False when it already was."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(location)
    remote = fetch_remote_manifest(location, client)
    generation = remote["generation"]
    if _local_generation(index_dir) == generation:
        return False
    index_dir.mkdir(parents=True, exist_ok=True)
    staging = index_dir / f".{generation}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for name, expected in remote["files"].items():
            target = staging / name
            key = location.key(f"{generation}/{name}")
            client.download_file(location.bucket, key, str(target))
            _verify(target, expected, location)
    except (BotoCoreError, ClientError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise RemoteIndexError(f"downloading {generation} from {location} failed: {e}") from e
    except RemoteIndexError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # A pull killed between this rename and the manifest switch leaves the folder behind.
    shutil.rmtree(index_dir / generation, ignore_errors=True)
    staging.rename(index_dir / generation)
    local = {k: v for k, v in remote.items() if k != "files"}
    write_json_atomic(index_dir / MANIFEST, local)
    _remove_other_generations(index_dir, keep=generation)
    log.info("pulled %s from %s into %s", generation, location, index_dir)
    return True


def _local_generation(index_dir: Path) -> str | None:
    try:
        return str(json.loads((index_dir / MANIFEST).read_text())["generation"])
    except (OSError, ValueError, KeyError):
        return None


def _verify(path: Path, expected: dict[str, Any], location: RemoteLocation) -> None:
    size = path.stat().st_size
    if size != expected["size"] or _sha256(path) != expected["sha256"]:
        raise RemoteIndexError(
            f"{path.name} from {location} does not match its published checksum; "
            "the upload may be incomplete or damaged. Publish the index again."
        )


def _remove_other_generations(index_dir: Path, *, keep: str) -> None:
    for path in index_dir.iterdir():
        if path.name != keep and (path.name.startswith("gen-") or path.name.endswith(".partial")):
            shutil.rmtree(path, ignore_errors=True)
