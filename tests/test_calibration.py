"""Temperature scaling and the expected calibration error, on synthetic frames whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from lusviewer.training.calibration import (
    T_MAX,
    T_MIN,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability,
    softmax,
)


def _calibrated(n: int = 20000, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true class distribution each target is drawn from."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, classes))
    p = softmax(logits)
    targets = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return logits, np.minimum(targets, classes - 1)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_a_known_temperature_is_recovered(true_t: float) -> None:
    logits, targets = _calibrated()
    over = logits * true_t  # over-confident (T > 1) or under-confident (T < 1) by true_t
    fitted = fit_temperature(over, targets)
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert nll(over, targets, fitted) < nll(over, targets, 1.0)
    # the fit is the minimum: either side is worse
    assert nll(over, targets, fitted) <= min(nll(over, targets, fitted * 1.1), nll(over, targets, fitted / 1.1))


def test_a_calibrated_model_has_ece_near_zero_and_t_near_one() -> None:
    logits, targets = _calibrated()
    assert expected_calibration_error(softmax(logits), targets) < 0.02
    assert fit_temperature(logits, targets) == pytest.approx(1.0, rel=0.05)


def test_ece_drops_after_fitting() -> None:
    logits, targets = _calibrated(seed=1)
    over = logits * 3.0
    before = expected_calibration_error(softmax(over), targets)
    after = expected_calibration_error(softmax(over, fit_temperature(over, targets)), targets)
    assert before > 0.1 and after < 0.02


def test_argmax_is_kept() -> None:
    logits, _ = _calibrated(n=100)
    assert np.array_equal(softmax(logits, 4.0).argmax(1), logits.argmax(1))


def test_ece_by_hand() -> None:
    # two bins: confidences 0.6 (1 of 2 right) and 0.9 (2 of 2 right)
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1], [0.1, 0.9]])
    targets = np.array([0, 1, 0, 1])
    _, _, count = reliability(probs, targets, bins=2)
    assert list(count) == [0, 4]  # 0.6 and 0.9 both fall in (0.5, 1]
    conf, acc, count = reliability(probs, targets, bins=10)
    assert count[5] == 2 and count[8] == 2 and acc[5] == 0.5 and acc[8] == 1.0
    assert conf[5] == pytest.approx(0.6) and conf[8] == pytest.approx(0.9) and np.isnan(acc[0])
    assert expected_calibration_error(probs, targets, bins=10) == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)


def test_fit_stays_within_its_bounds() -> None:
    # every frame right with a margin: the NLL falls all the way to T -> 0
    logits = np.tile([[5.0, 0.0, 0.0, 0.0]], (50, 1))
    assert fit_temperature(logits, np.zeros(50, np.int64)) == pytest.approx(T_MIN)
    # logits that say nothing about the targets (each frame's class is the wrong one): T -> large
    assert fit_temperature(logits, np.ones(50, np.int64)) == pytest.approx(T_MAX)


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (np.zeros((3,)), np.zeros(3, np.int64), "frames, classes"),
        (np.zeros((0, 4)), np.zeros(0, np.int64), "frames, classes"),
        (np.zeros((3, 4)), np.zeros(2, np.int64), "one class per frame"),
        (np.zeros((3, 4)), np.array([0, 1, 4]), "from 0 to 3"),
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), "whole class numbers"),
        (np.array([[0.0, np.nan], [0.0, 1.0]]), np.array([0, 1]), "finite"),
    ],
)
def test_bad_input_is_one_clear_error(logits: np.ndarray, targets: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, targets)
