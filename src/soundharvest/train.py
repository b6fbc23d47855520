"""The training loop: objectives per model type, a frame budget, checkpoints, curves, weights.

Training is budgeted in *frames seen*, not epochs: the loader streams pass after pass of the
shards (see :class:`soundharvest.loader.ShardReader`) and training stops at exactly ``frames``
frames. A checkpoint (model, optimizer, alpha RNG, curves, frames seen) is written atomically every
``checkpoint_every`` frames; a re-run with the same settings resumes from it and ends where an
uninterrupted run would have ended.

Objectives register in :data:`OBJECTIVES` (model type -> class); a new model type adds a builder
with :func:`soundharvest.models.register_model` and an objective here (``None`` for models that
are never trained).

ACAI (Berthelot et al. 2018, github.com/brain-research/acai), per pair of frames ``(x1, x2)`` with
``alpha ~ U[0, 0.5]``::

    x_alpha = g(alpha f(x1) + (1 - alpha) f(x2))
    critic:      ||d(x_alpha) - alpha||^2 + ||d(gamma x + (1 - gamma) g(f(x)))||^2
    autoencoder: ||x - g(f(x))||^2 + lambda ||d(x_alpha)||^2

Both networks are updated from the same forward pass, as in the reference implementation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .dataset import npy_stem
from .encoder import resolve_device, save_weights
from .features import bin_frequencies
from .hparams import (
    CLASSIFIER_LOSSES,
    HYPERPARAMETERS,
    AcaiHyperparameters,
    ClassifierHyperparameters,
    ContrastiveHyperparameters,
    Hyperparameters,
    of_type,
)
from .hparams import supervision as supervision  # where the rules and tests have found it
from .io import Pathlike, SoundharvestError, atomic_path, write_tsv
from .loader import BLOCK_ROWS, ClipPositives, ShardReader
from .models import autoencoder_of, build_model, context_of, resolve_arch

log = logging.getLogger("soundharvest")

#: The weights' metadata and the checkpoint's fingerprint. 2 (session 12): every objective's own
#: hyperparameters from its class (:mod:`soundharvest.hparams`), nothing of another's.
FORMAT_VERSION = 2
#: Columns of the curves TSV (frames seen, then means over the logging window).
CURVE_COLUMNS = [
    "frames",
    "ae_loss",
    "recon_loss",
    "critic_loss",
    "alpha_hat_mean",
    "alpha_hat_std",
    "alpha_corr",
    "frames_per_s",
]
#: Per-step metrics every objective returns, in this order (NaN where not applicable): the slots
#: of the metrics vector. Each objective names its slots (:attr:`Objective.metric_names`); the
#: curves TSV, its figure and the log lines use those names.
METRICS = CURVE_COLUMNS[1:-1]
COMPILE_MODES = ("auto", "eager", "compile", "reduce-overhead", "cudagraph")
LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, seen: int, total: int) -> float:
    """The learning rate's multiplier after ``seen`` of ``total`` datapoints.

    ``constant`` (the thesis): 1 throughout. ``cosine``: half a cosine from 1 to 0 over the
    budget (Loshchilov & Hutter 2017, without restarts), so training ends on a settled model
    rather than on one snapshot of a constant-rate walk. A function of the datapoints seen, so a
    resumed run follows the same curve.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(seen, 0), total) / max(total, 1)))
    raise SoundharvestError(f"lr_schedule = {schedule!r}: use one of {', '.join(LR_SCHEDULES)}")


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------


class Objective:
    """One model type's loss and optimiser. Subclasses implement :meth:`losses`.

    ``needs_pairs = True`` marks an objective whose batches are ``(b, 2, bins)``: each frame with
    a partner from the same clip (see :class:`ContrastiveObjective`).

    :param model: the module from :func:`soundharvest.models.build_model` (on its device).
    :param lr: Adam learning rate.
    :param seed: seed of the objective's own random numbers (e.g. ACAI's alpha).
    :param amp_dtype: autocast dtype (``torch.bfloat16`` on GPU) or ``None`` for float32.
    :param scheduled: the learning rate will change during training (:meth:`set_lr_factor`);
        on CUDA it is then held in a tensor, so that a captured CUDA graph reads the new value.
    :param bin_hz: the frequency of each input bin (a pitch shift needs them).
    :param hparams: the objective's own hyperparameters (an instance of :attr:`hparams_type`);
        default: ``hparams_type`` of the keyword arguments ``values`` (an unknown one is an
        error naming it).
    """

    #: The class of this objective's own hyperparameters (:mod:`soundharvest.hparams`).
    hparams_type: type[Hyperparameters] = Hyperparameters
    needs_pairs = False
    #: The training loop hands the query label of each datapoint after its clip id.
    needs_labels = False
    #: The name of each slot of the metrics vector (:data:`METRICS` order); ``None``: unused.
    metric_names: tuple[str | None, ...] = ("ae_loss", "recon_loss", None, None, None, None)

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-4,
        seed: int = 0,
        amp_dtype: torch.dtype | None = None,
        scheduled: bool = False,
        bin_hz: Sequence[float] | None = None,
        hparams: Hyperparameters | None = None,
        **values: Any,
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.amp_dtype = amp_dtype
        if hparams is None:
            hparams = self.hparams_type.from_dict(values, where=type(self).__name__)
        elif values or type(hparams) is not self.hparams_type:
            raise SoundharvestError(
                f"{type(self).__name__}: give its {self.hparams_type.__name__} or keyword "
                "hyperparameters, not both"
            )
        self.hparams = hparams
        self.bin_hz = None if bin_hz is None else list(bin_hz)
        cuda = self.device.type == "cuda"
        # One Adam over all parameter groups (Adam is per-parameter, so this equals one optimiser
        # per network); fused kernels on CUDA, and capturable so a CUDA graph can hold the step.
        groups = self.param_groups(lr)
        self._base_lr = [float(g["lr"]) for g in groups]
        if cuda and scheduled:
            # A CUDA graph bakes a float learning rate into the captured Adam kernels; a tensor
            # (allowed with fused / capturable Adam) is read at every replay.
            for g in groups:
                g["lr"] = torch.tensor(float(g["lr"]), device=self.device)
        self.optimizer = torch.optim.Adam(
            groups,
            lr=lr,
            fused=True if cuda else None,
            capturable=cuda,
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed) + 1_000_003)  # apart from the init seed

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Parameter groups of the optimiser (override for several networks)."""
        return [{"params": list(self.model.parameters()), "lr": lr}]

    def set_lr_factor(self, factor: float) -> None:
        """Set every parameter group's learning rate to ``factor`` times its initial one."""
        for g, base in zip(self.optimizer.param_groups, self._base_lr, strict=True):
            if torch.is_tensor(g["lr"]):
                g["lr"].fill_(base * factor)
            else:
                g["lr"] = base * factor

    def draw(self, batch: int) -> torch.Tensor:
        """This step's random numbers (a ``(batch, 1)`` tensor; unused by plain objectives)."""
        return torch.zeros(batch, 1, device=self.device)

    def losses(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(total loss to minimise, metrics vector in METRICS order)``."""
        raise NotImplementedError

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        # cache_enabled=False: the autocast weight cache must not outlive a CUDA-graph capture.
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=False)

    def step_on(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One optimisation step on batch ``x``; returns the (detached) metrics vector."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss, metrics = self.losses(x, noise)
        loss.backward()
        self.optimizer.step()
        return metrics.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        held_in_tensor = [torch.is_tensor(g["lr"]) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        # A checkpoint is read onto the CPU: the learning rate goes back to the form this
        # optimiser holds it in (a tensor on the device for a scheduled rate on CUDA).
        for g, as_tensor in zip(self.optimizer.param_groups, held_in_tensor, strict=True):
            lr = float(g["lr"])
            g["lr"] = torch.tensor(lr, device=self.device) if as_tensor else lr
        try:
            self.generator.set_state(state["generator"])
        except (RuntimeError, TypeError):
            log.warning("checkpoint's RNG state is from another device type; alpha reseeded")


class AeObjective(Objective):
    """Plain autoencoder: mean squared reconstruction error."""

    def losses(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, x_hat = self.model(x)
        recon = torch.mean(torch.square(x_hat.float() - x))
        nan = torch.full_like(recon, float("nan"))  # a kernel, not a host copy: graph-safe
        return recon, torch.stack([recon, recon, nan, nan, nan, nan])


class AcaiObjective(Objective):
    """ACAI: autoencoder plus critic, both updated from one forward pass.

    Hyper-parameters: :class:`~soundharvest.hparams.AcaiHyperparameters` (``advweight``,
    lambda, 0.5, and ``reg``, gamma, 0.2: the reference implementation's defaults).
    """

    hparams_type = AcaiHyperparameters
    metric_names = tuple(METRICS)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [
            {"params": list(self.model.autoencoder.parameters()), "lr": lr},
            {"params": list(self.model.critic.parameters()), "lr": lr},
        ]

    def draw(self, batch: int) -> torch.Tensor:
        # alpha ~ U[0, 0.5] per pair; the reference folds U[0, 1] as 0.5 - |u - 0.5|, which has
        # the same distribution as 0.5 u.
        return torch.rand(batch, 1, device=self.device, generator=self.generator) * 0.5

    def losses(self, x: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        advweight = float(self.hparams.advweight)
        reg = float(self.hparams.reg)
        ae, critic = self.model.autoencoder, self.model.critic
        b = x.shape[0]
        z = ae.encode(x)
        # Pair frame i with frame b-1-i (the reference's encode[::-1]).
        z_mix = alpha * z + (1 - alpha) * z.flip(0)
        decoded = ae.decoder(torch.cat([z, z_mix]))  # one decoder call for both halves
        x_hat, x_mix = decoded[:b], decoded[b:]
        recon = torch.mean(torch.square(x_hat.float() - x))
        # Autoencoder's adversarial term: gradients reach the autoencoder through x_mix, but not
        # the critic's weights (they are detached in this call).
        d_mix_ae = critic(x_mix, detach_params=True).float()
        adv = torch.mean(torch.square(d_mix_ae))
        # Critic: its inputs are cut from the autoencoder; real = gamma x + (1 - gamma) x_hat.
        real = reg * x + (1 - reg) * x_hat.float()
        d = critic(torch.cat([x_mix.detach(), real.detach().to(x_mix.dtype)])).float()
        d_mix, d_real = d[:b], d[b:]
        a = alpha.reshape(-1)
        critic_loss = torch.mean(torch.square(d_mix - a)) + torch.mean(torch.square(d_real))
        ae_loss = recon + advweight * adv
        with torch.no_grad():
            da, dh = a - a.mean(), d_mix - d_mix.mean()
            corr = (da * dh).mean() / (
                da.square().mean().sqrt() * dh.square().mean().sqrt() + 1e-12
            )
            metrics = torch.stack(
                [
                    ae_loss.detach(),
                    recon.detach(),
                    critic_loss.detach(),
                    d_mix.mean(),
                    d_mix.std(),
                    corr,
                ]
            )
        # Sum of the two losses: their gradients touch disjoint parameter sets (see above).
        return ae_loss + critic_loss, metrics


def pitch_shift(
    frames: torch.Tensor, semitones: torch.Tensor, bin_hz: torch.Tensor
) -> torch.Tensor:
    """Each datapoint of ``frames`` ``(b, [T,] bins)`` moved up by ``semitones[i]`` along
    frequency, as resampling the audio would (harmonics and envelope move together): the value
    at frequency ``f`` is the old one at ``f / 2**(s/12)``, linearly interpolated between the
    bins at ``bin_hz`` (ascending); what comes from above the highest bin is silence (0).
    """
    b, bins = frames.shape[0], frames.shape[-1]
    ratio = torch.exp2(semitones.reshape(b, 1).float() / 12.0)
    source = bin_hz[None, :] / ratio  # (b, bins): where each bin's new value comes from
    hi = torch.searchsorted(bin_hz, source.contiguous()).clamp(1, bins - 1)
    lo = hi - 1
    f_lo, f_hi = bin_hz[lo], bin_hz[hi]
    w = ((source - f_lo) / (f_hi - f_lo).clamp_min(1e-9)).clamp(0.0, 1.0)
    flat = frames.reshape(b, -1, bins)
    idx_lo = lo[:, None, :].expand_as(flat)
    idx_hi = hi[:, None, :].expand_as(flat)
    out = torch.lerp(flat.gather(2, idx_lo).float(), flat.gather(2, idx_hi).float(), w[:, None, :])
    out = torch.where((source > bin_hz[-1])[:, None, :], torch.zeros_like(out), out)
    return out.to(frames.dtype).reshape(frames.shape)


#: Cosine terms of the random equaliser of ``eq_jitter``.
EQ_TERMS = 4


def eq_basis(bins: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(EQ_TERMS, bins)`` smooth curves over frequency for the random equaliser.

    Row ``j`` is ``cos(pi (j + 1) u) / (j + 1)`` with ``u`` the bin's position on a log axis of
    the bin index (0 at the lowest bin, 1 at the highest): a tilt first, then ever finer and
    weaker bumps, so that a random mix looks like a microphone's or a room's colouration.
    """
    u = torch.log1p(torch.arange(bins, dtype=torch.float32, device=device))
    u = u / u[-1].clamp_min(1e-12)
    j = torch.arange(1, EQ_TERMS + 1, dtype=torch.float32, device=device)[:, None]
    return torch.cos(math.pi * j * u) / j


class ContrastiveObjective(Objective):
    """InfoNCE on pairs of frames from the same clip (the data's free signal).

    A batch is ``(b, 2, bins)``: frame ``i`` and a partner from the same clip at most
    ``max_offset`` frames away (:class:`soundharvest.loader.ClipPositives`). Same clip means
    same recording and mostly the same instrument, but often another pitch and level, so
    pulling the two codes together teaches the encoder what stays constant in a clip (timbre)
    and to ignore what changes (pitch, loudness). The other partners in the batch are the
    negatives, except those from the anchor's own clip: with the clip ids of the batch (the
    ``groups`` the training loop passes) every same-clip partner counts as a positive (the
    supervised-contrastive form of the loss, Khosla et al. 2020), so a batch holding several
    frames of one clip does not push them apart. The loss is symmetric (both directions), on
    unit codes with temperature ``temperature`` (default 0.1, SimCLR's order of magnitude).
    ``gain_jitter`` changes each anchor's level at random (loudness must not solve the task);
    ``eq_jitter`` adds a random smooth curve over frequency to each anchor (a random equaliser:
    a recording's colour, its microphone, room and noise, must not solve it either);
    ``recon_weight`` (default 0) adds the autoencoder's reconstruction error of the anchors.
    ``label_weight`` (default 0) adds, with that weight, the same loss with every pair of one
    query label as positives (the label ids follow the clip ids in ``groups``): weak
    supervision on top of the clip signal, reported apart. Metrics: ``nce_loss``,
    ``recon_loss`` (with ``recon_weight``), ``label_loss`` (with ``label_weight``) and ``top1``,
    the share of anchors whose closest code in the batch is a positive.
    """

    hparams_type: type[Hyperparameters] = ContrastiveHyperparameters
    needs_pairs = True
    metric_names = ("nce_loss", "recon_loss", "label_loss", None, None, "top1")

    def _jitter(self) -> tuple[float, float, float]:
        h = self.hparams
        return float(h.gain_jitter), float(h.eq_jitter), float(h.pitch_jitter)

    def draws(self) -> int:
        """Columns of :meth:`draw`: the level change, the equaliser's coefficients (with
        ``eq_jitter``), then the pitch shift in semitones (with ``pitch_jitter``)."""
        _g, e, p = self._jitter()
        return 1 + (EQ_TERMS if e > 0 else 0) + (1 if p > 0 else 0)

    def draw(self, batch: int) -> torch.Tensor:
        # A level change per anchor, uniform in +-gain_jitter (in scaled units: 1 = the 80 dB
        # range), so that loudness is not a cue shared by a pair; with eq_jitter, the
        # coefficients of a random equaliser curve, uniform in +-eq_jitter; with pitch_jitter,
        # a pitch shift uniform in +-pitch_jitter semitones.
        g, e, p = self._jitter()
        if g <= 0 and e <= 0 and p <= 0:
            return super().draw(batch)
        n = self.draws()
        u = torch.rand(batch, n, device=self.device, generator=self.generator)
        scale = torch.full((n,), e, device=self.device)
        scale[0] = g
        if p > 0:
            scale[-1] = p
        return (2.0 * u - 1.0) * scale

    def augment(self, anchor: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The anchors ``(b, [T,] bins)`` with :meth:`draw`'s pitch shift, level change and
        equaliser: one of each per datapoint, so a window keeps its envelope; clamped to the
        [0, 1] scale."""
        g, e, p = self._jitter()
        if p > 0:
            # The last drawn column (clip ids may follow the draws).
            semitones = noise[:, self.draws() - 1]
            anchor = pitch_shift(anchor, semitones, self._bin_hz(anchor.device))
        if g <= 0 and e <= 0:
            return anchor
        shift = noise[:, :1]
        if e > 0:
            shift = shift + noise[:, 1 : 1 + EQ_TERMS] @ eq_basis(anchor.shape[-1], anchor.device)
        shift = shift.reshape(anchor.shape[0], *([1] * (anchor.ndim - 2)), -1)
        return (anchor + shift.to(anchor.dtype)).clamp(0.0, 1.0)

    def _bin_hz(self, device: torch.device) -> torch.Tensor:
        hz = self.bin_hz
        if hz is None:
            raise SoundharvestError(
                "pitch_jitter: the bins' frequencies are unknown; train() sets them from the "
                "feature kind in metadata['features']"
            )
        if not hasattr(self, "_hz") or self._hz.device != device:
            self._hz = torch.as_tensor(np.asarray(hz, dtype=np.float32), device=device)
        return self._hz

    def losses(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tau = float(self.hparams.temperature)
        recon_weight = float(self.hparams.recon_weight)
        b = x.shape[0]
        n_draw = self.draws()
        anchor = self.augment(x[:, 0], noise)
        z = self.model.encode(torch.cat([anchor, x[:, 1]])).float()  # unit codes
        z1, z2 = z[:b], z[b:]
        logits = z1 @ z2.T / tau
        if noise.shape[1] > n_draw:  # clip ids: every same-clip pair is a positive
            pos = same_group(noise[:, n_draw])
        else:
            pos = torch.eye(b, device=x.device)
        nce = supcon_loss(logits, pos)
        nan = torch.full_like(nce, float("nan"))
        if recon_weight > 0:
            recon = torch.mean(torch.square(self.model.decode(z1).float() - x[:, 0]))
        else:
            recon = nan
        total = nce + recon_weight * recon if recon_weight > 0 else nce
        label_weight = float(self.hparams.label_weight)
        if label_weight > 0:
            if noise.shape[1] < n_draw + 2:
                raise SoundharvestError(
                    "label_weight: the batch carries no label ids; train() passes them with "
                    "positive_scope clip"
                )
            label_nce = supcon_loss(logits, same_group(noise[:, n_draw + 1]))
            total = total + label_weight * label_nce
        else:
            label_nce = nan
        with torch.no_grad():
            # Share of frames whose closest code is a positive (its own partner, or with clip
            # ids any partner of its clip): a training accuracy.
            top1 = pos.gather(1, logits.argmax(dim=1, keepdim=True)).mean()
        return total, torch.stack(
            [nce.detach(), recon.detach(), label_nce.detach(), nan, nan, top1]
        )


def same_group(ids: torch.Tensor) -> torch.Tensor:
    """``(b, b)`` float mask: 1 where two datapoints carry the same id."""
    return (ids[:, None] == ids[None, :]).float()


def supcon_loss(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Supervised-contrastive InfoNCE (Khosla et al. 2020) on the similarities ``logits``
    ``(b, b)`` of two views, with the symmetric positive mask ``pos`` (the diagonal set):
    the mean over anchors of the mean negative log-softmax of their positives, in both
    directions (view 1 against view 2 and back)."""
    n_pos = pos.sum(dim=1)

    def one_way(lg: torch.Tensor) -> torch.Tensor:
        return -(lg.log_softmax(dim=1) * pos).sum(dim=1).div(n_pos).mean()

    return 0.5 * (one_way(logits) + one_way(logits.T))


def robust_loss(
    logits: torch.Tensor, targets: torch.Tensor, kind: str = "gce", q: float = 0.7,
    beta: float = 0.8,
) -> torch.Tensor:  # fmt: skip
    """Mean classification loss of ``logits`` ``(n, c)`` against integer ``targets``.

    ``ce``: cross-entropy. ``gce``: generalised cross-entropy ``(1 - p_y^q) / q`` (Zhang &
    Sabuncu 2018): ``q -> 0`` is cross-entropy, ``q = 1`` the mean absolute error, which a wrong
    label pulls on no harder than a right one; 0.7 is the paper's choice. ``bootstrap``: hard
    bootstrapping (Reed et al. 2015), ``beta`` of the loss on the given label and the rest on
    the model's own current answer, so confident disagreement with a label wins over time.
    """
    if kind == "ce":
        return torch.nn.functional.cross_entropy(logits, targets)
    logp = logits.log_softmax(dim=1)
    lp_y = logp.gather(1, targets[:, None]).squeeze(1)
    if kind == "gce":
        return ((1.0 - torch.exp(q * lp_y)) / q).mean()
    if kind == "bootstrap":
        own = logp.detach().argmax(dim=1, keepdim=True)
        return -(beta * lp_y + (1.0 - beta) * logp.gather(1, own).squeeze(1)).mean()
    raise SoundharvestError(f"loss = {kind!r}: use one of {', '.join(CLASSIFIER_LOSSES)}")


class ClassifierObjective(ContrastiveObjective):
    """The weak recogniser: an encoder and a head trained on the query label of each datapoint.

    Batches are the contrastive data path's (windows of one clip with a partner from the same
    clip, :class:`soundharvest.loader.ClipPositives`), and the label of each pair follows its
    clip id in ``groups``. Both the augmented anchor (pitch, level and equaliser jitter, as
    :class:`ContrastiveObjective` draws them) and the partner are classified, with
    ``loss`` (:func:`robust_loss`: ``gce`` by default, since 20-60 % of web-search labels are
    wrong). Metrics: ``loss`` (the robust loss minimised), ``ce`` (the plain cross-entropy) and
    ``accuracy`` (on the noisy labels, training batches).
    """

    hparams_type = ClassifierHyperparameters
    needs_labels = True
    metric_names = ("loss", None, "ce", None, None, "accuracy")
    #: Hard bootstrapping's beta (``loss: bootstrap``), Reed et al.'s value.
    bootstrap_beta = 0.8

    def losses(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_draw = self.draws()
        if noise.shape[1] < n_draw + 2:
            raise SoundharvestError(
                "classifier: the batch carries no label ids; train() passes them after the clip ids"
            )
        labels = noise[:, n_draw + 1].long()
        anchor = self.augment(x[:, 0], noise)
        logits = self.model.logits(torch.cat([anchor, x[:, 1]])).float()
        y = torch.cat([labels, labels])
        h = self.hparams
        loss = robust_loss(logits, y, h.loss, float(h.gce_q), self.bootstrap_beta)
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy(logits, y)
            acc = (logits.argmax(dim=1) == y).float().mean()
        nan = torch.full_like(ce, float("nan"))
        return loss, torch.stack([loss.detach(), nan, ce, nan, nan, acc])


#: model type -> objective class (None: the model is never trained).
OBJECTIVES: dict[str, type[Objective] | None] = {
    "acai": AcaiObjective,
    "ae": AeObjective,
    "random": None,
    "contrastive": ContrastiveObjective,
    "classifier": ClassifierObjective,
}


# --------------------------------------------------------------------------------------------
# Stepping (eager, torch.compile, CUDA graph)
# --------------------------------------------------------------------------------------------


class Stepper:
    """Runs an objective's steps eagerly, through ``torch.compile`` or as one CUDA graph.

    ``cudagraph`` captures the whole step (forward, backward, Adam) for full batches and replays
    it; partial batches run eagerly on the same parameters. The small MLP is bound by kernel
    launches on a GPU, which is what graphs remove.
    """

    def __init__(self, objective: Objective, mode: str = "eager") -> None:
        if mode not in COMPILE_MODES:
            raise SoundharvestError(f"compile = {mode!r}: use one of {', '.join(COMPILE_MODES)}")
        cuda = objective.device.type == "cuda"
        if mode == "auto":
            mode = "cudagraph" if cuda else "eager"
        if mode in ("cudagraph", "reduce-overhead") and not cuda:
            log.info("compile = %s needs CUDA; running eagerly on %s", mode, objective.device)
            mode = "eager"
        self.objective = objective
        self.mode = mode
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_batch = 0
        self._graph_failed = False
        if mode in ("compile", "reduce-overhead"):
            objective.losses = torch.compile(  # type: ignore[method-assign]
                objective.losses, mode="default" if mode == "compile" else mode
            )

    def step(self, x: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        """One step on ``x``; returns the metrics vector (on the device, no sync).

        :param groups: optional ``(batch,)`` or ``(batch, n)`` ids (e.g. the clip, then the
            label of each pair), handed to the objective as the last columns of its random
            numbers.
        """
        obj = self.objective
        noise = obj.draw(x.shape[0])
        if groups is not None:
            noise = torch.cat([noise, groups.reshape(x.shape[0], -1).to(noise.dtype)], dim=1)
        if self.mode == "cudagraph" and not self._graph_failed:
            if self._graph is None and x.shape[0] >= 2:
                self._capture(x, noise)
            if self._graph is not None and x.shape[0] == self._graph_batch:
                self._x.copy_(x)
                self._noise.copy_(noise)
                self._graph.replay()
                return self._metrics.clone()
        return obj.step_on(x, noise)

    def _capture(self, x: torch.Tensor, noise: torch.Tensor) -> None:
        obj = self.objective
        params = [p for g in obj.optimizer.param_groups for p in g["params"]]
        try:
            self._x = x.clone()
            self._noise = noise.clone()
            # Warm-up steps create the optimiser state and let cuBLAS pick its kernels; they must
            # not change the training, so parameters and optimiser state are put back afterwards.
            saved_p = [p.detach().clone() for p in params]
            saved_state = {
                p: {k: v.clone() for k, v in st.items() if torch.is_tensor(v)}
                for p, st in obj.optimizer.state.items()
            }
            side = torch.cuda.Stream(obj.device)
            side.wait_stream(torch.cuda.current_stream(obj.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    obj.step_on(self._x, self._noise)
            torch.cuda.current_stream(obj.device).wait_stream(side)
            with torch.no_grad():
                for p, s in zip(params, saved_p, strict=True):
                    p.copy_(s)
                for p, st in obj.optimizer.state.items():
                    for k, v in st.items():
                        if not torch.is_tensor(v):
                            continue
                        if p in saved_state and k in saved_state[p]:
                            v.copy_(saved_state[p][k])  # resumed: the checkpoint's Adam state
                        else:
                            v.zero_()  # fresh Adam: step 0, zero moments
            obj.optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._metrics = obj.step_on(self._x, self._noise)
            self._graph = graph
            self._graph_batch = x.shape[0]
        except Exception as e:  # pragma: no cover - GPU only
            log.warning("CUDA graph capture failed (%s); training eagerly", e)
            self._graph_failed = True
            self._graph = None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _set_threads(threads: int | None) -> int:
    if threads is None or threads <= 0:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            threads = os.cpu_count() or 1
    torch.set_num_threads(int(threads))
    return int(threads)


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def named_curves(
    rows: Sequence[Sequence[float]], names: Sequence[str | None] = METRICS
) -> pd.DataFrame:
    """Curve rows (:data:`CURVE_COLUMNS` order) as a table with the objective's metric names:
    ``frames``, each named slot, ``frames_per_s`` (unnamed slots left out)."""
    full = pd.DataFrame(list(rows), columns=CURVE_COLUMNS)
    if len(full):
        full["frames"] = full["frames"].astype(np.int64)
    slots = [(slot, name) for slot, name in zip(METRICS, names, strict=True) if name]
    table = full[["frames", *(slot for slot, _ in slots), "frames_per_s"]]
    return table.rename(columns=dict(slots))


def _is_loss(column: str) -> bool:
    return column.endswith("loss") or column == "ce"


def plot_curves(curves: pd.DataFrame, path: Pathlike, title: str = "") -> None:
    """Write the training curves figure as a PNG: the losses (columns ending in ``loss``, and
    ``ce``), the other metrics (ACAI's critic, a contrastive top-1, a classifier's accuracy)
    and the throughput, each under the objective's own names (:func:`named_curves`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    f = curves["frames"].to_numpy()
    metrics = [c for c in curves.columns if c not in ("frames", "frames_per_s")]
    ax = axes[0]
    for col in filter(_is_loss, metrics):
        y = curves[col].to_numpy(dtype=float)
        if np.isfinite(y).any():
            ax.plot(f, y, "o-" if len(f) == 1 else "-", label=col, ms=4)
    if ax.lines:
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("frames seen")
    ax.set_ylabel("loss")
    ax.set_title("losses")
    ax = axes[1]
    for col in (c for c in metrics if not _is_loss(c)):
        y = curves[col].to_numpy(dtype=float)
        if np.isfinite(y).any():
            ax.plot(f, y, "o-" if len(f) == 1 else "-", label=col, ms=4)
    if "alpha_hat_mean" in metrics:
        ax.axhline(0.25, color="grey", lw=0.5, ls="--")  # alpha-hat's mean when it is right
    if ax.lines:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no other metric", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("frames seen")
    ax.set_title("metrics")
    ax = axes[2]
    ax.plot(f, curves["frames_per_s"].to_numpy(dtype=float), ".-")
    ax.set_xlabel("frames seen")
    ax.set_ylabel("frames/s")
    ax.set_title("throughput")
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


@torch.no_grad()
def reconstruction_loss(model: nn.Module, x: torch.Tensor) -> float:
    """Mean squared reconstruction error of ``model`` on the batch ``x``."""
    _, x_hat = model(x)
    return float(torch.mean(torch.square(x_hat.float() - x)))


def _fingerprint(**kw: Any) -> dict[str, Any]:
    return json.loads(json.dumps(kw, sort_keys=True))


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """What a training run learns: the model type, its architecture and every hyperparameter.

    The settings every model type shares are fields here; an objective's own hyperparameters
    are its class in :mod:`soundharvest.hparams` (``hparams``: ACAI's lambda and gamma, the
    contrastive temperature and augmentations, the classifier's loss). Validated once, on
    construction; :meth:`of` builds one from flat keyword arguments and names, in one line, a
    key that is no setting (``batch_sise``) or not one of this model type's (``temperature``
    for ``ae``). The weights' metadata (:meth:`metadata`) and the checkpoint's fingerprint
    (:func:`_fingerprint_of`) derive from it. How a run executes (device, threads,
    checkpoints, logging) is not a setting: those are :func:`train`'s own keyword arguments.

    :param model_type: ``acai``, ``ae``, ``random`` (initialised, never trained),
        ``contrastive``, ``classifier``, or any type registered in
        :data:`soundharvest.models.MODEL_TYPES`, :data:`OBJECTIVES` and
        :data:`soundharvest.hparams.HYPERPARAMETERS`.
    :param arch: architecture dict or preset name (:func:`soundharvest.models.resolve_arch`).
    :param frames: training budget in datapoints seen, frames (windows for a model with
        context) (the last batch is cut to hit it exactly).
    :param batch_size: frames per step (ACAI pairs frames within a batch).
    :param lr: Adam learning rate of every network (reference: 1e-4).
    :param seed: seeds the initial weights, the block order and the objective's draws.
    :param normalize: the encoder's input normalisation: ``none`` (the thesis), ``frame``
        (each frame standardised over its bins) or ``bin`` (per-bin mean and std of a sample of
        up to :data:`BLOCK_ROWS` training frames, stored with the weights).
    :param lr_schedule: ``constant`` (the thesis) or ``cosine`` (decay to 0 over the budget,
        :func:`lr_factor`).
    :param hparams: the objective's own hyperparameters, of the model type's class (default:
        that class's defaults).
    """

    model_type: str = "acai"
    arch: Mapping[str, Any] | str = "thesis"
    frames: int = 150_000
    batch_size: int = 256
    lr: float = 1e-4
    seed: int = 0
    normalize: str = "none"
    lr_schedule: str = "constant"
    hparams: Hyperparameters | None = None

    def __post_init__(self) -> None:
        if self.model_type not in OBJECTIVES:
            raise SoundharvestError(
                f"model type {self.model_type!r}: unknown; use one of "
                f"{', '.join(sorted(OBJECTIVES))}"
            )
        own = HYPERPARAMETERS[self.model_type]
        if self.hparams is None:
            object.__setattr__(self, "hparams", own())
        elif type(self.hparams) is not own:
            raise SoundharvestError(
                f"model type {self.model_type!r} takes {own.__name__}, not "
                f"{type(self.hparams).__name__}"
            )
        if not isinstance(self.frames, int) or self.frames < 0:
            raise SoundharvestError(
                f"frames = {self.frames!r}: give a non-negative integer frame budget"
            )
        lr_factor(self.lr_schedule, 0, self.frames)  # an unknown schedule fails before any work

    @classmethod
    def of(cls, settings: TrainSettings | None = None, **overrides: Any) -> TrainSettings:
        """``settings`` (default: the defaults) with ``overrides`` replaced: shared settings
        by name, the objective's own hyperparameters by name too (or whole, ``hparams=``).

        :raises SoundharvestError: naming an override that is not a setting, or not one of the
            model type's.
        """
        base = settings or cls()
        shared = {f.name for f in fields(cls)} - {"hparams"}
        own = {k: v for k, v in overrides.items() if k not in shared and k != "hparams"}
        every = shared | {n for c in HYPERPARAMETERS.values() for n in c.names()}
        unknown = sorted(set(own) - every)
        if unknown:
            raise SoundharvestError(
                f"train: {', '.join(map(repr, unknown))} is not a training setting; the "
                f"settings are {', '.join(sorted(every))}"
            )
        model_type = overrides.get("model_type", base.model_type)
        hparams = overrides.get("hparams")
        if hparams is None:
            kind = of_type(model_type)  # the one-line error for an unknown type
            kept = base.hparams.to_dict() if type(base.hparams) is kind else {}
            hparams = kind.from_dict({**kept, **own}, where=f"train: model type {model_type!r}")
        elif own:
            raise SoundharvestError("train: give hparams= or its fields by name, not both")
        return replace(base, **{k: overrides[k] for k in overrides if k in shared}, hparams=hparams)

    #: Keys of a workflow ``models:`` entry that are not settings of the same name.
    ENTRY_KEYS = {"type": "model_type", "architecture": "arch"}

    @classmethod
    def from_entry(
        cls, entry: Mapping[str, Any], arch: Mapping[str, Any] | str, holdout: float = 0.0
    ) -> TrainSettings:
        """The settings of a workflow model entry (config ``models:``, defaults filled in).

        :param arch: the entry's ``architecture`` resolved (the config's ``architectures``).
        :param holdout: ``calibration.holdout``; only the classifier holds clips out.
        """
        kw = {k: v for k, v in entry.items() if k not in cls.ENTRY_KEYS}
        kw.setdefault("frames", 0)  # a model that is never trained needs no budget
        if "holdout" in HYPERPARAMETERS[entry["type"]].names():
            kw["holdout"] = holdout
        return cls.of(model_type=entry["type"], arch=arch, **kw)

    @property
    def objective(self) -> type[Objective] | None:
        """The objective class of the model type (``None``: never trained)."""
        return OBJECTIVES[self.model_type]

    @property
    def needs_pairs(self) -> bool:
        return self.objective is not None and self.objective.needs_pairs

    @property
    def needs_labels(self) -> bool:
        label_weight = float(getattr(self.hparams, "label_weight", 0.0))
        return self.objective is not None and bool(self.objective.needs_labels or label_weight)

    def hparam(self, name: str, default: Any = None) -> Any:
        """One of the objective's hyperparameters, ``default`` where it has no such one."""
        return getattr(self.hparams, name, default)

    def metadata(self, arch: Mapping[str, Any], in_dim: int, extra: Mapping[str, Any]) -> dict:
        """The weights' metadata (``soundharvest`` key of the safetensors file): the shared
        settings, then the objective's own hyperparameters (:meth:`Hyperparameters.to_dict`)."""
        return {
            "format_version": FORMAT_VERSION,
            "model_type": self.model_type,
            "arch": arch,
            "in_dim": in_dim,
            "seed": int(self.seed),
            "batch_size": int(self.batch_size),
            "lr": float(self.lr),
            "normalize": self.normalize,
            "lr_schedule": self.lr_schedule,
            **self.hparams.to_dict(),
            "extra": dict(extra),
        }


# --------------------------------------------------------------------------------------------
# train()
# --------------------------------------------------------------------------------------------


@dataclass
class _Setup:
    """What :func:`train` builds before its first step."""

    model: nn.Module
    reader: ShardReader
    pairs: ClipPositives | None
    arch: dict[str, Any]
    in_dim: int
    bin_hz: list[float] | None
    context: int
    stride: int

    @property
    def unit(self) -> str:
        """What the budget counts: frames, or windows of ``context`` frames."""
        return "frames" if self.context == 1 else "windows"


def _bin_hz(
    arch: dict[str, Any], s: TrainSettings, metadata: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[float] | None]:
    """The bins' frequencies where the front end or a pitch shift needs them (and the arch
    that carries them for a logconv front end)."""
    bin_hz = arch.get("bin_hz")
    pitch = float(s.hparam("pitch_jitter", 0.0)) > 0
    if bin_hz is not None or not (arch["frontend"] == "logconv" or pitch):
        return arch, bin_hz
    # The front end resamples the bins onto a log-frequency axis, and a pitch shift moves
    # them along it: both need their frequencies, which follow from the feature kind.
    spec = (metadata or {}).get("features")
    if not spec:
        what = "frontend = logconv" if arch["frontend"] == "logconv" else "pitch_jitter"
        raise SoundharvestError(
            f"{what}: the bins' frequencies are unknown; pass metadata={{'features': "
            "{'kind', 'params', 'sample_rate'}} or arch['bin_hz']"
        )
    hz = bin_frequencies(spec["kind"], spec.get("params"), int(spec["sample_rate"]))
    bin_hz = [round(float(f), 4) for f in hz]
    if arch["frontend"] == "logconv":
        arch = {**arch, "bin_hz": bin_hz}
    return arch, bin_hz


def _setup(
    shard_paths: Sequence[Pathlike],
    s: TrainSettings,
    dev: torch.device,
    metadata: Mapping[str, Any] | None,
    positives: Sequence[Pathlike] | None,
    reader_options: Mapping[str, Any],
) -> _Setup:
    """The model (built, normalizer fitted), the shard reader and the pair source."""
    reader = ShardReader(shard_paths, s.batch_size, seed=s.seed, device=dev, **reader_options)
    arch, bin_hz = _bin_hz(resolve_arch(s.arch), s, metadata)
    if s.model_type == "classifier":
        if not positives:
            raise SoundharvestError(
                "model type 'classifier' learns the query label of each clip: give the "
                "concatenate files the shuffle read (positives)"
            )
        # The head's labels: the concatenate files' names, in the shuffle's order.
        arch = {**arch, "classes": [npy_stem(p) for p in positives]}
    model = build_model(s.model_type, reader.n_bins, arch, s.seed, normalize=s.normalize)
    model = model.to(dev)
    context, stride = context_of(model)
    if context > 1 and s.hparam("recon_weight", 0.0) > 0:
        raise SoundharvestError(
            f"recon_weight = {s.hparams.recon_weight}: the decoder reconstructs single frames; "
            f"with architecture.context = {context} set recon_weight: 0"
        )
    if s.normalize == "bin":
        # Per-bin statistics from the stream's first rows (a uniform sample: shards are shuffled).
        sample = torch.cat(list(reader.batches(0, min(reader.n_rows, BLOCK_ROWS))))
        autoencoder_of(model).normalizer.fit(sample.to(dev))
        del sample
    pairs = None
    if s.needs_pairs:
        if not positives:
            raise SoundharvestError(
                f"model type {s.model_type!r} trains on pairs of frames of one clip: give the "
                "concatenate files the shuffle read (positives)"
            )
        pairs = ClipPositives(positives, s.hparams.max_offset, s.hparams.positive_scope)
        reader = ShardReader(
            shard_paths, s.batch_size, seed=s.seed, device=dev, with_rows=True, **reader_options
        )
    return _Setup(model, reader, pairs, arch, reader.n_bins, bin_hz, context, stride)


def _save_untrained(
    setup: _Setup, meta: Mapping[str, Any], outs: Sequence[Pathlike], title: str
) -> dict[str, Any]:
    """A model that is never trained: weights as initialised, and the reconstruction loss on
    a sample so the report can compare trained models against it (a window encoder has no
    single-frame reconstruction to report: NaN)."""
    reader, model = setup.reader, setup.model
    n_sample = min(reader.n_rows, BLOCK_ROWS) if setup.context == 1 else 0
    losses = []
    model.eval()
    for x in reader.batches(0, n_sample):
        losses.append((reconstruction_loss(model, x), x.shape[0]))
    recon = sum(v * n for v, n in losses) / sum(n for _, n in losses) if losses else math.nan
    row = dict.fromkeys(CURVE_COLUMNS, float("nan"))
    row.update(frames=0, ae_loss=recon, recon_loss=recon)
    curves = named_curves([list(row.values())], Objective.metric_names)
    out_weights, out_curves_tsv, out_curves_png = outs
    save_weights(model, out_weights, {**meta, "frames_seen": 0, "sample_frames": n_sample})
    write_tsv(out_curves_tsv, curves)
    plot_curves(curves, out_curves_png, title)
    log.info("random model: reconstruction loss %.5f on %d frames", recon, n_sample)
    return {"model_type": meta["model_type"], "frames_seen": 0, "recon_loss": recon}


def _amp_dtype(amp: str, dev: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if dev.type == "cuda" else None
    if amp in ("bf16", "none"):
        return torch.bfloat16 if amp == "bf16" else None
    raise SoundharvestError(f"amp = {amp!r}: use auto, bf16 or none")


def _objective(s: TrainSettings, setup: _Setup, amp_dtype: torch.dtype | None) -> Objective:
    """The model type's objective (optimiser state included) on the set-up model."""
    assert s.objective is not None
    return s.objective(
        setup.model,
        lr=s.lr,
        seed=s.seed,
        amp_dtype=amp_dtype,
        hparams=s.hparams,
        bin_hz=setup.bin_hz,
        scheduled=s.lr_schedule != "constant",
    )


def _fingerprint_of(
    s: TrainSettings,
    setup: _Setup,
    block_rows: int,
    positives: Sequence[Pathlike] | None,
) -> dict[str, Any]:
    """The settings a checkpoint must have been made with to be resumed from: the shared
    settings, the objective's own hyperparameters, the pairs' sources and the shards."""
    reader = setup.reader
    return _fingerprint(
        format_version=FORMAT_VERSION,
        model_type=s.model_type,
        arch=setup.arch,
        in_dim=setup.in_dim,
        batch_size=s.batch_size,
        lr=s.lr,
        seed=s.seed,
        block_rows=block_rows,
        **({} if s.normalize == "none" else {"normalize": s.normalize}),
        **({} if s.lr_schedule == "constant" else {"lr_schedule": s.lr_schedule}),
        hparams=s.hparams.to_dict(),
        **({"positives": [str(p) for p in positives or ()]} if setup.pairs is not None else {}),
        shards=[[p.name, n] for p, n in zip(reader.paths, reader.shard_rows, strict=True)],
    )


class _Checkpoint:
    """A run's checkpoint file: resumed from when its fingerprint and budget match."""

    def __init__(self, path: Pathlike | None, fingerprint: Mapping[str, Any]) -> None:
        self.path = None if path is None else Path(path)
        self.config = json.dumps(fingerprint, sort_keys=True)

    def resume(
        self, model: nn.Module, objective: Objective, frames: int
    ) -> tuple[int, list[list[float]]] | None:
        """Load a matching checkpoint into ``model`` and ``objective``: ``(frames seen,
        curve rows)``, or None (none, unreadable, other settings, past the budget)."""
        if self.path is None or not self.path.is_file():
            return None
        ck = _load_checkpoint(self.path)
        if ck is None:
            return None
        if ck["config"] != self.config:
            old, new = json.loads(ck["config"]), json.loads(self.config)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            log.warning(
                "checkpoint %s was made with other settings (%s differ); starting fresh",
                self.path,
                ", ".join(diff),
            )
            return None
        if int(ck["frames_seen"]) > frames:
            log.warning(
                "checkpoint %s is at %d frames, past the budget of %d; starting fresh",
                self.path,
                int(ck["frames_seen"]),
                frames,
            )
            return None
        model.load_state_dict(ck["model"])
        objective.load_state_dict(ck["objective"])
        log.info("resuming from checkpoint %s at %d frames", self.path, int(ck["frames_seen"]))
        return int(ck["frames_seen"]), ck["curves"].tolist()

    def save(
        self, frames_seen: int, model: nn.Module, objective: Objective, rows: list[list[float]]
    ) -> None:
        if self.path is None:
            return
        state = {
            "config": self.config,
            "frames_seen": frames_seen,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "objective": objective.state_dict(),
            "curves": torch.tensor(rows, dtype=torch.float64).reshape(-1, len(CURVE_COLUMNS)),
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)


def _pair_batch(
    batch: tuple[torch.Tensor, torch.Tensor], s: TrainSettings, setup: _Setup, frames_seen: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A pair objective's step inputs from a batch of rows: ``(anchors and partners stacked on
    dim 1, clip ids (and label ids))``; None when every row belongs to a held-out clip."""
    x, src_rows = batch
    pairs, dev = setup.pairs, x.device
    assert pairs is not None
    # The partner draw is a function of (seed, frames seen): a resumed run draws the same
    # partners as an uninterrupted one.
    prng = np.random.default_rng([int(s.seed), 7, frames_seen])
    rows_np = src_rows.numpy()
    holdout = float(s.hparam("holdout", 0.0))
    if holdout > 0:
        keep = ~pairs.held_out(rows_np, holdout)  # clips kept for calibration
        rows_np = rows_np[keep]
        x = x[torch.from_numpy(keep).to(x.device)]
        if not len(rows_np):
            return None
    partner_rows = pairs.partner_rows(rows_np, prng)
    if setup.context > 1:  # the datapoints are the windows that start at those rows
        x = torch.from_numpy(pairs.frames(pairs.window_rows(rows_np, setup.context, setup.stride)))
        x = x.to(dev, non_blocking=True)
        partner_rows = pairs.window_rows(partner_rows, setup.context, setup.stride)
    partner = pairs.frames(partner_rows)
    x = torch.stack([x, torch.from_numpy(partner).to(dev, non_blocking=True)], dim=1)
    # Clip ids as float32 are exact below 2^24 clips.
    groups = torch.from_numpy(pairs.groups(rows_np).astype(np.float32))
    if s.needs_labels:  # the label of each pair beside its clip
        labels = torch.from_numpy(pairs.labels(rows_np).astype(np.float32))
        groups = torch.stack([groups, labels], dim=1)
    return x, groups.to(dev)


class _Curves:
    """Means of the step metrics over logging windows: the curves' rows and the log lines."""

    def __init__(
        self,
        rows: list[list[float]],
        frames_seen: int,
        frames: int,
        every: int,
        what: tuple[str, str],
        device: torch.device,
        names: Sequence[str | None] = METRICS,
    ) -> None:
        self.rows, self.frames, self.every = rows, frames, every
        self.model_type, self.unit = what  # for the log lines
        self.names = tuple(names)
        self.acc = torch.zeros(len(METRICS), dtype=torch.float64, device=device)
        self.n = 0
        self.start_seen = self.win_start = frames_seen
        self.next = (frames_seen // every + 1) * every
        self.t_run = self.t_win = time.perf_counter()

    def add(self, metrics: torch.Tensor, frames_seen: int) -> dict[str, float] | None:
        """Accumulate one step's metrics; at the end of a window, its row (else None)."""
        self.acc += metrics  # a copy: a CUDA graph's metrics buffer is overwritten next step
        self.n += 1
        if frames_seen < self.next and frames_seen != self.frames:
            return None
        vals = (self.acc / self.n).tolist()  # the one host sync per logging window
        now = time.perf_counter()
        rate = (frames_seen - self.win_start) / max(now - self.t_win, 1e-9)
        row = dict(zip(CURVE_COLUMNS, [frames_seen, *vals, rate], strict=True))
        self.rows.append(list(row.values()))
        self._log(row, frames_seen, rate, now)
        self.acc.zero_()
        self.n = 0
        self.t_win, self.win_start = now, frames_seen
        self.next = (frames_seen // self.every + 1) * self.every
        return row

    def _log(self, row: Mapping[str, float], seen: int, rate: float, now: float) -> None:
        overall = (seen - self.start_seen) / max(now - self.t_run, 1e-9)
        values = " ".join(
            f"{name} {row[slot]:.4g}"
            for slot, name in zip(METRICS, self.names, strict=True)
            if name and math.isfinite(row[slot])
        )
        log.info(
            "train %s: %d/%d %s (%.1f%%) | %.0f %s/s | %s | ETA %s",
            self.model_type,
            seen,
            self.frames,
            self.unit,
            100.0 * seen / max(self.frames, 1),
            rate,
            self.unit,
            values,
            _fmt_eta((self.frames - seen) / overall),
        )

    def frame(self) -> pd.DataFrame:
        """The curves under the objective's metric names (:func:`named_curves`)."""
        return named_curves(self.rows, self.names)


def train(
    shard_paths: Sequence[Pathlike],
    out_weights: Pathlike,
    out_curves_tsv: Pathlike,
    out_curves_png: Pathlike,
    settings: TrainSettings | None = None,
    *,
    positives: Sequence[Pathlike] | None = None,
    device: str = "auto",
    threads: int | None = None,
    checkpoint_path: Pathlike | None = None,
    checkpoint_every: int | None = None,
    log_every: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    block_rows: int = BLOCK_ROWS,
    prefetch: int = 2,
    amp: str = "auto",
    compile: str = "auto",
    callback: Callable[[int, dict[str, float] | None], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train one model on the shuffled shards for exactly ``settings.frames`` frames.

    :param shard_paths: the shuffle stage's ``shard-XX.npy`` files.
    :param out_weights: final weights (``.safetensors``, metadata under key ``soundharvest``).
    :param out_curves_tsv: curves: one row per logging window: ``frames``, the objective's
        metrics (:attr:`Objective.metric_names`), ``frames_per_s``.
    :param out_curves_png: figure of the curves.
    :param settings: what to learn (:class:`TrainSettings`); ``overrides`` replace its fields
        (``train(..., model_type="ae", frames=10_000)``; an unknown name is an error).
    :param positives: for pair objectives and the classifier: the concatenate-stage ``.npy``
        files the shuffle read, in its order (:class:`soundharvest.loader.ClipPositives`).
    :param device: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:N``.
    :param threads: CPU threads for torch (default: all cores this process may use).
    :param checkpoint_path: checkpoint file; resumed from if it exists and matches the settings.
    :param checkpoint_every: frames between checkpoints (default: a tenth of ``frames``).
    :param log_every: frames between log lines / curve rows (default: a hundredth of ``frames``).
    :param metadata: extra JSON-able metadata stored with the weights under ``extra`` (feature
        kind and parameters, so a predictor can rebuild the features).
    :param block_rows: loader block size; part of the data order (keep it fixed for a resume).
    :param prefetch: blocks the loader reads ahead in a background thread (0: none).
    :param amp: ``auto`` (bf16 autocast on CUDA, float32 on CPU), ``bf16`` or ``none``.
    :param compile: ``auto`` (CUDA graph of the whole step on CUDA, eager on CPU), ``eager``,
        ``compile`` (torch.compile), ``reduce-overhead``, ``cudagraph``.
    :param callback: called after every step with ``(frames_seen, row)``; ``row`` is the curve
        row (dict) at logging steps, else ``None``.
    :return: summary dict (model_type, frames_seen, seconds, frames_per_s, last curve row, ...).
    """
    s = TrainSettings.of(settings, **overrides)
    t_start = time.perf_counter()
    dev = resolve_device(device)
    n_threads = _set_threads(threads)
    reader_options = {"block_rows": block_rows, "prefetch": prefetch}
    setup = _setup(shard_paths, s, dev, metadata, positives, reader_options)
    meta = s.metadata(setup.arch, setup.in_dim, metadata or {})
    title = f"{s.model_type} ({(metadata or {}).get('kind', '')})".replace(" ()", "")
    log.info("train %s: %d frames of %d bins in %d shard(s), device %s, %d thread(s)",
             s.model_type, setup.reader.n_rows, setup.in_dim, len(setup.reader.paths), dev,
             n_threads)  # fmt: skip
    if setup.context > 1:
        log.info("train %s: datapoints are windows of %d frames, %d apart", s.model_type,
                 setup.context, setup.stride)  # fmt: skip
    outs = (out_weights, out_curves_tsv, out_curves_png)
    if s.objective is None:
        return {**_save_untrained(setup, meta, outs, title), "device": str(dev)}
    setup.model.train()
    objective = _objective(s, setup, _amp_dtype(amp, dev))
    stepper = Stepper(objective, compile)
    checkpoint = _Checkpoint(checkpoint_path, _fingerprint_of(s, setup, block_rows, positives))
    resumed = checkpoint.resume(setup.model, objective, s.frames)
    frames_seen, rows = resumed if resumed is not None else (0, [])
    every = (int(checkpoint_every or max(s.batch_size, s.frames // 10)),
             int(log_every or max(s.batch_size, s.frames // 100)))  # fmt: skip
    what = (s.model_type, setup.unit)
    curves = _Curves(rows, frames_seen, s.frames, every[1], what, dev, objective.metric_names)
    frames_seen = _loop(s, setup, stepper, checkpoint, curves, frames_seen, every[0], callback)
    curve_frame = curves.frame()
    seconds = time.perf_counter() - t_start
    save_weights(setup.model, out_weights, {**meta, "frames_seen": frames_seen})
    write_tsv(out_curves_tsv, curve_frame)
    plot_curves(curve_frame, out_curves_png, title)
    trained = frames_seen - curves.start_seen
    log.info("train %s: done, %d %s in %.1f s", s.model_type, frames_seen, setup.unit, seconds)
    return {
        "model_type": s.model_type,
        "frames_seen": frames_seen,
        "resumed_from": None if resumed is None else resumed[0],
        "seconds": seconds,
        "frames_per_s": trained / max(time.perf_counter() - curves.t_run, 1e-9)
        if trained
        else float("nan"),
        "device": str(dev),
        "threads": n_threads,
        "compile": stepper.mode,
        "last": curve_frame.iloc[-1].to_dict() if len(curve_frame) else None,
    }


def _loop(
    s: TrainSettings,
    setup: _Setup,
    stepper: Stepper,
    checkpoint: _Checkpoint,
    curves: _Curves,
    frames_seen: int,
    checkpoint_every: int,
    callback: Callable[[int, dict[str, float] | None], None] | None,
) -> int:
    """Step until ``s.frames`` datapoints have been seen; checkpoints on the way and at the end."""
    objective = stepper.objective
    next_ck = (frames_seen // checkpoint_every + 1) * checkpoint_every
    for x in setup.reader.batches(frames_seen, s.frames):
        if s.lr_schedule != "constant":
            objective.set_lr_factor(lr_factor(s.lr_schedule, frames_seen, s.frames))
        if setup.pairs is not None:
            n_stream = x[0].shape[0]
            step = _pair_batch(x, s, setup, frames_seen)
            if step is None:  # every row of a held-out clip
                frames_seen += n_stream
                continue
            metrics = stepper.step(*step)
        else:
            n_stream = x.shape[0]
            metrics = stepper.step(x)
        frames_seen += n_stream
        row = curves.add(metrics, frames_seen)
        if frames_seen >= next_ck and frames_seen < s.frames:
            checkpoint.save(frames_seen, setup.model, objective, curves.rows)
            next_ck = (frames_seen // checkpoint_every + 1) * checkpoint_every
        if callback is not None:
            callback(frames_seen, row)
    if frames_seen != s.frames:  # pragma: no cover - the loader streams forever
        raise RuntimeError(f"loader stopped at {frames_seen} of {s.frames} frames")
    # The final state: a re-run after a crash in the writes that follow is instant.
    checkpoint.save(frames_seen, setup.model, objective, curves.rows)
    return frames_seen


def _load_checkpoint(path: Pathlike) -> dict[str, Any] | None:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so, start fresh
        log.warning("checkpoint %s is unreadable (%s); starting fresh", path, e)
        return None
    if not isinstance(ck, dict) or not {"config", "frames_seen", "model", "objective"} <= set(ck):
        log.warning("checkpoint %s lacks fields; starting fresh", path)
        return None
    return ck
