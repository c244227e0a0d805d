"""The index on disk: `manifest.json` plus one generation folder of memory-mapped arrays.

    INDEX_DIR/
      manifest.json        format version, fingerprint parameters and digest, episode table,
                           repeated spans (`matcher.repeats`), and the name of the
                           generation folder in use
      gen-<id>/offsets.npy CSR offsets
      gen-<id>/positions.npy
      cache/               per-source fingerprints, reused by incremental rebuilds

A new index is written into a fresh generation folder; only then is `manifest.json` replaced
with `os.replace`, which is atomic. A build that dies at any point leaves the previous manifest
pointing at the previous, untouched generation. Old generations are removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from matcher.errors import IndexFormatError, IndexLoadError, IndexMissingError
from matcher.index import Episode, FingerprintIndex, RepeatedSpan
from matcher.params import INDEX_FORMAT_VERSION, READABLE_FORMAT_VERSIONS, FingerprintParams

# What write_index names a generation folder: never a path that leaves the index folder.
_GENERATION = re.compile(r"gen-[0-9a-f]{6,32}")

MANIFEST = "manifest.json"
CACHE_DIR = "cache"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def write_index(
    index_dir: Path,
    *,
    params: FingerprintParams,
    episodes: Sequence[Episode],
    offsets: np.ndarray,
    positions: np.ndarray,
    repeats: Sequence[RepeatedSpan] = (),
) -> Path:
    """Write a new generation and switch the manifest to it. Returns the generation folder.

    `repeats`: content several episodes share (`matcher.repeats.find_repeats`), kept in the
    manifest: it is small (a few spans per episode) and operators can read it.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    generation = f"gen-{uuid.uuid4().hex[:12]}"
    staging = index_dir / f".{generation}.partial"
    staging.mkdir()
    _save_array(staging / "offsets.npy", offsets)
    _save_array(staging / "positions.npy", positions)
    staging.rename(index_dir / generation)
    manifest = {
        "format_version": INDEX_FORMAT_VERSION,
        "params": params.to_dict(),
        "params_digest": params.digest(),
        "generation": generation,
        "n_postings": int(positions.size),
        "duration_s": sum(e.duration_s for e in episodes),
        "episodes": [e.to_dict() for e in episodes],
        "repeats": [r.to_dict() for r in repeats],
    }
    write_json_atomic(index_dir / MANIFEST, manifest)
    _remove_stale_generations(index_dir, keep=generation)
    return index_dir / generation


def _remove_stale_generations(index_dir: Path, *, keep: str) -> None:
    for path in index_dir.iterdir():
        if path.name != keep and (path.name.startswith("gen-") or path.name.endswith(".partial")):
            shutil.rmtree(path, ignore_errors=True)


def read_manifest(index_dir: Path) -> dict[str, Any]:
    """The manifest, checked for format version and parameter digest."""
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexMissingError(f"no index at {index_dir} (build one with `citywok index build`)")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexLoadError(f"the index manifest at {path} is unreadable: {e}") from e
    if not isinstance(manifest, dict):
        raise IndexLoadError(f"the index manifest at {path} is damaged (not a JSON object)")
    version = manifest.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        raise IndexFormatError(
            f"the index at {index_dir} has format version {version}; this CityWok reads "
            f"version {INDEX_FORMAT_VERSION}. Rebuild it with `citywok index build`."
        )
    try:
        saved = FingerprintParams.from_dict(manifest["params"])
    except (KeyError, TypeError) as e:
        raise IndexFormatError(f"the index at {index_dir} has unknown parameters: {e}") from e
    if saved.digest() != manifest.get("params_digest"):
        raise IndexFormatError(f"the index manifest at {path} is damaged (parameter digest)")
    return manifest


def load_index(
    index_dir: Path, *, params: FingerprintParams | None = None, mmap: bool = True
) -> FingerprintIndex:
    """Open an index. With `params`, refuse an index built with other parameters.

    A damaged index (a manifest of the wrong shape, arrays that are not what the manifest
    says, random bytes under a valid header) is refused here with one `IndexLoadError`
    sentence, never served: answering every request "something went wrong" is worse than not
    starting."""
    index_dir = Path(index_dir)
    try:
        index = _open_index(index_dir, params=params, mmap=mmap)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise IndexLoadError(
            f"the index at {index_dir} is damaged ({type(e).__name__}: {e}); rebuild it or "
            "pull it again"
        ) from e
    if problem := structure_problem(index):
        raise IndexLoadError(
            f"the index at {index_dir} is damaged ({problem}); rebuild it or pull it again"
        )
    return index


def structure_problem(index: FingerprintIndex) -> str | None:
    """What is wrong with an index's arrays, or None. Cheap (vectorised, tens of ms at 100 h):
    catches arrays that do not belong to the manifest or were overwritten."""
    offsets, positions = index.offsets, index.positions
    if offsets.dtype.kind not in "iu" or positions.dtype != np.uint32:
        return f"array types {offsets.dtype}/{positions.dtype}"
    if offsets[0] != 0 or offsets[-1] != positions.size:
        return "offsets do not span the postings"
    if np.any(np.diff(offsets) < 0):
        return "offsets go backwards"
    starts = [e.start_frame for e in index.episodes]
    ends = [e.start_frame + e.n_frames for e in index.episodes]
    if any(end <= start for start, end in zip(starts, ends, strict=True)) or any(
        later < end for later, end in zip(starts[1:], ends, strict=False)
    ):
        return "episodes overlap on the timeline"
    if positions.size and int(positions.max()) >= (ends[-1] if ends else 0):
        return "postings point past the last episode"
    return None


def _open_index(
    index_dir: Path, *, params: FingerprintParams | None, mmap: bool
) -> FingerprintIndex:
    manifest = read_manifest(index_dir)
    saved = FingerprintParams.from_dict(manifest["params"])
    if params is not None and params.digest() != saved.digest():
        raise IndexFormatError(
            f"the index at {index_dir} was built with fingerprint parameters "
            f"{saved.digest()}, but this matcher uses {params.digest()}. "
            "Rebuild it with `citywok index build`."
        )
    generation = manifest["generation"]
    if not isinstance(generation, str) or not _GENERATION.fullmatch(generation):
        raise IndexLoadError(f"the index manifest at {index_dir} names no generation of ours")
    data_dir = index_dir / generation
    mode: Literal["r"] | None = "r" if mmap else None
    try:
        offsets = np.load(data_dir / "offsets.npy", mmap_mode=mode)
        positions = np.load(data_dir / "positions.npy", mmap_mode=mode)
    except (OSError, ValueError) as e:
        raise IndexLoadError(f"the index data at {data_dir} is unreadable: {e}") from e
    if positions.size != manifest["n_postings"]:
        raise IndexLoadError(f"the index data at {data_dir} is incomplete")
    episodes = [Episode.from_dict(e) for e in manifest["episodes"]]
    try:
        repeats = [RepeatedSpan.from_dict(r) for r in manifest.get("repeats", [])]
    except TypeError as e:
        raise IndexFormatError(f"the index manifest at {index_dir} has bad repeats: {e}") from e
    try:
        return FingerprintIndex(
            params=saved, episodes=episodes, offsets=offsets, positions=positions, repeats=repeats
        )
    except ValueError as e:
        raise IndexLoadError(f"the index data at {data_dir} is inconsistent: {e}") from e


def index_size_bytes(index_dir: Path) -> int:
    """Bytes of the serving data (manifest and arrays in use, not the build cache)."""
    manifest = read_manifest(index_dir)
    data_dir = index_dir / manifest["generation"]
    files = [index_dir / MANIFEST, *data_dir.iterdir()]
    return sum(f.stat().st_size for f in files)
