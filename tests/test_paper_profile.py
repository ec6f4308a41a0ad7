"""A dry run of the paper profile: its protocol end to end on the mock releases of every dataset.

The 17 mock releases (anomclip.data.mock_releases, synthetic images in each dataset's published layout)
are written under a DATA_ROOT, one folder is left out, and Table 3's medical auxiliary set is
built from the ColonDB mock release as docs/datasets.md says. ``get_profile("paper", root)``
must detect and prepare every dataset, report the missing one, and the protocol — tune on MVTec
AD → evaluate the rest, tune on VisA → MVTec AD, tune on ColonDB+Endo → the medical sets —
must give image metrics where they are defined, pixel metrics where they are defined and
notes otherwise (tiny random backbone, 1 epoch: the numbers themselves mean nothing).
"""
from __future__ import annotations

import math
import shutil
import warnings

import numpy as np
import pytest

from anomclip.data import mock_releases
from anomclip.data.catalogue import DATASETS as PAPER_TABLE
from anomclip.data.catalogue import MEDICAL_AUX
from anomclip.engine.features import FeatureCache
from anomclip.engine.metrics import UndefinedMetricWarning
from anomclip.engine.profiles import get_profile
from anomclip.engine.runner import run_experiment
from anomclip.recipes import smoke

LEFT_OUT = "tn3k"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("DATA_ROOT")
    mock_releases.write_all(root)
    shutil.rmtree(root / LEFT_OUT)
    # Table 3's auxiliary set, the folder layout of docs/datasets.md: ColonDB's polyps with their
    # masks as anomalous, normal endoscopy images (here: the BrainMRI mock release's no/ folder)
    aux = root / MEDICAL_AUX.folder / "colon"
    colondb = root / "colondb" / mock_releases.COLONDB_WRAPPER  # as PraNet's TestDataset unpacks
    shutil.copytree(colondb / "images", aux / "anomalous")
    shutil.copytree(colondb / "masks", aux / "masks")
    shutil.copytree(root / "brainmri" / mock_releases.BRAINMRI_WRAPPER / "no", aux / "normal")
    (root / MEDICAL_AUX.folder / mock_releases.SYNTHETIC_MARKER).write_text("synthetic\n")
    return root


def test_missing_dataset_is_skipped_with_its_folder_and_source(data_root):
    P = get_profile("paper", data_root)
    left = next(d for d in PAPER_TABLE if d.key == LEFT_OUT)
    assert set(P.missing) == {left.name}
    assert str(data_root / LEFT_OUT) in P.missing[left.name] and left.source in P.missing[left.name]
    assert set(P.datasets) == {d.name for d in PAPER_TABLE if d.key != LEFT_OUT} | {MEDICAL_AUX.name}
    assert P.synthetic and all(spec.synthetic for spec in P.datasets.values())


def test_protocol_of_the_paper(data_root):
    P = get_profile("paper", data_root)
    industrial_and_medical = [d.name for d in PAPER_TABLE if d.key not in ("mvtec", LEFT_OUT)]
    assert sorted(P.protocol["MVTec AD"]) == sorted(industrial_and_medical)
    assert P.protocol["VisA"] == ["MVTec AD"]
    # Table 3: the auxiliary set's prompts are evaluated on every medical dataset but CVC-ColonDB, its source
    assert P.protocol[MEDICAL_AUX.name] == [d.name for d in PAPER_TABLE
                                            if d.domain == "medical" and d.key not in (LEFT_OUT, "colondb")]
    assert "CVC-ColonDB" in P.protocol["MVTec AD"]
    assert P.train_for("BTAD").name == "MVTec AD" and P.train_for("MVTec AD").name == "VisA"


def test_a_profile_with_a_subset_only(tmp_path):
    mock_releases.write_mock_release("isic", tmp_path / "isic")
    (tmp_path / "btad" / "notes").mkdir(parents=True)  # a folder holding no dataset
    P = get_profile("paper", tmp_path)
    assert list(P.datasets) == ["ISIC"] and P.protocol == {} and len(P.missing) == 16
    assert "could not be prepared" in P.missing["BTAD"] and "matches none of the known layouts" in P.missing["BTAD"]


def test_the_protocol_runs_end_to_end_on_every_mock_release(data_root, tmp_path):
    P = get_profile("paper", data_root)
    recipe = smoke("official", image_size=64, epochs=1)
    cache = FeatureCache(tmp_path / "features")
    results = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for src, targets in P.protocol.items():
            exp = run_experiment(recipe, P.datasets[src], [P.datasets[t] for t in targets], tmp_path / "runs",
                                 device="cpu", progress=False, cache=cache)
            results.update({(src, t): exp.results[t] for t in targets})
    # structural undefinedness is said once per dataset in the notes, never as warning spam
    assert not [w for w in caught if issubclass(w.category, UndefinedMetricWarning)]
    assert len(results) == len(P.protocol["MVTec AD"]) + 1 + len(P.protocol[MEDICAL_AUX.name])
    by_name = {d.name: d for d in PAPER_TABLE}
    for (src, name), doc in results.items():
        d = by_name[name]
        mean, notes = doc["mean"], " | ".join(doc["notes"])
        if d.image_metrics:
            assert math.isfinite(mean["image_auroc"]) and math.isfinite(mean["image_ap"]), (src, name)
        else:
            assert math.isnan(mean["image_auroc"]) and "image metrics (AUROC, AP) are not defined" in notes
        if d.pixel_metrics:  # every category, also those with an anomalous image without a mask
            for cat, m in doc["categories"].items():
                assert math.isfinite(m["pixel_auroc"]) and math.isfinite(m["pixel_aupro"]), (src, name, cat)
        else:
            assert math.isnan(mean["pixel_auroc"]) and "pixel metrics are not defined" in notes
        if d.pixel_metrics and d.key not in ("sdd", "visa"):  # every other mock release lacks one mask
            assert "without a mask left out" in notes, (src, name, notes)


@pytest.mark.slow  # three methods through the whole protocol
@pytest.mark.parametrize("name", ["crane", "adaptclip", "musc"])
def test_the_later_methods_run_the_protocol_on_every_mock_release(data_root, tmp_path, name):
    """Crane and AdaptCLIP train on the mock tuning releases and are evaluated on every other one;
    MuSc (nothing to train) scores every release category by category."""
    P = get_profile("paper", data_root)
    recipe = smoke(name, image_size=64, epochs=1)
    cache = FeatureCache(tmp_path / "features")
    results = {}
    for src, targets in P.protocol.items():
        exp = run_experiment(recipe, P.datasets[src], [P.datasets[t] for t in targets], tmp_path / "runs",
                             device="cpu", progress=False, cache=cache)
        assert (exp.checkpoint is not None) == (name != "musc")
        results.update({(src, t): exp.results[t] for t in targets})
    assert len(results) == len(P.protocol["MVTec AD"]) + 1 + len(P.protocol[MEDICAL_AUX.name])
    by_name = {d.name: d for d in PAPER_TABLE}
    for (src, target), doc in results.items():
        assert doc["provenance"]["recipe"]["method"] == name
        d = by_name[target]
        if d.image_metrics:
            assert math.isfinite(doc["mean"]["image_auroc"]), (src, target)
        if d.pixel_metrics:
            assert math.isfinite(doc["mean"]["pixel_auroc"]), (src, target)


# --------------------------------------------------------------------------- incomplete ground truth


class _FakeFeatures:
    """What ``evaluate`` reads of a FeatureSet: labels, masks, which have masks, categories."""

    def __init__(self, labels, masks, has_mask, cats):
        self.labels, self.masks, self.has_mask = np.asarray(labels), np.asarray(masks), np.asarray(has_mask)
        self._cats = cats

    def categories(self):
        return self._cats


def _pixel_auroc_brute_force(maps: np.ndarray, masks: np.ndarray) -> float:
    """P(score of an anomalous pixel > score of a normal one) + 1/2 P(tie), by counting pairs."""
    pos, neg = maps[masks > 0].ravel(), maps[masks == 0].ravel()
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (pos.size * neg.size))


def test_an_anomalous_image_without_mask_is_left_out_of_pixel_metrics(monkeypatch):
    """Own data: 2 normal images, 2 anomalous with masks, 1 anomalous without. Pixel metrics
    are those of the 4 images with (all-zero or real) masks; image metrics use all 5."""
    from types import SimpleNamespace

    from anomclip.engine import evaluate as E

    rng = np.random.default_rng(0)
    n, size = 5, 6
    labels = np.array([0, 0, 1, 1, 1])
    masks = np.zeros((n, size, size), np.uint8)
    masks[2, 1:3, 1:4] = 1
    masks[3, 3:5, 2:5] = 1
    has_mask = np.array([True, True, True, True, False])  # the last anomalous image has none
    maps = rng.random((n, size, size)).astype(np.float32)
    maps[4] = 0.0  # would count as a perfectly normal map if it were (wrongly) used with a zero mask
    scores = np.array([0.1, 0.4, 0.3, 0.8, 0.9])
    monkeypatch.setattr(E, "predict_features", lambda model, feats, idx, *a, **k: (scores[idx], maps[idx]))
    model = SimpleNamespace(prompt_learner=SimpleNamespace(eval=lambda: None))
    feats = _FakeFeatures(labels, masks, has_mask, {"own": np.arange(n)})
    res = E.evaluate(model, feats, progress=False)
    m = res.categories["own"]
    assert m["pixel_auroc"] == pytest.approx(_pixel_auroc_brute_force(maps[:4], masks[:4]))
    # image AUROC over all 5: pairs (normal, anomalous) with anomalous scored higher: 5 of 6
    assert m["image_auroc"] == pytest.approx(5 / 6)
    assert any("pixel metrics over the 4 images with a mask; 1 anomalous image without a mask left out"
               in note for note in res.notes)


def test_the_profile_says_which_prepared_datasets_differ_from_table_6(tmp_path):
    """A mock release has a few images, not Table 6's counts: preparing it leaves one line in the profile."""
    mock_releases.write_mock_release("headct", tmp_path / "headct")
    mock_releases.write_mock_release("isic", tmp_path / "isic")
    P = get_profile("paper", tmp_path, results_dir=tmp_path / "results")
    assert len(P.notes) == 2
    heads = {d.name: d for d in PAPER_TABLE}
    for name, note in zip(("HeadCT", "ISIC"), P.notes):
        d = heads[name]
        assert note.startswith(f"{name}: ") and f"{d.normal} + {d.anomalous}" in note
    again = get_profile("paper", tmp_path, results_dir=tmp_path / "results")  # meta.json kept: nothing re-prepared
    assert again.notes == []
