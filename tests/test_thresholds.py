"""Thresholds of ``anomclip predict --threshold``: each rule against a simple formula written here,
what ``scores.json`` records, and bad input as one line (exit 2) with nothing already written lost."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from anomclip.cli import main
from anomclip.engine import predict as P
from anomclip.engine import thresholds as T
from anomclip.errors import AnomclipError


def brute_f1_threshold(s, y):
    """Every cut point t (each distinct score), F1 of ``s >= t``; the smallest t among the best."""
    best, best_t = -1.0, None
    for t in sorted(set(s.tolist())):
        pred = s >= t
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best:  # ascending t: ties keep the smallest
            best, best_t = f1, t
    return best_t


def test_each_rule_is_its_simple_formula():
    rng = np.random.default_rng(0)
    for trial in range(30):
        s = np.round(rng.random(25), 1 + trial % 2)  # ties
        y = rng.random(25) < 0.4
        y[:2] = [True, False]
        assert T.f1_optimal(s, y) == brute_f1_threshold(s, y)
        normal = s[~y]
        t = T.max_normal(normal)
        assert t > normal.max() and not (normal >= t).any() and np.nextafter(t, -np.inf) == normal.max()
        assert T.quantile(normal, 0.9) == np.quantile(normal, 0.9)
    assert T.choose(T.parse_rule("0.25"), []) == 0.25
    assert T.parse_rule("quantile:0.99") == T.Rule("quantile", q=0.99)
    assert str(T.parse_rule("quantile:0.5")) == "quantile:0.5"


@pytest.mark.parametrize("text", ["quantile:1.5", "quantile:x", "quantile:", "-0.1", "1.5", "max", "f1:2"])
def test_a_bad_rule_is_one_line(text):
    with pytest.raises(AnomclipError) as e:
        T.parse_rule(text)
    assert "\n" not in str(e.value) and "--threshold" in str(e.value)


def test_per_category_thresholds_use_each_categorys_images():
    ref = T.Reference("labelled", ".", ["a1", "a2", "a3", "b1", "b2", "b3"], np.array([0, 0, 1, 0, 1, 1]),
                      ["a", "a", "a", "b", "b", "b"])
    s = np.array([0.1, 0.3, 0.9, 0.2, 0.5, 0.7])
    want = {"a": np.nextafter(0.3, 1), "b": np.nextafter(0.2, 1)}
    assert T.thresholds(T.Rule("max-normal"), "category", ref, s) == want
    assert T.thresholds(T.Rule("max-normal"), "global", ref, s) == {"*": np.nextafter(0.3, 1)}
    assert T.thresholds(T.Rule("f1"), "category", ref, s) == {"a": 0.9, "b": 0.5}
    assert T.thresholds(T.Rule("quantile", q=0.5), "global", ref, s) == {"*": np.quantile([0.1, 0.3, 0.2], 0.5)}
    one_class = T.Reference("labelled", ".", ["a1", "a2"], np.array([0, 0]), ["a", "a"])
    with pytest.raises(AnomclipError, match="f1 needs normal and anomalous"):
        T.thresholds(T.Rule("f1"), "global", one_class, [0.1, 0.2])


class Stub:
    """Image score = the mean grey level of the input tensor's first pixel row, known to the test."""

    layers, image_size, device, info = (1,), 16, torch.device("cpu"), SimpleNamespace(weights="stub")

    def text_for(self, names=None):
        return None

    def encode_image(self, x):
        return x[:, 0, 0, :].mean(dim=1), {}

    def score_features(self, g, feats, text):
        return SimpleNamespace(image_score=g, anomaly_map=torch.zeros(len(g), 16, 16))


def grey(path: Path, level: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), level, np.uint8)).save(path)
    return path


def test_max_normal_judges_every_normal_image_normal_and_records_its_choice(tmp_path):
    normal = [grey(tmp_path / "normal" / f"n{i}.png", 40 + 30 * i) for i in range(4)]
    tests = [grey(tmp_path / "test" / f"t{i}.png", lv) for i, lv in enumerate((20, 200, 250))]
    plan = P.ThresholdPlan(T.Rule("max-normal"), "global", normal=tmp_path / "normal")
    rows = P.predict_images(lambda: Stub(), [tmp_path / "normal", tmp_path / "test"], tmp_path / "out", None, "x",
                            echo=lambda s: None, plan=plan)
    score = {Path(r["image"]).name: r["score"] for r in rows}
    t = np.nextafter(max(score[p.name] for p in normal), np.inf)
    assert all(r["anomalous"] == (r["score"] >= t) for r in rows)
    assert [score[p.name] >= t for p in tests] == [False, True, True] and not any(score[p.name] >= t for p in normal)
    doc = json.loads((tmp_path / "out" / "scores.json").read_text())["threshold"]
    assert doc["rule"] == "max-normal" and doc["scope"] == "global" and doc["thresholds"] == {"*": t}
    assert doc["from"]["images"] == 4 and doc["from"]["kind"] == "normal"
    assert sorted(doc["from"]["paths"]) == sorted(str(p.resolve()) for p in normal)
    assert doc["from"]["digest"].startswith("sha256:")
    grey(tmp_path / "normal" / "n0.png", 41)  # another normal image: another digest
    again = P.ThresholdPlan(T.Rule("max-normal"), "global", normal=tmp_path / "normal")
    assert again.ref.digest() != doc["from"]["digest"]


def test_bad_threshold_input_is_one_line_exit_2_and_nothing_written_is_lost(tmp_path, capsys):
    img = grey(tmp_path / "in" / "a.png", 100)
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores.json").write_text("earlier")
    for args, says in ((["--threshold", "quantile:1.5", "--normal", tmp_path / "in"], "quantile"),
                       (["--threshold", "f1", "--normal", tmp_path / "in"], "--labelled"),
                       (["--threshold", "max-normal", "--normal", tmp_path / "empty"], "no images"),
                       (["--threshold", "max-normal"], "--normal"),
                       (["--threshold", "max-normal", "--normal", tmp_path / "nowhere"], "does not exist"),
                       (["--normal", tmp_path / "in"], "--threshold")):
        assert main(["predict", "--out", out, *args, img]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err
    assert (out / "scores.json").read_text() == "earlier" and sorted(p.name for p in out.iterdir()) == ["scores.json"]
