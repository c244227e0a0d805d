"""The one place that knows what a link to a clip looks like.

Which site a link belongs to, whether it names one post (not a profile, a search or a
playlist), the links in a chat message, and the key that every spelling of one post shares
(`www.`, `m.`, tracking parameters, `/shorts/` vs `watch?v=`), so that the fetcher, the
adapters and the answer cache can never disagree about a link.

Pure functions of text: no network, no chat library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

Platform = Literal["tiktok", "instagram", "youtube", "x", "reddit", "direct"]

# File endings a direct media link may have.
MEDIA_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".m4a", ".mp3", ".ogg", ".opus", ".wav")
# A message full of links is not a batch job.
MAX_LINKS_PER_MESSAGE = 3

# host suffix -> platform. A host matches itself and any subdomain.
_PLATFORM_HOSTS: dict[str, Platform] = {
    "tiktok.com": "tiktok",
    "instagram.com": "instagram",
    "youtube.com": "youtube",
    "youtu.be": "youtube",
    "x.com": "x",
    "twitter.com": "x",
    "reddit.com": "reddit",
    "redd.it": "reddit",
}
# How people call the platforms, in the order the bot names them.
SITE_NAMES: dict[Platform, str] = {
    "tiktok": "TikTok",
    "instagram": "Instagram",
    "youtube": "YouTube",
    "x": "X",
    "reddit": "Reddit",
}
_ID = r"[A-Za-z0-9_-]+"

# What someone who sent a link the bot cannot open is told (`link_refusal`); the sites are
# named from SITE_NAMES, so the sentence stays true when a platform is added.
MSG_UNSUPPORTED = (
    "I can't open links from that site. I can open posts from "
    f"{', '.join(list(SITE_NAMES.values())[:-1])} and {list(SITE_NAMES.values())[-1]}, or a "
    "link straight to a video file; or send me the video itself."
)
MSG_NOT_A_POST = "That link doesn't point to a single video; send the link to the post itself."
MSG_BAD_LINK = "That doesn't look like a link I can open."


@dataclass(frozen=True)
class _PostRule:
    """Paths on hosts matching `host` that name one post. A pattern's `id` group is the
    post's own id (every spelling of the post shares it); a `short` group marks a short link
    that only redirects to a post, so it has no id of its own; `index` picks one video of
    several in a post."""

    host: re.Pattern[str]
    paths: tuple[re.Pattern[str], ...]


def _rule(host: str, *paths: str) -> _PostRule:
    return _PostRule(re.compile(host), tuple(re.compile(p) for p in paths))


# The first rule whose host matches decides (short-link hosts come before their parents).
_POST_RULES: dict[Platform, tuple[_PostRule, ...]] = {
    "tiktok": (
        _rule(r"^(?:vm|vt)\.tiktok\.com$", rf"/(?P<short>{_ID})/?"),
        _rule(
            r"(?:^|\.)tiktok\.com$",
            r"/@[^/]+/(?:video|photo)/(?P<id>\d+)/?",
            r"/v/(?P<id>\d+)(?:\.html)?/?",
            rf"/t/(?P<short>{_ID})/?",
        ),
    ),
    "instagram": (
        _rule(r"(?:^|\.)instagram\.com$", rf"/(?:[^/]+/)?(?:p|reels?|tv)/(?P<id>{_ID})/?"),
    ),
    "youtube": (
        _rule(r"(?:^|\.)youtu\.be$", rf"/(?P<id>{_ID})/?"),
        _rule(r"(?:^|\.)youtube\.com$", rf"/(?:shorts|live|embed|v)/(?P<id>{_ID})/?"),
    ),
    "x": (
        _rule(
            r"(?:^|\.)(?:x|twitter)\.com$",
            r"/(?:[^/]+|i|i/web)/status(?:es)?/(?P<id>\d+)(?:/(?:video|photo)/(?P<index>\d+))?/?",
        ),
    ),
    "reddit": (
        # v.redd.it/<id> is the video itself; redd.it/<id> is a short link to a post.
        _rule(r"^v\.redd\.it$", rf"/(?P<id>{_ID})/?"),
        _rule(r"(?:^|\.)redd\.it$", rf"/(?P<short>{_ID})/?"),
        _rule(
            r"(?:^|\.)reddit\.com$",
            rf"/r/[^/]+/comments/(?P<id>{_ID})(?:/[^/]*)?(?:/{_ID})?/?",
            rf"/r/[^/]+/s/(?P<short>{_ID})/?",
        ),
    ),
}
_YOUTUBE_WATCH_ID = re.compile(r"^[A-Za-z0-9_-]+$")

_URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
# Links pasted without a scheme ("vm.tiktok.com/ZM…"), recognised for the platforms only.
_BARE_RE = re.compile(
    r"(?<![\w@/.:-])((?:[a-z0-9-]+\.)*(?:tiktok\.com|instagram\.com|youtube\.com|youtu\.be|"
    r"x\.com|twitter\.com|reddit\.com|redd\.it)/[^\s<>\"'`]*)",
    re.IGNORECASE,
)
# Not "_" or "-": video ids end with those.
_TRAILING = ".,;:!?'\"»”’…*~|"
_BRACKETS = {")": "(", "]": "[", "}": "{", ">": "<"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ParsedLink:
    """A link split into what classification needs; `url` is rebuilt without user info."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    query: str


@dataclass(frozen=True)
class Post:
    """A link that names one post of a platform. `video_id` is None for short links, which
    only redirect to a post; `index` picks one video of several (None: the first)."""

    platform: Platform
    video_id: str | None
    index: str | None = None


def parse_link(url: str) -> ParsedLink | None:
    """Split an http(s) URL; None for anything else, or for URLs with user info in them."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    # "https://tiktok.com@evil.example/" is a classic trick; nobody shares links like that.
    if scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    rebuilt = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return ParsedLink(rebuilt, scheme, host, port, parts.path or "/", parts.query)


def platform_of_host(host: str) -> Platform | None:
    """The platform a host belongs to, whatever the path."""
    host = host.rstrip(".").lower()
    for suffix, platform in _PLATFORM_HOSTS.items():
        if host == suffix or host.endswith("." + suffix):
            return platform
    return None


def post_of(link: ParsedLink) -> Post | None:
    """The post a platform link names, or None (a profile, a search, another site…)."""
    platform = platform_of_host(link.host)
    if platform is None or platform == "direct":
        return None
    if platform == "youtube" and link.path.rstrip("/") == "/watch":
        video = parse_qs(link.query).get("v", [""])[0]
        return Post("youtube", video) if _YOUTUBE_WATCH_ID.match(video) else None
    rule = next((r for r in _POST_RULES[platform] if r.host.search(link.host)), None)
    if rule is None:
        return None
    for path in rule.paths:
        if found := path.fullmatch(link.path):
            groups = found.groupdict()
            return Post(platform, groups.get("id"), groups.get("index"))
    return None


def has_media_suffix(path: str) -> bool:
    return path.lower().endswith(MEDIA_SUFFIXES)


def _is_extra_host(host: str, extra_hosts: tuple[str, ...]) -> bool:
    return host in {h.rstrip(".").lower() for h in extra_hosts}


def classify_link(url: str, *, extra_hosts: tuple[str, ...] = ()) -> Platform | None:
    """Which fetcher handles `url`: a platform, "direct" for a media file, or None (refused).

    `extra_hosts` (configuration, e.g. a test server) are treated as direct-media hosts for any
    path; files on them are fetched directly, other pages go through yt-dlp's generic extractor.
    """
    link = parse_link(url)
    if link is None:
        return None
    post = post_of(link)
    if post is not None:
        return post.platform
    # A media file is a media file wherever it is (v.redd.it/<id>/DASH_AUDIO_128.mp4).
    if platform_of_host(link.host) is not None and not has_media_suffix(link.path):
        return None
    if has_media_suffix(link.path) or _is_extra_host(link.host, extra_hosts):
        return "direct"
    return None


def _strip_trailing(url: str) -> str:
    """Drop the punctuation a sentence or markup puts after a link, keeping balanced brackets."""
    while url:
        last = url[-1]
        unbalanced = last in _BRACKETS and url.count(_BRACKETS[last]) < url.count(last)
        if last not in _TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def _links_in(text: str) -> list[str]:
    """Every link in a chat message, in order, deduplicated: http(s) URLs and the platforms'
    links pasted without a scheme."""
    found: list[tuple[int, str]] = [(m.start(), m.group(0)) for m in _URL_RE.finditer(text)]
    taken = [range(m.start(), m.end()) for m in _URL_RE.finditer(text)]
    for match in _BARE_RE.finditer(text):
        if not any(match.start() in span for span in taken):
            found.append((match.start(), "https://" + match.group(1)))
    links: list[str] = []
    for _, raw in sorted(found):
        url = _strip_trailing(raw)
        if url not in links:
            links.append(url)
    return links


def find_links(
    text: str, *, limit: int = MAX_LINKS_PER_MESSAGE, extra_hosts: tuple[str, ...] = ()
) -> list[str]:
    """The supported or direct-media links in a chat message, in order, deduplicated, at most
    `limit`."""
    links = [u for u in _links_in(text) if classify_link(u, extra_hosts=extra_hosts) is not None]
    return links[:limit]


def find_refused_links(text: str, *, extra_hosts: tuple[str, ...] = ()) -> list[str]:
    """The links in a chat message the bot cannot open (another site, a profile, a bare
    address), so that someone who asked about one is told why instead of being ignored."""
    return [u for u in _links_in(text) if classify_link(u, extra_hosts=extra_hosts) is None]


def supported_sites() -> str:
    """ "TikTok, Instagram, YouTube, X or Reddit": the sites the bot opens, as people say it."""
    *most, last = SITE_NAMES.values()
    return f"{', '.join(most)} or {last}"


def link_refusal(url: str, *, extra_hosts: tuple[str, ...] = ()) -> str | None:
    """Why the bot cannot open `url`, in the user's words, or None if it can: the same check
    the fetcher makes, cheap enough to make before a request costs anyone anything."""
    link = parse_link(url)
    if link is None:
        return MSG_BAD_LINK
    if classify_link(link.url, extra_hosts=extra_hosts) is not None:
        return None
    return MSG_NOT_A_POST if platform_of_host(link.host) is not None else MSG_UNSUPPORTED


def link_key(url: str) -> str:
    """`youtube:dQw4w9WgXcQ` for any spelling of one post of a known platform (the second
    video of a tweet, `/video/2`, is `x:<id>:2`); for any other link, including short links,
    the link itself (scheme, host, port, path and query: two servers, or two files told apart
    by a query, are never one answer)."""
    link = parse_link(url)
    post = post_of(link) if link is not None else None
    if post is not None and post.video_id:
        key = f"{post.platform}:{post.video_id}"
        # The first video of a post is the post's own key: yt-dlp fetches that one for the
        # bare link.
        return key if post.index in (None, "1") else f"{key}:{post.index}"
    if link is None:
        return f"url:{url.strip()}"
    netloc = f"[{link.host}]" if ":" in link.host else link.host
    if link.port != _DEFAULT_PORTS[link.scheme]:
        netloc += f":{link.port}"
    path = link.path.rstrip("/")
    return f"url:{link.scheme}://{netloc}{path}" + (f"?{link.query}" if link.query else "")
