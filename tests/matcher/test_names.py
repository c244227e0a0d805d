"""Tests for matcher.names: episode ids from real-world paths, and loading title lists.

The parser must place every common naming scheme and refuse everything it cannot place: a wrong
id poisons the index silently, a `None` only skips a file. So the table below carries as many
refusals as acceptances, and the properties check both directions over generated names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.errors import MatcherError
from matcher.names import EpisodeId, load_titles, parse_episode_id

# --- EpisodeId ----------------------------------------------------------------------------------


def test_episode_id_code_and_str() -> None:
    episode = EpisodeId(7, 8)
    assert episode.code == "S07E08"
    assert str(episode) == "S07E08"
    assert EpisodeId(12, 123).code == "S12E123"


def test_episode_id_orders_by_season_then_number_and_hashes() -> None:
    ids = [EpisodeId(2, 1), EpisodeId(1, 10), EpisodeId(1, 2)]
    assert sorted(ids) == [EpisodeId(1, 2), EpisodeId(1, 10), EpisodeId(2, 1)]
    assert {EpisodeId(1, 2): "a"}[EpisodeId(1, 2)] == "a"


# --- the table of real-world names --------------------------------------------------------------

PLACED = [
    # Explicit markers in the file name.
    ("S03E07.mkv", (3, 7)),
    ("s03e07.mkv", (3, 7)),
    ("S3E7.mkv", (3, 7)),
    ("Show.s03.e07.mkv", (3, 7)),
    ("Show S03 E07.mkv", (3, 7)),
    ("Show_S03_E07.mkv", (3, 7)),
    ("Show - S03 - E07 - Title.mkv", (3, 7)),
    ("Show - Season 3 Episode 7.mkv", (3, 7)),
    ("Show S03Ep07.avi", (3, 7)),
    ("Show - 3x07 - Title.avi", (3, 7)),
    ("Show.03x07.HDTV.avi", (3, 7)),
    ("South.Park.S20E01.1080p.WEB.x264.mkv", (20, 1)),
    ("south_park_s20e01_720p.mp4", (20, 1)),
    ("[Group] Show - S01E02 [1080p].mkv", (1, 2)),
    ("[SubsPlease] Show - S01E02 (1080p) [ABCD1234].mkv", (1, 2)),
    ("Doctor.Who.2005.S10E12.2160p.HEVC.mkv", (10, 12)),
    ("Show (1999) - S02E10 - Title (720p x264).mkv", (2, 10)),
    ("/mnt/media/TV/South Park/Season 03/South.Park.S03E07.DVDRip.XviD.avi", (3, 7)),
    ("D:\\TV\\South Park\\South Park S03E07.mkv", (3, 7)),
    ("Show S00E01 Special.mkv", (0, 1)),
    ("Show S01E123.mkv", (1, 123)),
    # Multi-episode files give their first episode.
    ("Show.S01E01E02.mkv", (1, 1)),
    ("Show.S01E01-E02.mkv", (1, 1)),
    ("Show - S01E01-02.mkv", (1, 1)),
    ("Show - 1x01x02.mkv", (1, 1)),
    # The file name wins over a folder that disagrees (a misfiled episode keeps its id).
    ("Season 4/Show S03E07.mkv", (3, 7)),
    # A season folder and an episode in the file.
    ("Season 3/Episode 07.mkv", (3, 7)),
    ("Season 3/Episode 7", (3, 7)),
    ("Season 3/episode_7.mkv", (3, 7)),
    ("Season 3/Ep. 7.mkv", (3, 7)),
    ("S03/E07.mkv", (3, 7)),
    ("Season 03/07 - Title.mp4", (3, 7)),
    ("Season 03/07.mp4", (3, 7)),
    ("Series 3/07 - Title.mp4", (3, 7)),
    ("South.Park.S03.DVDRip/07.avi", (3, 7)),
    ("Season 3/South Park - 307.mkv", (3, 7)),
    ("Season 12/South Park - 1207 - Title.mkv", (12, 7)),
    ("Season 20/South Park - 2001 - Title.mkv", (20, 1)),
    ("Season 3/Show - 2019 - 07.mkv", (3, 7)),
    ("Season 1/[SubsPlease] Show - 12 (1080p) [E07A1B2C].mkv", (1, 12)),
    ("Show/Season 3/Episode 07/VIDEO_TS.VOB", (3, 7)),
    ("Show S01-S05/Season 3/07.mkv", (3, 7)),
    ("Show - Season 3 - 07 - Title.mkv", (3, 7)),
    ("Season 3/South Park - 307 - Episode 7.mkv", (3, 7)),
    ("C:\\Media\\Show\\Season 3\\Episode 07.mkv", (3, 7)),
    # Compact ids after a spaced dash, no season folder needed.
    ("South Park - 307 - Scott Tenorman Must Die.avi", (3, 7)),
    ("South Park - 307.avi", (3, 7)),
    ("South Park - 1207 - Title.mkv", (12, 7)),
    ("South Park \u2013 307 \u2013 Title.mkv", (3, 7)),
    # A release folder with an obfuscated file inside.
    ("South.Park.S20E01.1080p.WEB/abc123def.mkv", (20, 1)),
]

REFUSED = [
    # Quality, codec, years and hashes are not ids.
    "Show 1080p.mkv",
    "Show.720p.x264.mkv",
    "Show.2160p.h264.HEVC.mkv",
    "Show - 1080p.mkv",
    "Show (1999).mkv",
    "Show 2019 WEB-DL.mkv",
    "Show - 2019.mkv",
    "Show - 1999 - Title.mkv",
    "[ABCD1234].mkv",
    "Show [E07A1B2C].mkv",
    "Show 1920x1080.mkv",
    "Show DDP5.1 AAC2.0 10bit.mkv",
    # A bare number with no season anywhere.
    "12.mkv",
    "Show - 12.mkv",
    "Show 12.mkv",
    "[SubsPlease] Show - 12 (1080p).mkv",
    "Episode 7.mkv",
    "Show/Episode 07.mkv",
    "South.Park.307.HDTV.avi",
    # A compact number that is no id: zero season or episode, or a disagreeing season folder.
    "Show - 300.mkv",
    "Show - 007.mkv",
    "Season 4/Show - 307.mkv",
    "Season 3/Show - 2019.mkv",
    # A season folder, but no episode in the file.
    "Season 3/Show 1080p.mkv",
    "Season 3/Show - 720p.mkv",
    "Season 3/5.1 Show.mkv",
    "Season 3/Show 07.mkv",
    "Season 3/Extras/Behind the Scenes.mkv",
    # A labelled episode and a positioned number that disagree.
    "Season 3/07 - E3 Expo.mkv",
    "Season 3/Episode 7 - 12 Angry Men.mkv",
    # Folders naming several seasons give no season.
    "Season 1-5/07.mkv",
    "Seasons 1-5/07.mkv",
    "S01-S05/07.mkv",
    "S01-05/07.mkv",
    "S01 - S05/07.mkv",
    "S1 & S2/07.mkv",
    # Nothing at all.
    "",
    "/",
    "movie.mkv",
]


@pytest.mark.parametrize(("path", "expected"), PLACED)
def test_placed_names(path: str, expected: tuple[int, int]) -> None:
    assert parse_episode_id(path) == EpisodeId(*expected)


@pytest.mark.parametrize("path", REFUSED)
def test_refused_names(path: str) -> None:
    assert parse_episode_id(path) is None


def test_accepts_path_objects() -> None:
    assert parse_episode_id(Path("Season 3") / "Episode 07.mkv") == EpisodeId(3, 7)


# --- properties over generated names ------------------------------------------------------------

SEASONS = st.integers(min_value=1, max_value=99)
EPISODES = st.integers(min_value=1, max_value=99)
SEPARATORS = st.sampled_from([" ", ".", "_", " - "])
QUALITY_TAGS = [
    "1080p",
    "720p",
    "2160p",
    "480p",
    "4K",
    "x264",
    "x265",
    "h264",
    "H.264",
    "HEVC",
    "WEB-DL",
    "WEBRip",
    "BluRay",
    "HDTV",
    "AAC2.0",
    "DDP5.1",
    "E-AC3",
    "10bit",
    "REPACK",
    "PROPER",
    "AMZN",
]
SHOWS = ["South Park", "The Office", "Breaking Bad", "Doctor Who", "Show"]
TITLES = ["Scott Tenorman Must Die", "Pilot", "The Return", "Finale Part One"]
EXTENSIONS = st.sampled_from([".mkv", ".mp4", ".avi", ".m4v", ""])
OUTER_FOLDERS = st.sampled_from(["", "TV/", "/mnt/media/TV Shows/", "D:\\TV\\", "~/Videos/"])
HEX = "0123456789ABCDEFabcdef"


def _pad(draw: st.DrawFn, value: int) -> str:
    """A number as people write it: with or without a leading zero."""
    return str(value) if value >= 10 or draw(st.booleans()) else f"0{value}"


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(text, flips, strict=True))


@st.composite
def hashes(draw: st.DrawFn) -> str:
    digits = draw(st.text(alphabet=HEX, min_size=8, max_size=8))
    return draw(st.sampled_from(["[{}]", "({})", "{}"])).format(digits)


@st.composite
def junk(draw: st.DrawFn) -> list[str]:
    """Words release names carry after the id: quality tags, hashes, a release group."""
    words = draw(st.lists(st.sampled_from(QUALITY_TAGS), max_size=4))
    if draw(st.booleans()):
        words.append(draw(hashes()))
    if draw(st.booleans()):
        words.append(draw(st.sampled_from(["-RARBG", "-NTb", "[eztv]", "(1080p)"])))
    return words


@st.composite
def explicit_marker(draw: st.DrawFn, season: int, episode: int) -> str:
    """S03E07 and its spellings, Season 3 Episode 7, or 3x07, in random case."""
    s, e = _pad(draw, season), _pad(draw, episode)
    gap = draw(st.sampled_from(["", ".", " ", "_", "-", " - "]))
    word_gap = draw(st.sampled_from([" ", ".", "_", " - "]))
    forms = [
        f"S{s}{gap}E{e}",
        f"S{s}{gap}Ep{e}",
        f"Season{word_gap}{season}{word_gap}Episode{word_gap}{episode}",
        f"{s}x{episode:02d}",
    ]
    return _random_case(draw, draw(st.sampled_from(forms)))


@st.composite
def prefix_words(draw: st.DrawFn) -> list[str]:
    """Optional release group, show name and year before the id."""
    words = []
    if draw(st.booleans()):
        words.append(draw(st.sampled_from(["[SubsPlease]", "[Group]", "(Fansub)"])))
    if draw(st.booleans()):
        words.append(draw(st.sampled_from(SHOWS)))
    if draw(st.booleans()):
        words.append(f"({draw(st.integers(1950, 2030))})")
    return words


@settings(max_examples=300, deadline=None)
@given(season=SEASONS, episode=EPISODES, data=st.data())
def test_explicit_names_parse_back(season: int, episode: int, data: st.DataObject) -> None:
    draw = data.draw
    sep = draw(SEPARATORS)
    words = draw(prefix_words())
    words.append(draw(explicit_marker(season, episode)))
    if draw(st.booleans()):
        words.append(draw(st.sampled_from(TITLES)))
    name = sep.join([*words, *draw(junk())]) + draw(EXTENSIONS)
    folders = draw(OUTER_FOLDERS) + draw(st.sampled_from(["", "South Park/", "Show (2019)/"]))
    path = folders + name
    assert parse_episode_id(path) == EpisodeId(season, episode), path


@st.composite
def season_folder(draw: st.DrawFn, season: int) -> str:
    s = _pad(draw, season)
    form = draw(
        st.sampled_from(
            [
                f"Season {s}",
                f"Season.{s}",
                f"season_{s}",
                f"Series {s}",
                f"S{s}",
                f"South Park - Season {s}",
                f"South.Park.S{s}.1080p.WEB",
            ]
        )
    )
    return _random_case(draw, form)


@st.composite
def episode_in_season(draw: st.DrawFn, season: int, episode: int) -> str:
    """A file name that names only the episode, or a compact id agreeing with the season."""
    e = _pad(draw, episode)
    show = draw(st.sampled_from(SHOWS))
    title = draw(st.sampled_from(TITLES))
    compact = f"{season}{episode:02d}"
    forms = [
        f"Episode {e}",
        f"Episode.{e}",
        f"Ep {e}",
        f"E{e}",
        f"{show} - E{e}",
        f"{e} - {title}",
        f"{e}",
        f"{show} - {e}",
        f"{show} - {e} - {title}",
        f"{show} - {compact}",
        f"{show} - {compact} - {title}",
    ]
    return _random_case(draw, draw(st.sampled_from(forms)))


@settings(max_examples=300, deadline=None)
@given(season=SEASONS, episode=EPISODES, data=st.data())
def test_season_folder_names_parse_back(season: int, episode: int, data: st.DataObject) -> None:
    draw = data.draw
    name = draw(episode_in_season(season, episode))
    tail = draw(junk())
    if tail:
        name += " " + " ".join(tail)
    nesting = draw(st.sampled_from(["", "Disc 1/", "Extras 2/"]))
    path = (
        draw(OUTER_FOLDERS)
        + draw(st.sampled_from(["", "South Park/", "Show (2019)/"]))
        + draw(season_folder(season))
        + "/"
        + nesting
        + name
        + draw(EXTENSIONS)
    )
    assert parse_episode_id(path) == EpisodeId(season, episode), path


@settings(max_examples=300, deadline=None)
@given(
    season=st.integers(1, 99).filter(lambda s: s not in (19, 20)),
    episode=EPISODES,
    data=st.data(),
)
def test_dashed_compact_names_parse_back(season: int, episode: int, data: st.DataObject) -> None:
    draw = data.draw
    title = draw(st.sampled_from(["", " - Scott Tenorman Must Die", " - Pilot"]))
    tail = " ".join(draw(junk()))
    name = f"{draw(st.sampled_from(SHOWS))} - {season}{episode:02d}{title} {tail}".rstrip()
    path = draw(OUTER_FOLDERS) + name + draw(EXTENSIONS)
    assert parse_episode_id(path) == EpisodeId(season, episode), path


def _noise_token() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(QUALITY_TAGS),
        st.integers(1900, 2099).map(str),
        st.integers(1900, 2099).map("({})".format),
        hashes(),
        st.sampled_from([*SHOWS, "-RARBG", "[Group]"]),
    )


@settings(max_examples=300, deadline=None)
@given(
    tokens=st.lists(_noise_token(), min_size=1, max_size=8),
    seps=st.lists(st.sampled_from([" ", ".", "_", "-", " - "]), min_size=8, max_size=8),
    folders=st.sampled_from(["", "TV/", "Movies/South Park/", "D:\\Downloads\\"]),
    ext=EXTENSIONS,
)
def test_noise_without_marker_is_refused(
    tokens: list[str], seps: list[str], folders: str, ext: str
) -> None:
    name = tokens[0] + "".join(sep + token for sep, token in zip(seps, tokens[1:], strict=False))
    path = folders + name + ext
    assert parse_episode_id(path) is None, path


@settings(max_examples=200, deadline=None)
@given(
    number=st.integers(0, 99),
    words=st.lists(st.sampled_from(QUALITY_TAGS + SHOWS), max_size=4),
    sep=st.sampled_from([" ", ".", "_", " - "]),
)
def test_bare_number_without_season_is_refused(number: int, words: list[str], sep: str) -> None:
    name = sep.join([*words, str(number), *words])
    assert parse_episode_id(f"TV/{name}.mkv") is None, name


@settings(max_examples=200, deadline=None)
@given(
    season=SEASONS,
    words=st.lists(st.sampled_from(QUALITY_TAGS + SHOWS), min_size=1, max_size=5),
    sep=st.sampled_from([" ", ".", "_", " - "]),
)
def test_season_folder_alone_is_not_an_episode(season: int, words: list[str], sep: str) -> None:
    path = f"Season {season}/{sep.join(words)}.mkv"
    assert parse_episode_id(path) is None, path


# --- load_titles --------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_episode_codes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "titles.csv",
        "episode,title,air_date\n"
        "S01E01,Cartman Gets an Anal Probe,1997-08-13\n"
        "1x02,Weight Gain 4000,1997-08-20\n"
        'S03E07,"Hello, World",\n',
    )
    assert load_titles(path) == {
        EpisodeId(1, 1): "Cartman Gets an Anal Probe",
        EpisodeId(1, 2): "Weight Gain 4000",
        EpisodeId(3, 7): "Hello, World",
    }


def test_csv_with_season_and_episode_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "titles.csv", "Season , Episode ,Title\n5,4,Scott Tenorman Must Die \n")
    assert load_titles(path) == {EpisodeId(5, 4): "Scott Tenorman Must Die"}


def test_csv_with_byte_order_mark_and_id_column(tmp_path: Path) -> None:
    path = tmp_path / "titles.csv"
    path.write_text("id,title\nS20E01,Member Berries\n", encoding="utf-8-sig")
    assert load_titles(path) == {EpisodeId(20, 1): "Member Berries"}


def test_csv_header_only_gives_no_titles(tmp_path: Path) -> None:
    assert load_titles(_write(tmp_path, "titles.csv", "episode,title\n")) == {}


def test_json_object(tmp_path: Path) -> None:
    path = _write(tmp_path, "titles.json", json.dumps({"S01E02": "Weight Gain 4000", "2x03": "X"}))
    assert load_titles(path) == {EpisodeId(1, 2): "Weight Gain 4000", EpisodeId(2, 3): "X"}


def test_json_list_of_numbers_and_codes(tmp_path: Path) -> None:
    entries = [
        {"season": 1, "episode": 2, "title": "Weight Gain 4000"},
        {"Season": "3", "Episode": "7", "Title": "Tweek vs. Craig"},
        {"id": "S05E04", "title": "Scott Tenorman Must Die"},
        {"episode": "S20E01", "title": "Member Berries"},
    ]
    path = _write(tmp_path, "titles.json", json.dumps(entries, indent=2))
    assert load_titles(path) == {
        EpisodeId(1, 2): "Weight Gain 4000",
        EpisodeId(3, 7): "Tweek vs. Craig",
        EpisodeId(5, 4): "Scott Tenorman Must Die",
        EpisodeId(20, 1): "Member Berries",
    }


def test_json_detected_by_content_not_extension(tmp_path: Path) -> None:
    path = _write(tmp_path, "titles.txt", '  {"S01E01": "Pilot"}')
    assert load_titles(path) == {EpisodeId(1, 1): "Pilot"}


MALFORMED = [
    ("bad.csv", "", "bad.csv: empty"),
    ("bad.csv", "name,desc\nS01E01,Pilot\n", "bad.csv line 1: header needs 'title'"),
    ("bad.csv", "title\nPilot\n", "bad.csv line 1: header needs"),
    ("bad.csv", "episode,title\nS01E01,Pilot\nPilot,S01E02\n", "bad.csv line 3: 'Pilot' is not"),
    ("bad.csv", "episode,title\nS01E01,\n", "bad.csv line 2: S01E01 has no title"),
    ("bad.csv", "episode,title\nS01E01\n", "bad.csv line 2: S01E01 has no title"),
    ("bad.csv", "episode,title\nS01E01,Hello, World\n", "bad.csv line 2: more fields"),
    ("bad.csv", "episode,title\nS01E01,A\ns01e01,B\n", "bad.csv line 3: S01E01 is listed twice"),
    ("bad.csv", "season,episode,title\none,2,Pilot\n", "bad.csv line 2: season 'one' is not"),
    ("bad.csv", "season,episode,title\n1,,Pilot\n", "bad.csv line 2: episode '' is not"),
    ("bad.csv", 'episode,title\nS01E01,"Pilot\nS01E02,X\n', "not valid CSV"),
    ("bad.csv", 'episode,title\nS01E01,"Pilot" One\n', "bad.csv line 2: not valid CSV"),
    ("bad.json", '{"S01E01": "Pilot",}', "bad.json line 1: not valid JSON"),
    ("bad.json", '{\n"S01E01": "Pilot"\n"S01E02": "X"}', "bad.json line 3: not valid JSON"),
    ("bad.json", '{"Pilot": "S01E01"}', "bad.json entry 'Pilot': 'Pilot' is not"),
    ("bad.json", '{"S01E01": 5}', "bad.json entry 'S01E01': S01E01 has no title"),
    ("bad.json", '{"S01E01": ""}', "bad.json entry 'S01E01': S01E01 has no title"),
    ("bad.json", '["S01E01"]', "bad.json entry 1: expected an object"),
    ("bad.json", '[{"title": "Pilot"}]', "bad.json entry 1: None is not an episode code"),
    ("bad.json", '[{"season": true, "episode": 1, "title": "P"}]', "bad.json entry 1: season"),
    ("bad.json", '[{"season": -1, "episode": 1, "title": "P"}]', "bad.json entry 1: season"),
    ("bad.json", '[{"season": 1, "title": "P"}]', "bad.json entry 1: episode None"),
    (
        "bad.json",
        '[{"id": "S01E01", "title": "A"}, {"season": 1, "episode": 1, "title": "B"}]',
        "bad.json entry 2: S01E01 is listed twice",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), MALFORMED)
def test_malformed_titles_raise_with_location(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(MatcherError) as caught:
        load_titles(path)
    assert message in str(caught.value)


def test_missing_titles_file_raises(tmp_path: Path) -> None:
    with pytest.raises(MatcherError, match=r"missing\.csv: cannot read titles file"):
        load_titles(tmp_path / "missing.csv")


def test_titles_file_not_utf8_raises(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("episode,title\nS01E01,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(MatcherError, match=r"latin1\.csv: titles file is not UTF-8"):
        load_titles(path)
