"""Reposted clips: link normalisation and the bounded answer cache."""

from __future__ import annotations

from bot.core.cache import AnswerCache, media_key


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
