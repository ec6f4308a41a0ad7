"""What chapter 16 ("Questions people ask") computes: each answer a tested function of the runs.

* :func:`image_scores` — every image's score, label and category of a feature set;
* :func:`verdict_metrics` / :func:`threshold_table` — precision, recall and F1 of the verdict
  ``score ≥ threshold`` for threshold rules chosen on reference images (:mod:`anomclip.engine.thresholds`);
* :func:`layer_similarity` — the mean cosine similarity of the patch features of two layers
  (is DPAM making the layer 6/12/18/24 features identical?);
* :func:`maps_with_and_without_term` — the anomaly map as the paper writes it, ½(1 − S_n) + ½ S_a
  per layer, and with S_a alone (issue #68: is the first term redundant?);
* :func:`seed_table` — per seed value [interval], and mean ± std over seeds;
* :data:`THREADS` — the threads of zqhang/AnomalyCLIP each question comes from.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..engine.evaluate import predict_features
from ..engine.intervals import format_interval
from ..engine.seeds import format_spread
from ..engine.thresholds import Reference, parse_rule, thresholds
from ..model.scoring import gaussian_blur

#: the authors' issue tracker
TRACKER = "https://github.com/zqhang/AnomalyCLIP/issues"


def thread_links(numbers) -> str:
    """``[#33](…/issues/33), [#7](…/issues/7)``: the threads as Markdown links."""
    return ", ".join(f"[#{n}]({TRACKER}/{n})" for n in numbers)


def image_scores(model, features, batch_size: int = 16) -> pd.DataFrame:
    """One row per image of ``features``: category, label (1 anomalous), score (the model's image score)."""
    idx = np.arange(len(features))
    scores, _ = predict_features(model, features, idx, batch_size)
    cats = np.empty(len(features), dtype=object)
    for c, rows in features.categories().items():
        cats[np.asarray(rows)] = c
    return pd.DataFrame({"category": cats, "label": np.asarray(features.labels).astype(int),
                         "score": scores.astype(np.float64)})


def verdict_metrics(scores, labels, threshold) -> dict:
    """Precision, recall and F1 of "anomalous when score ≥ threshold", and the share of normal images
    flagged. ``threshold``: a number, or an array of one threshold per image. Precision is NaN when
    nothing is flagged (F1 is then 0 when anomalies exist)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pred = s >= np.asarray(threshold, dtype=np.float64)
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1,
            "normal flagged": fp / int((~y).sum()) if (~y).any() else float("nan")}


def _reference(frame: pd.DataFrame, kind: str) -> Reference:
    return Reference(kind, ".", [""] * len(frame), frame["label"].to_numpy(), list(frame["category"]))


def threshold_table(test: pd.DataFrame, choices) -> pd.DataFrame:
    """One row per threshold choice: its verdicts' precision, recall, F1 on ``test`` (:func:`image_scores`).

    ``choices``: ``[(label, rule text, scope, reference frame of image_scores)]``; the rule is
    chosen on the reference with :func:`anomclip.engine.thresholds.thresholds` (a category of the
    test set that the category scope did not see is an error there)."""
    rows = []
    for label, rule_text, scope, ref in choices:
        rule = parse_rule(rule_text)
        values = thresholds(rule, scope, _reference(ref, "labelled" if rule.needs == "labelled" else "normal"),
                            ref["score"].to_numpy())
        per_image = (np.full(len(test), values["*"]) if scope == "global"
                     else test["category"].map(values).to_numpy(dtype=np.float64))
        rows.append({"threshold": label, "rule": str(rule), "scope": scope,
                     "reference images": int(len(ref) if rule.needs == "labelled" else (ref["label"] == 0).sum()),
                     **verdict_metrics(test["score"], test["label"], per_image)})
    return pd.DataFrame(rows).set_index("threshold")


def layer_similarity(by_layer: dict) -> pd.DataFrame:
    """``{layer: [N, P, D] patch features}`` → the mean over images and patches of the cosine
    similarity of the same patch at two layers, as a layer × layer table (1.0 on the diagonal)."""
    layers = sorted(by_layer)
    unit = {l: torch.nn.functional.normalize(torch.from_numpy(np.array(by_layer[l], dtype=np.float64)), dim=-1)
            for l in layers}
    out = pd.DataFrame(index=layers, columns=layers, dtype=float)
    for a in layers:
        for b in layers:
            out.loc[a, b] = float((unit[a] * unit[b]).sum(-1).mean())
    out.index.name = "layer"
    return out


def seed_table(seeded, dataset: str, metrics) -> pd.DataFrame:
    """Rows: metrics; columns: each seed's value [bootstrap 95 % interval], then mean ± std over seeds."""
    summary = seeded.summary[dataset]
    rows = {}
    for m in metrics:
        row = {}
        for s, exp in seeded.experiments.items():
            doc = exp.results[dataset]
            row[f"seed {s}"] = format_interval(doc["mean"].get(m), ((doc.get("intervals") or {}).get("mean") or {}).get(m))
        row["mean ± std"] = format_spread(summary["mean"][m]) if m in summary["mean"] else "–"
        rows[m] = row
    return pd.DataFrame(rows).T


def maps_with_and_without_term(model, features, idx, sigma: float | None = None):
    """``(paper's map, S_a-only map)``, ``[n, S, S]`` each, of the images ``idx`` of ``features``:
    the model's own map, G_σ(Σ_m ½(1 − S_n,m) + ½ S_a,m), and G_σ(Σ_m S_a,m) from the same per-layer
    probabilities."""
    sigma = model.recipe.sigma if sigma is None else sigma
    with torch.no_grad():
        g, feats, _, _, cls_names, _ = features.batch(np.asarray(idx), model.device)
        out = model.score_features(g, feats, model.text_for(cls_names), sigma=sigma)
        alone = gaussian_blur(sum(p[:, 1] for p in out.layer_probs.values()), sigma)
    return out.anomaly_map.float().cpu().numpy(), alone.float().cpu().numpy()
