"""Errors the matcher raises.

Every error a caller can act on is a `MatcherError` subclass carrying a message fit to show
a person. Anything else escaping the matcher is a bug.
"""

from __future__ import annotations


class MatcherError(Exception):
    """Base class: a problem with the input or the index, explained in `str(error)`."""


class MediaError(MatcherError):
    """The input could not be turned into audio.

    `detail` holds what the decoder said (for logs, never for users: it can name temp files).
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class NoAudioStreamError(MediaError):
    """The file is valid media but carries no audio track (a silent GIF, a still image)."""


class UnreadableMediaError(MediaError):
    """The file is not media ffmpeg understands, or it is corrupt or truncated."""


class DecodeTimeoutError(MediaError):
    """Decoding did not finish within the time limit (a huge or endless input)."""


class FFmpegNotFoundError(MatcherError):
    """Neither a configured, a system, nor the bundled ffmpeg binary could be found."""


class IndexLoadError(MatcherError):
    """The index is missing, damaged, or was built with other fingerprint parameters."""


class IndexMissingError(IndexLoadError):
    """No index at the given path."""


class IndexFormatError(IndexLoadError):
    """The index exists but its format version or parameters do not match this matcher."""
