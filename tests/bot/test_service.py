"""The core service end to end: real media files, the real fetcher's attachment path, real
ffmpeg decoding and the real matcher over the in-memory catalogue index.

The only stand-in is `GatedMatcher`, the real matcher with a gate after its first stage: it
lets a test hold a match "in progress" without relying on timing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from bot.config import LimitSettings, Settings
from bot.core.cache import AnswerCache, media_key
from bot.core.errors import RateLimited
from bot.core.limits import Limits
from bot.core.live import LiveReply
from bot.core.render import Rendered, render_state
from bot.core.request import Attachment, Link, Request, User
from bot.core.service import Service
from bot.core.states import Failed, Fetching, Finished, Listening, Queued, State
from bot.fetch.fetcher import Fetcher
from bot.links import link_key
from bot.synth.episodes import make_episode
from matcher.identify import Matcher
from matcher.index import FingerprintIndex
from tests.media import make_media, make_silent_video

SR = 8000
# A guard against a hang, never an assertion about speed.
HANG_GUARD_S = 60.0


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-matcher")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def media(
    catalogue: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """Clips users send, as real encoded files."""
    folder = tmp_path_factory.mktemp("service-media")
    known = make_media(folder, catalogue[2][61 * SR : 69 * SR], SR, "mp4")
    stranger = make_media(folder, make_episode(sr=SR, duration_s=8.0, seed=31337), SR, "wav")
    silent = make_silent_video(folder, 2.0)
    return {
        "known": known.read_bytes(),
        "stranger": stranger.read_bytes(),
        "silent": silent.read_bytes(),
        # Unknown binary: passes the fetcher's sniffing, so ffmpeg is the one to refuse it.
        "junk": np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


def attachment(data: bytes, name: str = "clip.mp4", *, size: int | None = None) -> Attachment:
    async def read() -> bytes:
        return data

    return Attachment(name, len(data) if size is None else size, "video/mp4", read)


def request(source: Attachment | Link, user: str = "1", rid: str = "req00001") -> Request:
    return Request(User("telegram", user, f"user{user}"), source, f"telegram:{user}", rid)


USER = request(None).user  # type: ignore[arg-type]


class GatedMatcher(Matcher):
    """The real matcher, paused after its first stage result until `gate` is set."""

    def __init__(self, index: FingerprintIndex) -> None:
        super().__init__(index)
        self.gate = threading.Event()
        self.parked = threading.Event()
        self.finished = threading.Event()

    def identify_stages(self, samples, **kwargs):  # type: ignore[no-untyped-def]
        try:
            for n, result in enumerate(super().identify_stages(samples, **kwargs)):
                yield result
                if n == 0:
                    self.parked.set()
                    self.gate.wait(HANG_GUARD_S)
        finally:
            self.finished.set()


def make_service(
    memory_index: FingerprintIndex,
    executor: ThreadPoolExecutor,
    *,
    limits: LimitSettings | None = None,
    matcher: Matcher | None = None,
    on_step: Callable[[str, str, float], None] | None = None,
) -> Service:
    settings = Settings()
    if limits is not None:
        settings = replace(settings, limits=limits)
    return Service(
        matcher or Matcher(memory_index),
        Fetcher(settings.fetch),
        Limits(settings.limits),
        settings,
        executor,
        on_step=on_step,
    )


async def idle(limits: Limits) -> None:
    """Until every match slot is free: a slot is freed when its worker thread returns, which
    the loop hears of a moment after the last result."""
    async with asyncio.timeout(HANG_GUARD_S):
        while limits.running or limits.waiting:
            await asyncio.sleep(0.01)


async def collect(states: AsyncIterator[State]) -> list[State]:
    async with asyncio.timeout(HANG_GUARD_S):
        return [state async for state in states]


async def test_a_known_clip_ends_in_its_episode(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    service = make_service(memory_index, executor)
    states = await collect(service.handle(request(attachment(media["known"]))))
    assert isinstance(states[0], Fetching)
    final = states[-1]
    assert isinstance(final, Finished), final
    assert final.result.best is not None and final.result.best.episode == "S01E03"
    # Episode time at the clip's start: the clip was cut at 61 s.
    assert abs(final.result.best.offset_s - 61.0) < 1.0
    assert render_state(final).title == 'S01E03 "Episode 3"'
    assert all(isinstance(s, Listening) for s in states[1:-1])


async def test_each_stage_reaches_the_caller_before_matching_ends(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    matcher = GatedMatcher(memory_index)
    service = make_service(memory_index, executor, matcher=matcher)
    states = service.handle(request(attachment(media["stranger"], "clip.wav")))
    async with asyncio.timeout(HANG_GUARD_S):
        assert isinstance(await anext(states), Fetching)
        first = await anext(states)
        # The worker thread is parked after its first stage: this result crossed on its own.
        assert isinstance(first, Listening)
        assert not matcher.finished.is_set()
        assert first.result.heard_s == pytest.approx(3.0, abs=0.1)
        matcher.gate.set()
        rest = [state async for state in states]
    heard = [s.result.heard_s for s in (first, *rest) if isinstance(s, Listening | Finished)]
    assert heard == sorted(heard) and len(heard) == 3
    assert isinstance(rest[-1], Finished) and rest[-1].result.status == "no_match"
    assert render_state(rest[-1]).kind == "not_found"


async def test_the_step_hook_sees_each_step_in_order(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    steps: list[tuple[str, str, float]] = []
    service = make_service(
        memory_index, executor, on_step=lambda rid, step, t: steps.append((rid, step, t))
    )
    states = await collect(service.handle(request(attachment(media["known"]), rid="req00042")))
    assert isinstance(states[-1], Finished)
    heard = [s.result.heard_s for s in states if isinstance(s, Listening | Finished)]
    names = [step for _, step, _ in steps]
    assert names == ["admitted", "fetched", "decoded", *(f"stage:{h:g}" for h in heard), "final"]
    assert {rid for rid, _, _ in steps} == {"req00042"}
    times = [t for _, _, t in steps]
    assert times == sorted(times)


async def test_a_failing_step_hook_is_logged_and_the_request_goes_on(
    memory_index: FingerprintIndex,
    executor: ThreadPoolExecutor,
    media: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(request_id: str, step: str, at: float) -> None:
        raise ValueError("broken probe")

    service = make_service(memory_index, executor, on_step=broken)
    with caplog.at_level(logging.ERROR, logger="bot.core.service"):
        states = await collect(service.handle(request(attachment(media["known"]))))
    final = states[-1]
    assert isinstance(final, Finished), final
    assert final.result.best is not None and final.result.best.episode == "S01E03"
    failures = [r for r in caplog.records if "on_step" in r.getMessage()]
    assert failures and all(r.exc_info for r in failures)


@pytest.mark.parametrize(("clip", "kind"), [("silent", "no_audio"), ("junk", "not_media")])
async def test_decode_errors_become_one_clear_sentence(
    memory_index: FingerprintIndex,
    executor: ThreadPoolExecutor,
    media: dict[str, bytes],
    clip: str,
    kind: str,
) -> None:
    service = make_service(memory_index, executor)
    states = await collect(service.handle(request(attachment(media[clip]))))
    final = states[-1]
    assert isinstance(final, Failed) and final.error.kind == kind
    assert final.request_id == "req00001"
    assert "\n" not in final.error.message and "ffmpeg" not in final.error.message.lower()
    assert not service.limits.in_flight(USER)
    await idle(service.limits)


async def test_an_oversized_upload_is_refused_without_reading_it(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor
) -> None:
    reads = []

    async def read() -> bytes:
        reads.append(1)
        return b""

    big = Attachment("huge.mp4", 10**10, "video/mp4", read)
    service = make_service(memory_index, executor)
    states = await collect(service.handle(request(big)))
    assert isinstance(states[-1], Failed) and states[-1].error.kind == "too_large"
    assert reads == []


async def test_an_unexpected_error_is_logged_with_the_id_the_user_sees(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    async def read() -> bytes:
        raise RuntimeError("adapter bug: secret /tmp/path")

    service = make_service(memory_index, executor)
    with caplog.at_level(logging.ERROR, logger="bot.core.service"):
        states = await collect(
            service.handle(request(Attachment("a.mp4", 10, None, read), rid="ab12cd34"))
        )
    final = states[-1]
    assert isinstance(final, Failed) and final.error.kind == "internal"
    shown = render_state(final)
    assert "ab12cd34" in shown.lines[0]
    assert "secret" not in " ".join(shown.lines) and "Traceback" not in " ".join(shown.lines)
    logged = [r for r in caplog.records if "ab12cd34" in r.getMessage()]
    assert logged and logged[0].exc_info is not None


async def test_ten_clips_at_once_get_ten_clear_answers(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    service = make_service(memory_index, executor, limits=LimitSettings(per_minute=5))
    runs = [
        collect(service.handle(request(attachment(media["known"]), rid=f"r{n}"))) for n in range(10)
    ]
    outcomes = [states[-1] for states in await asyncio.gather(*runs)]
    finished = [o for o in outcomes if isinstance(o, Finished)]
    refused = [o for o in outcomes if isinstance(o, Failed)]
    assert len(finished) == 1 and len(refused) == 9
    assert {o.error.kind for o in refused} == {"already_working"}
    assert "one at a time" in refused[0].error.message
    # Refusals did not spend the quota, and the user is free again.
    assert service.limits.remaining(USER)[0] == 4
    again = await collect(service.handle(request(attachment(media["known"]), rid="again")))
    assert isinstance(again[-1], Finished)


async def test_the_quota_says_when_to_try_again(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    service = make_service(memory_index, executor, limits=LimitSettings(per_minute=2))
    outcomes = [
        (await collect(service.handle(request(attachment(media["known"])))))[-1] for _ in range(3)
    ]
    assert [type(o) for o in outcomes] == [Finished, Finished, Failed]
    error = outcomes[2].error  # type: ignore[union-attr]
    assert isinstance(error, RateLimited) and error.retry_after_s > 0
    assert "try again in" in render_state(outcomes[2]).lines[0]
    assert render_state(outcomes[2]).ephemeral


async def test_a_full_house_queues_one_and_turns_the_next_away(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    matcher = GatedMatcher(memory_index)
    service = make_service(
        memory_index,
        executor,
        matcher=matcher,
        limits=LimitSettings(max_concurrent=1, max_queue=1),
    )
    clip = media["stranger"]
    first = service.handle(request(attachment(clip, "a.wav"), user="1"))
    second = service.handle(request(attachment(clip, "b.wav"), user="2"))
    async with asyncio.timeout(HANG_GUARD_S):
        assert isinstance(await anext(first), Fetching)
        assert isinstance(await anext(first), Listening)  # running, parked by the gate
        assert isinstance(await anext(second), Fetching)
        assert await anext(second) == Queued(1)
        third = await collect(service.handle(request(attachment(clip, "c.wav"), user="3")))
        assert len(third) == 1 and isinstance(third[0], Failed)
        assert third[0].error.kind == "busy"
        matcher.gate.set()
        first_rest = [s async for s in first]
        second_rest = [s async for s in second]
    assert isinstance(first_rest[-1], Finished) and isinstance(second_rest[-1], Finished)
    await idle(service.limits)


async def test_an_abandoned_request_frees_the_user_at_once_and_the_slot_when_done(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    matcher = GatedMatcher(memory_index)
    service = make_service(memory_index, executor, matcher=matcher)
    req = request(attachment(media["stranger"], "a.wav"))
    states = service.handle(req)
    async with asyncio.timeout(HANG_GUARD_S):
        await anext(states)
        assert isinstance(await anext(states), Listening)
        await states.aclose()
        assert not service.limits.in_flight(req.user)
        # The worker thread still holds a core, so it still holds its slot.
        assert service.limits.running == 1
        matcher.gate.set()
    await idle(service.limits)
    assert matcher.finished.is_set()


async def test_a_fetch_error_keeps_its_message(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor
) -> None:
    service = make_service(memory_index, executor)
    text = attachment(b"hello, this is a text file and not a video at all\n" * 4, "notes.mp4")
    states = await collect(service.handle(request(text)))
    assert [type(s) for s in states] == [Fetching, Failed]
    assert states[-1].error.kind == "not_media"  # type: ignore[union-attr]


async def test_work_dropped_by_a_shutting_down_pool_is_answered(
    memory_index: FingerprintIndex, media: dict[str, bytes]
) -> None:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-shutdown")
    matcher = GatedMatcher(memory_index)
    service = make_service(
        memory_index, pool, matcher=matcher, limits=LimitSettings(max_concurrent=2)
    )
    clip = media["stranger"]
    first = service.handle(request(attachment(clip, "a.wav"), user="1"))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await anext(first)
            assert isinstance(await anext(first), Listening)  # holds the only thread
            second = asyncio.create_task(
                collect(service.handle(request(attachment(clip, "b.wav"), user="2")))
            )
            while service.limits.running < 2:  # its decode is waiting for a thread
                await asyncio.sleep(0.01)
            pool.shutdown(wait=False, cancel_futures=True)
            outcome = (await second)[-1]
            assert isinstance(outcome, Failed) and outcome.error.kind == "busy"
            assert "restarting" in outcome.error.message
            matcher.gate.set()
            assert isinstance([s async for s in first][-1], Finished)
        await idle(service.limits)
    finally:
        matcher.gate.set()
        pool.shutdown(wait=True)


class Chat:
    """The platform side of one reply: one message sent, then edited."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Rendered]] = []

    async def send(self, rendered: Rendered) -> None:
        self.calls.append(("send", rendered))

    async def edit(self, rendered: Rendered, *, overtaken: Callable[[], bool]) -> None:
        self.calls.append(("edit", rendered))


async def test_a_request_becomes_one_reply_edited_into_the_answer(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    service = make_service(memory_index, executor)
    chat = Chat()
    async with asyncio.timeout(HANG_GUARD_S):
        await LiveReply(chat, 0.0).run(
            service.handle(request(attachment(media["known"]))), render_state
        )
    kinds = [kind for kind, _ in chat.calls]
    assert kinds[0] == "send" and set(kinds[1:]) <= {"edit"}
    assert chat.calls[0][1].kind == "progress"
    answer = chat.calls[-1][1]
    assert answer.kind == "answer" and answer.title.startswith("S01E03")
    assert not service.limits.in_flight(USER)


async def test_a_reposted_clip_is_answered_from_the_cache(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    settings = Settings()
    cache: AnswerCache[Finished] = AnswerCache()
    service = Service(
        Matcher(memory_index),
        Fetcher(settings.fetch),
        Limits(settings.limits),
        settings,
        executor,
        cache=cache,
        generation="gen-1",
    )
    first = await collect(service.handle(request(attachment(media["known"]), rid="first")))
    again = await collect(service.handle(request(attachment(media["known"]), rid="again")))
    assert isinstance(first[-1], Finished)
    assert again == [Fetching(), first[-1]]
    assert cache.hits == 1
    # A link seen before is answered without fetching it (this one could not be fetched).
    url = "http://127.0.0.1:9/clip.mp4"
    cache.put([link_key(url)], first[-1], generation="gen-1")
    linked = await collect(service.handle(request(Link(url), rid="link")))
    assert linked == [first[-1]]
    # Another index generation does not share answers.
    service.generation = "gen-2"
    other = await collect(service.handle(request(Link(url), rid="other")))
    assert isinstance(other[-1], Failed) and other[-1].error.kind == "blocked_address"


class GatedRead:
    """An attachment whose download (the adapter's `read`) waits until `gate` is set."""

    def __init__(self, data: bytes, name: str = "clip.wav") -> None:
        self.data = data
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.attachment = Attachment(name, len(data), "audio/wav", self.read)

    async def read(self) -> bytes:
        self.started.set()
        await self.gate.wait()
        return self.data


async def test_only_the_front_of_the_line_downloads(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    service = make_service(
        memory_index,
        executor,
        limits=LimitSettings(max_concurrent=1, max_queue=5, max_downloads=1),
    )
    first, second = GatedRead(media["stranger"]), GatedRead(media["stranger"])
    a = service.handle(request(first.attachment, user="1"))
    b = service.handle(request(second.attachment, user="2"))
    async with asyncio.timeout(HANG_GUARD_S):
        a_states = asyncio.create_task(collect(a))
        await first.started.wait()
        # Its place is taken before downloading, and it does not download yet.
        assert await anext(b) == Queued(2)
        assert not second.started.is_set()
        first.gate.set()
        second.gate.set()
        # The first download done, the second may start (and is next for the slot).
        assert await anext(b) == Fetching()
        outcomes = [(await a_states)[-1], (await collect(b))[-1]]
    assert all(isinstance(o, Finished) for o in outcomes)
    await idle(service.limits)


async def test_a_full_line_refuses_before_downloading(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    service = make_service(
        memory_index, executor, limits=LimitSettings(max_concurrent=1, max_queue=0)
    )
    first = GatedRead(media["stranger"])
    a = service.handle(request(first.attachment, user="1"))
    reads: list[int] = []

    async def read() -> bytes:
        reads.append(1)
        return media["stranger"]

    async with asyncio.timeout(HANG_GUARD_S):
        a_states = asyncio.create_task(collect(a))
        await first.started.wait()
        refused = await collect(service.handle(request(Attachment("b.wav", 9, None, read), "2")))
        assert [type(s) for s in refused] == [Failed] and refused[0].error.kind == "busy"
        assert reads == []
        assert service.limits.remaining(User("telegram", "2", "user2"))[0] == 5  # no quota
        first.gate.set()
        assert isinstance((await a_states)[-1], Finished)
    await idle(service.limits)


async def test_the_media_digest_is_computed_off_the_loop(
    memory_index: FingerprintIndex,
    executor: ThreadPoolExecutor,
    media: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bot.core.service

    threads: list[threading.Thread] = []

    def spy(data: bytes) -> str:
        threads.append(threading.current_thread())
        return media_key(data)

    monkeypatch.setattr(bot.core.service, "media_key", spy)
    service = make_service(memory_index, executor)
    states = await collect(service.handle(request(attachment(media["known"]))))
    assert isinstance(states[-1], Finished)
    assert threads and threading.main_thread() not in threads


async def test_an_unsolicited_scan_costs_no_quota_and_never_blocks_its_poster(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    matcher = GatedMatcher(memory_index)
    service = make_service(
        memory_index,
        executor,
        matcher=matcher,
        limits=LimitSettings(per_minute=5, max_concurrent=1, max_queue=2),
    )
    clip = media["stranger"]
    scan = service.handle(replace(request(attachment(clip, "a.wav")), unsolicited=True))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            assert await anext(scan) == Fetching()
            assert isinstance(await anext(scan), Listening)  # running, parked by the gate
            assert service.limits.remaining(USER)[0] == 5
            # The same user asks: not "one at a time"; they wait for the slot like anyone.
            asked = service.handle(request(attachment(clip, "b.wav"), rid="asked"))
            assert await anext(asked) == Fetching()
            assert await anext(asked) == Queued(1)
            # Another scan while someone waits: refused at once, not queued.
            other = await collect(
                service.handle(
                    replace(request(attachment(clip, "c.wav"), user="2"), unsolicited=True)
                )
            )
            assert [type(s) for s in other] == [Failed] and other[0].error.kind == "busy"
            matcher.gate.set()
            assert isinstance((await collect(scan))[-1], Finished)
            assert isinstance((await collect(asked))[-1], Finished)
    finally:
        matcher.gate.set()
    assert service.limits.remaining(USER)[0] == 4  # only the asked request was charged
    await idle(service.limits)


async def test_a_drain_lets_running_requests_finish(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    matcher = GatedMatcher(memory_index)
    service = make_service(memory_index, executor, matcher=matcher)
    states = service.handle(request(attachment(media["stranger"], "a.wav")))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await anext(states)
            assert isinstance(await anext(states), Listening)
            drain = asyncio.create_task(service.drain(HANG_GUARD_S))
            await asyncio.sleep(0)
            assert service.draining and not drain.done()
            # New work is refused while the running request finishes.
            late = await collect(service.handle(request(attachment(media["known"]), "2")))
            assert [type(s) for s in late] == [Failed]
            assert late[0].error.kind == "busy" and "restarting" in late[0].error.message
            matcher.gate.set()
            assert isinstance((await collect(states))[-1], Finished)
            await drain
    finally:
        matcher.gate.set()
    assert service.active == 0
    await idle(service.limits)


async def test_after_the_grace_every_running_stream_ends_restarting(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, media: dict[str, bytes]
) -> None:
    matcher = GatedMatcher(memory_index)
    service = make_service(
        memory_index,
        executor,
        matcher=matcher,
        limits=LimitSettings(max_concurrent=1, max_queue=5, max_downloads=1),
    )
    downloading = GatedRead(media["stranger"])
    chat = Chat()
    running = asyncio.create_task(
        LiveReply(chat, 0.0).run(
            service.handle(request(attachment(media["stranger"], "a.wav"), user="1")), render_state
        )
    )
    streams = [
        service.handle(request(downloading.attachment, user="2")),  # in its download
        service.handle(request(attachment(media["known"]), user="3")),  # waiting to download
    ]
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            while not matcher.parked.is_set():  # the first request is mid-match
                await asyncio.sleep(0.01)
            collecting = [asyncio.create_task(collect(streams[0]))]
            await downloading.started.wait()
            assert await anext(streams[1]) == Queued(2)
            collecting.append(asyncio.create_task(collect(streams[1])))
            await service.drain(0.0)
            assert service.active == 0
            await running
            outcomes = [await task for task in collecting]
    finally:
        matcher.gate.set()
    assert [[type(s) for s in states] for states in outcomes] == [[Fetching, Failed], [Failed]]
    for states in outcomes:
        error = states[-1].error  # type: ignore[union-attr]
        assert error.kind == "busy" and "restarting" in error.message
    # The reply that was showing progress ends with the same sentence.
    last = chat.calls[-1][1]
    assert last.kind == "error" and "restarting" in " ".join(last.lines)
    assert not any(service.limits.in_flight(User("telegram", u, "")) for u in "123")
    await idle(service.limits)  # the parked worker thread let go of its slot
    assert matcher.finished.is_set()


# ---------------------------------------------------------------------------------------------
# Long clips: a work budget, and turns


@pytest.fixture(scope="module")
def ten_minutes_of_noise(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """What stalled everyone before: ten minutes of noise in a small Opus file."""
    noise = np.random.default_rng(11).standard_normal(600 * SR).astype(np.float32) * 0.1
    return make_media(tmp_path_factory.mktemp("long"), noise, SR, "opus").read_bytes()


async def test_a_long_clip_spends_its_budget_and_says_how_much_it_heard(
    memory_index: FingerprintIndex, executor: ThreadPoolExecutor, ten_minutes_of_noise: bytes
) -> None:
    service = make_service(memory_index, executor)
    service.settings = replace(
        service.settings, matcher=replace(service.settings.matcher, budget_cpu_s=0.5)
    )
    states = await collect(service.handle(request(attachment(ten_minutes_of_noise, "n.ogg"))))
    final = states[-1]
    assert isinstance(final, Finished), final
    assert final.truncated and final.result.cut_short
    assert final.result.clip_duration_s == pytest.approx(600.0, abs=1.0)
    # Past the budget after the early stages, yet the first window is always heard.
    assert 29.0 < final.result.heard_s < 600.0
    assert final.result.status != "match"
    note = render_state(final).lines[-1]
    assert note.startswith("The clip is long, so I listened to the first")
    heard = [s.result.heard_s for s in states if isinstance(s, Listening | Finished)]
    assert heard == sorted(heard)


async def test_a_long_clip_gives_its_turn_to_a_short_one(
    memory_index: FingerprintIndex,
    executor: ThreadPoolExecutor,
    media: dict[str, bytes],
    ten_minutes_of_noise: bytes,
) -> None:
    """One match slot: a short clip sent while a long one is heard is answered before it."""
    limits = LimitSettings(max_concurrent=1, max_queue=5)
    service = make_service(memory_index, executor, limits=limits)
    finished: list[str] = []
    in_windows = asyncio.Event()

    async def follow(req: Request, name: str) -> list[State]:
        states = []
        async for state in service.handle(req):
            states.append(state)
            if isinstance(state, Listening) and state.result.heard_s > 10.0:
                in_windows.set()
        finished.append(name)
        return states

    async with asyncio.timeout(HANG_GUARD_S):
        long = asyncio.create_task(
            follow(request(attachment(ten_minutes_of_noise, "n.ogg"), "1", "req00001"), "long")
        )
        await in_windows.wait()
        short = await follow(request(attachment(media["known"]), "2", "req00002"), "short")
        long_states = await long
    assert finished == ["short", "long"]
    answer = short[-1]
    assert isinstance(answer, Finished) and answer.result.best is not None
    assert answer.result.best.episode == "S01E03"
    last = long_states[-1]
    assert isinstance(last, Finished) and last.result.status != "match"
    # It went on after its turn: all ten minutes (within the default budget) were heard.
    assert last.result.heard_s == pytest.approx(600.0, abs=1.0)
    assert not any(isinstance(s, Queued) for s in long_states[1:])
    await idle(service.limits)
