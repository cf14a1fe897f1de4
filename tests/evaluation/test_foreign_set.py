"""The foreign-data set: real photographs, a frozen split whose tuning and evaluation crops share no pixel."""

from __future__ import annotations

import numpy as np

from services.evaluation.foreign import FOREIGN_SPLITS, SIZE, TEXTURES, make_image


def test_tuning_and_eval_crops_share_no_region_of_any_photograph():
    for texture in TEXTURES:
        for kind in ("normal", "held_out", "local", "global"):
            for i in range(3):
                t = make_image(texture, "tuning", kind, i).window
                e = make_image(texture, "eval", kind, i).window
                assert t[0] + t[2] <= FOREIGN_SPLITS["tuning"]["rows"][1] <= e[0]
                assert FOREIGN_SPLITS["eval"]["rows"][0] <= e[0] and e[0] + e[2] <= FOREIGN_SPLITS["eval"]["rows"][1]


def test_splits_use_the_bench_seeds_and_are_reproducible():
    assert FOREIGN_SPLITS["tuning"]["seed"] == 0 and FOREIGN_SPLITS["eval"]["seed"] == 1000
    a, b = make_image("grass", "eval", "local", 1), make_image("grass", "eval", "local", 1)
    assert np.array_equal(a.pixels, b.pixels) and a.defect == b.defect


def test_local_defects_change_pixels_inside_their_mask_and_global_ones_everywhere():
    local = make_image("gravel", "eval", "local", 0)
    assert local.pixels.shape == (SIZE, SIZE) and 0 < local.mask.mean() < 0.05
    glob = make_image("gravel", "eval", "global", 0)
    assert glob.mask.all() and glob.kind == "global"
    assert not make_image("gravel", "eval", "held_out", 0).mask.any()
