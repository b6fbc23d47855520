"""Architectures as config gives them: presets, defaults and validation, without torch.

An architecture is a plain dict (it comes from ``config/config.yaml``); :func:`resolve_arch` fills
in the defaults and names the field that is wrong. The networks it describes are built in
:mod:`soundharvest.models`. This module imports no torch, so that checking a config (every
``snakemake`` invocation parses the Snakefile, which validates the config) stays fast.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .io import SoundharvestError

#: The thesis' final architecture (from Berthelot et al.'s clustering experiments): linear latent.
THESIS_ARCH: dict[str, Any] = {
    "hidden": [500, 500, 2000],
    "latent": 10,
    "activation": "leaky_relu",
    "latent_activation": "linear",
    "output_activation": "sigmoid",
}

#: The thesis' first architecture (section 4.3): 256-128-64-32 with a 16-d sigmoid latent; the
#: thesis lists ReLU hidden layers for it.
FIRST_ARCH: dict[str, Any] = {
    "hidden": [256, 128, 64, 32],
    "latent": 16,
    "activation": "relu",
    "latent_activation": "sigmoid",
    "output_activation": "sigmoid",
}

ARCH_PRESETS: dict[str, dict[str, Any]] = {"thesis": THESIS_ARCH, "first": FIRST_ARCH}

# The ACAI reference implementation uses tf.nn.leaky_relu, whose default negative slope is 0.2
# (PyTorch's default is 0.01); an architecture may override it with "leaky_slope".
DEFAULT_LEAKY_SLOPE = 0.2

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "gelu", "silu")

_ARCH_DEFAULTS: dict[str, Any] = {
    "activation": "leaky_relu",
    "latent_activation": "linear",
    "output_activation": "sigmoid",
    "leaky_slope": DEFAULT_LEAKY_SLOPE,
    "frontend": "mlp",
}

#: Encoder front ends: ``mlp`` (the thesis: fully connected from the bins) or ``logconv``.
FRONTENDS = ("mlp", "logconv")

#: Settings of the ``logconv`` front end (see :class:`LogConvEncoder`), with their defaults.
LOGCONV_DEFAULTS: dict[str, Any] = {
    "channels": [64, 64, 64],
    "kernel": 9,
    "bins_per_octave": 36,
    "fmin": 60.0,
    "fmax": None,
    "bin_hz": None,
    "context": 1,
    "context_stride": 1,
}


def resolve_arch(arch: Mapping[str, Any] | str) -> dict[str, Any]:
    """Return a complete, validated architecture dict from a preset name or a (partial) dict.

    :param arch: a preset name (``"thesis"``, ``"first"``) or a dict with at least ``hidden`` and
        ``latent``; missing activations take the defaults (LeakyReLU hidden, linear latent,
        sigmoid output).
    :return: a new dict with every key filled in.
    :raises SoundharvestError: naming the field and what is allowed.
    """
    if isinstance(arch, str):
        if arch not in ARCH_PRESETS:
            raise SoundharvestError(
                f"architecture {arch!r}: unknown preset; use one of {sorted(ARCH_PRESETS)} "
                "or a dict with hidden/latent"
            )
        arch = ARCH_PRESETS[arch]
    if not isinstance(arch, Mapping):
        raise SoundharvestError(f"architecture: expected a dict or a preset name, got {arch!r}")
    out = {**_ARCH_DEFAULTS, **copy.deepcopy(dict(arch))}
    if out["frontend"] not in FRONTENDS:
        raise SoundharvestError(
            f"architecture.frontend = {out['frontend']!r}: use one of {', '.join(FRONTENDS)}"
        )
    # "classes": the label names of a classifier's head, set by the training loop.
    allowed = set(_ARCH_DEFAULTS) | {"hidden", "latent", "classes"}
    if out["frontend"] == "logconv":
        out = {**LOGCONV_DEFAULTS, **out}
        allowed |= set(LOGCONV_DEFAULTS)
    unknown = set(out) - allowed
    if unknown:
        raise SoundharvestError(
            f"architecture: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}"
            + ("" if out["frontend"] == "logconv" else " (more with frontend: logconv)")
        )
    if out["frontend"] == "logconv":
        _check_logconv(out)
    out["hidden"] = _positive_ints(out, "hidden", "layer widths")
    out["latent"] = _positive_int(out, "latent")
    for key in ("activation", "latent_activation", "output_activation"):
        if out[key] in (None, "none", "identity"):
            out[key] = "linear"
        if out[key] not in ACTIVATIONS:
            raise SoundharvestError(
                f"architecture.{key} = {out[key]!r}: use one of {', '.join(ACTIVATIONS)}"
            )
    slope = out["leaky_slope"]
    if not isinstance(slope, int | float) or isinstance(slope, bool) or not 0 <= slope < 1:
        raise SoundharvestError(f"architecture.leaky_slope = {slope!r}: give a number in [0, 1)")
    out["leaky_slope"] = float(slope)
    return out


def _is_positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _positive_int(arch: Mapping[str, Any], key: str) -> int:
    v = arch.get(key)
    if not _is_positive_int(v):
        raise SoundharvestError(f"architecture.{key} = {v!r}: give a positive integer")
    return int(v)


def _positive_ints(arch: Mapping[str, Any], key: str, what: str) -> list[int]:
    v = arch.get(key)
    if not isinstance(v, list | tuple) or not v or not all(_is_positive_int(x) for x in v):
        raise SoundharvestError(
            f"architecture.{key} = {v!r}: give a non-empty list of positive {what}"
        )
    return [int(x) for x in v]


def _check_logconv(arch: dict[str, Any]) -> None:
    arch["channels"] = _positive_ints(arch, "channels", "channel counts")
    for key in ("kernel", "bins_per_octave", "context", "context_stride"):
        arch[key] = _positive_int(arch, key)
    fmin, fmax = arch["fmin"], arch["fmax"]
    if not isinstance(fmin, int | float) or isinstance(fmin, bool) or fmin <= 0:
        raise SoundharvestError(f"architecture.fmin = {fmin!r}: give a frequency > 0 Hz")
    if fmax is not None and (not isinstance(fmax, int | float) or fmax <= fmin):
        raise SoundharvestError(
            f"architecture.fmax = {fmax!r}: give a frequency above fmin ({fmin} Hz) or null"
        )
    arch["fmin"] = float(fmin)
    arch["fmax"] = None if fmax is None else float(fmax)
    if arch["bin_hz"] is not None:
        arch["bin_hz"] = [float(f) for f in arch["bin_hz"]]


#: Model types that take windows of several frames (``architecture.context`` > 1): those that
#: do not reconstruct their input (the decoder mirrors a single frame).
CONTEXT_TYPES = ("random", "contrastive", "classifier")


def context_span(frames: int, stride: int) -> int:
    """Frames a window of ``frames`` frames ``stride`` apart covers, first to last."""
    return (int(frames) - 1) * int(stride) + 1
