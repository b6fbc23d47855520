"""Offline audio synthesis from a real sampled General MIDI soundfont.

The soundfont is ``TimGM6mb.sf2`` (a 6 MB sampled GM bank, GPL) that ships inside the
``pretty_midi`` wheel, so a fresh environment has it without any download. Notes are rendered
with ``tinysoundfont`` (TinySoundFont's C code, no audio device) and turned into 16 kHz mono.
An evaluation set may be rendered from another GM soundfont instead (``eval_set.soundfont``,
e.g. Debian's ``sf_GMbank.sf2``, :data:`GMBANK`), to judge models on sounds of another bank.

This module also holds the one table of GM programs used by the whole project
(:data:`PROGRAMS`, :data:`LABEL_PROGRAMS`, :data:`ACCOMPANIMENT_PROGRAMS`): which NSynth family
each program belongs to, which programs the ``demo`` source trains on for each label, and, by
difference, which programs an evaluation set may use without ever having been heard in
training (:func:`eval_programs`).

Determinism: every array operation after the soundfont render is float64 arithmetic (adds,
multiplies, FFT convolution, IIR filters) with no array transcendental (``np.exp``/``np.sin``
may take different SIMD paths on different CPUs); the few transcendentals needed are scalars
from Python's ``math``. Random numbers come from :func:`rng_for`, a numpy ``Generator`` seeded
from a SHA-256 of its keys, so a result depends on its keys and on the package versions only.

``scipy.signal`` (about a second to import) is imported by the functions that filter, not here:
the program tables are read whenever the Snakefile is parsed, by every ``snakemake`` command.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import SoundharvestError

SAMPLE_RATE = 16000

#: The soundfont is rendered at twice the output rate and decimated: TinySoundFont resamples
#: its 22-44 kHz samples with linear interpolation, which would fold everything above 8 kHz
#: back into the band at 16 kHz. At 32 kHz the decimation filter removes it first.
RENDER_RATE = 2 * SAMPLE_RATE

SOUNDFONT_NAME = "TimGM6mb.sf2"

#: NSynth's eleven instrument families, in the order of their ids (0..10).
NSYNTH_FAMILIES = [
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "synth_lead",
    "vocal",
]

#: NSynth's instrument sources, in the order of their ids (0..2).
NSYNTH_SOURCES = ["acoustic", "electronic", "synthetic"]


@dataclass(frozen=True)
class Program:
    """One GM program: its NSynth family and source and a realistic MIDI pitch range.

    :param low: lowest MIDI pitch the real instrument plays (and the renderer uses).
    :param high: highest MIDI pitch.
    """

    number: int
    name: str
    family: str
    source: str
    low: int
    high: int


def _p(number: int, name: str, family: str, source: str, low: int, high: int) -> Program:
    return Program(number, name, family, source, low, high)


#: GM programs (0-based numbers) by NSynth family. Ranges are the instruments' usual written
#: ranges (concert pitch); NSynth itself spans MIDI 21-108. Programs that belong to no NSynth
#: family (drums, sound effects, pads, harp, ...) are absent.
PROGRAMS: dict[int, Program] = {
    p.number: p
    for p in [
        _p(0, "Acoustic Grand Piano", "keyboard", "acoustic", 21, 108),
        _p(1, "Bright Acoustic Piano", "keyboard", "acoustic", 21, 108),
        _p(2, "Electric Grand Piano", "keyboard", "electronic", 21, 108),
        _p(3, "Honky-tonk Piano", "keyboard", "acoustic", 21, 108),
        _p(4, "Electric Piano 1", "keyboard", "electronic", 28, 103),
        _p(5, "Electric Piano 2", "keyboard", "electronic", 28, 103),
        _p(6, "Harpsichord", "keyboard", "acoustic", 29, 89),
        _p(7, "Clavinet", "keyboard", "electronic", 36, 96),
        _p(8, "Celesta", "mallet", "acoustic", 60, 108),
        _p(9, "Glockenspiel", "mallet", "acoustic", 79, 108),
        _p(10, "Music Box", "mallet", "acoustic", 60, 96),
        _p(11, "Vibraphone", "mallet", "acoustic", 53, 89),
        _p(12, "Marimba", "mallet", "acoustic", 45, 96),
        _p(13, "Xylophone", "mallet", "acoustic", 65, 108),
        _p(14, "Tubular Bells", "mallet", "acoustic", 60, 77),
        _p(15, "Dulcimer", "mallet", "acoustic", 48, 96),
        _p(16, "Drawbar Organ", "organ", "electronic", 36, 96),
        _p(17, "Percussive Organ", "organ", "electronic", 36, 96),
        _p(18, "Rock Organ", "organ", "electronic", 36, 96),
        _p(19, "Church Organ", "organ", "acoustic", 24, 96),
        _p(20, "Reed Organ", "organ", "acoustic", 36, 89),
        _p(21, "Accordion", "organ", "acoustic", 41, 89),
        _p(22, "Harmonica", "reed", "acoustic", 60, 96),
        _p(24, "Acoustic Guitar (nylon)", "guitar", "acoustic", 40, 84),
        _p(25, "Acoustic Guitar (steel)", "guitar", "acoustic", 40, 84),
        _p(26, "Electric Guitar (jazz)", "guitar", "electronic", 40, 86),
        _p(27, "Electric Guitar (clean)", "guitar", "electronic", 40, 86),
        _p(28, "Electric Guitar (muted)", "guitar", "electronic", 40, 86),
        _p(29, "Overdriven Guitar", "guitar", "electronic", 40, 86),
        _p(30, "Distortion Guitar", "guitar", "electronic", 40, 86),
        _p(32, "Acoustic Bass", "bass", "acoustic", 28, 67),
        _p(33, "Electric Bass (finger)", "bass", "electronic", 28, 67),
        _p(34, "Electric Bass (pick)", "bass", "electronic", 28, 67),
        _p(35, "Fretless Bass", "bass", "electronic", 28, 67),
        _p(36, "Slap Bass 1", "bass", "electronic", 28, 67),
        _p(37, "Slap Bass 2", "bass", "electronic", 28, 67),
        _p(38, "Synth Bass 1", "bass", "synthetic", 24, 60),
        _p(39, "Synth Bass 2", "bass", "synthetic", 24, 60),
        _p(40, "Violin", "string", "acoustic", 55, 100),
        _p(41, "Viola", "string", "acoustic", 48, 88),
        _p(42, "Cello", "string", "acoustic", 36, 76),
        _p(43, "Contrabass", "string", "acoustic", 28, 67),
        _p(44, "Tremolo Strings", "string", "acoustic", 36, 96),
        _p(45, "Pizzicato Strings", "string", "acoustic", 36, 96),
        _p(48, "String Ensemble 1", "string", "acoustic", 36, 96),
        _p(49, "String Ensemble 2", "string", "acoustic", 36, 96),
        _p(52, "Choir Aahs", "vocal", "acoustic", 48, 79),
        _p(53, "Voice Oohs", "vocal", "acoustic", 48, 79),
        _p(54, "Synth Voice", "vocal", "synthetic", 48, 79),
        _p(56, "Trumpet", "brass", "acoustic", 54, 84),
        _p(57, "Trombone", "brass", "acoustic", 40, 72),
        _p(58, "Tuba", "brass", "acoustic", 28, 65),
        _p(59, "Muted Trumpet", "brass", "acoustic", 54, 82),
        _p(60, "French Horn", "brass", "acoustic", 41, 77),
        _p(61, "Brass Section", "brass", "acoustic", 40, 84),
        _p(64, "Soprano Sax", "reed", "acoustic", 56, 87),
        _p(65, "Alto Sax", "reed", "acoustic", 49, 81),
        _p(66, "Tenor Sax", "reed", "acoustic", 44, 76),
        _p(67, "Baritone Sax", "reed", "acoustic", 36, 69),
        _p(68, "Oboe", "reed", "acoustic", 58, 91),
        _p(69, "English Horn", "reed", "acoustic", 52, 81),
        _p(70, "Bassoon", "reed", "acoustic", 34, 75),
        _p(71, "Clarinet", "reed", "acoustic", 50, 91),
        _p(72, "Piccolo", "flute", "acoustic", 74, 108),
        _p(73, "Flute", "flute", "acoustic", 60, 96),
        _p(74, "Recorder", "flute", "acoustic", 60, 91),
        _p(75, "Pan Flute", "flute", "acoustic", 60, 96),
        _p(76, "Blown Bottle", "flute", "acoustic", 60, 96),
        _p(77, "Shakuhachi", "flute", "acoustic", 55, 88),
        _p(78, "Whistle", "flute", "acoustic", 72, 78),
        _p(79, "Ocarina", "flute", "acoustic", 60, 89),
        _p(80, "Lead 1 (square)", "synth_lead", "synthetic", 36, 96),
        _p(81, "Lead 2 (sawtooth)", "synth_lead", "synthetic", 36, 96),
        _p(82, "Lead 3 (calliope)", "synth_lead", "synthetic", 48, 96),
        _p(83, "Lead 4 (chiff)", "synth_lead", "synthetic", 48, 96),
        _p(84, "Lead 5 (charang)", "synth_lead", "synthetic", 36, 96),
        _p(85, "Lead 6 (voice)", "vocal", "synthetic", 48, 84),
        _p(86, "Lead 7 (fifths)", "synth_lead", "synthetic", 36, 84),
        _p(87, "Lead 8 (bass + lead)", "synth_lead", "synthetic", 28, 84),
        _p(91, "Pad 4 (choir)", "vocal", "synthetic", 48, 84),
        _p(105, "Banjo", "guitar", "acoustic", 48, 84),
        _p(108, "Kalimba", "mallet", "acoustic", 60, 88),
        _p(110, "Fiddle", "string", "acoustic", 55, 96),
        _p(111, "Shanai", "reed", "acoustic", 60, 88),
        _p(114, "Steel Drums", "mallet", "acoustic", 52, 88),
    ]
}


@dataclass(frozen=True)
class LabelSpec:
    """How the ``demo`` source plays a training label.

    :param programs: GM programs, most typical first (``programs_per_label`` keeps a prefix).
    :param low: lowest MIDI pitch of its phrases; :param high: the highest.
    :param texture: ``"melody"`` (monophonic lines with breaths), ``"chords"`` (strummed or
        held chords with a melody on top) or ``"piano"`` (left-hand chords, right-hand melody).
    """

    programs: tuple[int, ...]
    low: int
    high: int
    texture: str


#: Training labels of the thesis (IRMAS classes, guitars merged) and the programs that play them.
#: Only these programs (and :data:`ACCOMPANIMENT_PROGRAMS`) are ever heard in training data.
LABEL_PROGRAMS: dict[str, LabelSpec] = {
    "cello": LabelSpec((42,), 36, 72, "melody"),
    "clarinet": LabelSpec((71,), 50, 86, "melody"),
    "flute": LabelSpec((73, 72), 60, 93, "melody"),
    "guitar": LabelSpec((24, 25, 29), 40, 81, "chords"),
    "organ": LabelSpec((19, 16), 36, 88, "chords"),
    "piano": LabelSpec((0, 1), 33, 96, "piano"),
    "saxophone": LabelSpec((65, 66, 64), 46, 81, "melody"),
    "trumpet": LabelSpec((56, 59), 55, 82, "melody"),
    "violin": LabelSpec((40, 110), 55, 96, "melody"),
    "voice": LabelSpec((52, 54), 50, 77, "melody"),
}

#: Programs the ``demo`` source uses only to accompany a lead (plus the labels' own programs).
#: They count as heard in training, so :func:`eval_programs` keeps them out of disjoint sets.
ACCOMPANIMENT_PROGRAMS: dict[int, str] = {
    0: "chords",  # piano
    24: "chords",  # nylon guitar
    16: "pad",  # drawbar organ
    48: "pad",  # string ensemble
    32: "bass",  # acoustic bass
}


def training_programs() -> set[int]:
    """Every GM program that the ``demo`` source may play in a training clip."""
    used = {p for spec in LABEL_PROGRAMS.values() for p in spec.programs}
    return used | set(ACCOMPANIMENT_PROGRAMS)


def family_programs(family: str) -> list[int]:
    """All GM programs of NSynth family ``family`` in :data:`PROGRAMS`."""
    if family not in NSYNTH_FAMILIES:
        raise SoundharvestError(
            f"family {family!r} is not an NSynth family; use one of {', '.join(NSYNTH_FAMILIES)}"
        )
    return sorted(n for n, p in PROGRAMS.items() if p.family == family)


def eval_programs(
    family: str, programs: str = "disjoint", exclude: Iterable[int] = ()
) -> list[int]:
    """The GM programs an evaluation set renders for ``family``.

    :param programs: ``"disjoint"``: only programs never heard in training (see
        :func:`training_programs`); ``"overlap"``: all programs of the family, the training
        ones included.
    :param exclude: further programs to hold out in ``"disjoint"`` mode, e.g. those a
        configured ``demo`` source adds with its ``label_programs`` option
        (:meth:`soundharvest.acquire.demo.DemoSource.programs_used`).
    """
    members = family_programs(family)
    if programs == "overlap":
        return members
    if programs != "disjoint":
        raise SoundharvestError(
            f"eval_set: programs must be 'disjoint' or 'overlap', not {programs!r}"
        )
    used = training_programs() | {int(p) for p in exclude}
    held_out = [p for p in members if p not in used]
    if not held_out:
        raise SoundharvestError(
            f"eval_set: family {family!r} has no GM program left that training does not use; "
            "use programs: overlap or play fewer programs in training"
        )
    return held_out


# --------------------------------------------------------------------------------------------
# Soundfont and rendering


#: The one other soundfont this project uses (for a cross-soundfont evaluation set): Debian's
#: ``csound-soundfont`` package installs it here (``apt-get install csound-soundfont``).
GMBANK = Path("/usr/share/sounds/sf2/sf_GMbank.sf2")


def soundfont_path(soundfont: str | os.PathLike | None = None) -> Path:
    """Path of the soundfont to render with.

    In order: ``soundfont`` when given (not empty); else the environment variable
    ``SOUNDHARVEST_SOUNDFONT`` (any GM ``.sf2``; the rendered audio then differs from the
    default's); else ``TimGM6mb.sf2`` inside the installed ``pretty_midi`` package.
    """
    override = os.environ.get("SOUNDHARVEST_SOUNDFONT")
    if soundfont:
        path, fix = Path(soundfont), "give the path of a General MIDI .sf2"
    elif override:
        path, fix = Path(override), "fix or unset SOUNDHARVEST_SOUNDFONT"
    else:
        try:
            import pretty_midi
        except ImportError:
            raise SoundharvestError(
                "demo: the soundfont ships with pretty_midi; install it (pip install pretty_midi)"
            ) from None
        path, fix = Path(pretty_midi.__file__).parent / SOUNDFONT_NAME, "reinstall pretty_midi"
    if not path.is_file():
        raise SoundharvestError(f"{path}: soundfont not found; {fix}")
    return path


@functools.lru_cache(maxsize=2)
def _soundfont(path: str):
    try:
        from tinysoundfont import _tinysoundfont as tsf
    except ImportError:
        raise SoundharvestError(
            "demo: tinysoundfont is missing; install it with pip install --no-deps tinysoundfont"
        ) from None
    try:
        return tsf, tsf.SoundFont(path)
    except RuntimeError as e:  # TinySoundFont's "Could not load SoundFont file: ..."
        reason = " ".join(str(e).split())
        raise SoundharvestError(f"{path}: not a readable SoundFont 2 file ({reason})") from None


def load_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """Check that the soundfont :func:`soundfont_path` picks exists and loads; return its path.

    :raises SoundharvestError: one line naming the file, if it is missing or not a SoundFont.
    """
    path = soundfont_path(soundfont)
    _soundfont(str(path))
    return path


@dataclass(frozen=True)
class Note:
    """One note to render: onset and length in seconds, MIDI pitch and velocity, GM program."""

    start: float
    duration: float
    pitch: int
    velocity: int
    program: int


def render_notes(
    notes: Sequence[Note],
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    gain_db: float = 0.0,
    max_voices: int = 96,
    soundfont: str | os.PathLike | None = None,
) -> np.ndarray:
    """Render notes with the soundfont to mono float64 at ``sample_rate``.

    Each distinct program gets a MIDI channel of its own (up to 15; channel 9, the GM drum
    channel, is skipped). Note-offs at an instant come before note-ons, so a repeated pitch
    re-attacks. Every call starts from a fresh copy of the soundfont, so the result depends on
    the arguments only.

    :param notes: the notes; a note past ``seconds`` is cut, its release included.
    :param seconds: length of the output.
    :param sample_rate: output rate; the soundfont plays at twice this rate (see
        :data:`RENDER_RATE`) and is decimated.
    :param gain_db: TinySoundFont's global gain.
    :param max_voices: voices before the oldest is stolen (chords with long releases need ~50).
    :param soundfont: the ``.sf2`` to play (see :func:`soundfont_path`; None or empty: the
        ``SOUNDHARVEST_SOUNDFONT`` override or the default TimGM6mb).
    """
    tsf, base = _soundfont(str(soundfont_path(soundfont)))
    rate = 2 * sample_rate
    n_out = int(round(seconds * sample_rate))
    n = 2 * n_out
    font = tsf.SoundFont(base)  # a clone shares the sample data, not the playing state
    font.set_output(tsf.OutputMode.Mono, rate, float(gain_db))
    font.set_max_voices(max_voices)
    channels: dict[int, int] = {}
    free = [c for c in range(16) if c != 9]
    events: list[tuple[int, int, int, int, float]] = []  # (sample, order, channel, key, vel)
    for note in notes:
        if note.program not in channels:
            if not free:
                raise SoundharvestError("synth: more than 15 programs in one render")
            channels[note.program] = free.pop(0)
            font.channel_set_bank(channels[note.program], 0)
            font.channel_set_preset_number(channels[note.program], int(note.program), False)
        ch = channels[note.program]
        on = int(round(note.start * rate))
        off = int(round((note.start + note.duration) * rate))
        if on >= n or off <= on:
            continue
        vel = min(max(int(note.velocity), 1), 127) / 127.0
        events.append((on, 1, ch, int(note.pitch), vel))
        events.append((off, 0, ch, int(note.pitch), 0.0))
    events.sort()
    out = np.zeros(n, dtype=np.float32)
    pos = 0
    for sample, kind, ch, key, vel in events:
        sample = min(sample, n)
        if sample > pos:
            font.render(memoryview(out[pos:sample]).cast("B"), False)
            pos = sample
        if kind:
            font.channel_note_on(ch, key, vel)
        else:
            font.channel_note_off(ch, key)
    if pos < n:
        font.render(memoryview(out[pos:]).cast("B"), False)
    from scipy import signal

    # resample_poly's FIR (Kaiser, 41 taps) is the anti-alias filter of the 2:1 decimation.
    y = signal.resample_poly(out.astype(np.float64), 1, 2)[:n_out]
    # Some samples carry a DC offset (the alto sax's is half its RMS): a 20 Hz high-pass
    # (2nd-order Butterworth, below every GM instrument's fundamental) removes it.
    b, a = signal.butter(2, 20.0 / (sample_rate / 2), btype="highpass")
    return signal.lfilter(b, a, y)


# --------------------------------------------------------------------------------------------
# Randomness, levels and effects (float64; see the module docstring about determinism)


def rng_for(*keys: object) -> np.random.Generator:
    """A numpy Generator seeded from the SHA-256 of ``keys`` (their ``repr``s joined)."""
    digest = hashlib.sha256("\x1f".join(repr(k) for k in keys).encode("utf-8")).digest()
    return np.random.default_rng(
        [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    )


def uniform_for(*keys: object) -> float:
    """A number in [0, 1) that depends on ``keys`` only (53 bits of their SHA-256)."""
    digest = hashlib.sha256("\x1f".join(repr(k) for k in keys).encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "little") >> 11) / float(1 << 53)


def db_to_gain(db: float) -> float:
    """Amplitude factor of ``db`` decibels."""
    return 10.0 ** (db / 20.0)


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` (0 for an empty array)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def rms_db(x: np.ndarray, floor_db: float = -200.0) -> float:
    """RMS level of ``x`` in dB re full scale, floored at ``floor_db`` for silence."""
    r = rms(x)
    return 20.0 * math.log10(r) if r > 10.0 ** (floor_db / 20.0) else floor_db


def scale_to_rms(x: np.ndarray, target_db: float) -> np.ndarray:
    """``x`` scaled to an RMS of ``target_db`` dBFS (silence stays silence)."""
    r = rms(x)
    return x * (db_to_gain(target_db) / r) if r > 0 else np.asarray(x, dtype=np.float64)


def decay_envelope(n: int, seconds_to_60db: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Exponential decay falling 60 dB in ``seconds_to_60db``, built by cumulative products.

    ``np.cumprod`` of a constant factor needs only multiplications, which every CPU rounds
    alike, unlike ``np.exp`` over an array.
    """
    factor = 10.0 ** (-3.0 / (seconds_to_60db * sample_rate))  # -60 dB = 10**-3 in amplitude
    env = np.full(n, factor, dtype=np.float64)
    env[0] = 1.0
    return np.cumprod(env)


def room_reverb(
    x: np.ndarray,
    rng: np.random.Generator,
    rt60: float,
    wet_db: float,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Add a synthetic room: sparse early reflections and an exponentially decaying noise tail.

    :param rt60: seconds for the tail to fall by 60 dB (0.3 s: small room, 2 s: church).
    :param wet_db: level of the reverberant part relative to the dry signal (RMS).
    """
    from scipy import signal

    n_ir = int(min(rt60 * 1.2, 2.5) * sample_rate)
    ir = rng.standard_normal(n_ir) * decay_envelope(n_ir, rt60, sample_rate)
    # Early reflections: 6 taps in the first 50 ms (walls a few metres away).
    taps = rng.integers(int(0.005 * sample_rate), int(0.05 * sample_rate), size=6)
    ir[taps] += rng.uniform(-3.0, 3.0, size=6)
    # A gentle low-pass (one pole at ~4 kHz): walls absorb high frequencies.
    ir = signal.lfilter([0.6], [1.0, -0.4], ir)
    wet = signal.fftconvolve(x, ir)[: len(x)]
    r_dry, r_wet = rms(x), rms(wet)
    if r_wet == 0.0:
        return np.asarray(x, dtype=np.float64)
    return x + wet * (r_dry / r_wet * db_to_gain(wet_db))


#: Pink-noise filter (Paul Kellet's economy 3-pole approximation, within 0.05 dB of -3 dB/oct).
_PINK_B = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
_PINK_A = [1.0, -2.494956002, 2.017265875, -0.522189400]

NOISE_COLORS = ("white", "pink", "brown", "hum")


def background_noise(
    rng: np.random.Generator, n: int, color: str, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Unit-RMS background noise: ``white`` (hiss), ``pink`` (room tone), ``brown`` (rumble,
    wind) or ``hum`` (50 or 60 Hz mains with harmonics, over faint hiss)."""
    from scipy import signal

    if color == "white":
        y = rng.standard_normal(n)
    elif color == "pink":
        y = signal.lfilter(_PINK_B, _PINK_A, rng.standard_normal(n))
    elif color == "brown":
        # A leaky integrator (pole 0.995, corner ~13 Hz) and a 20 Hz high-pass against drift.
        y = signal.lfilter([1.0], [1.0, -0.995], rng.standard_normal(n))
        b, a = signal.butter(2, 20.0 / (sample_rate / 2), btype="highpass")
        y = signal.lfilter(b, a, y)
    elif color == "hum":
        mains = 50 if rng.random() < 0.5 else 60
        period = sample_rate // math.gcd(sample_rate, mains)  # samples in a whole number of cycles
        cycles = period * mains // sample_rate
        amps = [1.0, 0.5, 0.35, 0.2]  # odd and even harmonics of a saturated transformer
        table = np.array(
            [
                sum(
                    a * math.sin(2 * math.pi * (h + 1) * cycles * i / period)
                    for h, a in enumerate(amps)
                )
                for i in range(period)
            ]
        )
        y = np.resize(table, n) + 0.1 * rng.standard_normal(n)
    else:
        raise SoundharvestError(f"noise color {color!r} unknown; use one of {NOISE_COLORS}")
    return scale_to_rms(y, 0.0)


def _resonator(freq: float, bandwidth: float, sample_rate: int) -> tuple[list[float], list[float]]:
    """Two-pole resonator coefficients (a formant) at ``freq`` Hz with ``bandwidth`` Hz."""
    r = math.exp(-math.pi * bandwidth / sample_rate)
    c = 2.0 * r * math.cos(2.0 * math.pi * freq / sample_rate)
    return [1.0 - r], [1.0, -c, r * r]


#: First and second formants (Hz) of a few vowels (Peterson & Barney averages, male voices).
_VOWELS = [(730, 1090), (270, 2290), (530, 1840), (570, 840), (300, 870), (660, 1720), (490, 1350)]


def speech_like(rng: np.random.Generator, n: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Unit-RMS speech-like noise: syllables of a glottal pulse train through vowel formants,
    fricative bursts and pauses, with a falling intonation per phrase.

    Not intelligible and not meant to be: it has speech's 3-6 Hz syllable rhythm, its pitch
    (90-220 Hz) and formant structure, which is what makes a talking-head video off-topic.
    """
    from scipy import signal

    out = np.zeros(n, dtype=np.float64)
    f0_base = rng.uniform(90.0, 220.0)
    t = int(rng.uniform(0.0, 0.3) * sample_rate)
    while t < n:
        # A phrase of 3-12 syllables, then a pause of 0.2-0.8 s.
        n_syll = int(rng.integers(3, 13))
        for k in range(n_syll):
            length = int(rng.uniform(0.12, 0.3) * sample_rate)
            if t + length > n:
                break
            f0 = f0_base * (1.15 - 0.3 * k / n_syll) * rng.uniform(0.93, 1.07)
            # Glottal pulses: a sawtooth from a wrapped phase accumulator (no sin needed).
            phase = np.cumsum(np.full(length, f0 / sample_rate))
            voiced = 2.0 * (phase - np.floor(phase)) - 1.0
            f1, f2 = _VOWELS[int(rng.integers(len(_VOWELS)))]
            b1, a1 = _resonator(f1, 90.0, sample_rate)
            b2, a2 = _resonator(f2, 120.0, sample_rate)
            syl = signal.lfilter(b1, a1, voiced) + 0.5 * signal.lfilter(b2, a2, voiced)
            if rng.random() < 0.4:  # a fricative onset (s, f, sh): high-passed noise
                m = length // 3
                bh, ah = signal.butter(2, 3000.0 / (sample_rate / 2), btype="highpass")
                fric = signal.lfilter(bh, ah, rng.standard_normal(m))
                syl[:m] = 0.3 * syl[:m] + fric * (rms(syl) / max(rms(fric), 1e-12)) * 0.5
            # Attack/decay envelope of a syllable (piecewise linear).
            env = np.interp(
                np.arange(length), [0, length * 0.2, length * 0.7, length], [0, 1, 0.8, 0]
            )
            out[t : t + length] += syl * env * rng.uniform(0.5, 1.0)
            t += length + int(rng.uniform(0.0, 0.06) * sample_rate)
        t += int(rng.uniform(0.2, 0.8) * sample_rate)
    return scale_to_rms(out, 0.0)


def gain_curve(
    n: int, points: Iterable[tuple[float, float]], sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Piecewise-linear amplitude curve through ``(time in s, gain in dB)`` points.

    Gains are converted to amplitude at the points only and interpolated linearly in between.
    """
    pts = sorted(points)
    if not pts:
        return np.ones(n)
    times = [t * sample_rate for t, _ in pts]
    gains = [db_to_gain(g) for _, g in pts]
    return np.interp(np.arange(n, dtype=np.float64), times, gains)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to int16 by ``round(x * 32768)``, clipped.

    The scale 32768 is what libsndfile divides by when it reads 16-bit PCM as float, so a
    float array of multiples of 1/32768 survives a write/read round trip exactly.
    """
    y = np.round(np.asarray(x, dtype=np.float64) * 32768.0)
    return np.clip(y, -32768, 32767).astype(np.int16)
