"""Episode ids from the paths of people's media files, and episode titles from a list.

The reference index is built from folders people already have, named by hand or by whatever
downloader they use. This module turns such a path into an `EpisodeId`, and it must never guess:
a path it cannot place with confidence gives `None`, so the caller can skip the file or ask,
rather than fingerprint an episode under the wrong id. Parsing is pure string work; only
`load_titles` touches the file system, to read the one file it is given.

Forms read, file name first, then folders:

* explicit markers anywhere: ``S03E07``, ``s3e7``, ``s03.e07``, ``S03 E07``, ``S03_E07``,
  ``Season 3 Episode 7``, ``3x07``;
* with a season named by a folder (``Season 3``, ``Series 03``, ``S03``) or earlier in the file
  name: ``Episode 07``, ``Ep 7``, ``E07``, a leading ``07 - Title``, ``Show - 07``, and a compact
  ``Show - 307`` whose leading digits agree with that season;
* with no season anywhere: a compact ``Show - 307`` or ``Show - 1207`` after a spaced dash, unless
  it reads as a year (19xx, 20xx).

Multi-episode files (``S01E01E02``, ``S01E01-E02``, ``1x01x02``) give their first episode.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from matcher.errors import MatcherError


@dataclass(frozen=True, order=True)
class EpisodeId:
    """One episode of the show; orders by season, then number. Season 0 holds specials."""

    season: int
    number: int

    @property
    def code(self) -> str:
        """The id as people write it: ``S07E08``."""
        return f"S{self.season:02d}E{self.number:02d}"

    def __str__(self) -> str:
        return self.code


# Nothing alphanumeric may touch a marker on its left, so "PS03E07" or the "e" ending a word
# never start one.
_LEFT = r"(?<![a-z0-9])"

# S03E07, s3e7, s03.e07, S03 E07, S03_E07, Season 3 Episode 7, S03Ep07. A bare "s" or "e" must
# touch its digits, so a stray letter before a number is not a marker. The episode may not run on
# into a digit, which also leaves the first episode of S01E01E02 and S01E01-E02.
_SEASON_EPISODE = re.compile(
    _LEFT + r"(?:s|(?:season|series)[\s._-]*)(\d{1,2})[\s._-]*"
    r"(?:e|ep(?:isode)?[\s._-]*)(\d{1,3})(?!\d)",
    re.IGNORECASE,
)

# 3x07 and 03x07, the form of older scene and Kodi names. The left guard keeps 1920x1080 out, a
# two-digit episode keeps 4x3 out, and the right guard refuses letters after it (x264 has no
# season in front anyway) except the x of 1x01x02.
_SEASON_X_EPISODE = re.compile(_LEFT + r"(\d{1,2})x(\d{2,3})(?![0-9a-wyz])", re.IGNORECASE)

# A name that gives only a season: "Season 3", "Season.03", "Series 3", "S03", "Show S03 1080p".
# Ranges ("Season 1-5", "S01-S05", "S01 - S05", "S1 & S2") name several seasons, so neither end
# counts: the guards refuse a marker right after a number and a joiner, or right before a joiner.
# "Season 3 - 07" stays a season, as a spaced dash before a bare number separates an episode.
_SEASON_ONLY = re.compile(
    r"(?<!\d[-\u2013~&+])(?<!\d\s[-\u2013~&+]\s)(?<![a-z0-9])"
    r"(?:(?:season|series|saison|staffel)[\s._-]*(\d{1,2})|s(\d{1,2}))(?![a-z0-9])"
    r"(?![\s._]*[&+~]|[-\u2013]\d|[\s._]*[-\u2013][\s._]*(?:s|season[\s._]*)\d)",
    re.IGNORECASE,
)

# "Episode 07", "Ep.7", "E07" in a name whose season comes from elsewhere.
_EPISODE_ONLY = re.compile(_LEFT + r"(?:e|ep(?:isode)?[\s._-]*)(\d{1,3})(?!\d)", re.IGNORECASE)

# Where a bare number may stand for an episode: first in the name ("07 - Title") or after a
# spaced dash ("Show - 07", "South Park - 307 - Title"). Only a separator, a bracket or the
# extension may follow, so 1080p, 10bit and 5.1 are never numbers here. Dashes may be en dashes
# (\u2013): some renaming tools and autocorrect write those for " - ".
_END_OF_NUMBER = r"(?=$|[\s_\[(-]|\.(?!\d))"
_NUMBER_SLOT = re.compile(r"(?:^|\s[-\u2013]\s)(\d{1,4})" + _END_OF_NUMBER)

# Compact season-and-episode with no season named anywhere: only after a spaced dash, the one
# place release names put it ("South Park - 307 - Scott Tenorman Must Die").
_DASHED_COMPACT = re.compile(r"\s[-\u2013]\s(\d{3,4})" + _END_OF_NUMBER)

# CRC32 tags such as [ABCD1234] and other runs of 8 hex digits: hex can spell "E07" or a number.
_HASH = re.compile(r"[\[(]?" + _LEFT + r"[0-9a-f]{8}(?![a-z0-9])[\])]?", re.IGNORECASE)

# People hand us Windows paths on any system, so split on both separators.
_PATH_SEPARATOR = re.compile(r"[\\/]+")


def parse_episode_id(path: str | os.PathLike[str]) -> EpisodeId | None:
    """The episode a media file holds, judged from its name and folders, or None if unsure.

    An explicit marker in the file name wins over folders (a misfiled episode keeps its own id);
    a folder only supplies the season for a file that names just the episode, and a compact
    number such as 307 that disagrees with that folder gives None rather than a guess.
    """
    names = _names(path)
    if not names:
        return None
    found = _season_and_episode(names[0])
    if found is None:
        found = _episode_given_season(names)
    if found is None:
        # Release folders with obfuscated files inside: "Show.S20E01.1080p/abc123.mkv".
        found = _first(_season_and_episode(name) for name in names[1:])
    return found


def _names(path: str | os.PathLike[str]) -> list[str]:
    """The file name, then each folder nearest first, with hashes blanked out."""
    parts = [part for part in _PATH_SEPARATOR.split(os.fspath(path)) if part.strip()]
    return [_HASH.sub(" ", part) for part in reversed(parts)]


def _first(candidates: Iterable[EpisodeId | None]) -> EpisodeId | None:
    return next((found for found in candidates if found is not None), None)


def _season_and_episode(name: str) -> EpisodeId | None:
    """An id spelled out in one name: S03E07, Season 3 Episode 7 or 3x07."""
    match = _SEASON_EPISODE.search(name) or _SEASON_X_EPISODE.search(name)
    return EpisodeId(int(match.group(1)), int(match.group(2))) if match else None


def _episode_given_season(names: list[str]) -> EpisodeId | None:
    """An episode number in the file, or a folder below the one naming the season."""
    located = _season_context(names)
    if located is None:
        return _dashed_compact(names[0])
    season, depth = located
    # depth 0: the file name itself named the season ("Season 3 - 07.mkv").
    return _first(_episode_in_season(name, season) for name in names[: max(depth, 1)])


def _season_context(names: list[str]) -> tuple[int, int] | None:
    """The season named nearest the file, and how many levels up it was named."""
    for depth, name in enumerate(names):
        match = _SEASON_ONLY.search(name)
        if match:
            return int(match.group(1) or match.group(2)), depth
    return None


def _episode_in_season(name: str, season: int) -> EpisodeId | None:
    """The episode a name gives once its season is known.

    A labelled episode ("Episode 7") and a positioned number ("07 - Title") that disagree, as in
    "07 - E3 Expo" or "Episode 7 - 12 Angry Men", leave the name unplaced rather than guessed.
    """
    marker = _EPISODE_ONLY.search(name)
    labelled = EpisodeId(season, int(marker.group(1))) if marker else None
    positioned = _numbered_episode(name, season)
    if labelled and positioned and labelled != positioned:
        return None
    return labelled or positioned


def _numbered_episode(name: str, season: int) -> EpisodeId | None:
    """The first bare number in an episode slot that fits the known season."""
    for slot in _NUMBER_SLOT.finditer(name):
        digits = slot.group(1)
        if len(digits) <= 2:
            return EpisodeId(season, int(digits))
        compact = _split_compact(digits)
        # 307 under "Season 4" is a contradiction, and 2019 a year: skip, never guess.
        if compact is not None and compact.season == season:
            return compact
    return None


def _dashed_compact(name: str) -> EpisodeId | None:
    """A compact id after a spaced dash, when no season is named anywhere on the path."""
    for match in _DASHED_COMPACT.finditer(name):
        digits = match.group(1)
        # Without a season folder to agree with, 1999 or 2019 is far likelier a year.
        if len(digits) == 4 and digits[:2] in ("19", "20"):
            continue
        compact = _split_compact(digits)
        if compact is not None:
            return compact
    return None


def _split_compact(digits: str) -> EpisodeId | None:
    """307 as S03E07 and 1207 as S12E07; a zero season or episode is no compact id."""
    season, number = int(digits[:-2]), int(digits[-2:])
    return EpisodeId(season, number) if season and number else None


def load_titles(path: str | os.PathLike[str]) -> dict[EpisodeId, str]:
    """Episode titles from a CSV or JSON file, keyed by episode.

    CSV needs a header naming a ``title`` column and either an ``episode`` (or ``id``) column
    of codes such as S01E02 or 1x02, or ``season`` and ``episode`` columns of numbers. JSON is an
    object ``{"S01E02": "Title"}`` or a list of objects with ``title`` and either ``id`` /
    ``episode`` codes or ``season`` and ``episode`` numbers. A file starting with ``{`` or ``[``
    is read as JSON, anything else as CSV.

    Raises:
        MatcherError: the file cannot be read, or an entry is malformed or repeated; the message
            names the file and the line or entry.
    """
    source = Path(path)
    text = _read_text(source)
    if text.lstrip().startswith(("{", "[")):
        return _titles_from_json(source.name, text)
    return _titles_from_csv(source.name, text)


def _read_text(source: Path) -> str:
    try:
        # utf-8-sig: spreadsheet programs put a byte-order mark before the header.
        return source.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise MatcherError(f"{source}: cannot read titles file ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise MatcherError(f"{source.name}: titles file is not UTF-8 text") from error


def _titles_from_csv(name: str, text: str) -> dict[EpisodeId, str]:
    # strict: an unclosed quote would otherwise swallow the rest of the file into one title.
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        _check_csv_header(name, reader)
        titles: dict[EpisodeId, str] = {}
        for row in reader:
            where = f"{name} line {reader.line_num}"
            if None in row:
                raise MatcherError(
                    f"{where}: more fields than the header has (quote titles with commas)"
                )
            _add_title(titles, row, where)
        return titles
    except csv.Error as error:
        # DictReader updates its own line_num only after a good row; the inner reader's is current.
        line = reader.reader.line_num
        raise MatcherError(f"{name} line {line}: not valid CSV ({error})") from error


def _check_csv_header(name: str, reader: csv.DictReader[str]) -> None:
    """Normalise the header's spelling and insist it names a title and an episode."""
    if not reader.fieldnames:
        raise MatcherError(f"{name}: empty, expected a header such as 'episode,title'")
    reader.fieldnames = [field.strip().lower() for field in reader.fieldnames]
    columns = set(reader.fieldnames)
    if "title" not in columns or not columns & {"episode", "id"}:
        raise MatcherError(
            f"{name} line 1: header needs 'title' and 'episode' (or 'season,episode,title'), "
            f"got {','.join(reader.fieldnames)!r}"
        )


def _titles_from_json(name: str, text: str) -> dict[EpisodeId, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MatcherError(f"{name} line {error.lineno}: not valid JSON ({error.msg})") from error
    titles: dict[EpisodeId, str] = {}
    if isinstance(data, dict):
        for code, title in data.items():
            where = f"{name} entry {code!r}"
            _add_title(titles, {"id": code, "title": title}, where)
        return titles
    for index, entry in enumerate(data, start=1):
        where = f"{name} entry {index}"
        if not isinstance(entry, dict):
            raise MatcherError(f"{where}: expected an object with 'title', got {entry!r}")
        _add_title(titles, {str(key).lower(): value for key, value in entry.items()}, where)
    return titles


def _add_title(titles: dict[EpisodeId, str], fields: Mapping[str, object], where: str) -> None:
    """Add one entry's title under its episode, refusing an episode given twice."""
    episode = _episode_from_fields(fields, where)
    title = fields.get("title")
    if not isinstance(title, str) or not title.strip():
        raise MatcherError(f"{where}: {episode} has no title")
    if episode in titles:
        raise MatcherError(f"{where}: {episode} is listed twice")
    titles[episode] = title.strip()


def _episode_from_fields(fields: Mapping[str, object], where: str) -> EpisodeId:
    """The episode an entry names, by season and episode numbers or by a code."""
    if "season" in fields:
        episode = fields.get("episode", fields.get("number"))
        return EpisodeId(
            _whole_number(fields["season"], "season", where),
            _whole_number(episode, "episode", where),
        )
    code = fields.get("id", fields.get("episode"))
    found = _season_and_episode(code.strip()) if isinstance(code, str) else None
    if found is None:
        raise MatcherError(f"{where}: {code!r} is not an episode code such as S01E02")
    return found


def _whole_number(value: object, field: str, where: str) -> int:
    # bool is an int to Python, but `true` for a season is a mistake in the file.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    raise MatcherError(f"{where}: {field} {value!r} is not a whole number")
