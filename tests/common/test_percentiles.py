"""One percentile definition: numpy's linear interpolation, nan for no values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.percentiles import percentile


def test_percentile_matches_numpy() -> None:
    xs = [3.0, 1.0, 7.5, 2.2, 9.9, 4.4, 0.1]
    for q in (0, 50, 90, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert math.isnan(percentile([], 50))
