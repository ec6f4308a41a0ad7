"""Chapter 16's answers: threshold verdicts, layer similarity, the seed table, the thread links."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

from anomclip.book import questions as Q
from anomclip.engine.runner import SeededExperiment
from anomclip.engine.seeds import seed_summary


def _frame(rng, n, cats=("a", "b")):
    return pd.DataFrame({"category": rng.choice(list(cats), n), "label": rng.integers(0, 2, n),
                         "score": rng.uniform(0, 1, n)})


def test_verdict_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    s, y = rng.uniform(0, 1, 50), rng.integers(0, 2, 50)
    got = Q.verdict_metrics(s, y, 0.4)
    pred = s >= 0.4
    assert got["precision"] == pytest.approx(precision_score(y, pred))
    assert got["recall"] == pytest.approx(recall_score(y, pred))
    assert got["f1"] == pytest.approx(f1_score(y, pred))
    assert got["normal flagged"] == pytest.approx(pred[y == 0].mean())
    assert np.isnan(Q.verdict_metrics(s, y, 2.0)["precision"]) and Q.verdict_metrics(s, y, 2.0)["f1"] == 0


def test_threshold_table_applies_each_rule_as_chosen_on_its_reference():
    rng = np.random.default_rng(4)
    ref, test = _frame(rng, 40), _frame(rng, 60)
    table = Q.threshold_table(test, [("max", "max-normal", "global", ref), ("per cat", "quantile:0.5", "category", ref),
                                     ("f1", "f1", "global", ref)])
    normal = ref[ref.label == 0]
    t = np.nextafter(normal.score.max(), np.inf)  # written out: just above the largest normal score
    assert table.loc["max", "recall"] == pytest.approx(recall_score(test.label, test.score >= t))
    per_cat = test.category.map(normal.groupby("category").score.quantile(0.5))
    assert table.loc["per cat", "f1"] == pytest.approx(f1_score(test.label, test.score >= per_cat))
    assert table.loc["max", "reference images"] == len(normal) and table.loc["f1", "reference images"] == len(ref)
    # f1: brute force over the reference's cut points, the smallest t of the best F1 there
    f1s = {c: f1_score(ref.label, ref.score >= c) for c in ref.score}
    t_f1 = min(c for c, v in f1s.items() if v == max(f1s.values()))
    assert table.loc["f1", "f1"] == pytest.approx(f1_score(test.label, test.score >= t_f1))


def test_layer_similarity_is_the_mean_cosine_of_the_same_patch():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 4, 8)), rng.normal(size=(3, 4, 8))
    sim = Q.layer_similarity({6: a, 12: b, 18: 2 * a})
    want = np.mean([np.dot(a[i, p], b[i, p]) / np.linalg.norm(a[i, p]) / np.linalg.norm(b[i, p])
                    for i in range(3) for p in range(4)])
    assert sim.loc[6, 12] == pytest.approx(want) and sim.loc[12, 6] == pytest.approx(want)
    assert sim.loc[6, 18] == pytest.approx(1.0) and sim.loc[12, 12] == pytest.approx(1.0)


def test_seed_table_shows_each_seed_with_its_interval_and_the_spread():
    class Run:
        def __init__(self, v):
            self.results = {"d": {"mean": {"image_auroc": v}, "categories": {},
                                  "intervals": {"mean": {"image_auroc": [v - 0.01, v + 0.02]}}}}
    runs = {0: Run(0.80), 1: Run(0.90), 2: Run(0.85)}
    seeded = SeededExperiment(runs, {"d": seed_summary({s: r.results["d"] for s, r in runs.items()})})
    table = Q.seed_table(seeded, "d", ["image_auroc"])
    assert table.loc["image_auroc", "seed 1"] == "90.0 [89.0, 92.0]"
    assert table.loc["image_auroc", "mean ± std"] == f"85.0 ± {100 * np.std([0.8, 0.9, 0.85], ddof=1):.1f}"


def test_thread_links():
    assert Q.thread_links([33, 7]) == ("[#33](https://github.com/zqhang/AnomalyCLIP/issues/33), "
                                       "[#7](https://github.com/zqhang/AnomalyCLIP/issues/7)")


def test_maps_with_and_without_the_redundant_term(tmp_path):
    """The paper's map is the model's; the other is scipy's Gaussian of Σ S_a (written out here)."""
    from scipy.ndimage import gaussian_filter

    from anomclip.data.synth import make_synthetic
    from anomclip.engine.features import FeatureCache, extract_features
    from anomclip.engine.loading import build_model
    from anomclip.engine.runner import DataSpec
    from anomclip.recipes import smoke

    roots = make_synthetic(tmp_path / "s", n_normal=1, n_anomalous=1, size=96)
    model = build_model(smoke("paper"))  # four layers: the sum runs over several
    feats = extract_features(model, DataSpec(str(roots["objects"]), "o", categories=("disc",)).samples(),
                             FeatureCache(tmp_path / "f"), progress=False)
    paper, alone = Q.maps_with_and_without_term(model, feats, [0, 1])
    with torch.no_grad():
        g, f, _, _, names, _ = feats.batch(np.array([0, 1]), "cpu")
        out = model.score_features(g, f, model.text_for(names))
    assert np.array_equal(paper, out.anomaly_map.numpy())
    s_a = sum(p[:, 1].numpy().astype(np.float64) for p in out.layer_probs.values())
    want = np.stack([gaussian_filter(m, model.recipe.sigma) for m in s_a])
    assert np.abs(alone - want).max() < 1e-5
    assert np.abs(paper - alone).max() < 1e-5  # S_n + S_a = 1: the term adds nothing


def test_the_questions_chapter_has_its_own_part_after_chapter_15(tmp_path):
    from anomclip.book import build as book

    (tmp_path / "chapters").mkdir()
    for n in ("15_b.ipynb", "16_c.ipynb"):
        (tmp_path / "chapters" / n).write_text("{}")
    toc = book.write_toc(tmp_path).read_text()
    assert toc.index("chapters/15_b") < toc.index("caption: Questions people ask") < toc.index("chapters/16_c")
