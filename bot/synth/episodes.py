"""Episodes and catalogues: an intro, then scenes of dialogue (over a music bed or not) and
music montages in room tone, separated by stingers, some of them cues every episode shares.
"""

from __future__ import annotations

import math

import numpy as np

from bot.synth.common import (
    SPEECH_RMS,
    TAG_CAST,
    TAG_CATALOGUE,
    TAG_EPISODE,
    mix_in,
    normalise_peak,
    rms_of,
    tagged_rng,
    white,
)
from bot.synth.music import Palette, make_cues, make_intro, music_bed, stinger
from bot.synth.speech import render_dialogue
from bot.synth.voices import Cast, make_cast


def _room_tone(n: int, rng: np.random.Generator, *, rms: float) -> np.ndarray:
    """Background hiss and rumble, float32 [shape=(n,)], at about the given RMS.

    Noise held for 2 and 32 samples (most energy low, a little hiss) stands in for a filter
    pass over the whole scene, which would cost more than the rest of the scene.
    """
    hiss, rumble = 0.3, 1.0
    out = np.repeat(white(n // 2 + 1, rng) * np.float32(hiss), 2)[:n]
    out += np.repeat(white(n // 32 + 1, rng) * np.float32(rumble), 32)[:n]
    out *= np.float32(rms / math.hypot(hiss, rumble))
    return out


def _scene(
    out: np.ndarray, kind: str, cast: Cast, palette: Palette, rng: np.random.Generator
) -> None:
    """Add one scene to `out`: dialogue, dialogue over a bed, or a music montage."""
    n = out.size
    out += _room_tone(n, rng, rms=SPEECH_RMS * 10 ** (rng.uniform(-48, -36) / 20))
    if kind != "montage":
        speech = render_dialogue(n, cast, rng, sr=palette.sr)
        out[: speech.size] += speech
    if kind != "dialogue":
        bed = music_bed(n, palette, rng, drums_p=0.8 if kind == "montage" else 0.3)
        level_db = rng.uniform(-5, -1) if kind == "montage" else rng.uniform(-22, -13)
        bed *= np.float32(SPEECH_RMS * 10 ** (level_db / 20))
        out += bed


def _scene_plan(rng: np.random.Generator) -> tuple[str, float]:
    kind = str(rng.choice(["dialogue_bed", "dialogue", "montage"], p=[0.5, 0.35, 0.15]))
    duration_s = rng.uniform(8, 20) if kind == "montage" else rng.uniform(15, 75)
    return kind, duration_s


def _body(
    out: np.ndarray,
    cast: Cast,
    rng: np.random.Generator,
    shared_cues: list[np.ndarray],
    *,
    sr: int,
) -> None:
    """Fill `out` (zeros) with scenes and stingers; the first stinger is a shared cue if any."""
    palette = Palette(rng, sr=sr)
    n = out.size
    pos = 0
    first = True
    while pos < n:
        kind, duration_s = _scene_plan(rng)
        length = min(round(duration_s * sr), n - pos)
        _scene(out[pos : pos + length], kind, cast, palette, rng)
        pos += length
        if pos >= n:
            break
        use_cue = bool(shared_cues) and (first or rng.random() < 0.3)
        if not use_cue and rng.random() < 0.15:
            continue  # a hard cut
        cue = shared_cues[int(rng.integers(len(shared_cues)))] if use_cue else stinger(palette, rng)
        level_db = rng.uniform(-3, 1)
        mix_in(out, pos, cue, SPEECH_RMS * 10 ** (level_db / 20) / max(rms_of(cue), 1e-9))
        pos += max(1, cue.size - round(0.3 * sr))  # the next scene starts under the cue's tail
        first = False


def make_episode(
    *,
    sr: int,
    duration_s: float,
    seed: int,
    intro: np.ndarray | None = None,
    shared_cues: list[np.ndarray] | None = None,
    cast_seed: int = 0,
) -> np.ndarray:
    """A TV-episode-like soundtrack, float32 [shape=(round(duration_s * sr),)], peak 0.7.

    `intro` (if given) opens the episode sample for sample; then come scenes of dialogue (with or
    without a quiet music bed) and music montages, separated by stingers. When `shared_cues` are
    given, the first stinger and some later ones are taken from them (scaled to the mix).
    `cast_seed` picks the show's characters: episodes of one show share it, so the same voices
    recur as they do in a real series. Everything else comes from `seed`.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    n = round(duration_s * sr)
    out = np.zeros(n, np.float32)
    head = 0
    if intro is not None:
        head = min(n, len(intro))
        out[:head] = np.asarray(intro, np.float32)[:head]
    if head < n:
        rng = tagged_rng(seed, TAG_EPISODE)
        cast = make_cast(tagged_rng(cast_seed, TAG_CAST), sr=sr)
        _body(out[head:], cast, rng, list(shared_cues or []), sr=sr)
        normalise_peak(out[head:])
    return out


def episode_seed(*, seed: int, index: int) -> int:
    """The seed `make_catalogue(seed=seed)` gives its episode number `index` (from 0)."""
    return int(np.random.SeedSequence([TAG_CATALOGUE, seed % 2**63, index]).generate_state(1)[0])


def make_catalogue(*, sr: int, n_episodes: int, duration_s: float, seed: int) -> list[np.ndarray]:
    """`n_episodes` episodes of one show: a common intro, shared cues and the same characters."""
    intro = make_intro(sr=sr, seed=seed)
    cues = make_cues(sr=sr, seed=seed)
    return [
        make_episode(
            sr=sr,
            duration_s=duration_s,
            seed=episode_seed(seed=seed, index=i),
            intro=intro,
            shared_cues=cues,
            cast_seed=seed,
        )
        for i in range(n_episodes)
    ]


def make_dialogue(*, sr: int, duration_s: float, seed: int) -> np.ndarray:
    """Dialogue of another show: a cast of its own, in quiet room tone, from no catalogue episode.

    Float32 [shape=(<= round(duration_s * sr),)]: the last line that does not fit is left out.
    """
    n = round(duration_s * sr)
    rng = np.random.default_rng(seed)
    cast = make_cast(np.random.default_rng(seed + 1), sr=sr)
    speech = render_dialogue(n, cast, rng, sr=sr)[:n]
    return speech + _room_tone(speech.size, rng, rms=0.002)
