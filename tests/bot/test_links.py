"""Links: which site, whether one post, the links in a message, one key per post."""

from __future__ import annotations

import pytest

from bot.links import classify_link, find_links, link_key

SUPPORTED = [
    ("https://www.tiktok.com/@some.user/video/7234567890123456789", "tiktok"),
    ("https://www.tiktok.com/@user/video/7234567890123456789?is_from_webapp=1", "tiktok"),
    ("https://vm.tiktok.com/ZMabc123/", "tiktok"),
    ("https://vt.tiktok.com/ZSabc123/", "tiktok"),
    ("https://www.tiktok.com/t/ZTabc123/", "tiktok"),
    ("https://m.tiktok.com/v/7234567890123456789.html", "tiktok"),
    ("https://www.instagram.com/reel/Cabc123_-x/", "instagram"),
    ("https://www.instagram.com/reels/Cabc123/", "instagram"),
    ("https://instagram.com/p/Cabc123/?igsh=xyz", "instagram"),
    ("https://www.instagram.com/tv/Cabc123", "instagram"),
    ("https://www.instagram.com/someone/reel/Cabc123/", "instagram"),
    ("https://www.youtube.com/shorts/abcdefghijk", "youtube"),
    ("https://youtube.com/shorts/abcdefghijk?si=xyz", "youtube"),
    ("https://youtu.be/abcdefghijk", "youtube"),
    ("https://www.youtube.com/watch?v=abcdefghijk&t=42", "youtube"),
    ("https://m.youtube.com/watch?feature=share&v=abcdefghijk", "youtube"),
    ("https://x.com/someone/status/1234567890123456789", "x"),
    ("https://twitter.com/someone/status/1234567890123456789/video/1", "x"),
    ("https://mobile.twitter.com/someone/status/1234567890", "x"),
    ("https://x.com/i/status/1234567890", "x"),
    ("https://www.reddit.com/r/TheSimpsons/comments/abc123/some_title/", "reddit"),
    ("https://old.reddit.com/r/TheSimpsons/comments/abc123/", "reddit"),
    ("https://www.reddit.com/r/TheSimpsons/s/AbCdEf12", "reddit"),
    ("https://v.redd.it/abc123xyz", "reddit"),
    ("https://redd.it/abc123", "reddit"),
    ("https://cdn.example.com/clips/episode.mp4", "direct"),
    ("https://cdn.example.com/a/b/voice.OPUS", "direct"),
    ("http://files.example.org/x.webm?token=1", "direct"),
    ("https://v.redd.it/abc123xyz/DASH_AUDIO_128.mp4", "direct"),
]
REFUSED = [
    "https://example.com/watch?v=1",
    "https://vimeo.com/123456",
    "https://www.tiktok.com/@someone",  # a profile, not a post
    "https://www.youtube.com/@channel",
    "https://www.youtube.com/playlist?list=PL123",
    "https://www.youtube.com/watch?list=PL123",
    "https://x.com/someone",
    "https://www.instagram.com/someone/",
    "https://www.reddit.com/r/TheSimpsons/",
    "https://evil-tiktok.com/@u/video/1",  # not a subdomain of tiktok.com
    "https://tiktok.com.evil.example/@u/video/1",
    "https://tiktok.com@evil.example/@u/video/1.mp4",  # user info
    "ftp://files.example.org/x.mp4",
    "file:///etc/passwd.mp4",
    "https://example.com/clip.mp4.html",
    "not a link",
]


@pytest.mark.parametrize(("url", "platform"), SUPPORTED)
def test_classify_supported(url: str, platform: str) -> None:
    assert classify_link(url) == platform


@pytest.mark.parametrize("url", REFUSED)
def test_classify_refused(url: str) -> None:
    assert classify_link(url) is None


def test_extra_hosts_are_direct_for_any_path() -> None:
    assert classify_link("http://127.0.0.1:8080/post/short") is None
    assert classify_link("http://127.0.0.1:8080/post/short", extra_hosts=("127.0.0.1",)) == (
        "direct"
    )


@pytest.mark.parametrize(
    ("text", "links"),
    [
        ("which episode? https://vm.tiktok.com/ZMabc123/", ["https://vm.tiktok.com/ZMabc123/"]),
        (
            "see <https://youtu.be/abcdefghijk>, and (https://x.com/a/status/1).",
            ["https://youtu.be/abcdefghijk", "https://x.com/a/status/1"],
        ),
        (
            "[clip](https://www.instagram.com/reel/Cabc123/) https://www.instagram.com/reel/Cabc123/",
            ["https://www.instagram.com/reel/Cabc123/"],
        ),
        ("bare link vm.tiktok.com/ZMabc123 please", ["https://vm.tiktok.com/ZMabc123"]),
        ("file: https://cdn.example.com/a.mp4!", ["https://cdn.example.com/a.mp4"]),
        ("https://example.com/page and https://vimeo.com/1 are not ours", []),
        ("no links at all", []),
        ("**https://youtu.be/abcdefghij_**", ["https://youtu.be/abcdefghij_"]),
        ("||https://x.com/a/status/12||", ["https://x.com/a/status/12"]),
        ("mail me at bob@x.com/i/status/1", []),
        (
            "https://youtu.be/aaaaaaaaaaa https://youtu.be/bbbbbbbbbbb "
            "https://youtu.be/ccccccccccc https://youtu.be/ddddddddddd",
            [
                "https://youtu.be/aaaaaaaaaaa",
                "https://youtu.be/bbbbbbbbbbb",
                "https://youtu.be/ccccccccccc",
            ],
        ),
    ],
)
def test_find_links(text: str, links: list[str]) -> None:
    assert find_links(text) == links


@pytest.mark.parametrize(
    "urls, key",
    [
        (
            [
                "https://www.tiktok.com/@fan/video/7301234567890123456?is_from_webapp=1&sender=x",
                "https://tiktok.com/@someone_else/video/7301234567890123456",
                "https://m.tiktok.com/@fan/video/7301234567890123456/",
            ],
            "tiktok:7301234567890123456",
        ),
        (
            [
                "https://www.youtube.com/shorts/dQw4w9WgXcQ",
                "https://youtube.com/watch?v=dQw4w9WgXcQ&t=42",
                "https://youtu.be/dQw4w9WgXcQ?si=abc",
                "https://m.youtube.com/shorts/dQw4w9WgXcQ?feature=share",
            ],
            "youtube:dQw4w9WgXcQ",
        ),
        (
            [
                "https://www.instagram.com/reel/C1a2B3c4D5e/?igsh=xyz",
                "https://instagram.com/reels/C1a2B3c4D5e/",
                "https://www.instagram.com/p/C1a2B3c4D5e/",
            ],
            "instagram:C1a2B3c4D5e",
        ),
        (
            [
                "https://x.com/fan/status/1790000000000000000",
                "https://twitter.com/other/status/1790000000000000000?s=20",
                "https://mobile.twitter.com/fan/status/1790000000000000000/video/1",
            ],
            "x:1790000000000000000",
        ),
        (
            [
                "https://www.reddit.com/r/southpark/comments/1abcde/funny_scene/",
                "https://old.reddit.com/r/southpark/comments/1abcde/",
            ],
            "reddit:1abcde",
        ),
    ],
)
def test_every_spelling_of_a_post_is_one_key(urls: list[str], key: str) -> None:
    assert {link_key(u) for u in urls} == {key}


def test_unknown_links_keep_their_path_and_query() -> None:
    assert link_key("https://vm.tiktok.com/ZMabc123/") == "url:https://vm.tiktok.com/ZMabc123"
    assert link_key("https://cdn.example.com/a.mp4?sig=1") != link_key(
        "https://cdn.example.com/a.mp4?sig=2"
    )


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://cdn.example.com/a.mp4", "https://cdn.example.com/a.mp4"),
        ("https://cdn.example.com/a.mp4", "https://cdn.example.com:8443/a.mp4"),
        ("https://www.example.com/a.mp4", "https://example.com/a.mp4"),
        ("https://m.example.com/a.mp4", "https://example.com/a.mp4"),
        ("https://notyoutube.com/watch?v=dQw4w9WgXcQ", "https://youtube.com/watch?v=dQw4w9WgXcQ"),
        (
            "https://x.com/fan/status/1790000000000000000/video/2",
            "https://x.com/fan/status/1790000000000000000",
        ),
    ],
)
def test_different_files_get_different_keys(one: str, other: str) -> None:
    assert link_key(one) != link_key(other)


def test_unknown_links_are_kept_whole_but_default_ports_and_case_are_one() -> None:
    assert link_key("https://CDN.example.com:443/a.mp4") == "url:https://cdn.example.com/a.mp4"
    assert link_key("http://127.0.0.1:8080/clip.mp4") == "url:http://127.0.0.1:8080/clip.mp4"


def test_each_video_of_a_tweet_has_its_own_key() -> None:
    tweet = "https://x.com/fan/status/1790000000000000000"
    assert link_key(f"{tweet}/video/1") == link_key(tweet) == "x:1790000000000000000"
    assert link_key(f"{tweet}/video/2") == "x:1790000000000000000:2"
    assert link_key("https://twitter.com/i/web/status/1790000000000000000/video/2") == (
        "x:1790000000000000000:2"
    )


def test_the_fetcher_and_the_cache_agree_on_every_supported_post() -> None:
    """Every platform post the fetcher takes has a key of that platform, or is a short link
    (no id of its own) kept whole."""
    for url, platform in SUPPORTED:
        key = link_key(url)
        if platform == "direct":
            assert key.startswith("url:"), url
        else:
            assert key.startswith((f"{platform}:", "url:")), (url, key)


def test_tiktok_share_paths_of_one_video_are_one_key() -> None:
    assert link_key("https://www.tiktok.com/v/7301234567890123456.html") == link_key(
        "https://www.tiktok.com/@fan/video/7301234567890123456"
    )
