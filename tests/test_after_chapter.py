"""Chapter 15 (After AnomalyCLIP): its reader of the published numbers, its method list, its cost
measurements and the sentences it generates (expectations written by hand from the inputs)."""
from __future__ import annotations

import csv
from importlib import resources
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from anomclip.bench.cost import TensorMemory, peak_memory, rescaled
from anomclip.book import after
from anomclip.book.reference import published_long


def _csv_rows(name):
    with resources.files("anomclip.book.reference").joinpath(name).open() as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- published numbers
def test_published_long_reads_the_paper_and_the_later_methods():
    d = published_long()
    one = d.set_index(["label", "dataset", "metric"])["value"]
    # the paper's Table 1 (docs/after-anomalyclip.md quotes them: MVTec AD 91.5 / 96.2 image, 91.1 / 81.4 pixel)
    assert one[("AnomalyCLIP", "MVTec AD", "image_auroc")] == 91.5
    assert one[("AnomalyCLIP", "MVTec AD", "image_ap")] == 96.2
    assert one[("AnomalyCLIP", "MVTec AD", "pixel_auroc")] == 91.1
    assert one[("AnomalyCLIP", "MVTec AD", "pixel_aupro")] == 81.4
    rows = _csv_rows("after_anomalyclip.csv")
    crane = next(r for r in rows if r["method"] == "Crane" and r["dataset"] == "MVTec AD"
                 and (r["level"], r["metric"]) == ("image", "AUROC"))
    got = d[(d["label"] == "Crane") & (d["dataset"] == "MVTec AD") & (d["metric"] == "image_auroc")]
    assert got["value"].tolist() == [float(crane["value"])] and got["setting"].tolist() == [crane["setting"]]
    assert crane["commit"][:7] in got["source"].iloc[0]
    # MuSc: the README's comparison row ("paper") where there is one, else its per-category mean ("code")
    musc = {(r["dataset"], r["level"], r["metric"], r["variant"]): float(r["value"])
            for r in rows if r["method"] == "MuSc"}
    m = d[d["label"] == "MuSc"].set_index(["dataset", "metric"])["value"]
    assert m[("MVTec AD", "image_auroc")] == musc[("MVTec AD", "image", "AUROC", "paper")]
    assert ("BTAD", "image", "AUROC", "paper") not in musc
    assert m[("BTAD", "image_auroc")] == musc[("BTAD", "image", "AUROC", "code")]
    assert not d.duplicated(["label", "dataset", "metric"]).any()
    assert set(d["metric"]) <= {"image_auroc", "image_ap", "pixel_auroc", "pixel_aupro"}  # no F1-max


def test_published_long_keeps_the_methods_asked_for():
    d = published_long(["Crane", "CLIP", "NoSuchMethod"])
    assert set(d["label"]) == {"Crane", "CLIP"}
    # Tables 1 and 2 only: CLIP's 7 industrial + 10 medical datasets
    assert d.loc[d["label"] == "CLIP", "dataset"].nunique() == 17


# --------------------------------------------------------------------------- the methods
def test_methods_present_follows_the_registry(monkeypatch):
    from anomclip.recipes import METHODS, MethodInfo

    p = after.methods_present()
    assert list(p["recipe"][:6]) == ["clip", "clip-ac", "winclip", "vand", "coop", "official"]
    assert bool(p.set_index("recipe").loc["musc", "transductive"]) is True
    assert not p.set_index("recipe").loc[["official", "crane"], "transductive"].any()
    assert list(p.loc[~p["in_paper"], "label"])[:1] == ["Crane"]
    # a method registered later appears without an edit; one without a class does not
    extra = dict(METHODS)
    extra["newone"] = MethodInfo("newone", "official", "NewOne", True, in_paper=False)
    extra["noclass"] = MethodInfo("noclass", "clip", "NoClass", False, in_paper=False)
    monkeypatch.setattr(after, "METHODS", extra)
    monkeypatch.setattr(after, "CLASSES", {**after.CLASSES, "newone": type("NewOne", (), {"transductive": True})})
    labels = list(after.methods_present()["label"])
    assert labels[-1] == "NewOne" and "NoClass" not in labels
    assert list(after.methods_present(["musc", "clip", "nope"])["label"]) == ["MuSc", "CLIP"]


def test_category_set_alternates_anomalous_and_normal():
    s = [SimpleNamespace(name=n, anomaly=n.startswith("b")) for n in ("g1", "b1", "g2", "g3", "b2", "g4")]
    assert [x.name for x in after.category_set(s, 5)] == ["b1", "g1", "b2", "g2", "g3"]
    assert [x.name for x in after.category_set(s, 10)] == ["b1", "g1", "b2", "g2", "g3", "g4"]
    assert [x.name for x in after.category_set(s[:1], 3)] == ["g1"]


# --------------------------------------------------------------------------- sentences
def _frame(rows):
    return pd.DataFrame(rows, columns=["label", "dataset", "metric", "value"])


def test_gains_and_their_sentence():
    f = _frame([("A", "D1", "image_auroc", 90.0), ("A", "D1", "pixel_auroc", 80.0), ("A", "D2", "image_auroc", 70.0),
                ("R", "D1", "image_auroc", 85.0), ("R", "D1", "pixel_auroc", 81.0), ("R", "D2", "image_auroc", 60.0),
                ("R", "D3", "image_auroc", 50.0), ("A", "D4", "image_auroc", 99.0)])
    g = after.gains(f, "A", "R")
    assert g["pairs"] == 3 and g["higher"] == 2 and g["values"] == 4
    assert g["mean"] == pytest.approx((5 - 1 + 10) / 3)
    assert g["most"] == ("D2", "image_auroc", 10.0) and g["least"] == ("D1", "pixel_auroc", -1.0)
    c = after.gains_sentence(g, "A", "R")
    assert c.case == "most"
    assert "A is above R on 2 of the 3 (dataset, metric) pairs in common (2 datasets)" in c.text
    assert "+4.7 points on average" in c.text and "+10.0 points (image AUROC on D2)" in c.text
    assert "-1.0 (pixel AUROC on D1)" in c.text


def test_gains_sentence_cases():
    f = _frame([("A", "D1", "image_auroc", 90.0), ("A", "D1", "image_ap", 80.0),
                ("R", "D1", "image_auroc", 85.0), ("R", "D1", "image_ap", 70.0), ("R", "D9", "image_ap", 70.0),
                ("B", "D1", "image_auroc", 60.0), ("B", "D1", "image_ap", 60.0), ("C", "D5", "image_ap", 1.0),
                ("E", "D1", "image_auroc", 99.0), ("E", "D1", "image_ap", 10.0), ("E", "D9", "image_ap", 10.0)])
    assert after.gains_sentence(after.gains(f, "A", "R"), "A", "R").case == "all"
    assert after.gains_sentence(after.gains(f, "B", "R"), "B", "R").case == "never"
    assert after.gains_sentence(after.gains(f, "E", "R"), "E", "R").case == "some"  # 1 of 3: not more than half
    none = after.gains_sentence(after.gains(f, "C", "R"), "C", "R")
    assert none.case == "none" and "no published number on a common dataset" in none.text
    absent = after.gains_sentence(after.gains(f, "Z", "R"), "Z", "R")
    assert absent.case == "absent" and "Z has no published number" in absent.text
    one = after.gains_sentence(after.gains(f.iloc[[0, 2]], "A", "R"), "A", "R")
    assert one.case == "all" and "A is above R on the one (dataset, metric) pair in common (1 dataset): " \
                                 "+5.0 points (image AUROC on D1)." in one.text
    lower = after.gains_sentence(after.gains(f.iloc[[5, 2]], "B", "R"), "B", "R")
    assert lower.case == "never" and "B is not above R on the one (dataset, metric) pair" in lower.text
    every = after.gains_sentence(after.gains(f, "A", "R"), "A", "R")
    assert "on each of the 2 (dataset, metric) pairs in common (1 dataset): +7.5 points on average" in every.text


def test_cost_sentence_cases():
    costs = pd.DataFrame({"trainable parameters": [100, 100, 0, 300], "s/image": [1.0, 2.0, 1.02, 0.5],
                          "peak MB": [10.0, 15.0, 10.0, 5.0]}, index=["R", "slow", "same", "fast"])
    slow = after.cost_sentence(costs, "slow", "R")
    assert slow.case == "dearer" and "2.0× the time of R" in slow.text and "1.5× its peak memory" in slow.text
    assert "100 trainable parameters (R: 100)" in slow.text
    same = after.cost_sentence(costs, "same", "R")
    assert same.case == "same" and "about as long as R" in same.text and "nothing trained (R: 100" in same.text
    fast = after.cost_sentence(costs, "fast", "R")
    assert fast.case == "cheaper" and "0.50× the time of R" in fast.text and "0.50× its peak memory" in fast.text
    assert after.cost_sentence(costs, "gone", "R").case == "missing"
    as_set = after.cost_sentence(costs, "slow", "R", set_of=8)
    assert "per image (scoring the 8 images as one set" in as_set.text


def test_smoke_note_never_ranks():
    assert after.smoke_ranking_note(True).case == "smoke" and "rank nothing" in after.smoke_ranking_note(True).text
    assert after.smoke_ranking_note(False).case == "real"


# --------------------------------------------------------------------------- measurements
def test_tensor_memory_counts_each_new_storage_while_it_lives():
    with TensorMemory() as m:
        a = torch.ones(1000)  # 4000 B
        b = torch.ones(2000, dtype=torch.float64)  # 16000 B
        del a
        c = torch.ones(500)  # 2000 B: a is gone by then
    assert m.peak == 4000 + 16000 and m.current == 16000 + 2000
    del b, c


def test_tensor_memory_ignores_views_inplace_and_earlier_tensors():
    w = torch.ones(10_000)  # allocated before: not counted, even through views and in-place updates
    with TensorMemory() as m:
        v = w[:100]
        w.add_(1)
        v.mul_(2)
        t = w.t()
        y = w[:250] * 2  # one new storage of 250 floats
    assert m.peak == 1000 and m.current == 1000
    del v, t, y


def test_peak_memory_on_cpu_returns_the_result():
    out, peak, how = peak_memory(lambda: torch.zeros(3, 1000) + 1, "cpu")
    # zeros (12000 B) and the sum (12000 B) alive together; then the zeros are freed
    assert out.shape == (3, 1000) and peak == 24000 and "CPU" in how


def test_rescaled_maps_the_whole_set_to_0_1():
    m = np.array([[[1.0, 3.0]], [[2.0, 5.0]]])
    r = rescaled(m)
    np.testing.assert_allclose(r, [[[0.0, 0.5]], [[0.25, 1.0]]])
    assert r.dtype == np.float32
    assert not rescaled(np.full((2, 3, 3), 7.0)).any()


# --------------------------------------------------------------------------- the table of contents
def test_the_chapter_has_its_own_part(tmp_path):
    from anomclip.book import build as book

    (tmp_path / "chapters").mkdir()
    for n in ("14_a.ipynb", "15_b.ipynb"):
        (tmp_path / "chapters" / n).write_text("{}")
    toc = book.write_toc(tmp_path).read_text()
    assert toc.index("caption: Cost, failures") < toc.index("chapters/14_a") < toc.index("caption: After AnomalyCLIP")
    assert toc.index("caption: After AnomalyCLIP") < toc.index("chapters/15_b")


@pytest.mark.slow  # three methods built on the tiny CLIP: about 5 s
def test_method_cost_measures_a_method_on_a_set(tiny_clip):
    from anomclip.bench.cost import method_cost
    from anomclip.methods.registry import build_method
    from anomclip.recipes import smoke

    clip_model, tokenizer, info = tiny_clip
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    for name in ("official", "clip", "musc"):
        model = build_method(smoke(name), clip_model, tokenizer, info)
        c = method_cost(model, x, ["object"] * 3, "cpu", repeats=1)
        want = sum(p.numel() for p in model.prompt_learner.parameters() if p.requires_grad)
        assert c["trainable_parameters"] == want and (want > 0) == (name == "official")
        assert c["images"] == 3 and c["maps"].shape == (3, 96, 96) and c["scores"].shape == (3,)
        # the maps are made inside the measured call and are alive at its end
        assert c["peak_bytes"] >= 3 * 96 * 96 * 4
        assert c["weights_bytes"] >= 4 * sum(p.numel() for p in clip_model.parameters())
        with torch.no_grad():  # the maps are the method's own, unchanged
            g, feats = model.encode_image(x)
            ref = model.score_features(g, feats, model.text_for(["object"] * 3)).anomaly_map
        np.testing.assert_allclose(c["maps"], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_every_registered_method_has_its_own_colour():
    from anomclip.book.plots import colour

    labels = list(after.methods_present()["label"])
    got = {lb: colour(lb) for lb in labels}
    assert None not in got.values() and len(set(got.values())) == len(labels), got
