"""Plot helpers: grid and figure sizes, seed curves, the Figure E1 difference, PNG output."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from reverie.report.plot import (
    DPI,
    bars_size,
    figure_size,
    grid_shape,
    normalized_difference,
    plot_bars,
    seed_curves,
)
from reverie.report.rundirs import Run


def _run(tmp_path, rows):
    return Run(tmp_path, "atari_pong", 0, 4, rows)


def test_grid_is_at_most_four_wide():
    assert [grid_shape(n) for n in (1, 3, 4, 5, 9)] == [(1, 1), (1, 3), (1, 4), (2, 4), (3, 4)]
    assert figure_size(2) == (8.0, 3.7) and figure_size(5) == (16.0, 6.7)


def test_seed_curves_average_evals_and_seeds(tmp_path):
    # Seed a: two eval episodes at 100 frames (mean 2) and one at 200; seed b is a constant 0.
    a = _run(tmp_path, [{"frames": 100, "eval/return": 1}, {"frames": 100, "eval/return": 3},
                        {"frames": 200, "eval/return": 4}])
    b = _run(tmp_path, [{"frames": 100, "eval/return": 0}, {"frames": 200, "eval/return": 0}])
    x, mean, std = seed_curves([a, b], "eval/return", points=3)
    assert x.tolist() == [100, 150, 200]
    # Two seeds: the sample std of (a, 0) is |a| / √2.
    assert mean == pytest.approx([1.0, 1.5, 2.0]) and std == pytest.approx([2 / 2**0.5, 3 / 2**0.5, 4 / 2**0.5])
    assert seed_curves([b], "train/image_loss") is None


def test_normalized_difference_is_in_gamer_units():
    # Figure E1: difference of gamer-normalised scores; Pong gamer − random = 15 − (−21) = 36.
    assert normalized_difference("Pong", 20, 10) == pytest.approx(10 / 36)
    assert normalized_difference("Pong", 5, 5) == 0.0
    assert normalized_difference("James Bond", 40445, 3166) == pytest.approx((40445 - 3166) / 22)


def test_bars_png_has_expected_size(tmp_path):
    out = plot_bars({"Pong": 20, "Breakout": 400, "Boxing": 50}, "rainbow", tmp_path / "bars.png")
    height, width = imread(out).shape[:2]
    assert (width, height) == tuple(round(v * DPI) for v in bars_size(3)) == (700, 225)
    assert np.asarray(imread(out)).std() > 0  # not a blank image
