"""Own data without masks: training uses the image-level loss alone; asking for pixel metrics is one line."""
from __future__ import annotations

import dataclasses
import shutil
import warnings

import numpy as np
import pytest
import torch

from anomclip.cli import main


@pytest.fixture(scope="module")
def maskless(tmp_path_factory):
    """``<cls>/normal``, ``<cls>/anomalous`` copied from the synthetic data, without any mask."""
    from anomclip.data.synth import make_synthetic

    tmp = tmp_path_factory.mktemp("own")
    synth = make_synthetic(tmp / "synth", n_normal=3, n_anomalous=3, size=32)
    root = tmp / "mine"
    for kind, pattern in (("normal", "capsule/test/good/*.png"), ("anomalous", "capsule/test/[!g]*/*.png")):
        (root / "capsule" / kind).mkdir(parents=True)
        for i, p in enumerate(sorted(synth["objects"].glob(pattern))):
            shutil.copy(p, root / "capsule" / kind / f"{i}.png")
    assert main(["prepare", root]) == 0
    return root


def test_pixel_metrics_on_data_without_masks_are_refused_in_one_line(maskless, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "r.json"
    assert main(["eval", "--data", maskless, "--metrics", "pixel", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no masks" in err and "--metrics image" in err
    assert not out.exists()


@pytest.mark.slow
def test_training_without_masks_is_training_with_the_image_level_loss_alone(maskless, tmp_path):
    from anomclip.data.dataset import load_index
    from anomclip.engine.features import FeatureCache, extract_features
    from anomclip.engine.loading import build_model
    from anomclip.engine.train import train
    from anomclip.recipes import get_recipe, smoke

    samples = [s for v in load_index(maskless, "test").values() for s in v]
    assert any(s.anomaly for s in samples) and not any(s.mask_path for s in samples)
    recipe = smoke(get_recipe("official")).with_(epochs=1, batch_size=4)
    cache = FeatureCache(tmp_path / "cache")
    prompts = {}
    for name, r in (("ours", recipe), ("global only", recipe.with_(use_focal_loss=False, use_dice_loss=False)),
                    ("glocal", None)):
        model = build_model(r or recipe, "cpu")
        feats = extract_features(model, samples, cache, progress=False)
        if r is None:  # the same images, as if their (empty) masks were known: the local loss counts
            feats = dataclasses.replace(feats, has_mask=np.ones(len(samples), bool))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = train(model, feats, progress=False)
        prompts[name] = [p.detach().clone() for p in model.trainable_parameters()]
        if name == "ours":
            assert all(h["local"] == 0.0 for h in res.history)
    assert all(torch.equal(a, b) for a, b in zip(prompts["ours"], prompts["global only"]))
    assert not all(torch.equal(a, b) for a, b in zip(prompts["ours"], prompts["glocal"]))


def test_a_batch_mixing_masked_and_maskless_images_weights_its_two_losses_by_size():
    from types import SimpleNamespace

    from anomclip.engine.train import _split_loss, image_level_only

    labels = np.array([0, 1, 1, 1, 0, 1])
    has_mask = np.array([True, True, False, True, True, False])  # images 2 and 5: anomalous, no mask
    feats = SimpleNamespace(labels=labels, has_mask=has_mask,
                            batch=lambda sel, device: (torch.tensor(sel, dtype=torch.float64), None,
                                                       torch.tensor(labels[sel]), None, None, sel))

    class Stub:  # global: mean image index, local: 100 + the number of images
        def training_loss(self, g, feats, labels, masks, names):
            glob, local = g.mean(), torch.tensor(100.0 + len(g), dtype=torch.float64)
            return {"total": glob + local, "global": glob, "local": local}

    assert image_level_only(feats).tolist() == [False, False, True, False, False, True]
    idx = np.array([0, 1, 2, 5])
    out = _split_loss(Stub(), feats, idx, image_level_only(feats)[idx], "cpu")
    whole, alone = (0 + 1) / 2 + 102.0, (2 + 5) / 2  # masked part: global + local; maskless: global only
    assert float(out["total"]) == pytest.approx((2 * whole + 2 * alone) / 4)
    assert float(out["global"]) == pytest.approx((2 * 0.5 + 2 * 3.5) / 4)
    assert float(out["local"]) == pytest.approx(2 * 102.0 / 4)
    no_masks = SimpleNamespace(labels=labels, has_mask=labels == 0)  # no anomalous image has a mask
    assert image_level_only(no_masks).all()


def test_runs_on_data_without_masks_are_keyed_apart_from_runs_before_the_image_level_rule(maskless, tmp_path):
    """Training on anomalous images without masks changed (image-level loss alone): such a run's
    key says so, so a run stored before the change is not reused; data with masks keeps its keys."""
    import json

    from anomclip.data.synth import make_synthetic
    from anomclip.engine.features import FeatureCache
    from anomclip.engine.runner import DataSpec, run_experiment
    from anomclip.recipes import smoke

    cache = FeatureCache(tmp_path / "features")
    masked = make_synthetic(tmp_path / "synth", n_normal=2, n_anomalous=2, size=32)["objects"]
    recipe = smoke("official", epochs=1)
    materials = {}
    for name, root in (("mine", maskless), ("masked", masked)):
        exp = run_experiment(recipe, DataSpec(str(root), name), [DataSpec(str(root), name)], tmp_path / "store",
                             progress=False, cache=cache, device="cpu")
        materials[name] = json.loads((exp.folder / "run.json").read_text())["material"]
    assert materials["mine"]["without_masks"] == "image-level loss"
    assert "without_masks" not in materials["masked"]
