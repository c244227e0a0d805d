"""Content sniffing: the first bytes of a download tell a web page, a document or an image from
media, before anything is decoded."""

from __future__ import annotations

import logging

from bot.core.errors import (
    NotMedia,
)
from bot.fetch.messages import (
    MSG_EMPTY,
    MSG_IMAGE_FILE,
    MSG_IMAGE_LINK,
    MSG_TEXT_FILE,
    MSG_WEB_PAGE,
)

log = logging.getLogger(__name__)

# Enough of the start of a download to tell a web page or an image from media.
SNIFF_BYTES = 512

_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP; checked after the media signatures, which never start with it
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"\x00\x00\x01\x00",  # ICO
)
_DOCUMENT_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"#EXTM3U")
_MP4_ATOMS = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def _looks_like_media(head: bytes) -> bool:
    # mp4, mov, m4a, 3gp: a box size (big-endian, so a small first byte; text never starts
    # with a control character) then the box type.
    if head[4:8] in _MP4_ATOMS and head[0] < 0x09:
        return True
    if head[:4] == b"RIFF":
        return head[8:12] in (b"WAVE", b"AVI ")
    if head.startswith((b"\x1a\x45\xdf\xa3", b"OggS", b"ID3", b"fLaC", b"FLV", b"#!AMR")):
        return True
    if head.startswith((b"caff", b"\x30\x26\xb2\x75", b"\x00\x00\x01\xba")):  # CAF, ASF, MPEG-PS
        return True
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio, ADTS AAC
        return True
    return head[:1] == head[188:189] == b"\x47"  # MPEG-TS: a sync byte every 188 bytes


def _looks_like_text(head: bytes) -> bool:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<", b"{", b"[")):  # HTML, XML, SVG, JSON
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the end of the sample is still text.
        if error.start < len(head) - 3:
            return False
        text = head[: error.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def sniff(head: bytes, *, from_link: bool) -> None:
    """Refuse what is clearly not media (web pages, text, images); let ffmpeg judge the rest.

    `head` is the start of the content. Unknown binary formats pass: the decoder gives its own
    clear error, and refusing them here would turn away containers we did not list.
    """
    if not head:
        raise NotMedia(MSG_EMPTY)
    if _looks_like_media(head):
        return
    if (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head.startswith(_IMAGE_MAGIC):
        raise NotMedia(MSG_IMAGE_LINK if from_link else MSG_IMAGE_FILE)
    if head.startswith(_DOCUMENT_MAGIC) or _looks_like_text(head):
        raise NotMedia(MSG_WEB_PAGE if from_link else MSG_TEXT_FILE)
