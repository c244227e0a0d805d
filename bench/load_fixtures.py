"""What bench.load sends and to whom: the clips (bench.bot_latency's catalogue clips, degraded
copies of them and clips of another show, made once under bench/out/load/), the seeded plan of
who sends which clip when, the bytes that make each request's file its own, and the TOML config
the bot process runs with. Nothing here is timed.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.bot_latency_fixtures import AUDIO, CLIP_S, OUT, SR, VIDEO, Clip, prepare
from bot.synth.degrade import add_noise, change_speed, phone_recording
from bot.synth.encode import encode
from bot.synth.episodes import make_dialogue
from matcher.decode import decode_bytes

WORK = OUT / "load"
CLIPS = WORK / "clips"
# bench.bot_latency's first clips: already made (and cached) by that benchmark.
N_CATALOGUE_CLIPS = 3
ABSENT_SEED = 4711
SPEED_FACTOR = 1.06
NOISE_SNR_DB = 10.0
PHONE_AUDIO = ("-c:a", "aac", "-b:a", "64k", "-ar", "44100")


@dataclass(frozen=True)
class Media:
    """One clip a user may send: the file, how it is sent (the Message field), what it is."""

    file: str  # name in CLIPS
    kind: str  # Telegram Message field: video, document, audio
    variant: str  # clean, speed, noise, phone, absent
    duration_s: int
    episode: str | None  # None: not in the catalogue
    start_s: int = 0
    weight: float = 1.0  # share of the requests, relative to the others

    @property
    def clip(self) -> Clip | None:
        """As bench.bot_latency checks an answer (episode and time)."""
        return None if self.episode is None else Clip(self.file, self.episode, self.start_s)

    def fields(self) -> dict[str, object]:
        """Extra fields of the Telegram media object."""
        if self.kind == "audio":
            return {"duration": self.duration_s, "mime_type": "audio/mp4", "file_name": "clip.m4a"}
        if self.kind == "document":
            return {}
        return {"duration": self.duration_s}


def prepare_media(log: Callable[[str], None]) -> tuple[Path, list[Media]]:
    """The index (bench.bot_latency's) and the clips users send; each clip made once."""
    index_dir, clips = prepare(N_CATALOGUE_CLIPS, log)
    source = OUT / "bot-latency" / "clips"
    CLIPS.mkdir(parents=True, exist_ok=True)
    media: list[Media] = []
    for clip in clips:
        target = CLIPS / clip.file
        if not target.is_file():
            target.write_bytes((source / clip.file).read_bytes())
        media.append(Media(clip.file, "video", "clean", CLIP_S, clip.episode, clip.start_s))

    def audio_of(clip: Clip) -> np.ndarray:
        data = (source / clip.file).read_bytes()
        return decode_bytes(data, sr=SR, max_duration_s=600.0, timeout_s=60.0).samples

    # Degraded copies: sped up (a re-upload), noisy and sent as a file, filmed off a TV and
    # sent as an audio file. Weights: clean clips 1 each, the others 0.6, so half the requests
    # are clean, 0.3 degraded and 0.2 of another show.
    degraded = (
        ("speed", "video", lambda y: change_speed(y, factor=SPEED_FACTOR)),
        ("noise", "document", lambda y: add_noise(y, snr_db=NOISE_SNR_DB, rng=ABSENT_SEED)),
        ("phone", "audio", lambda y: phone_recording(y, sr=SR, rng=ABSENT_SEED)),
    )
    for clip, (variant, kind, degrade) in zip(clips, degraded, strict=True):
        suffix = ".m4a" if kind == "audio" else ".mp4"
        name = f"{Path(clip.file).stem}-{variant}{suffix}"
        if not (CLIPS / name).is_file():
            log(f"encoding {name}")
            y = degrade(audio_of(clip))
            if kind == "audio":
                encode(CLIPS / name, y, sr=SR, audio_args=PHONE_AUDIO)
            else:
                encode(CLIPS / name, y, sr=SR, audio_args=AUDIO, video=VIDEO)
        duration_s = round(CLIP_S / SPEED_FACTOR) if variant == "speed" else CLIP_S
        media.append(Media(name, kind, variant, duration_s, clip.episode, clip.start_s, weight=0.6))
    for k in range(2):
        name = f"absent-{k}.mp4"
        if not (CLIPS / name).is_file():
            log(f"encoding {name}")
            y = make_dialogue(sr=SR, duration_s=CLIP_S, seed=ABSENT_SEED + k)
            encode(CLIPS / name, y, sr=SR, audio_args=AUDIO, video=VIDEO)
        media.append(Media(name, "video", "absent", CLIP_S, None, weight=0.6))
    return index_dir, media


def unique(data: bytes, n: int) -> bytes:
    """`data` (an MP4 file) with a `free` box appended that holds `n`: every request's file has
    its own digest, so none is answered from the answer cache, and demuxers skip the box."""
    nonce = f"citywok-load-{n:06d}".encode()
    return data + struct.pack(">I4s", 8 + len(nonce), b"free") + nonce


@dataclass(frozen=True)
class Planned:
    n: int
    at_s: float  # from the start of the load
    user: int
    media: int  # index into the media list


def plan_requests(
    *, users: int, requests: int, seconds: float, seed: int, media: Sequence[Media]
) -> list[Planned]:
    """`requests` arrivals over `seconds` (a Poisson process given its count: sorted uniform
    times), dealt to `users` as evenly as possible in a random order, each with a clip drawn by
    weight. Seeded: the same arguments give the same plan."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0.0, seconds, requests))
    senders = rng.permutation(np.resize(np.arange(users), requests))
    weights = np.array([m.weight for m in media])
    picks = rng.choice(len(media), size=requests, p=weights / weights.sum())
    return [
        Planned(n, float(t), int(u), int(m))
        for n, (t, u, m) in enumerate(zip(times, senders, picks, strict=True))
    ]


def write_config(index_dir: Path, *, per_minute: int, workers: int | None) -> Path:
    """The bot's TOML: production defaults except what bench_settings (bench.bot_latency) also
    changes for the fakes, and a per-user quota that ~3 clips a minute stay under."""
    matcher = "" if workers is None else f"[matcher]\nworkers = {workers}\n"
    text = (
        f'[index]\ndir = "{index_dir}"\n'
        f"{matcher}"
        '[fetch]\nallow_networks = ["127.0.0.0/8"]\n'
        f"[limits]\nper_minute = {per_minute}\n"
        '[discord]\nstate_dir = "discord-state"\n'
        '[log]\nlevel = "INFO"\n'
    )
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "citywok.toml"
    path.write_text(text)
    return path


def media_table(media: Sequence[Media]) -> list[dict[str, object]]:
    return [dataclasses.asdict(m) for m in media]
