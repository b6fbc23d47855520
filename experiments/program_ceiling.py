"""Issue 21: how many GM programs per label can teach a family? An oracle ceiling, no training.

A standardised multinomial logistic regression (the probe's recipe) is fitted on the STFT top
frames of *clean, correctly labelled* notes of a family's training programs and scored on notes
of the family's other (disjoint) programs. No search noise, no accompaniment, no model: what
the frames themselves let a linear reader carry from some instruments of a family to the others.
If this ceiling is below a bar, no loss or head reaches the bar with those training programs.

Splits compared (``--splits``):

- ``builtin``: the demo's built-in label programs (:data:`soundharvest.synth.LABEL_PROGRAMS`) of
  the labels that map to each family; evaluation on the disjoint programs (as the workflow).
- ``wide``: the programs ``config/wide_programs.yaml`` gives the labels (``label_programs``);
  evaluation on what stays disjoint.

Notes: every program plays ``--notes`` notes, NSynth velocities, pitches drawn in its range
(seeded); the soundfont is TimGM6mb unless ``--soundfont`` names another (the evaluation notes
are rendered from it, the training notes always from TimGM6mb, as in the workflow).

``--features envelope`` adds the note's level envelope from its onset to the loudest frame: what
a reader of the note's attack and decay (not one spectrum) could carry across programs.
``--features patch`` reads a time-frequency patch instead: 64 mel bands x the first ~1 s from the
onset (what a 2-D CNN over log-mel patches, the literature's front end, sees).

``--reader`` picks who reads them: ``linear`` (the probe's logistic regression), or a nonlinear
one (``mlp``, ``boost``: gradient-boosted trees, ``knn``), to tell a linear reader's limit from the
frames' own.

Run: ``.venv/bin/python experiments/program_ceiling.py`` (about a minute).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from soundharvest import synth
from soundharvest.acquire.demo import DemoSource
from soundharvest.evaluate.nsynth import NSYNTH_VELOCITIES, load_label_families, render_note
from soundharvest.features import compute_features

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())
STFT = DEFAULT["features"]["stft"]  # the default run's frames
#: The default config's labels and their NSynth families.
LABEL_FAMILY = {
    k: v
    for k, v in load_label_families(ROOT / "resources/label_families.tsv").items()
    if k in DEFAULT["labels"]
}


#: Frames of level envelope ``--features envelope`` adds, from the note's onset (~2 s).
ENVELOPE_FRAMES = 64
#: ``--features patch``: mel bands and frames from the onset (32 hops of 512 at 16 kHz, ~1 s).
PATCH_MEL = {**DEFAULT["features"]["mel"], "n_mels": 64}
PATCH_FRAMES = 32


def onset_patch(samples: np.ndarray) -> np.ndarray:
    """64 mel bands x PATCH_FRAMES frames from the note's onset (first frame within 40 dB of
    its loudest), in [0, 1], zero-padded: the note's attack and early decay, flattened."""
    frames, energy = compute_features(samples, synth.SAMPLE_RATE, "mel", PATCH_MEL)
    level = 10 * np.log10(energy / max(float(energy.max()), 1e-30) + 1e-10)
    onset = int(np.argmax(level > -40))
    out = np.zeros((PATCH_FRAMES, frames.shape[1]), dtype=np.float32)
    part = frames[onset : onset + PATCH_FRAMES]
    out[: len(part)] = part
    return out.ravel()


def top_frame(
    program: int, pitch: int, velocity: int, soundfont: str | None, features: str = "top"
) -> np.ndarray:
    """The note's loudest STFT frame; with ``features="envelope"`` followed by its level
    envelope from the onset (the first frame within 40 dB of the loudest), in dB re the
    loudest, clipped to 80 dB and scaled to [-1, 0]: how the note starts and decays."""
    samples = render_note(program, pitch, velocity, soundfont)
    if features == "patch":
        return onset_patch(samples)
    frames, energy = compute_features(samples, synth.SAMPLE_RATE, "stft", STFT)
    top = frames[int(np.argmax(energy))]
    if features == "top":
        return top
    level = 10 * np.log10(energy / max(float(energy.max()), 1e-30) + 1e-10)  # a silent note: -100
    onset = int(np.argmax(level > -40))
    env = np.full(ENVELOPE_FRAMES, -80.0)
    part = level[onset : onset + ENVELOPE_FRAMES]
    env[: len(part)] = np.clip(part, -80, 0)
    return np.concatenate([top, env / 80])


def notes_of(
    program: int, n: int, seed: int, soundfont: str | None, features: str = "top"
) -> np.ndarray:
    p = synth.PROGRAMS[program]
    rng = synth.rng_for(seed, "ceiling", program)
    pairs = [(k, v) for k in range(max(p.low, 21), min(p.high, 108) + 1) for v in NSYNTH_VELOCITIES]
    pick = rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)
    return np.stack([top_frame(program, *pairs[i], soundfont, features) for i in pick])


def split_programs(source: DemoSource, families: list[str]) -> dict[str, tuple[list, list]]:
    """family -> (training programs of its labels, disjoint evaluation programs)."""
    used = source.programs_used()
    out = {}
    for fam in families:
        train = sorted(
            {
                p
                for label, f in LABEL_FAMILY.items()
                if f == fam
                for p in source.label_spec(label).programs
            }
        )
        out[fam] = (train, synth.eval_programs(fam, "disjoint", used))
    return out


def make_reader(name: str, seed: int):
    """The classifier of ``--reader``, standardised inputs where it matters."""
    if name == "linear":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        return make_pipeline(
            StandardScaler(),
            MLPClassifier(
                (256, 128), alpha=1e-2, max_iter=500, early_stopping=True, random_state=seed
            ),
        )
    if name == "boost":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=200, random_state=seed)
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return make_pipeline(StandardScaler(), KNeighborsClassifier(5, metric="cosine"))
    raise ValueError(f"--reader: {name!r} is not one of linear, mlp, boost, knn")


def ceiling(split, n_notes, seed, soundfont, features="top", reader="linear"):
    Xtr, ytr, Xte, yte = [], [], [], []
    for fam, (train, test) in split.items():
        for p in train:
            Xtr.append(notes_of(p, n_notes, seed, None, features))
            ytr += [fam] * len(Xtr[-1])
        for p in test:
            Xte.append(notes_of(p, n_notes, seed + 1, soundfont, features))
            yte += [fam] * len(Xte[-1])
    clf = make_reader(reader, seed)
    clf.fit(np.concatenate(Xtr), ytr)
    pred = clf.predict(np.concatenate(Xte))
    yte = np.array(yte)
    per = {f: accuracy_score(yte[yte == f], pred[yte == f]) for f in split}
    return accuracy_score(yte, pred), per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default="guitar,vocal,organ,flute")
    ap.add_argument("--splits", default="builtin,wide")
    ap.add_argument("--notes", type=int, default=30, help="notes per program")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--soundfont", default=None, help="the evaluation notes' .sf2")
    ap.add_argument("--config", default=str(ROOT / "config/wide_programs.yaml"))
    ap.add_argument(
        "--features",
        choices=("top", "envelope", "patch"),
        default="top",
        help="top: the loudest frame (the thesis' datapoint); envelope: plus the level "
        "envelope of the note's first ~2 s; patch: 64 mel bands x ~1 s from the onset",
    )
    ap.add_argument("--reader", choices=("linear", "mlp", "boost", "knn"), default="linear")
    args = ap.parse_args()
    families = args.families.split(",")
    options = {
        "builtin": {},
        "wide": yaml.safe_load(Path(args.config).read_text())["search"]["demo"],
    }
    for name in args.splits.split(","):
        source = DemoSource(options[name])
        split = split_programs(source, families)
        acc, per = ceiling(split, args.notes, args.seed, args.soundfont, args.features, args.reader)
        print(f"{name}: accuracy {acc:.3f} on disjoint programs (chance {1 / len(families):.3f})")
        for fam, (train, test) in split.items():
            print(f"  {fam:9s} {per[fam]:.3f}  train {train}  eval {test}")


if __name__ == "__main__":
    main()
