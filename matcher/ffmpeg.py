"""Finds the ffmpeg binary the matcher decodes with.

Order: a path the operator configured, then `ffmpeg` on PATH, then the binary shipped inside the
`imageio-ffmpeg` wheel, so that `pip install` alone is enough to decode media.

This module only locates the binary. It must never run ffmpeg, download anything, or depend on
ffprobe (the bundled build ships without it).
"""

from __future__ import annotations

import functools
import os
import shutil

from matcher.errors import FFmpegNotFoundError


@functools.lru_cache(maxsize=8)
def find_ffmpeg(configured: str | None = None) -> str:
    """Return the path of the ffmpeg executable to use.

    `configured` may be a path or a command name; when it is given it is used or rejected, never
    silently replaced by another ffmpeg, because an operator who names a binary wants that one.
    The result is cached per `configured` value: the lookup touches the filesystem and every
    decode calls this.
    """
    if configured:
        return _configured_ffmpeg(configured)
    system = shutil.which("ffmpeg")
    if system:
        return system
    bundled = _bundled_ffmpeg()
    if bundled:
        return bundled
    raise FFmpegNotFoundError(
        "ffmpeg was not found: install ffmpeg on the system PATH, install the imageio-ffmpeg "
        "package (it ships a binary), or configure the path of an ffmpeg executable."
    )


def _configured_ffmpeg(configured: str) -> str:
    # shutil.which checks existence and the execute bit for paths, and searches PATH for names.
    found = shutil.which(os.path.expanduser(configured))
    if found is None:
        raise FFmpegNotFoundError(
            f"The configured ffmpeg {configured!r} does not exist or is not executable."
        )
    return found


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        # imageio-ffmpeg raises this when its wheel has no binary for this platform.
        return None
    return str(exe) if exe and os.access(exe, os.X_OK) else None
