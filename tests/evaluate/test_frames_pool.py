"""Tests of the evaluation pooling options: a note's loud frames and its mean code."""

from __future__ import annotations

import numpy as np
import pytest

from soundharvest.evaluate.frames import loud_frames, pool_codes
from soundharvest.io import SoundharvestError


def test_loud_frames_keeps_frames_within_window() -> None:
    energy = np.array([1e-6, 0.6, 1.0, 0.2, 0.009, 0.0])
    assert loud_frames(energy, 20.0).tolist() == [1, 2, 3]  # 0.009 is 20.5 dB down
    assert loud_frames(energy, -3.0).tolist() == [1, 2]  # sign ignored: 3 dB
    with pytest.raises(SoundharvestError, match="energy"):
        loud_frames(np.array([]))


def test_pool_codes_means_per_note() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(7, 3))
    note_of = np.array([0, 0, 1, 2, 2, 2, 1])
    pooled = pool_codes(codes, note_of, 3)
    for n in range(3):
        assert np.allclose(pooled[n], codes[note_of == n].mean(0), atol=1e-6)
    with pytest.raises(SoundharvestError, match="cover"):
        pool_codes(codes, note_of, 4)  # note 3 has no frame
