"""anomclip.book.diagnostics.defect_shift against cosine distances written out in the test."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from anomclip.book.diagnostics import defect_shift
from anomclip.data.preprocess import CLIP_MEAN, CLIP_STD
from anomclip.data.synth import defect_pairs
from anomclip.engine.loading import build_model
from anomclip.recipes import smoke


def preprocess(a: np.ndarray, size: int) -> torch.Tensor:
    x = np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC), np.float64) / 255.0
    return torch.from_numpy(((x - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1).astype(np.float32))


def cos_dist(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 1 - float(a @ b) / (np.sqrt(a @ a) * np.sqrt(b @ b))


def most_covered_cell(mask: np.ndarray, grid: int) -> int:
    """Brute force: the cell (row-major) with the largest fraction of mask pixels."""
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((grid * 8, grid * 8), Image.NEAREST)) > 0
    cover = [m[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].mean() for r in range(grid) for c in range(grid)]
    return int(np.argmax(cover))


@pytest.fixture(scope="module")
def setup():
    model = build_model(smoke("official"))
    pairs = [p for p in defect_pairs(n_per_category=3, size=96) if p["category"] in ("weave", "disc")]
    return model, pairs, defect_shift(model, pairs)


def test_rows_and_columns(setup):
    _, _, df = setup
    assert list(df.columns) == ["domain", "category", "feature", "shift", "spread", "ratio"]
    assert sorted(zip(df["category"], df["feature"])) == [("disc", "global"), ("disc", "patch"),
                                                          ("weave", "global"), ("weave", "patch")]


def test_values_match_cosine_distances_computed_directly(setup):
    model, pairs, df = setup
    size = model.image_size
    for category in ("weave", "disc"):
        group = [p for p in pairs if p["category"] == category]
        with torch.no_grad():
            gn, pn = model.encode_image(torch.stack([preprocess(p["normal"], size) for p in group]))
            gd, pd_ = model.encode_image(torch.stack([preprocess(p["defective"], size) for p in group]))
        pn, pd_ = pn["vv"], pd_["vv"]  # the official recipe: V-V DPAM, patch features of the last block
        layer = max(pn)
        pn, pd_ = pn[layer].numpy(), pd_[layer].numpy()
        grid = int(round(pn.shape[1] ** 0.5))
        n = len(group)
        cells = [most_covered_cell(p["mask"], grid) for p in group]
        expect = {
            "global": (np.mean([cos_dist(gn[i], gd[i]) for i in range(n)]),
                       np.mean([cos_dist(gn[i], gn[(i + 1) % n]) for i in range(n)])),
            "patch": (np.mean([cos_dist(pn[i, c], pd_[i, c]) for i, c in enumerate(cells)]),
                      np.mean([cos_dist(pn[i, c], pn[(i + 1) % n, c]) for i, c in enumerate(cells)])),
        }
        for feature, (shift, spread) in expect.items():
            row = df[(df["category"] == category) & (df["feature"] == feature)].iloc[0]
            # float32 features: cosine distances near 0 carry ~1e-6 of round-off
            assert row["shift"] == pytest.approx(shift, abs=2e-5, rel=1e-3)
            assert row["spread"] == pytest.approx(spread, abs=2e-5, rel=1e-3)
            assert row["ratio"] == pytest.approx(shift / spread, rel=1e-3)  # from the distances above


def test_smoke_defects_move_the_patch_features_more_than_the_global_one():
    """Why smoke maps transfer and smoke image scores don't (chapter 4, issue note): measured."""
    df = defect_shift(build_model(smoke("official")), defect_pairs(n_per_category=4, size=96))
    ratio = df.groupby("feature")["ratio"].median()
    assert ratio["patch"] > 1 > ratio["global"], ratio.to_dict()
    assert ratio["patch"] > 10 * ratio["global"], ratio.to_dict()
