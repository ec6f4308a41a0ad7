"""``anomclip predict`` at folder scale: streamed batches, one fixed colour scale, mirrored folders.

Most tests drive :func:`anomclip.engine.predict.predict_images` with a stub model whose maps
the test chooses, so the expected overlay colours are computed here from the colour map alone;
the batch-size test uses the real tiny backbone and scores every image on its own as reference.
"""
from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from anomclip.cli import main
from anomclip.data.preprocess import image_to_tensor, read_image
from anomclip.engine import predict as P
from anomclip.engine.loading import build_model
from anomclip.recipes import smoke


class StubModel:
    """A method whose map is ``value × layers`` everywhere (plus ``noise``): what it means is known."""

    def __init__(self, value=0.6, layers=(2, 4, 6, 8), noise=1e-3, size=32, on_batch=None):
        self.value, self.layers, self.noise, self.image_size = value, tuple(layers), noise, size
        self.device = torch.device("cpu")
        self.info = SimpleNamespace(weights="stub")
        self.on_batch = on_batch
        self.batches = []

    def text_for(self, cls_names=None):
        return torch.zeros(2, 4)

    def encode_image(self, x):
        self.batches.append(len(x))
        if self.on_batch:
            self.on_batch()
        return x.mean(dim=(1, 2, 3)), {}

    def score_features(self, g, feats, text):
        b, s = len(g), self.image_size
        rng = np.random.default_rng(len(self.batches))
        amap = self.value * len(self.layers) + self.noise * rng.standard_normal((b, s, s))
        return SimpleNamespace(image_score=torch.sigmoid(g), anomaly_map=torch.from_numpy(amap).float())


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def noise_image(seed, h=40, w=50):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_a_flat_image_gives_a_flat_overlay_on_the_fixed_scale(tmp_path):
    grey = write_png(tmp_path / "in" / "grey.png", np.full((64, 80, 3), 128, np.uint8))
    model = StubModel(value=0.6, noise=1e-3)  # a map of 2.4 over 4 layers: 0.6 each, ± 0.001
    rows = P.predict_images(lambda: model, [grey], tmp_path / "out", None, "object", echo=lambda s: None)
    overlay = np.asarray(Image.open(rows[0]["overlay"])).astype(np.float64)
    assert overlay.shape == (64, 80, 3)
    assert overlay.std(axis=(0, 1)).max() < 1.0  # flat: per-image min–max would stretch ±0.001 to a rainbow
    expected = 0.5 * 128 + 0.5 * 255 * np.asarray(matplotlib.colormaps["jet"](0.6)[:3])
    assert np.abs(overlay.mean(axis=(0, 1)) - expected).max() < 1.5  # the colour of 0.6, not of 2.4 (clipped)
    doc = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert doc["colour_scale"]["min"] == 0 and doc["colour_scale"]["max"] == 1 and doc["colour_scale"]["layers"] == 4
    assert abs(doc["predictions"][0]["map_max"] - 0.6) < 0.01
    legend = Image.open(tmp_path / "out" / "colour_scale.png")
    assert legend.size[0] > legend.size[1]  # written once, beside the overlays


def test_masks_threshold_the_mean_over_layers(tmp_path):
    img = write_png(tmp_path / "in" / "a.png", noise_image(0))
    for value, expected in ((0.3, 0), (0.7, 255)):  # map 1.2 or 2.8 over 4 layers, threshold 0.5
        out = tmp_path / f"out{value}"
        rows = P.predict_images(lambda: StubModel(value=value, noise=0), [img], out, 0.5, "x", echo=lambda s: None)
        mask = np.asarray(Image.open(rows[0]["mask"]))
        assert mask.shape == (40, 50) and set(np.unique(mask)) == {expected}


def test_a_folder_is_searched_recursively_and_its_tree_mirrored(tmp_path):
    src = tmp_path / "in"
    files = ["top.png", "x/one.png", "x/y/two.jpg", "z/one.png"]
    for i, rel in enumerate(files):
        write_png(src / rel, noise_image(i))
    (src / "x" / "readme.txt").write_text("not an image")
    write_png(src / ".hidden" / "h.png", noise_image(9))
    out = tmp_path / "out"
    model = StubModel()
    rows = P.predict_images(lambda: model, [src], out, 0.5, "x", echo=lambda s: None, batch_size=3)
    assert sorted(Path(r["image"]).relative_to(src.resolve()).as_posix() for r in rows) == sorted(files)
    for rel in files:
        stem = rel.rsplit(".", 1)[0]
        assert (out / f"{stem}_overlay.png").is_file() and (out / f"{stem}_mask.png").is_file(), rel
    assert model.batches == [3, 1]
    # the output folder inside the input folder is not read back as input
    rows = P.predict_images(lambda: StubModel(), [src], src / "pred", None, "x", echo=lambda s: None)
    assert len(rows) == len(files)


def test_only_one_batch_of_images_is_held(tmp_path):
    for i in range(10):
        write_png(tmp_path / "in" / f"{i}.png", noise_image(i))
    alive: list = []
    real_read = P.read_image

    def tracked(p):
        img = real_read(p)
        alive.append(weakref.ref(img))
        return img

    held = []

    def count():
        gc.collect()
        held.append(sum(r() is not None for r in alive))

    P_read = pytest.MonkeyPatch()
    P_read.setattr(P, "read_image", tracked)
    try:
        P.predict_images(lambda: StubModel(on_batch=count), [tmp_path / "in"], tmp_path / "out", None, "x",
                         echo=lambda s: None, batch_size=3)
    finally:
        P_read.undo()
    assert len(alive) == 20  # each image decoded twice: checked, then predicted
    assert max(held) <= 3 + 1  # this batch (and at most the last image of the one before)


def test_batch_sizes_give_the_scores_of_images_scored_one_by_one(tmp_path):
    paths = [write_png(tmp_path / "in" / f"{i}.png", noise_image(i, 48 + 8 * i, 64)) for i in range(5)]
    model = build_model(smoke("official"), "cpu")
    model.prompt_learner.eval()
    with torch.no_grad():  # the reference: the model's forward on each image alone
        alone = [float(model(image_to_tensor(read_image(p), model.image_size)[None], cls_names=["object"])
                       .image_score[0]) for p in paths]
    got = {}
    for b in (1, 4):
        rows = P.predict_images(lambda: model, paths, tmp_path / f"out{b}", None, "object", echo=lambda s: None,
                                batch_size=b)
        got[b] = [r["score"] for r in rows]
    np.testing.assert_allclose(got[1], alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got[4], got[1], rtol=0, atol=1e-6)  # equal to float32 rounding of batched matmuls


def test_a_bad_file_stops_before_anything_is_written(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    for i in range(3):
        write_png(src / "sub" / f"{i}.png", noise_image(i))
    bad = src / "sub" / "zz_broken.png"
    bad.write_bytes(noise_image(0).tobytes()[:100])
    monkeypatch.setattr("anomclip.engine.loading.build_model", lambda *a, **k: pytest.fail("model loaded"))
    out = tmp_path / "out"
    code = main(["predict", "--out", str(out), str(src)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "zz_broken.png" in err and "Traceback" not in err, err
    assert not out.exists()
    empty = tmp_path / "empty"
    (empty / "deep").mkdir(parents=True)
    assert main(["predict", "--out", str(out), str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no images" in err and str(empty) in err
    assert main(["predict", "--out", str(out), "--batch-size", "0", str(src / "sub" / "0.png")]) == 2
    assert "--batch-size" in capsys.readouterr().err and not out.exists()
