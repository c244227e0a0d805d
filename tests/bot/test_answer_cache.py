"""Reposted clips: link normalisation and the bounded answer cache."""

from __future__ import annotations

import pytest

from bot.core.cache import AnswerCache, link_key, media_key


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


def test_media_key_depends_on_every_byte() -> None:
    assert media_key(b"abc") == media_key(b"abc")
    assert media_key(b"abc") != media_key(b"abd")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_hits_by_any_of_its_keys_within_one_generation() -> None:
    cache: AnswerCache[str] = AnswerCache()
    cache.put(["a", "b"], "S01E02", generation="g1")
    assert cache.get("a", generation="g1") == "S01E02"
    assert cache.get("b", generation="g1") == "S01E02"
    assert cache.get("a", generation="g2") is None
    assert (cache.hits, cache.misses) == (2, 1)


def test_entries_expire() -> None:
    clock = _Clock()
    cache: AnswerCache[str] = AnswerCache(ttl_s=60, clock=clock)
    cache.put(["k"], "answer", generation="g")
    clock.now = 59
    assert cache.get("k", generation="g") == "answer"
    clock.now = 61
    assert cache.get("k", generation="g") is None
    assert len(cache) == 0


def test_least_recently_used_go_first() -> None:
    cache: AnswerCache[int] = AnswerCache(max_entries=3)
    for i in range(3):
        cache.put([f"k{i}"], i, generation="g")
    assert cache.get("k0", generation="g") == 0  # k0 is now the most recent
    cache.put(["k3"], 3, generation="g")
    assert cache.get("k1", generation="g") is None
    assert [cache.get(k, generation="g") for k in ("k0", "k2", "k3")] == [0, 2, 3]
