"""Each objective's own hyperparameters: one frozen dataclass per model type.

What every model type shares (architecture, budget, batch size, learning rate, seed, input
normalisation, schedule) lives in :class:`soundharvest.train.TrainSettings`; what only one
objective reads lives here, in the class its :class:`~soundharvest.train.Objective` names
(``hparams_type``). A hyperparameter is written once, as a field with its default and its doc;
from the class derive what the weights record (:meth:`Hyperparameters.to_dict`), what a
checkpoint must match to be resumed, the keys a workflow ``models:`` entry of that type may
have (an unknown one is a one-line error naming the model and the key) and the defaults the
config is filled with. The schema (``data/config.schema.yaml``) holds each key's type, range and
description for the config's validation and its documentation.

A new model type is one class here (registered in :data:`HYPERPARAMETERS`), one objective in
:mod:`soundharvest.train` (registered in ``OBJECTIVES``) and one builder in
:mod:`soundharvest.models`. Torch-free: the config's validation imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .io import SoundharvestError


def supervision(settings: Mapping[str, Any]) -> str:
    """What a model's training uses beyond the audio, from its settings (a ``models`` entry):
    ``weak`` when the query labels are its targets (``classifier``) or decide positives
    (``contrastive`` with ``positive_scope`` ``label`` or a ``label_weight`` above 0), else
    ``none`` (self-supervised or untrained). Report ``weak`` models apart: they are no longer
    unsupervised."""
    if settings.get("type") == "classifier":
        return "weak"
    if settings.get("type") != "contrastive":
        return "none"
    label_scope = settings.get("positive_scope", "clip") == "label"
    return "weak" if label_scope or float(settings.get("label_weight") or 0) > 0 else "none"


#: The classifier's losses (:func:`soundharvest.train.robust_loss`).
CLASSIFIER_LOSSES = ("ce", "gce", "bootstrap")


@dataclass(frozen=True)
class Hyperparameters:
    """An objective's own hyperparameters; this base has none (``ae``, ``random``)."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise a one-line :class:`SoundharvestError` for a value out of range."""

    @classmethod
    def names(cls) -> list[str]:
        """The field names, in order."""
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """Every field's value (what the weights' metadata and the checkpoint record)."""
        return {name: getattr(self, name) for name in self.names()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "train") -> Hyperparameters:
        """The hyperparameters ``values`` give (the others at their defaults).

        :param where: what an error names first (``config: models.<name>``, say).
        :raises SoundharvestError: naming a key that is not one of this class's fields.
        """
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            own = ", ".join(cls.names()) or "none"
            raise SoundharvestError(
                f"{where}: {', '.join(map(repr, unknown))} is not a hyperparameter of "
                f"{cls.__name__} (its own: {own})"
            )
        return cls(**dict(values))


@dataclass(frozen=True)
class AcaiHyperparameters(Hyperparameters):
    """ACAI (Berthelot et al. 2019), the reference implementation's defaults.

    :param advweight: lambda, the weight of the critic term in the autoencoder's loss.
    :param reg: gamma, the critic's regulariser mix.
    """

    advweight: float = 0.5
    reg: float = 0.2

    def check(self) -> None:
        if float(self.advweight) < 0:
            raise SoundharvestError(f"advweight = {self.advweight!r}: give a number >= 0")
        if not 0.0 <= float(self.reg) <= 1.0:
            raise SoundharvestError(f"reg = {self.reg!r}: give a number in [0, 1]")


@dataclass(frozen=True)
class PairHyperparameters(Hyperparameters):
    """Objectives trained on pairs of datapoints of one clip, with augmented anchors.

    :param max_offset: the largest distance in frames from a frame to its partner.
    :param gain_jitter: a random level change of each anchor, uniform in +-``gain_jitter`` in
        the frames' scaled units (0.1 = 8 dB of the 80 dB range).
    :param eq_jitter: a random equaliser on each anchor: a mix of
        :func:`~soundharvest.train.eq_basis`'s curves, coefficients uniform in +-``eq_jitter``.
    :param pitch_jitter: each anchor shifted in pitch by up to +-``pitch_jitter`` semitones
        (:func:`~soundharvest.train.pitch_shift`; needs the feature kind in the metadata).
    """

    max_offset: int = 8
    gain_jitter: float = 0.0
    eq_jitter: float = 0.0
    pitch_jitter: float = 0.0

    #: Where a pair's partner comes from (``clip``: the same clip, within ``max_offset``).
    positive_scope = "clip"
    #: The weight of the same-label positives added to the clip's (0: none).
    label_weight = 0.0

    def check(self) -> None:
        if int(self.max_offset) < 1:
            raise SoundharvestError(f"max_offset = {self.max_offset!r}: give an integer >= 1")
        for name in ("gain_jitter", "eq_jitter", "pitch_jitter"):
            if float(getattr(self, name)) < 0:
                raise SoundharvestError(f"{name} = {getattr(self, name)!r}: give a number >= 0")


@dataclass(frozen=True)
class ContrastiveHyperparameters(PairHyperparameters):
    """InfoNCE on same-clip pairs (:class:`~soundharvest.train.ContrastiveObjective`).

    :param temperature: the InfoNCE temperature on cosine similarities.
    :param recon_weight: the weight of an added reconstruction term (0: none).
    :param positive_scope: ``clip`` (same clip, within ``max_offset``; no labels used) or
        ``label`` (any frame of the same query label: weak supervision).
    :param label_weight: with ``positive_scope`` ``clip``: the weight of an added loss whose
        positives are all pairs of one query label (weak supervision; 0: none).
    """

    temperature: float = 0.1
    recon_weight: float = 0.0
    positive_scope: str = "clip"
    label_weight: float = 0.0

    def check(self) -> None:
        super().check()
        if float(self.temperature) <= 0:
            raise SoundharvestError(f"temperature = {self.temperature!r}: give a number > 0")
        if self.positive_scope not in ("clip", "label"):
            raise SoundharvestError(f"positive_scope = {self.positive_scope!r}: use clip or label")
        if self.label_weight and self.positive_scope != "clip":
            raise SoundharvestError(
                f"label_weight = {self.label_weight} adds label positives to the clip scope's; "
                f"with positive_scope {self.positive_scope!r} the labels decide already: set "
                "one of them"
            )


@dataclass(frozen=True)
class ClassifierHyperparameters(PairHyperparameters):
    """The weak recogniser (:class:`~soundharvest.train.ClassifierObjective`).

    :param loss: ``gce`` (generalised cross-entropy), ``ce`` or ``bootstrap``
        (:func:`~soundharvest.train.robust_loss`).
    :param gce_q: with ``gce``: the exponent q in (0, 1].
    :param holdout: the share of clips held out of training for calibration
        (:func:`soundharvest.calibrate.held_out`; the workflow sets it from
        ``calibration.holdout``); their datapoints are dropped from each batch.
    """

    loss: str = "gce"
    gce_q: float = 0.7
    holdout: float = 0.0

    def check(self) -> None:
        super().check()
        if self.loss not in CLASSIFIER_LOSSES:
            raise SoundharvestError(
                f"loss = {self.loss!r}: use one of {', '.join(CLASSIFIER_LOSSES)}"
            )
        if not 0.0 < float(self.gce_q) <= 1.0:
            raise SoundharvestError(f"gce_q = {self.gce_q!r}: give a number in (0, 1]")
        if not 0.0 <= float(self.holdout) < 1.0:
            raise SoundharvestError(f"holdout = {self.holdout!r}: give a share in [0, 1)")


#: model type -> its hyperparameters' class.
HYPERPARAMETERS: dict[str, type[Hyperparameters]] = {
    "acai": AcaiHyperparameters,
    "ae": Hyperparameters,
    "random": Hyperparameters,
    "contrastive": ContrastiveHyperparameters,
    "classifier": ClassifierHyperparameters,
}

#: Keys of a workflow ``models:`` entry that no objective owns (TrainSettings' and the
#: workflow's own: ``type``, ``architecture``).
COMMON_ENTRY_KEYS = (
    "type",
    "architecture",
    "frames",
    "batch_size",
    "lr",
    "seed",
    "normalize",
    "lr_schedule",
)

#: Hyperparameters the workflow sets from elsewhere in the config, not from a model entry.
NOT_ENTRY_KEYS = ("holdout",)


def of_type(model_type: str) -> type[Hyperparameters]:
    """The hyperparameters' class of ``model_type`` (a one-line error for an unknown one)."""
    if model_type not in HYPERPARAMETERS:
        raise SoundharvestError(
            f"model type {model_type!r}: unknown; use one of {', '.join(sorted(HYPERPARAMETERS))}"
        )
    return HYPERPARAMETERS[model_type]


def entry_keys(model_type: str) -> list[str]:
    """The keys a workflow model entry of ``model_type`` may have."""
    own = [k for k in of_type(model_type).names() if k not in NOT_ENTRY_KEYS]
    return [*COMMON_ENTRY_KEYS, *own]
