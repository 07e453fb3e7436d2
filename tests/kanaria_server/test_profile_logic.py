"""Pure logic of reference profiles and PSI (no server)."""

from __future__ import annotations

import numpy as np
import pytest
from kanaria_server.errors import ModelLoadError
from kanaria_server.model import Signature, TensorSpec
from kanaria_server.profile import (
    MAX_PER_FEATURE,
    build_input_profile,
    build_profile,
    parse_profile,
    psi,
)

RNG = np.random.default_rng(0)


def test_same_distribution_low_psi_shifted_high() -> None:
    ref = RNG.standard_normal((5000, 4))
    prof = build_input_profile(ref)
    assert psi(prof.expected, prof.counts(RNG.standard_normal((5000, 4)))) < 0.02
    assert psi(prof.expected, prof.counts(RNG.standard_normal((5000, 4)) + 0.5)) > 0.2


def test_drift_in_one_feature_is_not_diluted() -> None:
    prof = build_input_profile(RNG.standard_normal((5000, 8)))
    live = RNG.standard_normal((5000, 8))
    live[:, 5] += 1.0
    assert psi(prof.expected, prof.counts(live)) > 0.2


def test_nan_is_ignored_and_empty_window_is_zero() -> None:
    prof = build_input_profile(RNG.standard_normal((1000, 2)))
    counts = prof.counts(np.full((10, 2), np.nan))
    assert counts.sum() == 0
    assert psi(prof.expected, counts) == 0.0


def test_wide_inputs_are_pooled() -> None:
    prof = build_input_profile(RNG.standard_normal((20, MAX_PER_FEATURE + 1)))
    assert prof.pooled
    assert prof.features == 1


def test_profile_must_match_the_model() -> None:
    doc = build_profile({"x": RNG.standard_normal((100, 3))})
    sig = Signature((TensorSpec("x", "FP32", (-1, 4)),), ())
    with pytest.raises(ModelLoadError, match="profiled with 3 features, the model's input has 4"):
        parse_profile(doc, sig, "p.json")
    with pytest.raises(ModelLoadError, match="does not have"):
        parse_profile(doc, Signature((TensorSpec("y", "FP32", (-1, 3)),), ()), "p.json")
    with pytest.raises(ModelLoadError, match="not a Kanaria profile"):
        parse_profile({"format": "other"}, sig, "p.json")
