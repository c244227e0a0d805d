"""bench.load's numbers and report: what became of each request, percentiles against the issue's
bars, and the "Load" section of bench/RESULTS.md. Reads results only; never runs the bot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import common
from bench.bot_latency_report import ms, stats

SECTION = "## Load"
SECTION_NAME = "load"
BAR_FIRST_S = 1.0
BAR_FINAL_S = 5.0
# Kinds of final reply that are neither a loss nor an answer.
REFUSALS = ("busy", "already_working", "rate_limited")
ANSWERS = ("answer", "not_found")


@dataclass
class Outcome:
    """One request, times in seconds from its message (pushed to the fake)."""

    n: int
    user: int
    media: str
    variant: str
    kind: str  # how it was sent (Telegram Message field)
    planned_s: float  # when the plan said, from the start of the load
    pushed_s: float  # when it was pushed, from the start of the load
    first_s: float | None = None
    final_s: float | None = None
    messages: int = 0  # sendMessage + successful edits of the reply
    queued: bool = False  # was told "Waiting in line" at some point
    category: str = "lost"  # answer, not_found, one of REFUSALS, internal, error, lost
    correct: bool | None = None  # answers only: the right episode and time / "Not found"
    text: str = ""


def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    answered = [o for o in outcomes if o.category in ANSWERS]
    variants = sorted({o.variant for o in outcomes})
    return {
        "n": len(outcomes),
        "lost": sum(o.category == "lost" for o in outcomes),
        "categories": dict(Counter(o.category for o in outcomes).most_common()),
        "right": sum(bool(o.correct) for o in answered),
        "first_s": stats([o.first_s for o in outcomes if o.first_s is not None]),
        "final_answers_s": stats([o.final_s for o in answered if o.final_s is not None]),
        "final_all_s": stats([o.final_s for o in outcomes if o.final_s is not None]),
        "messages": stats([float(o.messages) for o in outcomes if o.messages]),
        "by_variant": {
            v: {
                "kind": next(o.kind for o in outcomes if o.variant == v),
                "n": sum(o.variant == v for o in outcomes),
                "answered": sum(o.variant == v for o in answered),
                "right": sum(bool(o.correct) for o in answered if o.variant == v),
                "first_s": stats([o.first_s for o in outcomes if o.variant == v and o.first_s]),
                "final_s": stats([o.final_s for o in answered if o.variant == v and o.final_s]),
            }
            for v in variants
        },
        "queued": sum(o.queued for o in outcomes),
        "max_in_flight": max_in_flight(outcomes),
        "push_late_s": stats([o.pushed_s - o.planned_s for o in outcomes]),
    }


def max_in_flight(outcomes: Sequence[Outcome]) -> int:
    """The most requests waiting for their final reply at once (a lost one waits to the end)."""
    events = sorted(
        [(o.pushed_s, 1) for o in outcomes]
        + [(o.pushed_s + o.final_s, -1) for o in outcomes if o.final_s is not None]
    )
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def triple(st: dict[str, float]) -> str:
    return f"{ms(st.get('p50'))} / {ms(st.get('p95'))} / {ms(st.get('max'))}" if st else "–"


def verdict(st: dict[str, float], bar_s: float, lost: int) -> str:
    if not st:
        return "**FAIL** (none)"
    if lost:
        return "**FAIL** (requests lost)"
    return "pass" if st["p95"] <= bar_s else "**FAIL**"


CATEGORY_WORDS = {
    "answer": "answers",
    "not_found": '"not found"',
    "busy": 'refused "I\'m busy right now"',
    "already_working": 'refused "one clip at a time"',
    "rate_limited": 'refused "slow down"',
    "internal": '"something went wrong"',
    "error": "other errors",
    "quiet_repeat": "refused again within 30 s without a reply (one refusal per window)",
    "lost": "lost",
}


def quiet_note(quiet: dict[str, int] | None) -> str:
    """Silent requests are counted as repeated refusals only as far as the bot's log agrees."""
    if not quiet:
        return ""
    seen, logged = quiet["silent_after_a_refusal"], quiet["logged_by_the_bot"]
    agree = "as many as" if seen == logged else "against"
    return (
        f" Silent after a refusal of the same user within 30 s: {seen}, {agree} {logged} "
        "repeated refusals in the bot's log."
    )


def markdown(results: dict[str, Any]) -> str:
    m, cfg, s = results["machine"], results["config"], results["summary"]
    bot, fake = results["bot"], results["fake"]
    lost = s["lost"]
    burn = cfg["burn_cores"]
    burners = results["burners"]
    burn_note = (
        f"{burn} CPU burner process{'es' if burn > 1 else ''} (`while True: pass`, not niced) "
        f"ran throughout ({burners['cpu_s']:.0f} CPU s in {burners['wall_s']:.0f} s)"
        if burn
        else "no CPU burner (`--burn-cores 0`): the machine was not kept busy"
    )
    lines = [
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['cpus']} cores ({m['usable_cpus']} usable), "
        f"{m['ram_gb']} GB, Python {m['python']}, niceness {m['niceness']}; load average "
        f"{results['loadavg_start']} at the start, {results['loadavg_end']} at the end.  ",
        f"Code: {results.get('code', 'unknown')}.  ",
        f"Run: {results['started_utc']} UTC, {results['total_s']:.0f} s in all. Index: "
        f"{results['index']['episodes']} episodes, {results['index']['hours']:.2f} h "
        "(bench.bot_latency's catalogue).",
        "",
        f"The load: {s['n']} requests from {cfg['users']} users over {cfg['seconds']:g} s "
        f"(Poisson arrivals, seed {cfg['seed']}), each a private message with a clip; every "
        "file is unique (a `free` box with the request number), so none is answered from the "
        "answer cache. Half the clips are clean 10 s phone-sized videos, 0.3 degraded (sped "
        "up 1.06×; noise at 10 dB sent as a file; a phone recording sent as an audio file), "
        "0.2 from another show. The bot is `python -m bot.cli run` in its own process (real "
        "python-telegram-bot adapter, event loop and thread pool; "
        f"matcher.workers {cfg['workers'] or 'default'}, limits.per_minute {cfg['per_minute']}), "
        "against the fake Bot API (tests/fakes/telegram_server.py) in the bench process on "
        f"127.0.0.1; {burn_note}. Times are when the fake received the bot's call, from the "
        "moment the message was pushed to it.",
        "",
        "| goal | measured (ms: p50 / p95 / max) | verdict |",
        "|---|---|---|",
        f"| 0 lost (no final reply within {cfg['lost_after_s']:g} s of the last message) | "
        f"{lost} of {s['n']} | {'pass' if not lost else '**FAIL**'} |",
        f"| message → first reply, p95 ≤ {BAR_FIRST_S * 1000:.0f} | {triple(s['first_s'])} | "
        f"{verdict(s['first_s'], BAR_FIRST_S, lost)} |",
        f"| message → final answer, p95 ≤ {BAR_FINAL_S * 1000:.0f} (answers and "
        f'"not found"; n {s["final_answers_s"].get("n", 0)}) | {triple(s["final_answers_s"])} | '
        f"{verdict(s['final_answers_s'], BAR_FINAL_S, lost)} |",
        f"| message → final reply, every request (refusals too) | {triple(s['final_all_s'])} | – |",
        "",
        "What the requests got: "
        + ", ".join(
            f"{CATEGORY_WORDS.get(k, k)} {v}" for k, v in s["categories"].items() if k != "lost"
        )
        + f'; lost {lost}. Right (episode and time, or "not found" for another show): '
        f"{s['right']} of {sum(s['categories'].get(k, 0) for k in ANSWERS)} answers. "
        f'Told "Waiting in line" on the way: {s["queued"]}; at most {s["max_in_flight"]} '
        "requests waiting for their final reply at once."
        + quiet_note(results.get("quiet_repeats")),
        "",
        "| clip | sent as | n | answered | right | first reply p50 / p95 / max | "
        "final answer p50 / p95 / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, v in s["by_variant"].items():
        lines.append(
            f"| {variant} | {v['kind']} | {v['n']} | {v['answered']} | {v['right']} | "
            f"{triple(v['first_s'])} | {triple(v['final_s'])} |"
        )
    if lost_ones := [r for r in results["requests"] if r["category"] == "lost"]:
        lines += ["", "Lost (first 10): " + "; ".join(lost_line(r) for r in lost_ones[:10]) + "."]
    load_s = results["load_s"]
    lines += [
        "",
        f"Bot process: peak RSS (VmHWM) {bot['peak_rss_mb']:.0f} MB (at start-up "
        f"{bot['start_rss_mb']:.0f} MB); {bot['cpu_s']:.0f} CPU s (with its ffmpeg children) in "
        f"the {load_s:.0f} s from the first message to the last final reply "
        f"({bot['cpu_s'] / max(load_s, 1e-9):.2f} cores); its log: {bot['log_warnings']} "
        f"warnings, {bot['log_errors']} errors; exit status {bot['exit_code']} after SIGTERM.  ",
        f"Calls to the fake: peak {fake['peak_calls_per_s']} per second (getUpdates left out), "
        f"of which sendMessage + editMessageText {fake['peak_messages_per_s']} per second; "
        f"{fake['failed_calls']} answered with an error; by method {fake['calls_by_method']}.  ",
        f"Replies: {triple_count(s['messages'])} messages per request (first reply and its "
        f"edits, p50 / p95 / max). Bench process: {results['bench_cpu_s']:.1f} CPU s; messages "
        f"pushed late by at most {ms(s['push_late_s'].get('max'))} ms.",
    ]
    return "\n".join(lines) + "\n"


def lost_line(r: dict[str, Any]) -> str:
    first = "no reply" if r["first_s"] is None else f"first reply at {ms(r['first_s'])} ms"
    return f"#{r['n']} user {r['user']} {r['variant']} at {r['pushed_s']:.1f} s, {first}"


def triple_count(st: dict[str, float]) -> str:
    return f"{st['p50']:g} / {st['p95']:g} / {st['max']:g}" if st else "–"


def write_results_md(body: str) -> None:
    common.write_section(body, name=SECTION_NAME, heading=SECTION)
