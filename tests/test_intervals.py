"""Bootstrap intervals (anomclip.engine.intervals) against a brute-force resampling loop written here.

The loop draws the documented indices itself, copies the resampled scores / maps and calls
sklearn on each copy (AUPRO: ``metrics.aupro``, itself checked against a per-threshold
reference in test_metrics.py); the weighted computation must give the same numbers.
"""
from __future__ import annotations

import json
import warnings
import zlib

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from anomclip.engine import intervals as I
from anomclip.engine.metrics import aupro


def draw(labels, resamples, seed, name=""):
    """The documented draws: normal indices first, then anomalous, one generator per name."""
    y = np.asarray(labels).astype(bool)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    neg, pos = np.flatnonzero(~y), np.flatnonzero(y)
    a = neg[rng.integers(0, neg.size, (resamples, neg.size))]
    b = pos[rng.integers(0, pos.size, (resamples, pos.size))]
    return np.concatenate([a, b], axis=1)


def f1_max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    d = p + r
    return float(np.max(np.where(d > 0, 2 * p * r / np.where(d > 0, d, 1), 0.0)))


def image_data(n=40, seed=3):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    s = np.round(rng.random(n) + 0.4 * y, 1)  # rounded: many ties
    return s, y


def pixel_data(n=10, size=16, seed=5):
    rng = np.random.default_rng(seed)
    maps = np.round(rng.random((n, size, size)), 2).astype(np.float32)  # ties within and across maps
    masks = np.zeros((n, size, size), bool)
    for i in range(n // 2):
        masks[i, 2:6, 3:8] = True
        masks[i, 10:13, 9:15] = i % 2 == 0  # two regions in some maps
        maps[i][masks[i]] += np.float32(0.25)
    return maps, masks


def test_the_draws_are_the_documented_ones_and_keep_both_class_counts():
    s, y = image_data()
    idx = I.resample_indices(y, 200, 7, "bottle")
    assert np.array_equal(idx, draw(y, 200, 7, "bottle"))
    assert (y[idx].sum(axis=1) == y.sum()).all() and idx.shape == (200, y.size)  # stratified
    assert not np.array_equal(idx, I.resample_indices(y, 200, 8, "bottle"))
    assert not np.array_equal(idx, I.resample_indices(y, 200, 7, "cable"))
    w = I.multiplicities(idx, y.size)
    assert np.array_equal(w[5], np.bincount(idx[5], minlength=y.size)) and (w.sum(axis=1) == y.size).all()


def test_image_metrics_of_every_resample_equal_sklearn_on_the_copied_resample():
    s, y = image_data()
    idx = draw(y, 60, 0, "c")
    got = I.weighted_image_metrics(s, y, I.multiplicities(idx, y.size))
    for b in range(len(idx)):
        ss, yy = s[idx[b]], y[idx[b]]
        assert got["image_auroc"][b] == pytest.approx(roc_auc_score(yy, ss), abs=1e-12)
        assert got["image_ap"][b] == pytest.approx(average_precision_score(yy, ss), abs=1e-12)
        assert got["image_f1_max"][b] == pytest.approx(f1_max(yy, ss), abs=1e-12)


@pytest.mark.parametrize("chunk, ties", [(1 << 15, True), (7, True), (7, False)])
def test_pixel_metrics_resample_images_and_equal_the_metrics_of_the_copied_maps(monkeypatch, chunk, ties):
    monkeypatch.setattr(I, "_CHUNK", chunk)  # thresholds handled 7 at a time: the curves cross chunks
    maps, masks = pixel_data()
    if not ties:
        maps = maps + np.random.default_rng(9).random(maps.shape).astype(np.float32) * np.float32(1e-3)
    lab = masks.reshape(len(masks), -1).any(axis=1)
    idx = draw(lab, 25, 0, "c/pixel")
    got = I.weighted_pixel_metrics(maps, masks, I.multiplicities(idx, len(maps)))
    for b in range(len(idx)):
        m, g = maps[idx[b]], masks[idx[b]]  # an image drawn twice: all its pixels twice
        yy, ss = g.reshape(-1), m.reshape(-1).astype(np.float64)
        assert got["pixel_auroc"][b] == pytest.approx(roc_auc_score(yy, ss), abs=1e-10)
        assert got["pixel_ap"][b] == pytest.approx(average_precision_score(yy, ss), abs=1e-10)
        assert got["pixel_f1_max"][b] == pytest.approx(f1_max(yy, ss), abs=1e-10)
        assert got["pixel_aupro"][b] == pytest.approx(aupro(m, g), abs=1e-10)


def test_category_intervals_and_the_mean_are_percentiles_of_the_brute_force_values():
    boot = I.Bootstrap(resamples=200, pixel_resamples=20, level=0.9, seed=4)
    s1, y1 = image_data(30, 1)
    s2, y2 = image_data(24, 2)
    maps, masks = pixel_data(8)
    lab = masks.reshape(len(masks), -1).any(axis=1)
    per = {"a": I.category_resamples(s1, y1, boot, "a", maps, masks, lab), "b": I.category_resamples(s2, y2, boot, "b")}
    doc = I.summarize(per, boot)
    brute = {}
    for name, (s, y) in {"a": (s1, y1), "b": (s2, y2)}.items():
        brute[name] = np.array([roc_auc_score(y[i], s[i]) for i in draw(y, 200, 4, name)])
        want = np.quantile(brute[name], [0.05, 0.95])
        assert doc["categories"][name]["image_auroc"] == pytest.approx(want, abs=1e-12)
    mean = (brute["a"] + brute["b"]) / 2  # the categories' values of the same resample, averaged
    assert doc["mean"]["image_auroc"] == pytest.approx(np.quantile(mean, [0.05, 0.95]), abs=1e-12)
    px = [roc_auc_score(masks[i].reshape(-1), maps[i].reshape(-1)) for i in draw(lab, 20, 4, "a/pixel")]
    assert doc["categories"]["a"]["pixel_auroc"] == pytest.approx(np.quantile(px, [0.05, 0.95]), abs=1e-10)
    assert "pixel_auroc" not in doc["categories"]["b"]  # no maps: no pixel interval
    assert doc["mean"]["pixel_auroc"] == doc["categories"]["a"]["pixel_auroc"]  # the one category that has it
    assert doc["bootstrap"]["method"] == "bootstrap" and doc["bootstrap"]["resamples"] == 200
    assert doc["bootstrap"]["level"] == 0.9 and doc["bootstrap"]["seed"] == 4
    assert I.summarize(per, boot) == doc  # reproducible
    again = {"a": I.category_resamples(s1, y1, boot, "a", maps, masks, lab),
             "b": I.category_resamples(s2, y2, boot, "b")}
    assert I.summarize(again, boot) == doc


def test_a_single_class_gives_no_interval_and_bad_settings_are_refused():
    from anomclip.errors import AnomclipError

    s = np.linspace(0, 1, 10)
    res = I.category_resamples(s, np.ones(10), I.Bootstrap(resamples=50), "all-anomalous")
    assert np.isnan(res["image_auroc"]).all() and np.isfinite(res["image_f1_max"]).all()
    assert I.percentile_interval(res["image_auroc"], 0.95) is None
    for bad in (dict(level=1.0), dict(level=0), dict(resamples=0)):
        with pytest.raises(AnomclipError):
            I.Bootstrap(**bad)
    assert I.format_interval(0.9134, [0.9061, 0.92]) == "91.3 [90.6, 92.0]" and I.format_interval(None, None) == "–"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from anomclip.data.synth import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synth"), n_normal=4, n_anomalous=4, size=32)


@pytest.mark.slow
def test_every_evaluation_records_its_intervals_and_keeps_its_values(synth, tmp_path):
    from anomclip.engine.features import FeatureCache
    from anomclip.engine.runner import DataSpec, run_experiment
    from anomclip.recipes import get_recipe, smoke

    cache = FeatureCache(tmp_path / "cache")
    spec = DataSpec(str(synth["objects"]), "objects", categories=("capsule", "disc"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = run_experiment(smoke(get_recipe("official")), None, [spec], tmp_path / "out", device="cpu",
                             progress=False, cache=cache)  # zero-shot: untrained prompts
    doc = exp.results["objects"]
    iv = doc["intervals"]
    assert iv["bootstrap"]["method"] == "bootstrap" and iv["bootstrap"]["resamples"] == 1000
    assert iv["bootstrap"]["level"] == 0.95 and iv["bootstrap"]["seed"] == 0
    for cat, values in doc["categories"].items():  # the brute-force interval of the stored scores and labels
        s, y = np.asarray(doc["scores"][cat]), np.asarray(doc["labels"][cat]).astype(bool)
        brute = [roc_auc_score(y[i], s[i]) for i in draw(y, 1000, 0, cat)]
        assert iv["categories"][cat]["image_auroc"] == pytest.approx(np.quantile(brute, [0.025, 0.975]), abs=1e-12)
        lo, hi = iv["categories"][cat]["image_auroc"]
        assert lo <= values["image_auroc"] <= hi
    assert set(iv["mean"]) >= {"image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_aupro"}
    path = next((tmp_path / "out" / "runs").glob("*/eval-*.json"))
    stored = json.loads(path.read_text())
    assert stored["intervals"]["mean"]["image_auroc"] == iv["mean"]["image_auroc"]
    assert set(stored) >= {"categories", "mean", "notes", "provenance", "scores", "labels"}  # kept
    from anomclip.engine.results import stamped_json

    del stored["intervals"]  # a results file written before the intervals, intact: recomputed with them
    path.write_text(stamped_json(stored))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run_experiment(smoke(get_recipe("official")), None, [spec], tmp_path / "out", device="cpu",
                               progress=False, cache=cache)
    assert not again.reused and again.results["objects"]["intervals"] == iv
    assert again.results["objects"]["mean"] == pytest.approx(doc["mean"], nan_ok=True)


@pytest.mark.slow
def test_seeds_train_each_seed_through_the_store_and_report_mean_and_sample_std(synth, tmp_path, capsys):
    from anomclip.cli import main

    out = tmp_path / "seeds.json"
    argv = ["eval", "--train-data", synth["textures"], "--seeds", "0,1,2", "--data", synth["objects"],
            "--categories", "capsule", "--store", tmp_path / "store", "--out", out, "--epochs", "1",
            "--cache-dir", tmp_path / "cache"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    runs = doc["per_seed"]
    assert list(runs) == ["0", "1", "2"] and doc["seeds"]["seeds"] == [0, 1, 2]
    assert len({r["provenance"]["keys"]["run"] for r in runs.values()}) == 3  # the seed is part of the run key
    assert [r["provenance"]["recipe"]["seed"] for r in runs.values()] == [0, 1, 2]
    for k in ("image_auroc", "pixel_auroc"):
        values = [r["mean"][k] for r in runs.values()]
        assert doc["seeds"]["mean"][k]["values"] == values
        assert doc["seeds"]["mean"][k]["mean"] == pytest.approx(np.mean(values), abs=1e-12) == doc["mean"][k]
        assert doc["seeds"]["mean"][k]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert runs["0"]["intervals"]["mean"][k] is not None
    m = doc["seeds"]["mean"]["image_auroc"]
    assert f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}" in printed and "ddof=1" in printed
    assert "seed 2" in printed and "[" in printed
    with warnings.catch_warnings():  # a second call trains nothing: the three runs are in the store
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    again = json.loads(out.read_text())
    assert again["seeds"] == doc["seeds"]
    assert [r["provenance"]["created"] for r in again["per_seed"].values()] == \
           [r["provenance"]["created"] for r in runs.values()]


def test_seeds_are_checked_before_any_work(tmp_path, capsys):
    from anomclip.cli import main

    for argv, says in ((["--seeds", "0,1"], "--train-data"), (["--train-data", tmp_path, "--seeds", "0,x"], "seeds"),
                       (["--train-data", tmp_path, "--seeds", "1,1"], "distinct")):
        assert main(["eval", "--out", tmp_path / "r.json", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_run_table_with_seeds_reports_the_mean_the_sample_std_and_the_interval(synth, tmp_path):
    from types import SimpleNamespace

    from anomclip.engine.features import FeatureCache
    from anomclip.engine.run_table import run_table
    from anomclip.engine.runner import DataSpec
    from anomclip.recipes import get_recipe, smoke

    profile = SimpleNamespace(
        protocol={"textures": ["objects"]}, out=tmp_path / "out", cache=FeatureCache(tmp_path / "cache"),
        datasets={"textures": DataSpec(str(synth["textures"]), "textures", categories=("grid",)),
                  "objects": DataSpec(str(synth["objects"]), "objects", categories=("capsule",))})
    recipe = smoke(get_recipe("official")).with_(epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = run_table(profile, [("ours", recipe)], seeds=(0, 1), device="cpu")
        single = run_table(profile, [("ours", recipe)], device="cpu")
    runs = table.experiment("ours", "textures").experiments
    assert list(runs) == [0, 1] and single.experiment("ours", "textures").recipe.seed == recipe.seed
    row = table.frame.set_index("metric").loc["pixel_auroc"]
    values = [runs[s].results["objects"]["mean"]["pixel_auroc"] for s in (0, 1)]
    assert row["value"] == pytest.approx(np.mean(values), abs=1e-12)
    assert row["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12) and row["seeds"] == 2
    assert [row["low"], row["high"]] == runs[0].results["objects"]["intervals"]["mean"]["pixel_auroc"]
    one = single.frame.set_index("metric").loc["pixel_auroc"]
    stored = single.experiment("ours", "textures").results["objects"]["intervals"]["mean"]
    assert [one["low"], one["high"]] == stored["pixel_auroc"]


@pytest.mark.slow
def test_a_zero_shot_cli_eval_prints_and_writes_the_intervals(synth, tmp_path, capsys):
    from anomclip.cli import main

    out = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", "--data", synth["objects"], "--categories", "capsule", "--out", out,
                     "--cache-dir", tmp_path / "cache"]) == 0
    doc = json.loads(out.read_text())
    lo, hi = doc["intervals"]["mean"]["image_auroc"]
    shown = f"{100 * doc['mean']['image_auroc']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    printed = capsys.readouterr().out
    assert shown in printed and "1000 resamples" in printed
    assert doc["intervals"]["bootstrap"]["method"] == "bootstrap"
