"""The student benchmark's measures: Fréchet distance and within-digit spread; its flags."""

import numpy as np
import pytest

from benchmarks import bench_student


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_shifted_one():
    features = np.random.default_rng(0).normal(size=(500, 4))
    features -= features.mean(axis=0)
    assert bench_student.frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    shifted = features + np.array([3.0, 0, 0, 4.0])
    assert bench_student.frechet_distance(shifted, features) == pytest.approx(25.0, rel=1e-6)
    wider = features * 2  # covariance x4: Tr(4S + S - 2 * 2S) = Tr(S)
    assert bench_student.frechet_distance(wider, features) == pytest.approx(np.trace(np.cov(features.T)), rel=1e-6)


def test_within_digit_spread_falls_to_zero_when_a_digit_collapses():
    rng = np.random.default_rng(1)
    labels = [0] * 50 + [1] * 50
    varied = rng.normal(size=(100, 3))
    collapsed = np.concatenate([np.zeros((50, 3)), varied[50:]])
    digit_one = np.sqrt(((varied[50:] - varied[50:].mean(axis=0)) ** 2).sum(axis=1).mean())
    assert bench_student.within_digit_spread(collapsed, labels) == pytest.approx(digit_one / 2, rel=1e-9)
    assert bench_student.within_digit_spread(np.zeros((100, 3)), labels) == 0


def test_bad_runs_are_refused():
    with pytest.raises(ValueError, match="teacher\\|student"):
        bench_student.parse_args(["--real_data", "x", "--runs", "teacher:dpm"])
