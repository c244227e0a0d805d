"""Episode files → an index on disk, incrementally and in parallel.

The sources given to a build are the whole catalogue: files that are new or changed are
fingerprinted, unchanged ones are reused from the build cache, and episodes whose files are no
longer among the sources are dropped. Fingerprints are cached per file content as soon as each
file is done, so a build that is interrupted resumes where it stopped; the index itself is only
switched when everything is written (see `matcher.store`).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matcher.decode import decode_file
from matcher.errors import MatcherError
from matcher.hashes import Hashes, peaks2hashes
from matcher.index import Episode, FingerprintIndex, build_csr
from matcher.names import EpisodeId, parse_episode_id
from matcher.params import FingerprintParams
from matcher.peaks import audio2peaks
from matcher.repeats import find_repeats
from matcher.store import CACHE_DIR, MANIFEST, read_manifest, write_index

MEDIA_EXTENSIONS = frozenset(
    ".mkv .mp4 .m4v .avi .mov .wmv .webm .mpg .mpeg .ts .m2ts .flv .ogv "
    ".mp3 .m4a .aac .ogg .opus .oga .flac .wav .wma".split()
)
# Episodes are long; these only stop a runaway decode of a broken or endless file.
_MAX_EPISODE_S = 6 * 3600.0
_DECODE_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Source:
    """A media file placed at an episode."""

    episode: EpisodeId
    path: Path


@dataclass
class BuildReport:
    """What a build did, for the CLI to print."""

    episodes: int = 0
    duration_s: float = 0.0
    fingerprinted: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    n_postings: int = 0


def find_media(paths: Iterable[Path]) -> list[Path]:
    """Media files among `paths`, folders searched recursively, in a stable order.

    Paths come back absolute: the manifest records them, and incremental rebuilds recognise a
    file whether it was named relative to one working folder or another.
    """
    found: list[Path] = []
    for path in (Path(p).resolve() for p in paths):
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in MEDIA_EXTENSIONS
                and not p.name.startswith(".")
            )
        elif path.is_file():
            found.append(path)
        else:
            raise MatcherError(f"no such file or folder: {path}")
    return found


def place_sources(files: Sequence[Path], report: BuildReport) -> list[Source]:
    """Episode ids from file names. Unplaceable files and second copies go into the report."""
    placed: dict[EpisodeId, Source] = {}
    for path in files:
        episode = parse_episode_id(path)
        if episode is None:
            report.unplaced.append(str(path))
        elif episode in placed:
            report.duplicates.append((str(path), str(placed[episode].path)))
        else:
            placed[episode] = Source(episode, path)
    return sorted(placed.values(), key=lambda s: s.episode)


def file_checksum(path: Path) -> str:
    """Content digest of a source file (BLAKE2b: fast, and collisions are not a concern)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()[:32]


@dataclass(frozen=True)
class Fingerprint:
    """One source's reference hashes and length."""

    hashes: Hashes
    n_frames: int
    duration_s: float


def fingerprint_file(path: Path, *, params: FingerprintParams, ffmpeg: str | None) -> Fingerprint:
    """Decode a source file and compute its reference hashes."""
    audio = decode_file(
        path,
        sr=params.sr,
        max_duration_s=_MAX_EPISODE_S,
        timeout_s=_DECODE_TIMEOUT_S,
        ffmpeg=ffmpeg,
    )
    peaks = audio2peaks(audio.samples, params=params, peaks_per_s=params.ref_peaks_per_s)
    return Fingerprint(peaks2hashes(peaks, params=params), peaks.n_frames, audio.duration_s)


def _cache_path(index_dir: Path, checksum: str, params: FingerprintParams) -> Path:
    return index_dir / CACHE_DIR / f"{checksum}-{params.digest()}.npz"


def _save_fingerprint(path: Path, fp: Fingerprint) -> None:
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp.npz")
    np.savez(
        tmp,
        key=fp.hashes.key,
        anchor_frame=fp.hashes.anchor_frame,
        n_frames=fp.n_frames,
        duration_s=fp.duration_s,
    )
    os.replace(tmp, path)


def _load_fingerprint(path: Path) -> Fingerprint | None:
    try:
        with np.load(path) as data:
            hashes = Hashes(key=data["key"], anchor_frame=data["anchor_frame"])
            return Fingerprint(hashes, int(data["n_frames"]), float(data["duration_s"]))
    except (OSError, ValueError, KeyError):
        return None


def _fingerprint_to_cache(
    path: Path, cache_path: Path, params: FingerprintParams, ffmpeg: str | None
) -> str | None:
    """Worker: fingerprint one file into the cache. Returns an error message or None."""
    try:
        _save_fingerprint(cache_path, fingerprint_file(path, params=params, ffmpeg=ffmpeg))
    except MatcherError as e:
        return str(e)
    return None


def _previous_episodes(index_dir: Path) -> list[Episode]:
    """Episodes of the index being replaced, if there is a readable one."""
    if not (index_dir / MANIFEST).is_file():
        return []
    try:
        return [Episode.from_dict(e) for e in read_manifest(index_dir)["episodes"]]
    except (MatcherError, TypeError):
        return []


def _checksum(path: Path, previous: dict[tuple[str, int, int], str]) -> str:
    """Checksum, reused from the previous build when path, size and mtime are unchanged."""
    stat = path.stat()
    known = previous.get((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return known or file_checksum(path)


ProgressFn = Callable[[int, int], None]


def _run_fingerprints(
    jobs: list[tuple[Source, Path]],
    *,
    params: FingerprintParams,
    ffmpeg: str | None,
    workers: int,
    progress: ProgressFn | None,
) -> dict[Path, str]:
    """Fingerprint sources into their cache files; returns error messages by source path."""
    errors: dict[Path, str] = {}
    done = 0

    def finished(source: Source, error: str | None) -> None:
        nonlocal done
        done += 1
        if error is not None:
            errors[source.path] = error
        if progress is not None:
            progress(done, len(jobs))

    if workers <= 1 or len(jobs) <= 1:
        for source, cache in jobs:
            finished(source, _fingerprint_to_cache(source.path, cache, params, ffmpeg))
        return errors
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(_fingerprint_to_cache, source.path, cache, params, ffmpeg): source
            for source, cache in jobs
        }
        for future in as_completed(futures):
            finished(futures[future], future.result())
    return errors


def build_index(
    sources: Sequence[Path],
    *,
    index_dir: Path,
    params: FingerprintParams | None = None,
    titles: dict[EpisodeId, str] | None = None,
    workers: int = 1,
    ffmpeg: str | None = None,
    progress: ProgressFn | None = None,
) -> BuildReport:
    """Build or update the index at `index_dir` so that it holds exactly `sources`."""
    params = params or FingerprintParams()
    report = BuildReport()
    placed = place_sources(find_media(sources), report)
    if not placed:
        raise MatcherError("none of the source files could be placed at an episode")
    (index_dir / CACHE_DIR).mkdir(parents=True, exist_ok=True)
    previous = _previous_episodes(index_dir)
    known = {(e.source, e.source_size, e.source_mtime_ns): e.checksum for e in previous}
    checksums = {s.path: _checksum(s.path, known) for s in placed}
    caches = {s.path: _cache_path(index_dir, checksums[s.path], params) for s in placed}
    jobs = [(s, caches[s.path]) for s in placed if not caches[s.path].is_file()]
    errors = _run_fingerprints(
        jobs, params=params, ffmpeg=ffmpeg, workers=workers, progress=progress
    )
    fresh = {s.path for s, _ in jobs}
    episodes: list[Episode] = []
    hashes: list[Hashes] = []
    start_frame = 0
    for source in placed:
        fp = None if source.path in errors else _load_fingerprint(caches[source.path])
        if fp is None:
            report.failed.append((str(source.path), errors.get(source.path, "cache unreadable")))
            continue
        (report.fingerprinted if source.path in fresh else report.reused).append(str(source.path))
        stat = source.path.stat()
        episodes.append(
            Episode(
                id=source.episode.code,
                season=source.episode.season,
                number=source.episode.number,
                title=(titles or {}).get(source.episode),
                duration_s=fp.duration_s,
                checksum=checksums[source.path],
                start_frame=start_frame,
                n_frames=fp.n_frames,
                source=str(source.path.resolve()),
                source_size=stat.st_size,
                source_mtime_ns=stat.st_mtime_ns,
            )
        )
        hashes.append(fp.hashes)
        start_frame += fp.n_frames
    if not episodes:
        raise MatcherError("no source file could be fingerprinted; the index was not changed")
    offsets, positions = build_csr(params=params, episodes=episodes, hashes=hashes)
    # Shared content (intro, cues) is found on the whole catalogue: a changed episode can
    # change every span, so this runs on each build (a few seconds for 100 hours).
    repeats = find_repeats(
        FingerprintIndex(params=params, episodes=episodes, offsets=offsets, positions=positions)
    )
    write_index(
        index_dir,
        params=params,
        episodes=episodes,
        offsets=offsets,
        positions=positions,
        repeats=repeats,
    )
    _prune_cache(index_dir, keep={caches[Path(e.source)] for e in episodes})
    report.dropped = sorted({e.id for e in previous} - {e.id for e in episodes})
    report.episodes = len(episodes)
    report.duration_s = sum(e.duration_s for e in episodes)
    report.n_postings = int(positions.size)
    return report


def _prune_cache(index_dir: Path, *, keep: set[Path]) -> None:
    """Remove cached fingerprints no episode of the new index uses."""
    for path in (index_dir / CACHE_DIR).iterdir():
        if path not in keep:
            path.unlink(missing_ok=True)
