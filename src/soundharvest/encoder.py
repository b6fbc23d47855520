"""The encoder: how frames become codes, for every stage that encodes.

A model's encoder is its trained weights (:func:`load_model`), or the identity for the ``raw``
baseline, whose codes are the feature frames themselves. A model with context T > 1
(``architecture.context``) encodes windows of T frames ``context_stride`` apart; a sequence of
consecutive frames (a file, a note, a clip) gets one code per frame, that of the window that
starts there (:func:`encode_sequence`). :class:`Encoder` holds that choice once: the predictor,
the evaluation's embedding, the training samples and the label-noise report all encode through
it, in batches bounded by :data:`ENCODE_BATCH_BYTES`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .io import Pathlike, SoundharvestError, atomic_path
from .models import build_model, context_of, context_span, window_index


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if present, else CPU; otherwise the named device (checked)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SoundharvestError(f"device = {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SoundharvestError(f"device = {device!r}: no CUDA GPU here; use auto or cpu")
    return dev


def save_weights(model: nn.Module, path: Pathlike, meta: Mapping[str, Any]) -> None:
    """Write ``model``'s weights (float32 safetensors) with ``meta`` under key ``soundharvest``,
    atomically: what :func:`load_model` reads back."""
    from safetensors.torch import save_file

    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"soundharvest": json.dumps(meta, sort_keys=True)})


def load_model(
    weights_path: Pathlike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild a model from a weights file written by :func:`soundharvest.train.train`.

    :param weights_path: the ``.safetensors`` file.
    :param device: where to put the model.
    :return: ``(model in eval mode, metadata dict)``; the metadata holds model_type, arch,
        in_dim, frames_seen, seed and the caller's ``extra`` metadata (feature kind, params).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(weights_path)
    if not path.is_file():
        raise SoundharvestError(f"{path}: weights file not found; run the train stage")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("soundharvest")
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SoundharvestError(f"{path}: not a readable safetensors file ({e}); retrain") from None
    if raw is None:
        raise SoundharvestError(f"{path}: no 'soundharvest' metadata; not written by train()")
    meta = json.loads(raw)
    model = build_model(
        meta["model_type"],
        int(meta["in_dim"]),
        meta["arch"],
        int(meta["seed"]),
        normalize=meta.get("normalize", "none"),
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise SoundharvestError(
            f"{path}: weights do not fit the architecture in its metadata ({e})"
        ) from None
    return model.to(resolve_device(device)).eval(), meta


#: Bytes one batch of encoding may hold in its widest layer's activations. With the logconv
#: front end a fixed 65,536 frames a batch held 2 GB per conv layer (32 channels x 255 log bins
#: x 4 bytes a frame) and ``label_clusters`` peaked at 7.2 GB; sized by bytes, every stage that
#: encodes stays within a few hundred MB whatever the model.
ENCODE_BATCH_BYTES = 64 << 20


def encode_batch(model: nn.Module, batch_size: int = 65536) -> int:
    """Datapoints (windows for a model with context) per forward pass of :func:`encode`: at
    most ``batch_size`` frames, and no more than :data:`ENCODE_BATCH_BYTES` of activations in
    the encoder's widest layer (:func:`soundharvest.models.activation_floats`)."""
    from .models import activation_floats

    t, _ = context_of(model)
    by_bytes = ENCODE_BATCH_BYTES // (4 * max(1, activation_floats(model)))
    return max(1, min(int(batch_size) // t, by_bytes))


@torch.inference_mode()
def encode(model: nn.Module, frames: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Latent codes of ``frames`` (``(n, in_dim)``, e.g. a memmap), batched, without gradients.

    :param model: a model with ``encode`` (from :func:`load_model` or :func:`build_model`).
    :param frames: float16/float32 array of frames in [0, 1]; for a model with context T > 1
        (``architecture.context``), windows ``(n, T, in_dim)``.
    :param batch_size: frames per forward pass at most (fewer where the encoder's activations
        would pass :data:`ENCODE_BATCH_BYTES`: :func:`encode_batch`).
    :return: float32 array ``(n, latent)``.
    """
    model.eval()
    device = next(model.parameters()).device
    frames = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    t, _ = context_of(model)
    want = (model.in_dim,) if t == 1 else (t, model.in_dim)
    if frames.ndim != 1 + len(want) or frames.shape[1:] != want:
        raise SoundharvestError(
            f"frames: shape {frames.shape}, the model expects (n, {', '.join(map(str, want))}); "
            "use frames of the feature kind the model was trained on"
            + ("" if t == 1 else " (a sequence of frames: encode_sequence)")
        )
    out = np.empty((frames.shape[0], model.latent_dim), dtype=np.float32)
    step = encode_batch(model, batch_size)
    for a in range(0, frames.shape[0], step):
        x = torch.from_numpy(np.array(frames[a : a + step], dtype=np.float32)).to(device)
        out[a : a + x.shape[0]] = model.encode(x).float().cpu().numpy()
    return out


def encode_sequence(model: nn.Module, frames: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """One code per frame of a sequence of consecutive frames (a file, a note, a clip).

    A single-frame model encodes each frame; a model with context T > 1 encodes the window
    that starts at each frame (T frames ``context_stride`` apart, the last frame repeated past
    the end of the sequence), the datapoint it was trained on. The windows are gathered one
    batch at a time (:func:`encode_batch`), so a memmap of any length costs no more memory
    than its codes.

    :param frames: ``(n, in_dim)`` consecutive frames.
    :return: float32 array ``(n, latent)``.
    """
    t, stride = context_of(model)
    if t == 1:
        return encode(model, frames, batch_size)
    frames = np.asarray(frames)
    if frames.ndim != 2:
        raise SoundharvestError(f"frames: shape {frames.shape}, expected a sequence (n, bins)")
    n = frames.shape[0]
    out = np.empty((n, model.latent_dim), dtype=np.float32)
    step = encode_batch(model, batch_size)
    for a in range(0, n, step):
        idx = window_index(np.arange(a, min(n, a + step)), n, t, stride)
        out[a : a + len(idx)] = encode(model, frames[idx], batch_size)
    return out


class Encoder:
    """A model's encoder, or the identity (``model=None``: the codes are the frames).

    :param model: a model with ``encode`` (:func:`load_model`, :func:`~soundharvest.models.
        build_model`), or ``None``.
    :param meta: the weights' metadata (model type, arch, in_dim, ``extra``).
    """

    def __init__(self, model: nn.Module | None = None, meta: Mapping[str, Any] | None = None):
        self.model = model
        self.meta = dict(meta or {})
        self.context, self.stride = context_of(model) if model is not None else (1, 1)

    @classmethod
    def load(cls, weights: Pathlike | None, device: str | torch.device = "cpu") -> Encoder:
        """The encoder of a weights file, or the identity for ``None``."""
        if weights is None:
            return cls()
        return cls(*load_model(weights, device=device))

    @property
    def identity(self) -> bool:
        return self.model is None

    @property
    def span(self) -> int:
        """Consecutive frames one datapoint covers (1 for single frames)."""
        return context_span(self.context, self.stride)

    def dim(self, in_dim: int) -> int:
        """Dimension of the codes of ``in_dim``-bin frames."""
        return int(in_dim) if self.model is None else int(self.model.latent_dim)

    def encode(self, datapoints: np.ndarray) -> np.ndarray:
        """Codes of datapoints: frames ``(n, bins)``, or windows ``(n, T, bins)`` for a model
        with context (:func:`encode`); the frames themselves (float32) for the identity."""
        if self.model is None:
            return np.asarray(datapoints, dtype=np.float32)
        return encode(self.model, datapoints)

    def encode_sequence(self, frames: np.ndarray) -> np.ndarray:
        """One code per frame of consecutive frames (:func:`encode_sequence`)."""
        if self.model is None:
            return np.asarray(frames, dtype=np.float32)
        return encode_sequence(self.model, frames)
