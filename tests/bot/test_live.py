"""LiveReply against an in-memory reply target (a fake of the platform) and a fake clock.

Nothing here measures wall-clock time: pacing is checked on the fake clock the reply runs on,
and "while an edit is in flight" is made deterministic with events.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from bot.core.errors import Busy
from bot.core.live import (
    BACKOFF_MAX_S,
    MAX_RETRIES,
    LiveReply,
    Overtaken,
    RetryLater,
    TransientFailure,
)
from bot.core.states import Failed, Fetching, Finished, Queued, State
from matcher.result import MatchResult

HANG_GUARD_S = 30.0
DONE = Finished(MatchResult(status="no_match", best=None))


def name(state: State) -> str:
    """A render function: what the recorder stores."""
    if isinstance(state, Queued):
        return f"queued {state.position}"
    return type(state).__name__.lower()


class FakeClock:
    """Monotonic time that moves only when the reply sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Recorder:
    """The platform: records (call, rendered, fake time); can refuse or block calls."""

    clock: FakeClock | None = None
    calls: list[tuple[str, str, float]] = field(default_factory=list)
    retry_later: list[float] = field(default_factory=list)  # raised by the next calls
    transient: int = 0  # the next calls fail with a 5xx-like TransientFailure
    broken_edits: int = 0
    gate: asyncio.Event | None = None  # edits wait for it
    # Like a paced platform client: an edit overtaken while it waited is dropped, not sent.
    drops_overtaken: bool = False
    editing: asyncio.Event = field(default_factory=asyncio.Event)
    overtaken: list[str] = field(default_factory=list)

    async def send(self, rendered: str) -> None:
        await self._call("send", rendered)

    async def edit(self, rendered: str, *, overtaken: Callable[[], bool]) -> None:
        self.editing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.drops_overtaken and overtaken():
            self.overtaken.append(rendered)
            raise Overtaken()
        if self.broken_edits:
            self.broken_edits -= 1
            raise ConnectionError("platform hiccup")
        await self._call("edit", rendered)

    async def _call(self, kind: str, rendered: str) -> None:
        if self.transient:
            self.transient -= 1
            raise TransientFailure("502 Bad Gateway")
        if self.retry_later:
            raise RetryLater(self.retry_later.pop(0))
        self.calls.append((kind, rendered, self.clock() if self.clock else 0.0))

    @property
    def shown(self) -> list[str]:
        return [rendered for _, rendered, _ in self.calls]


async def stream(*states: State) -> AsyncIterator[State]:
    for state in states:
        await asyncio.sleep(0)
        yield state


class Feed:
    """A state stream the test pushes into, and which notes whether it was closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[State | None] = asyncio.Queue()
        self.closed = False

    def push(self, *states: State) -> None:
        for state in states:
            self.queue.put_nowait(state)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def states(self) -> AsyncIterator[State]:
        try:
            while (state := await self.queue.get()) is not None:
                yield state
        finally:
            self.closed = True


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        while not condition():
            await asyncio.sleep(0)


async def run(reply: LiveReply[str], states: AsyncIterator[State]) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        await reply.run(states, name)


async def test_first_state_is_sent_then_edited_to_the_final_one() -> None:
    target = Recorder()
    await run(LiveReply(target, 0.0), stream(Queued(2), Queued(1), Fetching(), DONE))
    assert target.calls[0][0] == "send"
    assert all(kind == "edit" for kind, _, _ in target.calls[1:])
    assert target.shown[-1] == "finished"


async def test_stale_states_are_dropped_while_an_edit_is_in_flight() -> None:
    feed = Feed()
    target = Recorder(gate=asyncio.Event())
    task = asyncio.create_task(run(LiveReply(target, 0.0), feed.states()))
    feed.push(Queued(3))
    await until(lambda: len(target.calls) == 1)
    feed.push(Queued(2))
    await until(target.editing.is_set)  # the edit to "queued 2" hangs on the platform
    feed.push(Queued(1), Fetching(), DONE)
    feed.end()
    await asyncio.sleep(0)
    target.gate.set()  # type: ignore[union-attr]
    await task
    assert target.shown == ["queued 3", "queued 2", "finished"]


async def test_a_waiting_edit_overtaken_by_a_newer_state_is_dropped_not_sent() -> None:
    feed = Feed()
    target = Recorder(gate=asyncio.Event(), drops_overtaken=True)
    task = asyncio.create_task(run(LiveReply(target, 0.0), feed.states()))
    feed.push(Queued(3))
    await until(lambda: len(target.calls) == 1)
    feed.push(Queued(2))
    await until(target.editing.is_set)  # "queued 2" waits in the client's line
    feed.push(Fetching())
    feed.push(DONE)
    feed.end()
    await asyncio.sleep(0)
    target.gate.set()  # type: ignore[union-attr]
    await task
    assert target.overtaken == ["queued 2"]
    assert target.shown == ["queued 3", "finished"]


async def test_the_answer_is_never_overtaken() -> None:
    target = Recorder(drops_overtaken=True)
    await run(LiveReply(target, 0.0), stream(Fetching(), DONE))
    assert target.shown == ["fetching", "finished"] and target.overtaken == []


async def test_edits_keep_the_platform_pace_on_the_clock() -> None:
    clock = FakeClock()
    target = Recorder(clock=clock)
    reply = LiveReply(target, 10.0, clock=clock, sleep=clock.sleep)
    await run(reply, stream(Queued(3), Queued(2), Queued(1), Fetching(), DONE))
    times = [t for _, _, t in target.calls]
    assert target.shown[0] == "queued 3" and target.shown[-1] == "finished"
    assert all(later - earlier >= 10.0 for earlier, later in itertools.pairwise(times))


async def test_retry_later_is_honoured_and_the_latest_state_sent() -> None:
    clock = FakeClock()
    feed = Feed()
    target = Recorder(clock=clock, retry_later=[])
    reply = LiveReply(target, 0.0, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(run(reply, feed.states()))
    feed.push(Queued(2))
    await until(lambda: bool(target.calls))
    sent_at = target.calls[0][2]
    target.retry_later.append(42.0)
    feed.push(Queued(1), DONE)
    feed.end()
    await task
    assert 42.0 in clock.sleeps
    assert target.shown == ["queued 2", "finished"]
    assert target.calls[1][2] - sent_at >= 42.0


async def test_retry_later_on_the_first_message_still_sends_it() -> None:
    clock = FakeClock()
    target = Recorder(clock=clock, retry_later=[5.0, 5.0])
    reply = LiveReply(target, 1.0, clock=clock, sleep=clock.sleep)
    await run(reply, stream(Fetching(), DONE))
    assert next(kind for kind, _, _ in target.calls) == "send"
    assert target.shown[-1] == "finished"
    assert clock.sleeps.count(5.0) == 2


async def test_a_platform_that_never_relents_gives_up_and_closes_the_stream() -> None:
    clock = FakeClock()
    feed = Feed()
    target = Recorder(clock=clock, retry_later=[1.0] * (MAX_RETRIES + 5))
    reply = LiveReply(target, 0.0, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(run(reply, feed.states()))
    feed.push(Fetching())
    await until(lambda: len(clock.sleeps) == MAX_RETRIES)
    # Progress is given up on; the answer still gets its one last try, and that fails too.
    feed.push(Queued(1), DONE)
    feed.end()
    with pytest.raises(RetryLater):
        await task
    assert feed.closed
    assert target.calls == []
    assert len(target.retry_later) == 5 - 2  # one over the limit, then the final state's try


async def test_a_long_flood_wait_drops_progress_and_the_answer_waits_it_out() -> None:
    clock = FakeClock()
    feed = Feed()
    target = Recorder(clock=clock)
    reply = LiveReply(target, 0.0, max_wait_s=60.0, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(run(reply, feed.states()))
    feed.push(Queued(2))
    await until(lambda: bool(target.calls))
    target.retry_later.extend([20.0, 30.0, 300.0])  # Telegram's flood wait: 300 s
    feed.push(Queued(1))
    await until(lambda: len(clock.sleeps) == 2)
    feed.push(Fetching(), DONE)
    feed.end()
    await task
    # 20 + 30 s waited as asked; 300 s would pass the 60 s budget, so progress is dropped
    # and the answer is sent once, when the flood wait is over (earlier would be refused).
    assert clock.sleeps == [20.0, 30.0, 300.0]
    assert target.shown == ["queued 2", "finished"]


async def test_the_last_try_waits_as_long_as_the_platform_asked() -> None:
    clock = FakeClock()
    target = Recorder(clock=clock, retry_later=[45.0, 30.0])
    reply = LiveReply(target, 0.0, max_wait_s=60.0, clock=clock, sleep=clock.sleep)
    await run(reply, stream(Fetching(), DONE))
    assert clock.sleeps == [45.0, 30.0]
    assert target.shown == ["finished"]


async def test_a_failed_progress_edit_does_not_lose_the_answer() -> None:
    feed = Feed()
    target = Recorder(broken_edits=1, gate=asyncio.Event())
    task = asyncio.create_task(run(LiveReply(target, 0.0), feed.states()))
    feed.push(Queued(1))
    await until(lambda: bool(target.calls))
    feed.push(Fetching())
    await until(target.editing.is_set)
    feed.push(DONE)
    feed.end()
    target.gate.set()  # type: ignore[union-attr]
    await task
    assert target.shown == ["queued 1", "finished"]


async def test_a_failing_final_edit_is_raised() -> None:
    target = Recorder(broken_edits=1)
    with pytest.raises(ConnectionError):
        await run(LiveReply(target, 0.0), stream(Fetching(), DONE))


async def test_identical_renders_are_not_sent_twice() -> None:
    target = Recorder()
    await run(LiveReply(target, 0.0), stream(Queued(1), Queued(1), Queued(1), DONE))
    assert target.shown == ["queued 1", "finished"]


async def test_a_lone_final_state_is_one_message() -> None:
    target = Recorder()
    await run(LiveReply(target, 5.0), stream(Failed(Busy(), "id")))
    assert target.calls == [("send", "failed", 0.0)]


async def test_an_error_in_the_state_stream_reaches_the_caller() -> None:
    async def broken() -> AsyncIterator[State]:
        yield Fetching()
        raise ValueError("bug")

    target = Recorder()
    with pytest.raises(ValueError, match="bug"):
        await run(LiveReply(target, 0.0), broken())
    assert target.shown == ["fetching"]


async def test_two_5xx_on_the_first_message_still_send_it() -> None:
    clock = FakeClock()
    target = Recorder(clock=clock, transient=2)
    await run(LiveReply(target, 0.0, clock=clock, sleep=clock.sleep), stream(DONE))
    assert target.shown == ["finished"]
    assert len(clock.sleeps) == 2 and all(0 < s <= BACKOFF_MAX_S for s in clock.sleeps)
    assert clock.sleeps[1] > clock.sleeps[0] / 2  # backing off, not hammering


async def test_a_5xx_on_the_final_edit_is_retried_until_the_answer_is_shown() -> None:
    clock = FakeClock()
    feed = Feed()
    target = Recorder(clock=clock)
    reply = LiveReply(target, 0.0, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(run(reply, feed.states()))
    feed.push(Fetching())
    await until(lambda: bool(target.calls))
    target.transient = 1
    feed.push(DONE)
    feed.end()
    await task
    assert target.shown == ["fetching", "finished"]


async def test_a_platform_down_for_good_ends_with_an_error_not_a_hang() -> None:
    clock = FakeClock()
    target = Recorder(clock=clock, transient=1000)
    with pytest.raises((TransientFailure, RetryLater)):
        await run(LiveReply(target, 0.0, clock=clock, sleep=clock.sleep), stream(Fetching(), DONE))
    assert target.shown == []
    assert sum(clock.sleeps) <= 60.0 + 300.0
