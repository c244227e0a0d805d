"""render_state: a pure function of the state, the same words on every platform."""

from __future__ import annotations

import pytest

import bot.core.errors as errors
from bot.core.errors import Internal, RateLimited, UserFacingError, format_wait
from bot.core.render import (
    Rendered,
    confidence_words,
    describe_result,
    render_state,
)
from bot.core.states import Failed, Fetching, Finished, Listening, Queued
from matcher.result import Match, MatchResult


def match(
    episode: str = "S01E02",
    title: str | None = "Two",
    *,
    offset_s: float = 62.0,
    confidence: float = 0.96,
    speed: float = 1.0,
    pitch: float | None = None,
    query_s: tuple[float, float] = (0.0, 8.0),
) -> Match:
    return Match(
        episode=episode,
        title=title,
        offset_s=offset_s,
        query_start_s=query_s[0],
        query_stop_s=query_s[1],
        ref_start_s=offset_s + query_s[0],
        ref_stop_s=offset_s + query_s[1],
        speed=speed,
        confidence=confidence,
        votes=40,
        false_alarm_p=1e-20,
        pitch=speed if pitch is None else pitch,
    )


def found(best: Match, *, segments: list[Match] | None = None, heard_s: float = 8.0) -> MatchResult:
    return MatchResult(
        status="match",
        best=best,
        candidates=[best],
        segments=segments or [best],
        heard_s=heard_s,
        clip_duration_s=heard_s,
    )


def nothing(heard_s: float) -> MatchResult:
    return MatchResult(status="no_match", best=None, heard_s=heard_s, clip_duration_s=heard_s)


def text(rendered: Rendered) -> str:
    return "\n".join([rendered.title, *rendered.lines])


def test_a_sure_answer_names_episode_time_and_confidence() -> None:
    rendered = render_state(Finished(found(match())))
    assert rendered == Rendered('S01E02 "Two"', ["At 1:02 (sure, 96%)."], "answer", ephemeral=False)


@pytest.mark.parametrize(
    ("confidence", "words", "kind"),
    [(0.97, "sure", "answer"), (0.7, "fairly sure", "answer"), (0.3, "unsure", "unsure")],
)
def test_confidence_in_words_and_percent(confidence: float, words: str, kind: str) -> None:
    rendered = render_state(Finished(found(match(confidence=confidence))))
    assert confidence_words(confidence) == words
    assert f"({words}, {int(confidence * 100)}%)" in rendered.lines[0]
    assert rendered.kind == kind


def test_an_episode_without_a_title_shows_its_id() -> None:
    assert render_state(Finished(found(match(title=None)))).title == "S01E02"


@pytest.mark.parametrize(
    ("speed", "pitch", "note"),
    [
        (1.25, None, "The clip is sped up 1.25× compared with the episode."),
        (0.8, None, "The clip is slowed down 0.80× compared with the episode."),
        (1.25, 1.0, "The clip is sped up 1.25× with its pitch kept compared with the episode."),
        (1.0, 2 ** (2 / 12), "The clip's pitch is shifted up 2.0 semitones."),
    ],
)
def test_a_changed_speed_or_pitch_is_mentioned(
    speed: float, pitch: float | None, note: str
) -> None:
    rendered = render_state(Finished(found(match(speed=speed, pitch=pitch))))
    assert rendered.lines[1:] == [note]


def test_a_normal_speed_is_not_mentioned() -> None:
    rendered = render_state(Finished(found(match(speed=1.01))))
    assert len(rendered.lines) == 1 and "×" not in text(rendered)


def test_a_compilation_gets_a_timeline() -> None:
    second = match("S01E05", "Five", offset_s=180.0, query_s=(7.0, 15.0))
    first = match("S01E02", "Two", offset_s=190.0, query_s=(0.0, 7.0))
    rendered = render_state(Finished(found(first, segments=[second, first])))
    assert rendered.title == "A compilation: 2 clips"
    assert rendered.lines == [
        '0:00–0:07 S01E02 "Two" at 3:10',
        '0:07–0:15 S01E05 "Five" at 3:07',
    ]


@pytest.mark.parametrize(
    ("label", "title"),
    [
        ("intro", "That's the show's intro"),
        ("outro", "That's the show's outro"),
        ("recap", "That's a recap"),
        ("shared", "That part is shared by several episodes"),
    ],
)
def test_shared_content_says_how_many_episodes_hold_it(label: str, title: str) -> None:
    result = MatchResult(
        status="ambiguous", best=None, heard_s=6.0, repeated=label, repeated_count=14
    )
    rendered = render_state(Finished(result))
    assert rendered.title == title
    assert "It appears in 14 episodes" in rendered.lines[0]


def test_ambiguous_lists_the_candidates() -> None:
    a, b = match("S01E02", "Two", confidence=0.5), match("S01E04", "Four", confidence=0.45)
    result = MatchResult(status="ambiguous", best=None, candidates=[a, b], heard_s=8.0)
    rendered = render_state(Finished(result))
    assert rendered.kind == "unsure"
    assert any("S01E02" in line for line in rendered.lines)
    assert any("S01E04" in line for line in rendered.lines)


@pytest.mark.parametrize(("heard_s", "tip"), [(3.0, "longer clip"), (30.0, "without music")])
def test_not_found_comes_with_a_tip(heard_s: float, tip: str) -> None:
    rendered = render_state(Finished(nothing(heard_s)))
    assert rendered.kind == "not_found" and rendered.title == "Not found"
    assert tip in rendered.lines[-1]


def test_a_truncated_clip_says_what_was_heard() -> None:
    rendered = render_state(Finished(found(match(), heard_s=600.0), truncated=True))
    assert "first 10:00" in rendered.lines[-1]


def test_progress_states() -> None:
    assert render_state(Fetching()).kind == "progress"
    assert "number 3" in text(render_state(Queued(3)))
    interim = MatchResult(
        status="match", best=match(), heard_s=3.0, clip_duration_s=12.0, final=False
    )
    listening = render_state(Listening(interim))
    assert listening.title == "Listening… 3 s of 12 s"
    assert 'S01E02 "Two"' in listening.lines[0]
    unsure = render_state(Listening(nothing(5.0)))
    assert unsure.lines == ["Nothing certain yet."]


def every_error() -> list[UserFacingError]:
    simple = [
        cls()
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, UserFacingError)
        and cls not in (UserFacingError, RateLimited, Internal)
    ]
    return [*simple, RateLimited(41.2), Internal("ab12cd34")]


@pytest.mark.parametrize("error", every_error(), ids=lambda e: e.kind)
def test_every_error_kind_is_one_sentence(error: UserFacingError) -> None:
    rendered = render_state(Failed(error, "ab12cd34"))
    assert rendered.kind == "error"
    assert len(rendered.lines) == 1
    sentence = rendered.lines[0]
    assert sentence and "\n" not in sentence and sentence.endswith((".", ")"))
    assert rendered.ephemeral == (error.kind in {"rate_limited", "already_working", "busy"})


def test_error_kinds_are_distinct() -> None:
    kinds = [e.kind for e in every_error()]
    assert len(kinds) == len(set(kinds))


def test_no_stack_trace_reaches_the_user() -> None:
    error = errors.NotMedia('Traceback (most recent call last):\n  File "/srv/x.py"')
    rendered = render_state(Failed(error, "x"))
    assert rendered.lines == [errors.NotMedia.default_message]
    long = errors.FetchFailed("x" * 1000 + "\nsecond line")
    assert len(render_state(Failed(long, "x")).lines[0]) <= 300


def test_internal_errors_show_their_id() -> None:
    assert "ab12cd34" in render_state(Failed(Internal("ab12cd34"), "ab12cd34")).lines[0]


@pytest.mark.parametrize(
    ("seconds", "wait"),
    [(0.2, "1 s"), (41.2, "42 s"), (60.0, "1 min"), (299.0, "5 min"), (2.5 * 3600, "3 h")],
)
def test_waits_read_naturally(seconds: float, wait: str) -> None:
    assert format_wait(seconds) == wait
    assert f"try again in {wait}." in render_state(Failed(RateLimited(seconds), "x")).lines[0]


def test_the_cli_wording_is_unchanged() -> None:
    result = found(match())
    assert describe_result(result) == 'S01E02 "Two" at 1:02 (96%)'


def test_a_long_clip_shows_how_far_it_was_heard_in_minutes() -> None:
    interim = MatchResult(status="no_match", best=None, heard_s=90.0, clip_duration_s=600.0)
    assert render_state(Listening(interim)).title == "Listening… 1:30 of 10:00"
