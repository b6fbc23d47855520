"""Architectures from config: the autoencoder, the ACAI critic, and a registry of model types.

An architecture is a plain dict (it comes from ``config/config.yaml``; presets, defaults and
validation in :mod:`soundharvest.architecture`)::

    {"hidden": [500, 500, 2000], "latent": 10, "activation": "leaky_relu",
     "latent_activation": "linear", "output_activation": "sigmoid"}

The encoder is ``FC(in, h1) - ... - FC(h_last, latent)``, the decoder its mirror
``FC(latent, h_last) - ... - FC(h1, in)``; hidden layers use ``activation``, the latent layer
``latent_activation`` and the decoder's last layer ``output_activation``. The input dimension is
always given (513 STFT bins, 512 mel bins, or anything a later feature kind produces).

Model types register with :func:`register_model`; :func:`build_model` seeds the initialisation so
that a model's initial weights depend only on ``(model_type, in_dim, arch, seed)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The architecture dicts' presets and validation live in a torch-free module (config checks use
# it); they are re-exported here, where the networks they describe are built.
from .architecture import ARCH_PRESETS as ARCH_PRESETS
from .architecture import CONTEXT_TYPES as CONTEXT_TYPES
from .architecture import FIRST_ARCH as FIRST_ARCH
from .architecture import THESIS_ARCH as THESIS_ARCH
from .architecture import context_span as context_span
from .architecture import resolve_arch as resolve_arch
from .io import SoundharvestError


def _activation(name: str, leaky_slope: float) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if name == "linear":
        return None
    if name == "leaky_relu":
        return lambda t: F.leaky_relu(t, leaky_slope)
    return {
        "relu": F.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "elu": F.elu,
        "gelu": F.gelu,
        "silu": F.silu,
    }[name]


class MLP(nn.Module):
    """A stack of fully connected layers: ``hidden_act`` between layers, ``last_act`` at the end.

    ``forward(x, detach_params=True)`` runs the same network on parameters cut from autograd, so a
    loss can flow back to ``x`` without touching these weights (the ACAI autoencoder's critic term).
    """

    def __init__(
        self, dims: list[int], hidden_act: str, last_act: str, leaky_slope: float = 0.2
    ) -> None:
        super().__init__()
        self.dims = list(dims)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self._hidden = _activation(hidden_act, leaky_slope)
        self._last = _activation(last_act, leaky_slope)

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            if detach_params:
                x = F.linear(x, layer.weight.detach(), layer.bias.detach())
            else:
                x = layer(x)
            act = self._last if i == n - 1 else self._hidden
            if act is not None:
                x = act(x)
        return x


def log_resampler(
    bin_hz: Any, fmin: float, fmax: float | None, bins_per_octave: int
) -> torch.Tensor:
    """Matrix ``(n_in, n_log)`` that resamples frames onto a log-frequency grid.

    The grid runs from ``fmin`` to ``fmax`` (default: the highest input bin) at
    ``bins_per_octave``; each grid point interpolates linearly between the two input bins around
    it (input bins at increasing centre frequencies ``bin_hz``).
    """
    hz = np.asarray(bin_hz, dtype=np.float64)
    if hz.ndim != 1 or len(hz) < 2 or np.any(np.diff(hz) <= 0):
        raise SoundharvestError(
            "architecture.bin_hz: give the increasing centre frequencies of the input bins"
        )
    top = min(float(fmax), hz[-1]) if fmax is not None else hz[-1]
    lo = max(float(fmin), hz[0])
    if top <= lo:
        raise SoundharvestError(
            f"architecture.fmin = {fmin}: at or above the top input bin ({hz[-1]:.0f} Hz)"
        )
    n_log = int(np.floor(np.log2(top / lo) * bins_per_octave)) + 1
    grid = lo * 2.0 ** (np.arange(n_log) / bins_per_octave)
    right = np.clip(np.searchsorted(hz, grid, side="right"), 1, len(hz) - 1)
    left = right - 1
    w = np.clip((grid - hz[left]) / (hz[right] - hz[left]), 0.0, 1.0)
    mat = np.zeros((len(hz), n_log), dtype=np.float32)
    cols = np.arange(n_log)
    np.add.at(mat, (left, cols), 1.0 - w)
    np.add.at(mat, (right, cols), w)
    return torch.from_numpy(mat)


class LogConvEncoder(nn.Module):
    """Encoder with a pitch-shift-invariant front end (architecture ``frontend: logconv``).

    A frame is resampled onto a log-frequency axis (``bins_per_octave`` from ``fmin``), where a
    change of pitch is a shift; 1-D convolutions along that axis (``channels``, ``kernel``, the
    dilation doubling per layer so the last layers see about an octave) find local spectral
    patterns such as a harmonic series wherever they sit, and the maximum and the mean over
    frequency of each channel feed the fully connected ``hidden`` layers and the latent layer.
    Pooled features do not change when a pattern moves along the axis away from its ends, so
    small pitch changes barely move the codes (untrained, measured on harmonic frames: two
    semitones move a code by 0.15x the distance to another timbre at the same pitch, against
    1.8x for the thesis' MLP); over larger intervals the occupied frequency range moves too
    (an octave: 2x), which is what training on frames of one clip at many pitches can teach
    the encoder to ignore.

    With ``context`` T > 1 a datapoint is T frames, ``context_stride`` apart (input
    ``(..., T, bins)``): every frame gets the pooled features above, a convolution along time
    (kernel 3) relates neighbouring frames, and the maximum and the mean over the T frames feed
    the head. A note's attack and decay (a plucked string fades, an organ holds) are then part
    of the datapoint, which a single frame cannot show.
    """

    def __init__(self, in_dim: int, arch: Mapping[str, Any]) -> None:
        super().__init__()
        if arch.get("bin_hz") is None or len(arch["bin_hz"]) != in_dim:
            got = None if arch.get("bin_hz") is None else len(arch["bin_hz"])
            raise SoundharvestError(
                f"architecture.bin_hz: {got} frequencies for {in_dim} input bins; a logconv "
                "front end needs the features' bin frequencies (train() sets them from the "
                "feature kind)"
            )
        self.register_buffer(
            "resample",
            log_resampler(arch["bin_hz"], arch["fmin"], arch["fmax"], arch["bins_per_octave"]),
        )
        k = int(arch["kernel"])
        convs, c_in = [], 1
        for i, c in enumerate(arch["channels"]):
            d = 2**i
            convs.append(nn.Conv1d(c_in, c, k, padding=d * (k - 1) // 2, dilation=d))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self._act = _activation(arch["activation"], arch["leaky_slope"])
        #: (frames per datapoint, stride between them in frames).
        self.context = (int(arch.get("context", 1)), int(arch.get("context_stride", 1)))
        features = 2 * c_in
        if self.context[0] > 1:
            self.temporal = nn.Conv1d(features, features, 3, padding=1)
            features *= 2
        self.head = MLP(
            [features, *arch["hidden"], int(arch["latent"])],
            arch["activation"],
            arch["latent_activation"],
            arch["leaky_slope"],
        )

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        if detach_params:
            raise SoundharvestError("LogConvEncoder: detach_params is only for MLP critics")
        t = self.context[0]
        if t > 1 and (x.ndim < 2 or x.shape[-2] != t):
            raise SoundharvestError(
                f"input of shape {tuple(x.shape)}: this encoder takes windows of {t} frames, "
                f"(..., {t}, bins); encode sequences with soundharvest.encoder.encode_sequence"
            )
        lead = x.shape[:-2] if t > 1 else x.shape[:-1]
        z = (x.reshape(-1, x.shape[-1]) @ self.resample.to(x.dtype))[:, None, :]
        for conv in self.convs:
            z = conv(z)
            if self._act is not None:
                z = self._act(z)
        h = torch.cat([z.amax(dim=2), z.mean(dim=2)], dim=1)
        if t > 1:
            h = self.temporal(h.reshape(-1, t, h.shape[1]).transpose(1, 2))  # (n, features, T)
            if self._act is not None:
                h = self._act(h)
            h = torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1)
        return self.head(h).reshape(*lead, -1)


def context_of(model: nn.Module) -> tuple[int, int]:
    """``(frames per datapoint, stride)`` of a model's encoder: ``(1, 1)`` for single frames."""
    enc = getattr(autoencoder_of(model), "encoder", None)
    return tuple(getattr(enc, "context", (1, 1)))  # type: ignore[return-value]


def activation_floats(model: nn.Module) -> int:
    """Floats the widest layer of ``model``'s encoder holds per datapoint (a window counts all
    its frames): what a memory-bounded batch of encoding is sized by.

    The thesis MLP: its widest layer (2000). The logconv front end: channels x log-frequency
    bins per frame (32 x 255 for ``config/best.yaml``'s, 8,160 floats, x 8 for its windows),
    which is why a fixed number of frames per batch is no bound at all.
    """
    enc = getattr(autoencoder_of(model), "encoder", None)
    t = context_of(model)[0]
    if isinstance(enc, LogConvEncoder):
        width = max(c.out_channels for c in enc.convs) * int(enc.resample.shape[1])
        return t * max(width, int(enc.resample.shape[0]))
    if isinstance(enc, MLP):
        return t * max(enc.dims)
    return t * int(getattr(model, "in_dim", 1))


def window_index(
    starts: np.ndarray, stop: int | np.ndarray, frames: int, stride: int
) -> np.ndarray:
    """Row indices ``(len(starts), frames)`` of windows from ``starts``, clipped below ``stop``.

    ``stop`` is one end for all windows or one per window (the end of each one's clip). A
    window that would run past the end of its sequence repeats the last row (a note or a clip
    that ends early is held, not wrapped into the next one).
    """
    starts = np.asarray(starts, dtype=np.int64)
    idx = starts[:, None] + np.arange(int(frames), dtype=np.int64)[None, :] * int(stride)
    return np.minimum(idx, np.asarray(stop, dtype=np.int64).reshape(-1, 1) - 1)


def encoder_dims(in_dim: int, arch: Mapping[str, Any]) -> list[int]:
    """Layer widths of the encoder: ``[in_dim, *hidden, latent]``."""
    return [int(in_dim), *arch["hidden"], int(arch["latent"])]


#: Input normalisations of the encoder (the decoder always reconstructs the [0, 1] frame).
NORMALIZATIONS = ("none", "frame", "bin")

# Floor of a standard deviation: a constant frame (silence clipped at -80 dB) or a bin that never
# moves would otherwise divide by zero; 1e-3 is far below the spread of any real frame in [0, 1].
NORM_EPS = 1e-3


class Normalizer(nn.Module):
    """Standardisation of the encoder's input.

    ``none``: the frame as it is (the thesis' fixed [-80, 0] dB -> [0, 1] scaling only).
    ``frame``: each frame minus its own mean over bins, divided by its own standard deviation,
    which removes the frame's overall level (loudness) and keeps its spectral shape.
    ``bin``: each bin minus its mean over the training frames, divided by its standard
    deviation; the statistics are buffers (saved with the weights), set by :meth:`fit`.
    """

    def __init__(self, mode: str, in_dim: int) -> None:
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise SoundharvestError(f"normalize = {mode!r}: use one of {', '.join(NORMALIZATIONS)}")
        self.mode = mode
        if mode == "bin":
            self.register_buffer("mean", torch.zeros(int(in_dim)))
            self.register_buffer("std", torch.ones(int(in_dim)))

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> None:
        """Set the per-bin statistics from a sample of training frames ``(n, in_dim)``."""
        if self.mode != "bin":
            return
        f = frames.float()
        self.mean.copy_(f.mean(dim=0))
        self.std.copy_(f.std(dim=0).clamp_min(NORM_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "frame":
            mu = x.mean(dim=-1, keepdim=True)
            sd = x.std(dim=-1, keepdim=True).clamp_min(NORM_EPS)
            return (x - mu) / sd
        if self.mode == "bin":
            return (x - self.mean) / self.std
        return x


class Autoencoder(nn.Module):
    """Encoder ``f`` and mirrored decoder ``g`` built from an architecture dict.

    :param normalize: input normalisation of the encoder (:class:`Normalizer`); the decoder
        still reconstructs the frame as given, so the reconstruction loss is unchanged.
    :param l2_codes: codes are L2-normalised (unit vectors), as a contrastive loss sees them.
    """

    def __init__(
        self,
        in_dim: int,
        arch: Mapping[str, Any],
        normalize: str = "none",
        l2_codes: bool = False,
    ) -> None:
        super().__init__()
        arch = resolve_arch(arch)
        dims = encoder_dims(in_dim, arch)
        self.in_dim = int(in_dim)
        self.latent_dim = int(arch["latent"])
        if arch["frontend"] == "logconv":
            self.encoder: nn.Module = LogConvEncoder(in_dim, arch)
        else:
            self.encoder = MLP(
                dims, arch["activation"], arch["latent_activation"], arch["leaky_slope"]
            )
        self.decoder = MLP(
            dims[::-1], arch["activation"], arch["output_activation"], arch["leaky_slope"]
        )
        self.normalizer = Normalizer(normalize, in_dim)
        self.l2_codes = bool(l2_codes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent codes ``f(x)`` (of the normalised input; unit vectors with ``l2_codes``)."""
        z = self.encoder(self.normalizer(x))
        return F.normalize(z, dim=-1) if self.l2_codes else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``g(z)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z, x_hat)``."""
        z = self.encode(x)
        return z, self.decoder(z)


class Critic(nn.Module):
    """ACAI critic: the encoder's architecture; the mean of its output is the predicted alpha."""

    def __init__(self, in_dim: int, arch: Mapping[str, Any]) -> None:
        super().__init__()
        arch = resolve_arch(arch)
        self.net = MLP(
            encoder_dims(in_dim, arch),
            arch["activation"],
            arch["latent_activation"],
            arch["leaky_slope"],
        )

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Predicted interpolation coefficient, shape ``(batch,)``."""
        return self.net(x, detach_params=detach_params).mean(dim=-1)


class ACAI(nn.Module):
    """Adversarially Constrained Autoencoder Interpolation: an autoencoder plus its critic."""

    def __init__(self, in_dim: int, arch: Mapping[str, Any]) -> None:
        super().__init__()
        # The autoencoder is built first so that, for one seed, ACAI, AE and the random model
        # start from the same autoencoder weights (a fair comparison).
        self.autoencoder = Autoencoder(in_dim, arch)
        self.critic = Critic(in_dim, arch)
        self.in_dim = self.autoencoder.in_dim
        self.latent_dim = self.autoencoder.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent codes of the autoencoder."""
        return self.autoencoder.encode(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z, x_hat)`` of the autoencoder."""
        return self.autoencoder(x)


class Classifier(nn.Module):
    """The weak recogniser: an encoder and a linear head over the query labels.

    The encoder is an :class:`Autoencoder`'s (any front end, single frames or windows; its
    decoder is unused), so every stage that encodes (embedding, probes, k-means) treats it like
    the other models; the head maps its code to one logit per label of ``arch["classes"]``.
    """

    def __init__(self, in_dim: int, arch: Mapping[str, Any]) -> None:
        super().__init__()
        classes = arch.get("classes")
        if not classes or len(classes) < 2:
            raise SoundharvestError(
                "classifier: architecture.classes must list the >= 2 labels of the head "
                "(the training loop sets it from the label files)"
            )
        self.autoencoder = Autoencoder(in_dim, arch)
        self.in_dim = self.autoencoder.in_dim
        self.latent_dim = self.autoencoder.latent_dim
        self.classes = [str(c) for c in classes]
        self.head = nn.Linear(self.latent_dim, len(self.classes))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's codes (the head's input)."""
        return self.autoencoder.encode(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per label of every datapoint."""
        return self.head(self.encode(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z, logits)``."""
        z = self.encode(x)
        return z, self.head(z)


#: model type -> builder(in_dim, arch) -> module with ``encode(x)`` and ``forward(x) -> (z, x_hat)``
MODEL_TYPES: dict[str, Callable[[int, dict[str, Any]], nn.Module]] = {}


def register_model(
    name: str,
) -> Callable[
    [Callable[[int, dict[str, Any]], nn.Module]], Callable[[int, dict[str, Any]], nn.Module]
]:
    """Decorator: register ``builder(in_dim, arch) -> nn.Module`` under the model type ``name``."""

    def deco(builder: Callable[[int, dict[str, Any]], nn.Module]):
        MODEL_TYPES[name] = builder
        return builder

    return deco


@register_model("ae")
def _build_ae(in_dim: int, arch: dict[str, Any]) -> nn.Module:
    return Autoencoder(in_dim, arch)


@register_model("random")
def _build_random(in_dim: int, arch: dict[str, Any]) -> nn.Module:
    return Autoencoder(in_dim, arch)


@register_model("acai")
def _build_acai(in_dim: int, arch: dict[str, Any]) -> nn.Module:
    return ACAI(in_dim, arch)


@register_model("contrastive")
def _build_contrastive(in_dim: int, arch: dict[str, Any]) -> nn.Module:
    # The autoencoder's shape (its decoder serves an optional reconstruction term), with unit
    # codes: the contrastive loss compares cosines, so k-means sees the space the loss shaped.
    return Autoencoder(in_dim, arch, l2_codes=True)


@register_model("classifier")
def _build_classifier(in_dim: int, arch: dict[str, Any]) -> nn.Module:
    return Classifier(in_dim, arch)


def autoencoder_of(model: nn.Module) -> Autoencoder:
    """The :class:`Autoencoder` inside ``model`` (the model itself, or ACAI's)."""
    ae = model if isinstance(model, Autoencoder) else getattr(model, "autoencoder", None)
    if not isinstance(ae, Autoencoder):
        raise SoundharvestError(f"{type(model).__name__}: no autoencoder inside to normalise")
    return ae


def build_model(
    model_type: str,
    in_dim: int,
    arch: Mapping[str, Any] | str,
    seed: int = 0,
    normalize: str = "none",
) -> nn.Module:
    """Build a model with seeded initial weights (independent of the global RNG state).

    :param model_type: a registered type (``acai``, ``ae``, ``random``, ``contrastive``, ...).
    :param in_dim: input dimension (bins per frame).
    :param arch: architecture dict or preset name (see :func:`resolve_arch`).
    :param seed: initialisation seed; the same arguments always give the same weights.
    :param normalize: the encoder's input normalisation (:data:`NORMALIZATIONS`); ``bin``
        statistics start at mean 0, std 1 until :meth:`Normalizer.fit` sets them. It adds no
        parameters, so the initial weights do not depend on it.
    :return: the model on the CPU, in float32.
    """
    if normalize not in NORMALIZATIONS:
        raise SoundharvestError(
            f"normalize = {normalize!r}: use one of {', '.join(NORMALIZATIONS)}"
        )
    if model_type not in MODEL_TYPES:
        raise SoundharvestError(
            f"model type {model_type!r}: unknown; use one of {', '.join(sorted(MODEL_TYPES))}"
        )
    if not isinstance(in_dim, int) or isinstance(in_dim, bool) or in_dim <= 0:
        raise SoundharvestError(f"in_dim = {in_dim!r}: give a positive integer (bins per frame)")
    arch = resolve_arch(arch)
    if arch.get("context", 1) > 1 and model_type not in CONTEXT_TYPES:
        raise SoundharvestError(
            f"model type {model_type!r} reconstructs single frames: architecture.context = "
            f"{arch['context']} needs a type in {', '.join(CONTEXT_TYPES)}, or context: 1"
        )
    # fork_rng restores the caller's global CPU RNG afterwards: building a model neither depends
    # on nor disturbs anything else's randomness.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = MODEL_TYPES[model_type](in_dim, arch)
    if normalize != "none":
        autoencoder_of(model).normalizer = Normalizer(normalize, in_dim)
    return model
