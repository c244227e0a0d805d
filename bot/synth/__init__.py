"""Synthetic TV-episode audio for tests, the offline demo and benchmarks.

An episode is an optional theme intro followed by scenes: dialogue between a few recurring
characters (glottal pulses at an intonation contour, shaped by gliding formants, with fricatives,
plosive bursts and pauses), quiet music beds under some scenes, louder music-only montages, room
tone, and stingers between scenes, some of them cues shared by every episode of the show. That
gives a fingerprinter the difficulties of a real show: speech over music, silence between lines,
near-repeats inside an episode (looping beds) and exact repeats across episodes (intro, cues).
Degradations (noise, music on top, speed change, band limit, reverb, a phone recording, a codec)
turn an excerpt into a realistic query, and `encode` writes audio as the media files users send.

Everything is generated from integer seeds with numpy/scipy, vectorised (a 20-minute episode at
8 kHz takes a fraction of a second): the same arguments always give the same samples, and
different seeds share nothing but the intro and cues they are given.

The modules, by job: `episodes` (episodes, catalogues) over `music` and speech (`voices`,
`dialogue` plans, `speech` samples), all on `common`; `degrade` and `encode` for queries and files.
This package must never read or download recordings, and the matcher must never import it: it
exists to exercise the matcher, not to be part of it.
"""
