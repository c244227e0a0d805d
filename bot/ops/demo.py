"""`citywok demo`: the whole product offline, on a generated show, in under a minute.

Generates a small catalogue (never real episodes), writes it as media files named the way
people's folders name them, builds an index with the same code operators use, cuts a clip,
degrades it the way a re-upload does, and identifies it while printing the live stage lines the
bot edits into its reply. Needs no network, no tokens and no system packages.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.core.render import Rendered, format_timestamp, render_state
from bot.core.states import Fetching, Finished, Listening
from bot.synth.degrade import add_noise, change_speed
from bot.synth.encode import encode
from bot.synth.episodes import make_catalogue
from matcher.build import build_index
from matcher.decode import decode_file
from matcher.identify import Matcher
from matcher.names import EpisodeId
from matcher.params import FingerprintParams
from matcher.store import index_size_bytes, load_index

SHOW = "Wok Street"
SEED = 2026
N_EPISODES = 6
EPISODE_DURATION_S = 180.0
# Generated at a TV-like rate so the media files sound like audio; the matcher resamples.
SOURCE_SR = 16000
TITLES = (
    "Pilot",
    "The Dumpling Heist",
    "Wok This Way",
    "Night Market",
    "Fortune Cookie Crumbles",
    "Sweet and Sour Grapes",
)


@dataclass(frozen=True)
class ClipPlan:
    """Where the demo clip comes from and what happens to it on its way to the user."""

    episode: int = 4
    start_s: float = 83.0
    duration_s: float = 10.0
    speed: float = 1.12
    noise_snr_db: float = 15.0
    bitrate: str = "32k"


def run_demo(out: Path, plan: ClipPlan | None = None) -> int:
    """Run the demo in `out`; 0 when the clip is identified correctly, 1 otherwise."""
    plan = plan or ClipPlan()
    out.mkdir(parents=True, exist_ok=True)
    print(f"CityWok demo: offline, on a generated show called {SHOW!r}.\n")
    media = _step("1/4 Generating the episodes", lambda: _write_catalogue(out / "media"))
    index_dir = out / "index"
    titles = {EpisodeId(1, n): title for n, title in enumerate(TITLES, start=1)}
    report = _step(
        "2/4 Indexing them",
        lambda: build_index([out / "media"], index_dir=index_dir, titles=titles),
    )
    size_mb = index_size_bytes(index_dir) / 1e6
    minutes = report.duration_s / 60
    print(f"    {report.episodes} episodes, {minutes:.0f} min, index {size_mb:.1f} MB")
    clip = _step("3/4 Cutting and degrading a clip", lambda: _make_clip(media, out, plan))
    print(f"    {_describe_plan(plan)}\n    → {clip}")
    print("4/4 Asking CityWok which episode it is:")
    answer = _identify(clip, index_dir)
    expected = EpisodeId(1, plan.episode).code
    found = answer.best.episode if answer.best else None
    timestamp_ok = answer.best is not None and abs(answer.best.offset_s - plan.start_s) <= 1.0
    if found == expected and timestamp_ok:
        print(f"\nCorrect: the clip was cut from {expected} at {format_timestamp(plan.start_s)}.")
        return 0
    print(f"\nWrong: the clip was cut from {expected} at {format_timestamp(plan.start_s)}.")
    return 1


def _step(label: str, work):  # type: ignore[no-untyped-def]
    print(f"{label}…", end="", flush=True)
    started = time.perf_counter()
    result = work()
    print(f" done in {time.perf_counter() - started:.1f} s")
    return result


def _episode_path(media: Path, number: int) -> Path:
    season = media / SHOW / "Season 01"
    return season / f"{SHOW} - S01E{number:02d} - {TITLES[number - 1]}.m4a"


def _write_catalogue(media: Path) -> Path:
    """Episode files under `media`; reused when a previous run wrote them."""
    missing = [n for n in range(1, N_EPISODES + 1) if not _episode_path(media, n).is_file()]
    if missing:
        episodes = make_catalogue(
            sr=SOURCE_SR, n_episodes=N_EPISODES, duration_s=EPISODE_DURATION_S, seed=SEED
        )
        for number in missing:
            _encode(episodes[number - 1], _episode_path(media, number), bitrate="96k")
    return media


def _make_clip(media: Path, out: Path, plan: ClipPlan) -> Path:
    """Cut from the episode's decoded audio, then degrade it like a re-upload does."""
    source = decode_file(
        _episode_path(media, plan.episode),
        sr=SOURCE_SR,
        max_duration_s=EPISODE_DURATION_S + 1,
        timeout_s=60.0,
    ).samples
    start = round(plan.start_s * SOURCE_SR)
    clip = source[start : start + round(plan.duration_s * plan.speed * SOURCE_SR)]
    if plan.speed != 1.0:
        clip = change_speed(clip, factor=plan.speed)
    clip = add_noise(clip, snr_db=plan.noise_snr_db, rng=SEED)
    path = out / "clip.m4a"
    _encode(clip, path, bitrate=plan.bitrate)
    return path


def _encode(samples: np.ndarray, path: Path, *, bitrate: str) -> None:
    """AAC in an MPEG-4 container, as phones and most downloads store audio."""
    encode(path, samples, sr=SOURCE_SR, audio_args=("-c:a", "aac", "-b:a", bitrate))


def _describe_plan(plan: ClipPlan) -> str:
    speed = f", played at {plan.speed:g}× speed" if plan.speed != 1.0 else ""
    return (
        f"{plan.duration_s:g} s of S01E{plan.episode:02d} from {format_timestamp(plan.start_s)}"
        f"{speed}, noise at {plan.noise_snr_db:g} dB SNR, squeezed to {plan.bitrate}bps AAC"
    )


def _identify(clip: Path, index_dir: Path):  # type: ignore[no-untyped-def]
    """Decode and match in stages, printing each stage as the bot would edit its reply."""
    live = _LiveLine()
    live.show(render_state(Fetching()))
    index = load_index(index_dir, params=FingerprintParams())
    matcher = Matcher(index)
    samples = decode_file(clip, sr=matcher.sr, max_duration_s=600.0, timeout_s=60.0).samples
    result = None
    for result in matcher.identify_stages(samples):
        live.show(render_state(Finished(result) if result.final else Listening(result)))
    live.done()
    assert result is not None
    print(f"    ({result.elapsed_ms:.0f} ms after decoding, {result.heard_s:.0f} s heard)")
    return result


class _LiveLine:
    """One line edited in place on a terminal, like the bot's one edited reply; plain lines in a
    pipe so logs stay readable."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()

    def show(self, rendered: Rendered) -> None:
        text = " — ".join([rendered.title, *rendered.lines])
        if self.tty:
            sys.stdout.write(f"\r\033[K    {text}")
            sys.stdout.flush()
            time.sleep(0.4)  # Slow enough to watch the reply change, as a chat user would.
        else:
            print(f"    {text}", flush=True)

    def done(self) -> None:
        if self.tty:
            sys.stdout.write("\n")
