"""The ``demo`` source: offline "search results" rendered from a sampled GM soundfont.

It needs no API key and no network, yet every later stage does its real work: ``search``
returns ranked candidates like a video search (id, title, channel, duration), ``download``
renders the clip with the soundfont (:mod:`soundharvest.synth`) and encodes it as compressed
audio with ffmpeg, so that ``convert`` decodes a real Opus or AAC stream.

The clips carry the noise of real search results: accompaniment by other instruments, room
reverb, level changes, background noise, silent intros, and a share of off-topic results
(another label's instrument, a talking voice, a long near-silent intro). What each clip really
holds is written to ``truth.json`` beside the audio; training never reads it, the label-noise
evaluation does.

Every property of a clip is a function of ``(seed, label, video_id)`` and the options, so the
candidate rows that reach ``download`` (read back from a TSV) need to carry nothing else, and
the same seed gives the same bytes (see :mod:`soundharvest.synth` on determinism; ffmpeg runs
with ``-cpuflags 0`` and bit-exact flags so that its own SIMD choices cannot change them).

Options (``source_options`` in the config; defaults in :data:`DEFAULTS`):

``seed`` (0)
    Master seed: every id, title and sample derives from it.
``programs_per_label`` (3)
    How many of a label's GM programs (most typical first, :data:`~soundharvest.synth.LABEL_PROGRAMS`)
    its clips use, e.g. flute + piccolo, nylon + steel + overdriven guitar.
``label_programs`` ({})
    ``{label: [GM program numbers]}`` for labels outside the built-in table (or to override it:
    the label keeps its register and texture; ``programs_per_label`` caps the list too). The
    workflow's disjoint evaluation set leaves these programs out
    (:func:`soundharvest.config.heard_programs`).
``min_duration``, ``max_duration`` (8, 30)
    Clip length range in seconds, drawn log-uniformly (real results run from tens of seconds to
    many minutes; the default is scaled down to keep the demo run short).
``off_topic_share`` (0.2)
    Probability that a result is off-topic.
``off_topic_kinds`` ({other_label: 0.5, speech: 0.3, silence: 0.2})
    Relative weights of the off-topic kinds: another label's instrument dominates; speech-like
    talk (a lesson, a vlog); a near-silent intro over 60-90 % of the clip before the music.
``accompaniment_prob`` (0.5), ``accompaniment_db`` ([-12, -6]), ``max_accompaniment`` (2)
    Probability that other instruments (piano, guitar, organ, strings, bass) accompany the
    lead, their RMS level relative to the lead in dB, and how many at most.
``noise_db`` ([-45, -20])
    Background noise (hiss, room tone, rumble or mains hum) RMS relative to the music, dB.
``reverb_prob`` (0.4), ``reverb_rt60`` ([0.3, 1.5]), ``reverb_wet_db`` ([-12, -3])
    Probability of a room, its decay time in seconds, the reverberant level re the dry signal.
``level_change_prob`` (0.3), ``level_change_db`` ([3, 10])
    Probability of 1-3 level changes (a camera's automatic gain, a fader), each of this size.
``silence_intro_prob`` (0.1), ``silence_intro_s`` ([0.5, 3.0])
    Probability that an on-topic clip starts with a short near-silent intro, and its length.
``peak_dbfs`` ([-6, -1])
    Peak level of the finished clip.
``query_overlap`` (0.3)
    Share of a query's results taken from a pool shared by all queries of the label (popular
    videos that every query finds), so that merging queries has duplicates to remove.
``unavailable_share`` (0.05)
    Share of results whose download fails (removed, private, blocked), as real ones do.
``codec`` ("opus"), ``bitrate`` ("48k"), ``encode_rate`` (48000 for opus, 44100 for aac)
    Compressed format of downloads: Opus in ``.webm`` (YouTube's itag 249-251) or AAC in
    ``.m4a`` (itag 140), its bitrate, and its sample rate (``convert`` resamples to 16 kHz).
"""

from __future__ import annotations

import hashlib
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import synth
from ..audio import ffmpeg_exe
from ..io import SoundharvestError, atomic_path, write_json
from ..synth import (
    ACCOMPANIMENT_PROGRAMS,
    LABEL_PROGRAMS,
    PROGRAMS,
    SAMPLE_RATE,
    LabelSpec,
    Note,
)
from .base import DOWNLOAD_OPTIONS, Candidate, DownloadResult, Source, register_source

GENERATOR = "soundharvest-demo/1"

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "programs_per_label": 3,
    "label_programs": {},
    "min_duration": 8,
    "max_duration": 30,
    "off_topic_share": 0.2,
    "off_topic_kinds": {"other_label": 0.5, "speech": 0.3, "silence": 0.2},
    "accompaniment_prob": 0.5,
    "accompaniment_db": [-12.0, -6.0],
    "max_accompaniment": 2,
    "noise_db": [-45.0, -20.0],
    "reverb_prob": 0.4,
    "reverb_rt60": [0.3, 1.5],
    "reverb_wet_db": [-12.0, -3.0],
    "level_change_prob": 0.3,
    "level_change_db": [3.0, 10.0],
    "silence_intro_prob": 0.1,
    "silence_intro_s": [0.5, 3.0],
    "peak_dbfs": [-6.0, -1.0],
    "query_overlap": 0.3,
    "unavailable_share": 0.05,
    "codec": "opus",
    "bitrate": "48k",
    "encode_rate": None,
}

#: codec -> (ffmpeg encoder, container extension, default sample rate)
CODECS = {"opus": ("libopus", "webm", 48000), "aac": ("aac", "m4a", 44100)}

#: Words a title uses for a label (the first is the plain name).
_LABEL_WORDS = {
    "cello": ["Cello", "Solo Cello"],
    "clarinet": ["Clarinet"],
    "flute": ["Flute", "Classical Flute"],
    "guitar": ["Guitar", "Acoustic Guitar", "Fingerstyle Guitar", "Electric Guitar"],
    "organ": ["Organ", "Pipe Organ", "Church Organ"],
    "piano": ["Piano", "Solo Piano"],
    "saxophone": ["Saxophone", "Sax", "Alto Sax"],
    "trumpet": ["Trumpet"],
    "violin": ["Violin", "Solo Violin"],
    "voice": ["Vocal", "Singing", "A Cappella"],
}
_PIECES = [
    "Ave Maria",
    "Canon in D",
    "Clair de Lune",
    "Greensleeves",
    "Amazing Grace",
    "Hallelujah",
    "Moon River",
    "Autumn Leaves",
    "Danny Boy",
    "Scarborough Fair",
    "Air on the G String",
    "Gymnopedie No. 1",
    "Summertime",
    "The Swan",
    "Meditation",
    "Yesterday",
    "Blue Bossa",
    "Fly Me to the Moon",
    "Once Upon a December",
    "River Flows in You",
    "Nocturne in E flat",
]
_ON_TOPIC_TITLES = [
    "{piece} - {instr} Cover",
    "{instr} Solo: {piece}",
    "Relaxing {instr} Music for Study and Sleep",
    "Beautiful {instr} Music to Relax",
    "{instr} Improvisation #{n}",
    "{piece} ({instr}, live)",
    "{instr} practice session, day {n}",
    "{piece} | {instr} & friends",
]
_SPEECH_TITLES = [
    "{instr} Lesson for Beginners - Part {n}",
    "Unboxing my new {instr}",
    "Why the {instr} is so hard to learn",
    "{instr} Q&A livestream #{n}",
]
_CHANNEL_A = [
    "Aurora",
    "Bluebird",
    "Lakeside",
    "Northwind",
    "Silver Oak",
    "Golden Hour",
    "Maple",
    "Riverside",
    "Harbor",
    "Anna Keller",
    "Luis Moreno",
    "Mika Sato",
    "Old Town",
    "Nightfall",
]
_CHANNEL_B = [
    "Music",
    "Sessions",
    "Studio",
    "Academy",
    "Records",
    "Live",
    "Official",
    "TV",
    "Covers",
]

#: Scale steps of a melody and how often each occurs: mostly steps, some leaps.
_STEPS = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
_STEP_P = np.array([0.03, 0.07, 0.17, 0.2, 0.06, 0.2, 0.17, 0.07, 0.03])
_BEATS = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
_BEAT_P = np.array([0.3, 0.35, 0.12, 0.15, 0.08])
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
#: Chord progressions as scale degrees (0 = tonic): I-V-vi-IV, I-IV-V-I, ii-V-I-vi, i-VI-III-VII.
_PROGRESSIONS = [(0, 4, 5, 3), (0, 3, 4, 0), (1, 4, 0, 5), (0, 5, 2, 6)]


def _hex_id(*keys: object) -> str:
    digest = hashlib.sha256("\x1f".join(repr(k) for k in keys).encode("utf-8")).hexdigest()
    return "demo-" + digest[:11]


def _range(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SoundharvestError(
            f"config: source_options.{name} must be a list [low, high], not {value!r}"
        ) from None
    if lo > hi:
        raise SoundharvestError(f"config: source_options.{name}: low {lo} exceeds high {hi}")
    return lo, hi


def _prob(value: Any, name: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise SoundharvestError(
            f"config: source_options.{name} must be a probability in [0, 1], not {value!r}"
        )
    return p


@dataclass
class Harmony:
    """Key, tempo and chord progression that a clip's lead and accompaniment share."""

    tonic: int
    minor: bool
    bpm: float
    progression: tuple[int, ...]

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def scale(self) -> tuple[int, ...]:
        return _MINOR if self.minor else _MAJOR

    def pitches(self, low: int, high: int) -> list[int]:
        """Scale pitches within ``[low, high]``."""
        pcs = {(self.tonic + s) % 12 for s in self.scale}
        return [p for p in range(low, high + 1) if p % 12 in pcs]

    def chord(self, index: int, sevenths: bool = False) -> list[int]:
        """Pitch classes of the ``index``-th chord of the progression (root first)."""
        degree = self.progression[index % len(self.progression)]
        tones = (0, 2, 4, 6) if sevenths else (0, 2, 4)
        return [(self.tonic + self.scale[(degree + t) % 7]) % 12 for t in tones]


def _voicing(pcs: list[int], low: int, n_tones: int, high: int = 127) -> list[int]:
    """Pitches of a chord, ascending from its root's lowest pitch at or above ``low``."""
    root = low + (pcs[0] - low) % 12
    out = [root]
    k = 1
    while len(out) < n_tones:
        pc = pcs[k % len(pcs)]
        nxt = out[-1] + 1 + (pc - out[-1] - 1) % 12
        if nxt > high:
            break
        out.append(nxt)
        k += 1
    return out


def _melody(
    rng: np.random.Generator,
    harmony: Harmony,
    low: int,
    high: int,
    start: float,
    end: float,
    program: int,
    sustained: bool,
) -> list[Note]:
    """Phrases of 4-12 notes on the scale with a dynamic swell, separated by breaths."""
    pitches = harmony.pitches(low, high)
    if not pitches:
        return []
    i = len(pitches) // 2 + int(rng.integers(-2, 3))
    notes: list[Note] = []
    t = start
    while t < end:
        n_phrase = int(rng.integers(4, 13))
        base = rng.uniform(55.0, 110.0)  # the phrase's dynamic: mp .. ff
        swell = rng.uniform(-25.0, 25.0)  # crescendo (> 0) or diminuendo over the phrase
        for k in range(n_phrase):
            dur = float(rng.choice(_BEATS, p=_BEAT_P)) * harmony.beat
            i += int(rng.choice(_STEPS, p=_STEP_P))
            if i < 0 or i >= len(pitches):  # reflect at the instrument's range
                i = -i if i < 0 else 2 * (len(pitches) - 1) - i
                i = min(max(i, 0), len(pitches) - 1)
            vel = base + swell * (k / max(n_phrase - 1, 1) - 0.5) * 2 + rng.normal(0.0, 5.0)
            # Sustained instruments play legato (90-100 % of the note value); plucked ones let
            # the sample decay, released a little early.
            legato = rng.uniform(0.9, 1.0) if sustained else 0.85
            notes.append(Note(t, dur * legato, pitches[i], int(np.clip(vel, 20, 127)), program))
            t += dur
            if t >= end:
                break
        t += float(rng.uniform(0.5, 2.0)) * harmony.beat  # a breath / phrase gap
    return notes


def _chords(
    rng: np.random.Generator,
    harmony: Harmony,
    low: int,
    high: int,
    start: float,
    end: float,
    program: int,
    style: str,
    level: float = 85.0,
) -> list[Note]:
    """Chords in ``[low, high]``, one per bar: ``strum``, ``arpeggio``, ``block`` or ``pad``."""
    notes: list[Note] = []
    bar = 4 * harmony.beat
    t, k = start, 0
    while t < end:
        pcs = harmony.chord(k, sevenths=rng.random() < 0.25)
        n_tones = 5 if style == "strum" else 4
        voice = _voicing(pcs, low, n_tones, high)
        if style == "pad":
            vel = level + rng.normal(0, 4)
            notes += [Note(t, bar * 0.98, p, int(np.clip(vel, 20, 127)), program) for p in voice]
        elif style == "block":
            for beat in (0, 2):
                vel = level + (8 if beat == 0 else 0) + rng.normal(0, 4)
                notes += [
                    Note(
                        t + beat * harmony.beat,
                        1.9 * harmony.beat,
                        p,
                        int(np.clip(vel, 20, 127)),
                        program,
                    )
                    for p in voice
                ]
        elif style == "strum":
            # Eighth-note pattern D . D U . U D U; strings 10-20 ms apart, up-strums lighter.
            for j, stroke in enumerate("D.DU.UDU"):
                if stroke == ".":
                    continue
                onset = t + j * harmony.beat / 2
                order = voice if stroke == "D" else voice[::-1][:3]
                gap = rng.uniform(0.01, 0.02)
                vel = level + (10 if j in (0, 4) else 0) - (12 if stroke == "U" else 0)
                for s, p in enumerate(order):
                    v = int(np.clip(vel + rng.normal(0, 4), 20, 127))
                    notes.append(Note(onset + s * gap, harmony.beat, p, v, program))
        else:  # arpeggio: eighths through the chord tones, each left ringing a beat and a half
            pattern = [0, 2, 1, 3, 2, 1, 3, 2]
            for j, idx in enumerate(pattern):
                p = voice[idx % len(voice)]
                v = int(np.clip(level - 5 + rng.normal(0, 5), 20, 127))
                notes.append(Note(t + j * harmony.beat / 2, 1.5 * harmony.beat, p, v, program))
        t += bar
        k += 1
    return [n for n in notes if n.start < end]


def _bass(
    rng: np.random.Generator, harmony: Harmony, start: float, end: float, program: int
) -> list[Note]:
    """Roots on beats 1 and 3 (and a fifth now and then) in the bass register."""
    notes: list[Note] = []
    bar = 4 * harmony.beat
    t, k = start, 0
    while t < end:
        pcs = harmony.chord(k)
        root = 36 + (pcs[0] - 36) % 12
        fifth = 36 + (pcs[2] - 36) % 12
        for beat, p in ((0, root), (2, fifth if rng.random() < 0.3 else root)):
            v = int(np.clip(90 + rng.normal(0, 5), 20, 127))
            notes.append(Note(t + beat * harmony.beat, 1.8 * harmony.beat, p, v, program))
        t += bar
        k += 1
    return notes


def compose(
    rng: np.random.Generator,
    spec: LabelSpec,
    program: int,
    harmony: Harmony,
    start: float,
    end: float,
) -> list[Note]:
    """Notes a label's instrument plays between ``start`` and ``end`` seconds.

    :param spec: the label's range and texture (melody, chords or piano).
    """
    low, high = spec.low, spec.high
    if program in PROGRAMS:  # keep to the program's own range (a piccolo plays high)
        own = PROGRAMS[program]
        if min(high, own.high) - max(low, own.low) >= 12:
            low, high = max(low, own.low), min(high, own.high)
    sustained = program not in (0, 1, 2, 24, 25, 105)  # pianos and acoustic guitars decay
    if spec.texture == "melody":
        return _melody(rng, harmony, low, high, start, end, program, sustained)
    if spec.texture == "piano":
        split = 60
        left = _chords(
            rng,
            harmony,
            max(low, 36),
            split,
            start,
            end,
            program,
            str(rng.choice(["block", "arpeggio"])),
            level=70.0,
        )
        right = _melody(rng, harmony, split, min(high, 91), start, end, program, False)
        return left + right
    # chords: guitar (strums, arpeggios or a solo line) and organ (held chords, melody above)
    if program in (16, 17, 18, 19, 20, 21):
        notes = _chords(rng, harmony, max(low, 48), 76, start, end, program, "pad", level=80.0)
        if rng.random() < 0.6:
            notes += _melody(rng, harmony, 67, min(high, 88), start, end, program, True)
        if program == 19 and rng.random() < 0.5:  # a pedal line on the church organ
            notes += _bass(rng, harmony, start, end, program)
        return notes
    style = str(rng.choice(["strum", "arpeggio", "melody"], p=[0.45, 0.35, 0.2]))
    if style == "melody":
        return _melody(rng, harmony, low + 12, high, start, end, program, program >= 26)
    return _chords(rng, harmony, low, high, start, end, program, style)


def _accompany(
    rng: np.random.Generator, program: int, harmony: Harmony, start: float, end: float
) -> list[Note]:
    role = ACCOMPANIMENT_PROGRAMS[program]
    if role == "bass":
        return _bass(rng, harmony, start, end, program)
    if role == "pad":
        return _chords(rng, harmony, 48, 72, start, end, program, "pad", level=70.0)
    style = "strum" if program == 24 else "block"
    return _chords(rng, harmony, 48, 72, start, end, program, style, level=70.0)


def _dominant_entry(kind: str | None, dom_label: str, program: int) -> dict[str, Any]:
    """A recipe's ``dominant`` field: the instrument heard most, or speech."""
    if kind == "speech":
        dominant = {"kind": "speech", "label": None, "program": None}
        dominant |= {"program_name": None, "family": None}
    else:
        known = PROGRAMS.get(program)
        dominant = {"kind": "instrument", "label": dom_label, "program": program}
        dominant |= {
            "program_name": known.name if known else f"GM program {program}",
            "family": known.family if known else None,
        }
    return dominant


@register_source
class DemoSource(Source):
    """Offline source: candidates and audio rendered from the GM soundfont (see module doc)."""

    name = "demo"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        # The download settings travel with the source's options; they do not concern a render.
        unknown = set(self.options) - set(DEFAULTS) - set(DOWNLOAD_OPTIONS)
        if unknown:
            raise SoundharvestError(
                f"config: source_options has unknown key(s) {', '.join(sorted(unknown))} for "
                f"source demo; known: {', '.join(DEFAULTS)}"
            )
        o = {**DEFAULTS, **self.options}
        self.seed = int(o["seed"])
        self.programs_per_label = int(o["programs_per_label"])
        if self.programs_per_label < 1:
            raise SoundharvestError("config: source_options.programs_per_label must be >= 1")
        if not isinstance(o["label_programs"], dict):
            raise SoundharvestError(
                "config: source_options.label_programs must map labels to lists of GM programs"
            )
        self.label_programs = {
            str(k): [int(p) for p in (v if isinstance(v, list | tuple) else [v])]
            for k, v in o["label_programs"].items()
        }
        self.min_duration = float(o["min_duration"])
        self.max_duration = float(o["max_duration"])
        if not 1.0 <= self.min_duration <= self.max_duration:
            raise SoundharvestError(
                "config: source_options: need 1 <= min_duration <= max_duration (seconds)"
            )
        self.off_topic_share = _prob(o["off_topic_share"], "off_topic_share")
        kinds = {str(k): float(v) for k, v in dict(o["off_topic_kinds"]).items() if float(v) > 0}
        bad = set(kinds) - {"other_label", "speech", "silence"}
        if bad or not kinds:
            raise SoundharvestError(
                "config: source_options.off_topic_kinds: weights of other_label, speech, silence"
            )
        total = sum(kinds.values())
        self.off_topic_kinds = {k: v / total for k, v in sorted(kinds.items())}
        self.accompaniment_prob = _prob(o["accompaniment_prob"], "accompaniment_prob")
        self.accompaniment_db = _range(o["accompaniment_db"], "accompaniment_db")
        self.max_accompaniment = int(o["max_accompaniment"])
        self.noise_db = _range(o["noise_db"], "noise_db")
        self.reverb_prob = _prob(o["reverb_prob"], "reverb_prob")
        self.reverb_rt60 = _range(o["reverb_rt60"], "reverb_rt60")
        self.reverb_wet_db = _range(o["reverb_wet_db"], "reverb_wet_db")
        self.level_change_prob = _prob(o["level_change_prob"], "level_change_prob")
        self.level_change_db = _range(o["level_change_db"], "level_change_db")
        self.silence_intro_prob = _prob(o["silence_intro_prob"], "silence_intro_prob")
        self.silence_intro_s = _range(o["silence_intro_s"], "silence_intro_s")
        self.peak_dbfs = _range(o["peak_dbfs"], "peak_dbfs")
        self.query_overlap = _prob(o["query_overlap"], "query_overlap")
        self.unavailable_share = _prob(o["unavailable_share"], "unavailable_share")
        self.codec = str(o["codec"])
        if self.codec not in CODECS:
            raise SoundharvestError(
                f"config: source_options.codec {self.codec!r} unknown; use one of {', '.join(CODECS)}"
            )
        self.bitrate = str(o["bitrate"])
        self.encode_rate = int(o["encode_rate"] or CODECS[self.codec][2])

    # ---------------------------------------------------------------------------- labels

    def label_spec(self, label: str) -> LabelSpec:
        """The label's programs (at most ``programs_per_label``), range and texture."""
        if label in self.label_programs:
            progs = self.label_programs[label]
            bad = [p for p in progs if not 0 <= p <= 127]
            if not progs or bad:
                raise SoundharvestError(
                    f"config: source_options.label_programs.{label}: GM program numbers 0-127"
                )
            base = LABEL_PROGRAMS.get(label)
            if base:  # the label's register; each program keeps to its own range (compose)
                low, high = base.low, base.high
            else:
                known = [PROGRAMS[p] for p in progs if p in PROGRAMS]
                low = max([p.low for p in known], default=48)
                high = min([p.high for p in known], default=84)
                if low > high - 12:
                    low, high = 48, 84
            spec = LabelSpec(tuple(progs), low, high, base.texture if base else "melody")
        elif label in LABEL_PROGRAMS:
            spec = LABEL_PROGRAMS[label]
        else:
            raise SoundharvestError(
                f"config: label {label!r} has no GM programs in the demo source; add "
                f"source_options.label_programs.{label}: [GM program numbers] or use one of "
                f"{', '.join(sorted(LABEL_PROGRAMS))}"
            )
        return LabelSpec(
            spec.programs[: self.programs_per_label], spec.low, spec.high, spec.texture
        )

    def programs_used(self) -> set[int]:
        """Every GM program this configured source may play: the labels' (built-in and
        ``label_programs``, also heard as other labels' off-topic clips) and the accompaniment."""
        used = set(ACCOMPANIMENT_PROGRAMS)
        for label in set(LABEL_PROGRAMS) | set(self.label_programs):
            used |= set(self.label_spec(label).programs)
        return used

    def _other_labels(self, label: str) -> list[str]:
        return sorted((set(LABEL_PROGRAMS) | set(self.label_programs)) - {label})

    # ---------------------------------------------------------------------------- recipe

    def _u(self, label: str, video_id: str, aspect: str) -> float:
        return synth.uniform_for(self.seed, GENERATOR, label, video_id, aspect)

    def _rng(self, label: str, video_id: str, aspect: str) -> np.random.Generator:
        return synth.rng_for(self.seed, GENERATOR, label, video_id, aspect)

    def recipe(self, label: str, video_id: str) -> dict[str, Any]:
        """Everything about a result, as a JSON-able dict: the clip's ground truth.

        Each property draws from its own random stream keyed by ``(seed, label, video_id,
        property)``: raising ``off_topic_share`` turns some on-topic clips off-topic and leaves
        every other property of every clip as it was.
        """
        self.label_spec(label)  # fails with a clear message on a label it cannot play
        r = self._rng(label, video_id, "duration")
        lo, hi = math.log(self.min_duration), math.log(self.max_duration)
        duration = int(round(math.exp(r.uniform(lo, hi))))  # whole seconds, as video sites list
        duration = int(
            min(max(duration, math.ceil(self.min_duration)), math.floor(self.max_duration))
        )
        off_topic = self._u(label, video_id, "off_topic") < self.off_topic_share
        kind = self._off_topic_kind(label, video_id) if off_topic else None
        dom_label, dom_spec, program = self._dominant(label, video_id, kind)
        intro = self._intro(label, video_id, kind, duration)
        accompaniment = self._accompaniment(label, video_id, kind, dom_spec)
        reverb, level_changes, noise, peak = self._room(label, video_id, duration)
        unavailable = self._u(label, video_id, "unavailable") < self.unavailable_share
        title, channel = self._title_channel(label, video_id, kind)
        return {
            "generator": GENERATOR,
            "seed": self.seed,
            "video_id": video_id,
            "label": label,
            "title": title,
            "channel": channel,
            "duration": duration,
            "unavailable": unavailable,
            "off_topic": off_topic,
            "off_topic_kind": kind,
            "dominant": _dominant_entry(kind, dom_label, program),
            "intro_s": round(intro, 3),
            "accompaniment": accompaniment,
            "reverb": reverb,
            "level_changes": level_changes,
            "noise": noise,
            "peak_dbfs": peak,
        }

    def _off_topic_kind(self, label: str, video_id: str) -> str | None:
        """An off-topic result's kind, drawn by the ``off_topic_kinds`` weights."""
        u = self._u(label, video_id, "off_topic_kind")
        acc = 0.0
        kind = None
        for name, w in self.off_topic_kinds.items():
            acc += w
            kind = name
            if u < acc:
                break
        return kind

    def _dominant(self, label: str, video_id: str, kind: str | None) -> tuple[str, LabelSpec, int]:
        """The dominant instrument: its label (another one for ``other_label``), the label's
        spec and the GM program played."""
        r = self._rng(label, video_id, "dominant")
        dom_label = label
        if kind == "other_label":
            others = self._other_labels(label)
            dom_label = others[int(r.integers(len(others)))]
        dom_spec = self.label_spec(dom_label)
        program = int(dom_spec.programs[int(r.integers(len(dom_spec.programs)))])
        return dom_label, dom_spec, program

    def _intro(self, label: str, video_id: str, kind: str | None, duration: int) -> float:
        """Seconds of near-silence before the music (long for the ``silence`` kind)."""
        r = self._rng(label, video_id, "intro")
        intro = 0.0
        if kind == "silence":
            intro = duration * float(r.uniform(0.6, 0.9))
        elif kind != "speech" and r.random() < self.silence_intro_prob:
            intro = min(float(r.uniform(*self.silence_intro_s)), duration * 0.5)
        return intro

    def _accompaniment(
        self, label: str, video_id: str, kind: str | None, dom_spec: LabelSpec
    ) -> list[dict[str, Any]]:
        """The instruments accompanying the lead (none for speech), with their levels."""
        r = self._rng(label, video_id, "accompaniment")
        accompaniment = []
        if kind != "speech" and r.random() < self.accompaniment_prob and self.max_accompaniment > 0:
            pool = [p for p in sorted(ACCOMPANIMENT_PROGRAMS) if p not in dom_spec.programs]
            n_acc = int(r.integers(1, self.max_accompaniment + 1))
            for p in r.permutation(pool)[:n_acc]:
                accompaniment.append(
                    {
                        "program": int(p),
                        "program_name": PROGRAMS[int(p)].name,
                        "family": PROGRAMS[int(p)].family,
                        "level_db": round(float(r.uniform(*self.accompaniment_db)), 2),
                    }
                )
        return accompaniment

    def _room(
        self, label: str, video_id: str, duration: int
    ) -> tuple[dict[str, float] | None, list[dict[str, float]], dict[str, Any], float]:
        """The recording, from one stream: reverb (or None), level changes, background noise
        and the peak level in dBFS."""
        r = self._rng(label, video_id, "room")
        reverb = None
        if r.random() < self.reverb_prob:
            reverb = {
                "rt60": round(float(r.uniform(*self.reverb_rt60)), 3),
                "wet_db": round(float(r.uniform(*self.reverb_wet_db)), 2),
            }
        level_changes = []
        if r.random() < self.level_change_prob:
            times = sorted(
                float(t) for t in r.uniform(0.1 * duration, 0.9 * duration, int(r.integers(1, 4)))
            )
            for t in times:
                size = float(r.uniform(*self.level_change_db)) * (1 if r.random() < 0.5 else -1)
                level_changes.append(
                    {
                        "time": round(t, 3),
                        "db": round(size, 2),
                        "ramp_s": round(float(r.uniform(0.05, 2.0)), 3),
                    }
                )
        noise = {
            "color": synth.NOISE_COLORS[int(r.integers(len(synth.NOISE_COLORS)))],
            "level_db": round(float(r.uniform(*self.noise_db)), 2),
        }
        peak = round(float(r.uniform(*self.peak_dbfs)), 2)
        return reverb, level_changes, noise, peak

    def _title_channel(self, label: str, video_id: str, kind: str | None) -> tuple[str, str]:
        """The result's title (a lesson's or vlog's for speech) and channel name."""
        r = self._rng(label, video_id, "title")
        words = _LABEL_WORDS.get(label, [label.replace("_", " ").title()])
        fields = {
            "instr": words[int(r.integers(len(words)))],
            "piece": _PIECES[int(r.integers(len(_PIECES)))],
            "n": int(r.integers(1, 60)),
        }
        templates = _SPEECH_TITLES if kind == "speech" else _ON_TOPIC_TITLES
        title = templates[int(r.integers(len(templates)))].format(**fields)
        channel = f"{_CHANNEL_A[int(r.integers(len(_CHANNEL_A)))]} {_CHANNEL_B[int(r.integers(len(_CHANNEL_B)))]}"
        return title, channel

    # ---------------------------------------------------------------------------- search

    def video_ids(self, label: str, query: str, n_results: int) -> list[str]:
        """The ids a query returns, ranked: some from the label's shared pool, the rest its own."""
        ids = []
        for rank in range(1, n_results + 1):
            shared = (
                synth.uniform_for(self.seed, GENERATOR, label, query, rank, "shared")
                < self.query_overlap
            )
            vid = (
                _hex_id(self.seed, label, "pool", rank)
                if shared
                else _hex_id(self.seed, label, query, rank)
            )
            ids.append(vid)
        return ids

    def search(self, label: str, query: str, n_results: int) -> list[Candidate]:
        """Ranked candidates for ``query``, a deterministic function of (seed, label, query)."""
        if int(n_results) < 1:
            raise SoundharvestError(f"search: n_results must be >= 1, not {n_results!r}")
        self.label_spec(label)  # fail early on a label the demo cannot play
        out = []
        for rank, vid in enumerate(self.video_ids(label, query, int(n_results)), start=1):
            rec = self.recipe(label, vid)
            out.append(
                Candidate(
                    video_id=vid,
                    url=f"https://demo.invalid/watch?v={vid}",
                    title=rec["title"],
                    channel=rec["channel"],
                    duration=float(rec["duration"]),
                    query=query,
                    rank=rank,
                    label=label,
                )
            )
        return out

    # ---------------------------------------------------------------------------- render

    def render(
        self, label: str, video_id: str, stems: bool = False
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Render a result to float64 16 kHz mono; return ``(audio, recipe)``.

        :param stems: also return the lead and accompaniment before mixing, under
            ``recipe["stems"]`` (for tests).
        """
        rec = self.recipe(label, video_id)
        sr = SAMPLE_RATE
        n = rec["duration"] * sr
        start = rec["intro_s"]
        music = slice(int(start * sr), n)
        r = self._rng(label, video_id, "music")
        harmony = Harmony(
            tonic=int(r.integers(12)),
            minor=bool(r.random() < 0.4),
            bpm=float(r.uniform(60.0, 132.0)),
            progression=_PROGRESSIONS[int(r.integers(len(_PROGRESSIONS)))],
        )
        # The lead sits at -20 dBFS RMS over the music part; everything else is relative to it.
        lead_db = -20.0
        if rec["dominant"]["kind"] == "speech":
            lead = synth.scale_to_rms(synth.speech_like(r, n, sr), lead_db)
            music = slice(0, n)
        else:
            spec = self.label_spec(rec["dominant"]["label"])
            notes = compose(r, spec, rec["dominant"]["program"], harmony, start, rec["duration"])
            lead = synth.render_notes(notes, rec["duration"], sr)
            lead *= synth.db_to_gain(lead_db) / max(synth.rms(lead[music]), 1e-12)
        mix = lead.copy()
        acc_stems = []
        for a in rec["accompaniment"]:
            notes = _accompany(r, a["program"], harmony, start, rec["duration"])
            x = synth.render_notes(notes, rec["duration"], sr)
            x *= synth.db_to_gain(lead_db + a["level_db"]) / max(synth.rms(x[music]), 1e-12)
            acc_stems.append(x)
            mix += x
        rr = self._rng(label, video_id, "effects")
        if rec["reverb"]:
            mix = synth.room_reverb(mix, rr, rec["reverb"]["rt60"], rec["reverb"]["wet_db"], sr)
        if rec["level_changes"]:
            points, db = [(0.0, 0.0)], 0.0
            for ch in rec["level_changes"]:
                points.append((ch["time"], db))
                db += ch["db"]
                points.append((ch["time"] + ch["ramp_s"], db))
            mix *= synth.gain_curve(n, points, sr)
        music_rms = synth.rms(mix[music])
        noise = synth.background_noise(rr, n, rec["noise"]["color"], sr)
        mix += noise * music_rms * synth.db_to_gain(rec["noise"]["level_db"])
        # 10 ms fades so the clip does not start or end with a click.
        fade = int(0.01 * sr)
        ramp = np.linspace(0.0, 1.0, fade)
        mix[:fade] *= ramp
        mix[-fade:] *= ramp[::-1]
        peak = float(np.max(np.abs(mix)))
        gain = synth.db_to_gain(rec["peak_dbfs"]) / peak if peak > 0 else 1.0
        mix *= gain
        if stems:
            rec["stems"] = {"lead": lead * gain, "accompaniment": [x * gain for x in acc_stems]}
        return mix, rec

    # ---------------------------------------------------------------------------- download

    def encode(self, samples: np.ndarray, path: Path) -> None:
        """Encode 16 kHz float audio to ``path`` (compressed) with ffmpeg, bit-exactly.

        ``-cpuflags 0`` keeps ffmpeg's resampler and encoder on their C code paths, whose
        output does not depend on the CPU's SIMD extensions; the bitexact flags and
        ``-map_metadata -1`` keep version strings and dates out of the container.
        """
        encoder, _, _ = CODECS[self.codec]
        pcm = synth.to_pcm16(samples).astype("<i2").tobytes()
        cmd = [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-cpuflags", "0",
            "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
            "-ar", str(self.encode_rate), "-c:a", encoder, "-b:a", self.bitrate, "-y", str(path),
        ]  # fmt: skip
        proc = subprocess.run(cmd, input=pcm, capture_output=True, check=False)
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SoundharvestError(
                f"{path}: ffmpeg could not encode the demo clip ({msg[-1] if msg else proc.returncode})"
            )

    def download(self, candidate: dict[str, Any], out_dir: Path) -> DownloadResult:
        """Render ``candidate``, write ``audio.<ext>``, ``info.json`` and ``truth.json``."""
        out_dir = Path(out_dir)
        label = str(candidate["label"])
        vid = str(candidate["video_id"])
        rec = self.recipe(label, vid)
        if rec["unavailable"]:
            reasons = ["Video unavailable: removed by the uploader", "Private video",
                       "Video not available in your country"]  # fmt: skip
            reason = reasons[int(self._u(label, vid, "reason") * len(reasons))]
            return DownloadResult(status="failed", reason=f"{reason} (demo)")
        audio, rec = self.render(label, vid)
        _, ext, _ = CODECS[self.codec]
        path = out_dir / f"audio.{ext}"
        with atomic_path(path) as tmp:
            self.encode(audio, tmp)
        info = {
            "id": vid,
            "title": rec["title"],
            "channel": rec["channel"],
            "uploader": rec["channel"],
            "duration": rec["duration"],
            "ext": ext,
            "acodec": CODECS[self.codec][0].removeprefix("lib"),
            "abr": self.bitrate,
            "asr": self.encode_rate,
            "audio_channels": 1,
            "webpage_url": f"https://demo.invalid/watch?v={vid}",
            "extractor": "demo",
            "filesize": path.stat().st_size,
        }
        pcm = synth.to_pcm16(audio)
        truth = {**rec, "pcm_sha256": hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest()}
        write_json(out_dir / "info.json", info)
        write_json(out_dir / "truth.json", truth)
        return DownloadResult(status="ok", audio=path, info=info)
