"""MuSc (anomclip.methods.musc) against expectations written here from its equations.

Every expectation is computed independently in the test: the LayerNorm over [C, H, W] and the
r × r neighbourhood mean as explicit loops, the nearest-patch distances as a plain loop over
images and patches, RsCIN by hand on a toy set. The side-by-side with the authors' code is
tools/musc_side_by_side.py (docs/after-anomalyclip.md, MuSc).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from anomclip import AnomclipError
from anomclip.methods.musc import aggregate, interval_positions, mutual_scores, parse_k, rscin
from anomclip.recipes import get_recipe, smoke


def _layer_norm_by_hand(x):  # x [C, H, W]: one mean and one variance over all of it
    mean = x.mean()
    var = ((x - mean) ** 2).mean()
    return (x - mean) / torch.sqrt(var + 1e-5)


def _aggregate_by_hand(tokens, r):
    """tokens [B, P, C] → [B, P, C]: LayerNorm per image over C·H·W, r×r zero-padded mean, unit norm."""
    b, p, c = tokens.shape
    g = int(math.isqrt(p))
    out = torch.zeros_like(tokens)
    for i in range(b):
        x = _layer_norm_by_hand(tokens[i].T.reshape(c, g, g))
        for u in range(g):
            for v in range(g):
                acc = torch.zeros(c, dtype=tokens.dtype)
                for du in range(-(r // 2), r // 2 + 1):
                    for dv in range(-(r // 2), r // 2 + 1):
                        if 0 <= u + du < g and 0 <= v + dv < g:
                            acc += x[:, u + du, v + dv]  # cells outside the image count as 0
                f = acc / (r * r)
                out[i, u * g + v] = f / f.norm()
    return out


def _mutual_by_hand(z, lo_frac=0.0, hi_frac=0.3):
    """Plain loops: d_j(p) = min_q ‖z_i(p) − z_j(q)‖ for j ≠ i; mean of sorted positions [⌊lo(N−1)⌋, ⌊hi(N−1)⌋)."""
    n, p, _ = z.shape
    lo, hi = int(lo_frac * (n - 1)), int(hi_frac * (n - 1))
    out = torch.zeros(n, p, dtype=z.dtype)
    for i in range(n):
        for a in range(p):
            d = []
            for j in range(n):
                if j == i:
                    continue
                d.append(min(float(torch.sqrt(((z[i, a] - z[j, q]) ** 2).sum())) for q in range(p)))
            d.sort()
            out[i, a] = sum(d[lo:hi]) / (hi - lo)
    return out


def _unit(shape, seed, dtype=torch.float64):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x / x.norm(dim=-1, keepdim=True)


# ------------------------------------------------------------------ LNAMD
@pytest.mark.parametrize("r", [1, 3, 5])
def test_aggregation_is_layer_norm_then_the_zero_padded_r_by_r_mean(r):
    tokens = torch.randn(2, 16, 3, generator=torch.Generator().manual_seed(r), dtype=torch.float64) * 3 + 1
    torch.testing.assert_close(aggregate(tokens, r), _aggregate_by_hand(tokens, r), rtol=1e-10, atol=1e-10)


def test_aggregation_standardises_each_image_as_a_whole_not_each_token():
    tokens = torch.randn(1, 9, 4, dtype=torch.float64)
    tokens[0, 0] += 100.0  # one far-off token shifts the whole image's mean and variance
    z = aggregate(tokens, 1)
    x = tokens[0]
    by_hand = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(z[0], by_hand / by_hand.norm(dim=-1, keepdim=True))


# ------------------------------------------------------------------ MSM
def test_mutual_scores_are_the_mean_of_the_nearest_images_minimum_distances():
    z = _unit((7, 9, 5), 0)  # N = 7: K = ⌊0.3·6⌋ = 1
    torch.testing.assert_close(mutual_scores(z), _mutual_by_hand(z), rtol=1e-9, atol=1e-9)
    z = _unit((11, 4, 3), 1)  # N = 11: K = 3, and another interval
    torch.testing.assert_close(mutual_scores(z, (0.1, 0.5)), _mutual_by_hand(z, 0.1, 0.5), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("block", [1, 2, 3, 100])
def test_blocked_comparisons_equal_the_unblocked_ones(block):
    z = _unit((9, 16, 6), 2)
    torch.testing.assert_close(mutual_scores(z, block=block), mutual_scores(z, block=9), rtol=1e-12, atol=1e-12)


def test_an_image_identical_to_another_scores_zero_and_is_not_compared_with_itself():
    z = _unit((6, 4, 3), 3)
    z[1] = z[0]
    s = mutual_scores(z)  # K = 1: each of the twins has the other at distance 0
    assert torch.all(s[0].abs() < 1e-7) and torch.all(s[1].abs() < 1e-7)
    assert torch.all(s[2:] > 1e-3)


def test_interval_positions_and_small_sets():
    assert interval_positions(200, (0.0, 0.3)) == (0, 59)
    assert interval_positions(5, (0.0, 0.3)) == (0, 1)
    assert interval_positions(3, (0.0, 0.3)) == (0, 1)  # their code: NaN; here the nearest image
    with pytest.raises(AnomclipError, match="other images"):
        interval_positions(1, (0.0, 0.3))


# ------------------------------------------------------------------ RsCIN
def test_rscin_by_hand_on_a_toy_set():
    cls = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]], dtype=torch.float64)
    scores = torch.tensor([2.0, 4.0, 6.0, 10.0], dtype=torch.float64)
    c = (scores - 2.0) / 8.0  # [0, .25, .5, 1]
    w = cls @ cls.T
    # k = 1: each image keeps only itself → ĉ; k = 2: itself and its most similar other image
    nearest = [1, 0, 3, 2]  # w01 = .8, w12 = .6, w23 = .8
    k2 = torch.tensor([(c[i] + w[i, j] * c[j]) / (1 + w[i, j]) for i, j in enumerate(nearest)])
    torch.testing.assert_close(rscin(scores, cls, (1,)), c)
    torch.testing.assert_close(rscin(scores, cls, (2,)), k2)
    torch.testing.assert_close(rscin(scores, cls, (1, 2)), (c + k2) / 2)
    assert torch.equal(rscin(scores, cls, ()), scores)


def test_rscin_k_by_dataset():
    entries = get_recipe("musc").rscin_k
    assert parse_k(entries, None) == (1, 2, 3)
    assert parse_k(entries, "MVTec AD") == (1, 2, 3)
    assert parse_k(entries, "VisA") == (1, 8, 9)
    assert parse_k(entries, "visa") == (1, 8, 9)  # the folder's name
    with pytest.raises(AnomclipError, match="rscin_k"):
        parse_k(("VisA=a",), None)


# ------------------------------------------------------------------ the method on the tiny backbone
@pytest.fixture(scope="module")
def musc():
    from anomclip.engine.loading import build_model

    return build_model(smoke("musc"), "cpu")


def test_recipe_settings_and_blocks_scale_with_depth(musc):
    r = get_recipe("musc")
    assert r.layers == (0.25, 0.5, 0.75, 1.0) and r.musc_r == (1, 3, 5) and r.sigma == 0 and r.epochs == 0
    assert r.pos_interpolation == "bicubic"
    assert musc.layers == (2, 4, 6, 8)  # the tiny backbone's 8 blocks; ViT-L's 24 give 6, 12, 18, 24
    assert musc.transductive and not musc.trainable_parameters()


def test_the_category_score_is_the_composition_of_the_equations(musc):
    x = torch.randn(6, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    g, feats = musc.encode_image(x)
    out = musc.score_features(g, feats)
    grid, size = musc.info.grid, musc.image_size
    per_r = []
    for r in (1, 3, 5):
        per_layer = []
        for layer in musc.layers:
            z = _aggregate_by_hand_fast(feats["raw"][layer].double(), r)
            d = torch.stack([torch.cdist(z[i], z[j]).amin(-1) for i in range(6) for j in range(6)]).reshape(6, 6, -1)
            d = d + torch.diag(torch.full((6,), math.inf, dtype=d.dtype))[:, :, None]
            per_layer.append(d.sort(dim=1).values[:, :1].mean(1))  # K = ⌊0.3·5⌋ = 1
        per_r.append(torch.stack(per_layer).mean(0))
    patch = torch.stack(per_r).mean(0).reshape(6, 1, grid, grid)
    amap = torch.nn.functional.interpolate(patch, size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    torch.testing.assert_close(out.anomaly_map, amap.float(), rtol=1e-5, atol=1e-6)
    first = amap.flatten(1).max(1).values
    c = (first - first.min()) / (first.max() - first.min())
    cls = torch.nn.functional.normalize(g.double(), dim=-1)
    w = cls @ cls.T
    expected = torch.zeros(6, dtype=torch.float64)
    for k in (1, 2, 3):
        keep = w.topk(k, dim=1).indices
        for i in range(6):
            js = keep[i].tolist()
            expected[i] += sum(w[i, j] * c[j] for j in js) / sum(w[i, j] for j in js) / 3
    torch.testing.assert_close(out.image_score, expected.float(), rtol=1e-5, atol=1e-6)


def _aggregate_by_hand_fast(tokens, r):
    """The same equations, vectorised over patches (the loops of _aggregate_by_hand at 12×12 are slow)."""
    b, p, c = tokens.shape
    g = int(math.isqrt(p))
    x = tokens.transpose(1, 2).reshape(b, c, g, g)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    x = torch.nn.functional.pad((x - mean) / torch.sqrt(var + 1e-5), (r // 2,) * 4)
    acc = sum(x[:, :, du:du + g, dv:dv + g] for du in range(r) for dv in range(r)) / (r * r)
    z = acc.reshape(b, c, p).transpose(1, 2)
    return z / z.norm(dim=-1, keepdim=True)


def test_scores_depend_on_the_set_and_a_single_image_is_refused(musc):
    x = torch.randn(6, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    g, feats = musc.encode_image(x)
    whole = musc.score_features(g, feats).anomaly_map
    part = musc.score_features(g[:5], {"raw": {l: t[:5] for l, t in feats["raw"].items()}}).anomaly_map
    assert not torch.allclose(whole[:5], part)  # transductive: another set, other scores
    with pytest.raises(AnomclipError, match="single image"):
        musc.score_features(g[:1], {"raw": {l: t[:1] for l, t in feats["raw"].items()}})


def test_run_keys_of_other_recipes_do_not_hold_musc_settings():
    from anomclip.engine.features import FeatureCache
    from anomclip.engine.store import run_material

    cache = FeatureCache()
    assert "musc_r" not in run_material(get_recipe("official"), None, None, cache)["recipe"]
    assert run_material(get_recipe("musc"), None, None, cache)["recipe"]["musc_r"] == (1, 3, 5)


# ------------------------------------------------------------------ the engine and the CLI
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from anomclip.data.synth import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("musc-synth"), n_normal=3, n_anomalous=3, size=64)


def test_evaluate_scores_each_category_jointly(musc, synth, tmp_path):
    from anomclip.engine.evaluate import evaluate
    from anomclip.engine.features import extract_features
    from anomclip.engine.runner import DataSpec

    samples = DataSpec(str(synth["objects"]), "objects").samples()
    first_two = list(dict.fromkeys(s.cls_name for s in samples))[:2]
    samples = [s for s in samples if s.cls_name in first_two]
    fs = extract_features(musc, samples, None, progress=False)
    res = evaluate(musc, fs, progress=False, keep_maps=True)
    for cat, idx in fs.categories().items():
        b = fs.batch(np.sort(idx))
        joint = musc.score_features(b.global_feats, b.patches)
        np.testing.assert_allclose(res.scores[cat], joint.image_score.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.maps[cat], joint.anomaly_map.numpy(), rtol=1e-5, atol=1e-6)
    assert np.isfinite(res.mean["image_auroc"])
    assert any(n.startswith("transductive") for n in res.notes)  # the results file says how it was scored


def _run(capsys, *argv):
    from anomclip.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # four commands in-process (each loads the tiny backbone's text tower, hashes the data)
def test_cli_eval_predict_and_train(synth, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANOMCLIP_CACHE", str(tmp_path / "features"))
    code, out, err = _run(capsys, "eval", "--method", "musc", "--data", synth["objects"], "--out", tmp_path / "r.json")
    assert code == 0, err
    assert "results written" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["provenance"]["recipe"]["method"] == "musc"
    folder = next(p for p in Path(synth["objects"]).rglob("*") if p.is_dir() and len(list(p.glob("*.png"))) >= 2)
    code, out, err = _run(capsys, "predict", "--method", "musc", folder, "--out", tmp_path / "pred")
    assert code == 0, err
    assert (tmp_path / "pred" / "scores.csv").exists()
    one = next(folder.glob("*.png"))
    code, out, err = _run(capsys, "predict", "--method", "musc", one, "--out", tmp_path / "pred1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "one image cannot be scored alone" in err
    code, out, err = _run(capsys, "train", "--method", "musc", "--data", synth["textures"], "--out",
                          tmp_path / "p.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "training-free" in err



def test_reference_numbers_are_sourced_and_marked_transductive():
    from anomclip.book.reference import after_anomalyclip

    df = after_anomalyclip()
    assert list(df.columns) == ["dataset", "method", "variant", "setting", "level", "metric", "value", "repo", "path",
                                "commit", "commit_date", "provenance"]
    musc = df[df["method"] == "MuSc"]
    assert set(musc["dataset"]) >= {"MVTec AD", "VisA"} and (musc["setting"] == "transductive").all()
    assert musc["value"].between(0, 100).all() and musc["commit"].str.fullmatch(r"[0-9a-f]{40}").all()
    assert not musc.duplicated(["dataset", "variant", "level", "metric"]).any()
