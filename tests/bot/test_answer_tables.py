"""Every kind of final answer, rendered for both platforms, within every platform limit.

Real clients cannot be screenshotted here; instead each answer kind goes through the same
functions the adapters send with (`render_state` → Discord embed + components, Telegram HTML +
inline keyboard) and each platform limit is checked on the result.
"""

from __future__ import annotations

import discord
import pytest

from bot.adapters.base import parse_action_payload
from bot.adapters.discord.writing import rendered2embed, rendered2view
from bot.adapters.telegram.writing import render_reply
from bot.core.render import ActionButton, LinkButton, Rendered, render_state
from bot.core.states import Finished
from matcher.result import Match, MatchResult
from tests.fakes.telegram_server import visible_text

WATCH = "https://watch.example/s{season}/e{episode}?t={seconds}"
HOSTILE_TITLE = 'Fish & <Chips> *and* _Mr_Hankey_ [x](y) `code` "q"'


def match(
    episode: str = "S01E02",
    title: str | None = "Two",
    *,
    offset_s: float = 62.0,
    confidence: float = 0.96,
    query_s: tuple[float, float] = (0.0, 8.0),
    speed: float = 1.0,
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
        pitch=speed,
    )


def url(m: Match, at_s: float) -> str:
    season, episode = m.episode[1:3], m.episode[4:6]
    return WATCH.format(season=int(season), episode=int(episode), seconds=int(at_s))


def single(best: Match, *, candidates: list[Match] | None = None) -> MatchResult:
    return MatchResult(
        status="match",
        best=best,
        candidates=candidates or [best],
        segments=[best],
        heard_s=10.0,
        clip_duration_s=10.0,
    )


def timeline(n: int, *, title: str = "Title") -> MatchResult:
    scenes = [
        match(
            f"S0{i % 9 + 1}E{i % 20 + 1:02d}",
            title,
            offset_s=100.0 + 7 * i,
            query_s=(4.0 * i, 4.0 * i + 4),
        )
        for i in range(n)
    ]
    return MatchResult(
        status="match",
        best=scenes[0],
        candidates=scenes[:1],
        segments=scenes,
        heard_s=4.0 * n,
        clip_duration_s=4.0 * n,
    )


def answers() -> dict[str, Finished]:
    """Each answer kind, bare and with everything it can offer (links, feedback id, preview)."""
    sure, fair = match(), match(confidence=0.7)
    unsure = match(confidence=0.3)
    rivals = [
        unsure,
        match("S03E04", "Four", confidence=0.25),
        match("S05E06", None, confidence=0.2),
    ]
    ambiguous = MatchResult(status="ambiguous", best=None, candidates=rivals, heard_s=10.0)
    intro = MatchResult(
        status="ambiguous", best=None, heard_s=6.0, repeated="intro", repeated_count=40
    )
    not_found = MatchResult(status="no_match", best=None, heard_s=3.0, clip_duration_s=3.0)
    long_title = match(title="T" * 600, confidence=0.9)
    hostile = match(title=HOSTILE_TITLE)
    fast = match(speed=1.3)
    kinds: dict[str, tuple[MatchResult, bool]] = {
        "sure": (single(sure), False),
        "fairly_sure": (single(fair), False),
        "unsure_with_rivals": (single(unsure, candidates=rivals), False),
        "ambiguous": (ambiguous, False),
        "intro": (intro, False),
        "not_found": (not_found, False),
        "sped_up": (single(fast), False),
        "long_title": (single(long_title), False),
        "hostile_title": (single(hostile), False),
        "compilation_3": (timeline(3), False),
        "compilation_80": (timeline(80, title="x" * 90), False),
        "compilation_hostile": (timeline(4, title=HOSTILE_TITLE), False),
        "truncated": (single(sure), True),
    }
    cases: dict[str, Finished] = {}
    for name, (result, truncated) in kinds.items():
        cases[f"{name}/bare"] = Finished(result, truncated=truncated)
        cases[f"{name}/offers"] = Finished(
            result,
            truncated=truncated,
            answer_id="ab12cd34",
            watch_urls=watch_urls(result),
            preview="/index/previews/S01E02.jpg",
        )
    return cases


def watch_urls(result: MatchResult) -> tuple[str, ...]:
    if len({s.episode for s in result.segments}) > 1:
        return tuple(url(s, s.ref_start_s) for s in result.segments)
    return (url(result.best, result.best.offset_s),) if result.best else ()


CASES = answers()


def _discord_sizes(embed: discord.Embed) -> tuple[int, int, int]:
    title, description = embed.title or "", embed.description or ""
    return len(title), len(description), len(title) + len(description)


@pytest.mark.parametrize("name", sorted(CASES))
def test_discord_answer_fits_every_limit(name: str) -> None:
    rendered = render_state(CASES[name])
    embed = rendered2embed(rendered)
    title_len, description_len, total = _discord_sizes(embed)
    assert 0 < title_len <= 256
    assert description_len <= 4096 and total <= 6000
    view = rendered2view(rendered)
    items = [] if view is None else view.children
    assert len(items) <= 25
    for item in items:
        assert isinstance(item, discord.ui.Button)
        assert item.label and len(item.label) <= 80
        if item.url is not None:
            assert item.url.startswith("https://") and len(item.url) <= 512
        else:
            assert item.custom_id is not None and len(item.custom_id) <= 100
            assert parse_action_payload(item.custom_id) is not None


@pytest.mark.parametrize("name", sorted(CASES))
def test_telegram_answer_fits_every_limit(name: str) -> None:
    reply = render_reply(CASES[name])
    shown = visible_text(reply.text, "HTML")  # raises on HTML Telegram would refuse
    assert shown and len(shown.encode("utf-16-le")) // 2 <= 4096
    assert reply.final
    buttons = (
        [] if reply.keyboard is None else [b for row in reply.keyboard.inline_keyboard for b in row]
    )
    for button in buttons:
        assert button.text and len(button.text) <= 64
        if button.url is not None:
            assert button.url.startswith("https://")
        else:
            data = button.callback_data
            assert isinstance(data, str) and len(data.encode()) <= 64
            assert parse_action_payload(data) is not None


def _buttons(rendered: Rendered) -> list[str]:
    return [
        f"link:{b.label}" if isinstance(b, LinkButton) else f"action:{b.action}"
        for b in rendered.buttons
    ]


EXPECTED_BUTTONS = {
    "sure": ["link:Watch at 1:02", "action:right", "action:wrong"],
    "fairly_sure": ["link:Watch at 1:02", "action:right", "action:wrong"],
    "unsure_with_rivals": [
        "link:Watch at 1:02",
        "action:right",
        "action:wrong",
        "action:candidates",
    ],
    "ambiguous": ["action:right", "action:wrong"],
    "intro": ["action:right", "action:wrong"],
    "not_found": ["action:right", "action:wrong"],
    "sped_up": ["link:Watch at 1:02", "action:right", "action:wrong"],
    "compilation_3": ["action:right", "action:wrong"],
    "truncated": ["link:Watch at 1:02", "action:right", "action:wrong"],
}


@pytest.mark.parametrize(("kind", "expected"), sorted(EXPECTED_BUTTONS.items()))
def test_which_buttons_each_answer_offers(kind: str, expected: list[str]) -> None:
    assert _buttons(render_state(CASES[f"{kind}/offers"])) == expected
    assert render_state(CASES[f"{kind}/bare"]).buttons == ()


def test_a_timeline_links_each_scene_on_both_platforms() -> None:
    finished = CASES["compilation_3/offers"]
    rendered = render_state(finished)
    assert rendered.links[:3] == finished.watch_urls
    description = rendered2embed(rendered).description or ""
    for address in finished.watch_urls:
        assert f"(<{address}>)" in description
    html = render_reply(finished).text
    for address in finished.watch_urls:
        assert f'<a href="{address.replace("&", "&amp;")}">' in html


def test_a_long_timeline_keeps_links_on_scene_lines_only() -> None:
    reply = render_reply(CASES["compilation_80/offers"])
    last = reply.text.splitlines()[-1]
    assert last.startswith("… and ") and "<a " not in last


def test_other_candidates_list_them_in_place() -> None:
    from bot.core.render import render_finished

    finished = CASES["unsure_with_rivals/offers"]
    expanded = render_finished(finished, all_candidates=True)
    shown = "\n".join(expanded.lines)
    assert "S03E04" in shown and "S05E06" in shown
    assert "candidates" not in [b.action for b in expanded.buttons if isinstance(b, ActionButton)]


def test_the_preview_goes_with_an_episode_answer_only() -> None:
    assert render_state(CASES["sure/offers"]).preview == "/index/previews/S01E02.jpg"
    assert render_state(CASES["intro/offers"]).preview is None
    assert render_state(CASES["not_found/offers"]).preview is None
    assert render_state(CASES["sure/bare"]).preview is None
