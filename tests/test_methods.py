"""The baselines of Tables 1–3 (CLIP, CLIP-AC, WinCLIP, VAND, CoOp) against formulas written out here.

Every expected value is recomputed from open_clip's own modules (``encode_text``,
``encode_image``, its transformer) and the methods' published formulas, not with the code under
test. Numbers are from the untrained tiny backbone: they check the machinery, not the paper.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from anomclip import AnomclipError
from anomclip.methods import METHODS, PAPER_METHODS, build_method, display_name, trains
from anomclip.methods.prompts import (
    IMAGENET_TEMPLATES,
    VAND_TEMPLATES,
    WINCLIP_TEMPLATES,
    clip_ac_sentences,
    clip_sentences,
    compositional_sentences,
    vand_sentences,
)
from anomclip.methods.winclip import cover_matrix, harmonic_aggregation, window_indices
from anomclip.recipes import Recipe, get_recipe, smoke

CLASSES = ["metal_nut", "bottle"]


def build(tiny_clip, name, **overrides):
    clip_model, tokenizer, info = tiny_clip
    return build_method(smoke(name, **overrides), clip_model, tokenizer, info)


def text_of(tiny_clip, sentences):
    """Mean of the normalised open_clip text features, normalised (CLIP's notebook)."""
    clip_model, tokenizer, _ = tiny_clip
    with torch.no_grad():
        f = F.normalize(clip_model.encode_text(tokenizer(sentences)), dim=-1)
    return F.normalize(f.mean(0), dim=-1)


def pair(tiny_clip, sentences_fn, names):
    """``[B, 2, D]`` text features of each image's category."""
    return torch.stack([torch.stack([text_of(tiny_clip, s) for s in sentences_fn(n)]) for n in names])


def test_an_ensemble_is_encoded_once_per_text_weights_and_again_when_they_change(monkeypatch):
    """Two backbones loaded apart with the same weights share one encoding of an ensemble; a
    text weight changed in place gives a new one. Each result is open_clip's own encode_text,
    normalised, averaged and normalised again, and the caller gets a copy."""
    from anomclip.methods import prompts
    from anomclip.model.backbone import load_clip

    calls = []
    encode = prompts.encode_sentences
    monkeypatch.setattr(prompts, "encode_sentences", lambda *a: calls.append(a[2]) or encode(*a))
    normal = ["a photo of a flawless widget zq.", "a widget zq without defect."]  # sentences no other test uses
    anomalous = ["a photo of a damaged widget zq."]
    first, second = load_clip("tiny-random", None, image_size=96), load_clip("tiny-random", None, image_size=96)
    a = prompts.ensemble_text(first[0], first[1], normal, anomalous)
    assert len(calls) == 2
    torch.testing.assert_close(a, torch.stack([text_of(first, normal), text_of(first, anomalous)]),
                               atol=1e-5, rtol=1e-5)
    b = prompts.ensemble_text(second[0], second[1], normal, anomalous)
    assert len(calls) == 2 and torch.equal(a, b)
    b.add_(1.0)  # a copy: the next caller is not affected
    assert torch.equal(prompts.ensemble_text(second[0], second[1], normal, anomalous), a) and len(calls) == 2
    with torch.no_grad():
        second[0].ln_final.bias.add_(0.5)
    c = prompts.ensemble_text(second[0], second[1], normal, anomalous)
    assert len(calls) == 4 and not torch.allclose(c, a)
    torch.testing.assert_close(c, torch.stack([text_of(second, normal), text_of(second, anomalous)]),
                               atol=1e-5, rtol=1e-5)


def clip_tokens(clip_model, images):
    """open_clip's own image embedding and its last-block patch tokens through ln_post and proj."""
    v = clip_model.visual
    v.output_tokens = True
    try:
        with torch.no_grad():
            pooled, tokens = v(images)
    finally:
        v.output_tokens = False
    return F.normalize(pooled, dim=-1), F.normalize(tokens @ v.proj, dim=-1)


# ---------------------------------------------------------------- registry and recipes
def test_the_papers_six_methods_in_table_order_then_the_later_ones(tiny_clip):
    assert [m.display for m in PAPER_METHODS.values()] == ["CLIP", "CLIP-AC", "WinCLIP", "VAND", "CoOp", "AnomalyCLIP"]
    assert [m.trains for m in PAPER_METHODS.values()] == [False, False, False, True, True, True]
    assert list(METHODS)[:6] == list(PAPER_METHODS)  # the paper's six first, in its order
    later = {m.display: m.trains for m in METHODS.values() if not m.in_paper}
    assert {"Crane": True, "MuSc": False}.items() <= later.items()
    assert [trains(get_recipe(m.recipe)) for m in METHODS.values()] == [m.trains for m in METHODS.values()]
    classes = {}
    for key, info in METHODS.items():
        name = info.recipe
        r = get_recipe(name)
        assert r.method == key
        assert display_name(r) == info.display == display_name(name) == display_name(key)
        model = build(tiny_clip, name)
        classes[name] = type(model).__name__
        assert (len(model.trainable_parameters()) > 0) == info.trains, name
        assert Recipe.from_dict(r.to_dict()) == r  # recipes stay data (JSON round trip)
    assert {"clip": "CLIPBaseline", "clip-ac": "CLIPAC", "winclip": "WinCLIP", "vand": "VAND", "coop": "CoOp",
            "official": "AnomalyCLIP", "crane": "Crane", "musc": "MuSc"}.items() <= classes.items()
    with pytest.raises(AnomclipError, match="unknown method"):
        Recipe(method="patchcore")


def test_profiles_keep_a_baselines_own_settings_on_real_data_only():
    from anomclip.engine.profiles import Profile

    paper = Profile("paper", get_recipe("official"), {}, synthetic=False)
    smoke_p = Profile("smoke", smoke("official", epochs=2), {}, synthetic=True)
    w = paper.recipe("winclip")
    assert (w.backbone, w.pretrained, w.image_size, w.windows) == ("ViT-B-16-plus-240", "laion400m_e31", 240, (2, 3))
    v = paper.recipe("vand")
    assert (v.backbone, v.image_size, v.epochs, v.batch_size) == ("ViT-L-14-336", 518, 3, 8)
    assert paper.recipe("coop").epochs == 15 and paper.recipe("coop").backbone == "ViT-L-14-336"
    for name in ("winclip", "vand", "coop", "clip"):  # smoke: everything follows the tiny backbone
        r = smoke_p.recipe(name)
        assert (r.backbone, r.image_size, r.epochs) == ("tiny-random", 96, 2), name
    assert paper.recipe("vand", epochs=15).epochs == 15  # an explicit override still wins


def test_prompt_ensembles_have_their_published_sizes():
    assert len(set(IMAGENET_TEMPLATES)) == 80 and len(set(WINCLIP_TEMPLATES)) == 22
    assert len(set(VAND_TEMPLATES)) == 35
    assert clip_sentences("metal_nut") == (["A photo of a normal metal nut."], ["A photo of an anomalous metal nut."])
    n, a = clip_ac_sentences("bottle")
    assert len(n) == len(a) == 80 and n[0] == "a bad photo of a normal bottle." and "itap of my anomalous bottle." in a
    n, a = compositional_sentences("bottle")
    assert (len(n), len(a)) == (7 * 22, 4 * 22) and "a photo of a flawless bottle for anomaly detection." in n
    assert "a cropped photo of the bottle with defect." in a and not any("broken" in s for s in a)
    n, a = vand_sentences("bottle")
    assert (len(n), len(a)) == (7 * 35, 5 * 35) and "this is one broken bottle in the scene." in a


# ---------------------------------------------------------------- CLIP and CLIP-AC
@pytest.mark.parametrize("name,sentences_fn", [("clip", clip_sentences), ("clip-ac", clip_ac_sentences)])
def test_clip_baselines_score_with_open_clip_features_and_their_prompts(tiny_clip, images, name, sentences_fn):
    """score = softmax(f·[t_n, t_a]/0.07)[1]; map = G_4(upsampled softmax of the last block's patches)."""
    model = build(tiny_clip, name)
    out = model(images, CLASSES)
    g, patches = clip_tokens(tiny_clip[0], images)
    text = pair(tiny_clip, sentences_fn, CLASSES)  # [B, 2, D]
    want_score = torch.softmax(torch.einsum("bd,bcd->bc", g, text) / 0.07, -1)[:, 1]
    assert torch.allclose(out.image_score, want_score, atol=1e-5)
    probs = torch.softmax(torch.einsum("bnd,bcd->bnc", patches, text) / 0.07, -1)[..., 1]  # [B, 144]
    grid = probs.reshape(2, 1, 12, 12)
    up = F.interpolate(grid, size=(96, 96), mode="bilinear", align_corners=False)[:, 0].numpy()
    want_map = np.stack([gaussian_filter(m.astype(np.float64), 4.0) for m in up])
    assert np.abs(out.anomaly_map.numpy() - want_map).max() < 1e-5
    assert model.trainable_parameters() == []


def test_clip_ac_averages_80_templates_per_state(tiny_clip):
    model = build(tiny_clip, "clip-ac")
    clip_model, tokenizer, _ = tiny_clip
    with torch.no_grad():  # the 80 sentences one by one, summed in a loop
        rows = []
        for state in ("normal", "anomalous"):
            acc = 0
            for t in IMAGENET_TEMPLATES:
                e = clip_model.encode_text(tokenizer([t.format(f"{state} metal nut")]))[0]
                acc = acc + e / e.norm()
            rows.append(acc / acc.norm())
    assert torch.allclose(model.encode_text("metal_nut"), torch.stack(rows), atol=1e-5)


# ---------------------------------------------------------------- WinCLIP
def test_window_indices_and_harmonic_aggregation_on_a_3x3_grid():
    """Four 2×2 windows of a 3×3 grid, scores 1, ¾, ½, ¼: each patch's harmonic mean by hand."""
    assert window_indices(3, 2).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    assert window_indices(4, 3).tolist() == [[0, 1, 2, 4, 5, 6, 8, 9, 10], [1, 2, 3, 5, 6, 7, 9, 10, 11],
                                             [4, 5, 6, 8, 9, 10, 12, 13, 14], [5, 6, 7, 9, 10, 11, 13, 14, 15]]
    scores = torch.tensor([[1.0, 0.75, 0.5, 0.25]])
    got = harmonic_aggregation(scores, cover_matrix(3, 2)).reshape(3, 3)
    want = torch.tensor([[1.0, 2 / (1 + 4 / 3), 0.75],
                         [2 / (1 + 2), 4 / (1 + 4 / 3 + 2 + 4), 2 / (4 / 3 + 4)],
                         [0.5, 2 / (2 + 4), 0.25]])
    assert torch.allclose(got, want[None], atol=1e-6)
    # the same by brute force, from the definition: a patch's score is the harmonic mean of the scores of
    # every window (top-left corner (r, c), size 2) that covers it — no window index from the code under test
    window_score = {(0, 0): 1.0, (0, 1): 0.75, (1, 0): 0.5, (1, 1): 0.25}
    brute = torch.zeros(3, 3)
    for i in range(3):
        for j in range(3):
            covering = [s for (r, c), s in window_score.items() if r <= i < r + 2 and c <= j < c + 2]
            brute[i, j] = len(covering) / sum(1 / s for s in covering)
    assert torch.allclose(got, brute[None], atol=1e-6)


def test_winclip_window_embedding_is_the_vit_on_the_windows_tokens_only(tiny_clip, images):
    model = build(tiny_clip, "winclip")
    g, feats = model.encode_image(images)
    clip_model = tiny_clip[0]
    v = clip_model.visual
    assert torch.allclose(g, clip_tokens(clip_model, images)[0], atol=1e-5)
    with torch.no_grad():
        x = v.conv1(images).flatten(2).transpose(1, 2)  # [B, 144, W]
        x = torch.cat([v.class_embedding.expand(2, 1, -1), x], 1) + v.positional_embedding
        for k, mode in ((2, "win2"), (3, "win3")):
            n_side = 12 - k + 1
            assert feats[mode][8].shape == (2, n_side * n_side, 64)
            for w, (r, c) in ((0, (0, 0)), (n_side + 3, (1, 3)), (n_side * n_side - 1, (n_side - 1, n_side - 1))):
                patch = [1 + (r + i) * 12 + (c + j) for i in range(k) for j in range(k)]
                seq = v.ln_pre(x[:, [0] + patch])
                out = v.transformer(seq)
                want = F.normalize(v.ln_post(out[:, 0]) @ v.proj, dim=-1)
                assert torch.allclose(feats[mode][8][:, w], want, atol=1e-5), (k, w)


def test_winclip_map_is_the_harmonic_mean_of_image_and_window_scores(tiny_clip, images):
    model = build(tiny_clip, "winclip")
    g, feats = model.encode_image(images)
    text = pair(tiny_clip, compositional_sentences, CLASSES)
    out = model.score_features(g, feats, text)

    def score(f):  # softmax(f·[t_n, t_a] / 0.07)[anomalous], per image
        return torch.softmax(torch.einsum("bnd,bcd->bnc", f, text) / 0.07, -1)[..., 1]

    s_img = score(g[:, None])[:, 0]
    assert torch.allclose(out.image_score, s_img, atol=1e-6)
    maps = torch.zeros(2, 12, 12)
    s = {k: score(feats[f"win{k}"][8]) for k in (2, 3)}
    for b in range(2):
        for r in range(12):
            for c in range(12):
                inv = [1 / s_img[b]]
                for k in (2, 3):
                    n_side = 12 - k + 1
                    covering = [s[k][b, wr * n_side + wc] for wr in range(n_side) for wc in range(n_side)
                                if wr <= r < wr + k and wc <= c < wc + k]
                    inv.append(1 / (len(covering) / sum(1 / x for x in covering)))
                maps[b, r, c] = 3 / sum(inv)
    want = F.interpolate(maps[:, None], size=(96, 96), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(out.anomaly_map, want, atol=1e-5)


# ---------------------------------------------------------------- VAND
def test_vand_projects_raw_tokens_of_four_layers_and_sums_softmaxed_upsampled_logits(tiny_clip, images):
    model = build(tiny_clip, "vand")
    assert model.layers == (2, 4, 6, 8)
    with torch.no_grad():
        for fc in model.prompt_learner:  # a non-trivial projection
            fc.weight.normal_(0, 0.2)
            fc.bias.normal_(0, 0.2)
    out = model(images, CLASSES)
    clip_model = tiny_clip[0]
    v = clip_model.visual
    raw = {}
    hooks = [v.transformer.resblocks[l - 1].register_forward_hook(
        lambda mod, inp, o, l=l: raw.__setitem__(l, o)) for l in (2, 4, 6, 8)]
    try:
        g, _ = clip_tokens(clip_model, images)
    finally:
        for h in hooks:
            h.remove()
    text = pair(tiny_clip, vand_sentences, CLASSES)
    assert torch.allclose(out.image_score, torch.softmax(100 * torch.einsum("bd,bcd->bc", g, text), -1)[:, 1],
                          atol=1e-5)
    want = torch.zeros(2, 96, 96)
    with torch.no_grad():
        for fc, l in zip(model.prompt_learner, (2, 4, 6, 8)):
            # open_clip 2.26–3.x say how their blocks run; the development branch runs batch-first only
            tokens = raw[l] if getattr(v.transformer, "batch_first", True) else raw[l].transpose(0, 1)
            p = tokens[:, 1:] @ fc.weight.T + fc.bias
            p = p / p.norm(dim=-1, keepdim=True)
            logits = 100 * torch.einsum("bnd,bcd->bcn", p, text).reshape(2, 2, 12, 12)
            up = F.interpolate(logits, size=(96, 96), mode="bilinear", align_corners=True)
            want += torch.softmax(up, dim=1)[:, 1]
    assert torch.allclose(out.anomaly_map, want, atol=1e-4), (out.anomaly_map - want).abs().max()


def test_vand_loss_is_focal_plus_dice_of_the_anomalous_channel_per_layer(tiny_clip, images):
    model = build(tiny_clip, "vand")
    g, feats = model.encode_image(images)
    masks = torch.zeros(2, 96, 96)
    masks[1, 20:50, 30:70] = 1
    labels = torch.tensor([0, 1])
    loss = model.training_loss(g, feats, labels, masks, CLASSES)
    out = model.score_features(g, feats, model.text_for(CLASSES), with_map=False)
    want = 0.0
    for p in out.layer_probs.values():
        p = p.detach().double()
        pt = (1 - masks.double()).clamp(1e-5, 1 - 1e-5) * p[:, 0] + masks.double().clamp(1e-5, 1 - 1e-5) * p[:, 1]
        pt = pt + 1e-5
        want += float((-(1 - pt) ** 2 * torch.log(pt)).mean())
        inter = (p[:, 1] * masks).flatten(1).sum(1)
        want += 1 - float(((2 * inter + 1) / (p[:, 1].flatten(1).sum(1) + masks.flatten(1).sum(1) + 1)).mean())
    assert loss["total"].item() == pytest.approx(want, rel=1e-5)
    assert loss["global"].item() == 0.0
    loss["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trainable_parameters())


def test_vand_takes_the_authors_steps_per_epoch_batch_8_without_drop_last(synth, cache):
    """train.sh: --batch_size 8; train.py: DataLoader(shuffle=True), no drop_last → ceil(N / 8) steps."""
    from torch.utils.data import DataLoader

    from anomclip.data.dataset import load_index
    from anomclip.engine.features import extract_features
    from anomclip.engine.loading import build_model
    from anomclip.engine.train import train

    # the authors' loader on the two tuning sets (Table 6's test counts): 216 and 271 steps per epoch
    for n_images, steps in ((467 + 1258, 216), (962 + 1200, 271)):
        assert len(DataLoader(list(range(n_images)), batch_size=get_recipe("vand").batch_size)) == steps
        assert steps == math.ceil(n_images / 8)
    recipe = smoke("vand", epochs=2)
    model = build_model(recipe)
    samples = [s for v in load_index(synth["textures"]).values() for s in v][:29]  # 29 = 3 × 8 + 5
    feats = extract_features(model, samples, cache, progress=False)
    seen = []
    loss_of = model.training_loss
    model.training_loss = lambda g, f, labels, *rest: (seen.append(len(labels)), loss_of(g, f, labels, *rest))[1]
    res = train(model, feats, progress=False)
    authors = [len(b) for b in DataLoader(list(range(29)), batch_size=8, shuffle=True)]
    assert authors == [8, 8, 8, 5]
    assert seen == authors * 2
    assert [sum(s["epoch"] == e for s in res.steps) for e in (1, 2)] == [math.ceil(29 / 8)] * 2


def test_vand_epochs_follow_the_tuning_set_as_in_train_sh(monkeypatch):
    """3 epochs tuned on MVTec AD, 15 tuned on VisA (real-data profile); smoke's epochs override both."""
    import importlib
    from types import SimpleNamespace

    from anomclip.engine.profiles import Profile
    from anomclip.engine.runner import DataSpec

    rt = importlib.import_module("anomclip.engine.run_table")
    ran = {}

    def fake_run(recipe, train_spec, targets, out, **kw):
        ran[train_spec.name] = recipe
        return SimpleNamespace(results={t.name: {"mean": {"image_auroc": 0.5}, "provenance": {}} for t in targets})

    monkeypatch.setattr(rt, "run_experiment", fake_run)
    specs = {n: DataSpec(f"/nowhere/{n}", n) for n in ("MVTec AD", "VisA")}
    paper = Profile("paper", get_recipe("official"), specs, {"MVTec AD": ["VisA"], "VisA": ["MVTec AD"]},
                    synthetic=False)
    rt.run_table(paper, [("VAND", paper.recipe("vand"))])
    assert {k: (r.epochs, r.batch_size) for k, r in ran.items()} == {"MVTec AD": (3, 8), "VisA": (15, 8)}
    assert ran["MVTec AD"].key() != ran["VisA"].key()  # two runs, two keys
    ran.clear()
    rt.run_table(paper, [("VAND", paper.recipe("vand", epochs=1))])  # an explicit override wins everywhere
    assert {k: r.epochs for k, r in ran.items()} == {"MVTec AD": 1, "VisA": 1}
    ran.clear()
    specs = {n: DataSpec(f"/nowhere/{n}", n) for n in ("textures", "objects")}
    smoke_p = Profile("smoke", smoke("official", epochs=2), specs, {"textures": ["objects"], "objects": ["textures"]},
                      synthetic=True)
    rt.run_table(smoke_p, [("VAND", smoke_p.recipe("vand"))])
    assert {k: r.epochs for k, r in ran.items()} == {"textures": 2, "objects": 2}
    assert get_recipe("vand").tuning_epochs() == {"MVTec AD": 3, "VisA": 15}
    assert get_recipe("vand").for_tuning("BTAD") == get_recipe("vand")  # not a tuning set of the script
    with pytest.raises(AnomclipError, match="DATASET=EPOCHS"):
        get_recipe("vand", epochs_by_tuning=("VisA:15",))
    assert Recipe.from_dict(get_recipe("vand").to_dict()) == get_recipe("vand")


# ---------------------------------------------------------------- CoOp
def test_coop_prompt_is_shared_context_then_state_word_then_class(tiny_clip):
    """With the context set to the words "a photo of a", CoOp's text equals CLIP's on the sentence."""
    clip_model, tokenizer, _ = tiny_clip
    model = build(tiny_clip, "coop", n_ctx=4)
    learner = model.prompt_learner
    assert learner.ctx_abnormal is None and [tuple(p.shape) for p in model.trainable_parameters()] == [(4, 64)]
    ids = tokenizer(["a photo of a"])[0, 1:5]
    with torch.no_grad():
        learner.ctx_normal.copy_(clip_model.token_embedding(ids))
        want = F.normalize(clip_model.encode_text(tokenizer(["a photo of a normal metal nut.",
                                                             "a photo of a anomalous metal nut."])), dim=-1)
    assert torch.allclose(model.encode_text("metal_nut"), want, atol=1e-5)
    assert get_recipe("coop").n_ctx == 16 and get_recipe("coop").dpam == "none"


def test_coop_trains_only_on_the_image_level_cross_entropy(tiny_clip, images):
    model = build(tiny_clip, "coop")
    g, feats = model.encode_image(images)
    labels = torch.tensor([0, 1])
    masks = torch.zeros(2, 96, 96)
    loss = model.training_loss(g, feats, labels, masks, CLASSES)
    # CoOp's code: logits = exp(logit_scale) · cos, CLIP's logit scale (100 for OpenAI's weights)
    logits = 100.0 * torch.einsum("bd,bcd->bc", g, model.text_for(CLASSES))
    want = -torch.log_softmax(logits, -1)[torch.arange(2), labels].mean()
    assert loss["total"].item() == pytest.approx(want.item(), rel=1e-6) and loss["local"].item() == 0.0
    assert "none" in feats and 8 in feats["none"]  # DPAM off: the last block's original path


# ---------------------------------------------------------------- one engine
def test_clip_clip_ac_and_coop_share_one_feature_extraction(tiny_clip):
    specs = {m.recipe: build(tiny_clip, m.recipe).feature_spec() for m in METHODS.values()}
    assert specs["clip"] == specs["clip-ac"] == specs["coop"]
    distinct = [specs[n] for n in ("clip", "winclip", "vand", "official")]
    assert all(a != b for i, a in enumerate(distinct) for b in distinct[i + 1:])
    assert specs["winclip"]["windows"] == [2, 3]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from anomclip.data.synth import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synth"), n_normal=4, n_anomalous=4, size=96)


@pytest.fixture
def cache(tmp_path_factory):
    from anomclip.engine.features import FeatureCache

    return FeatureCache(tmp_path_factory.getbasetemp() / "features")


def _feats(model, root, cache):
    from anomclip.data.dataset import load_index
    from anomclip.engine.features import extract_features

    samples = [s for v in load_index(root).values() for s in v]
    return extract_features(model, samples, cache, progress=False)


@pytest.mark.parametrize("name", ["vand", "coop"])
def test_vand_and_coop_train_checkpoint_and_resume_like_anomalyclip(synth, cache, tmp_path, name):
    from anomclip.engine.loading import build_model
    from anomclip.engine.train import train

    recipe = smoke(name, epochs=2, batch_size=8)
    runs = []
    for tag in ("a", "b"):
        model = build_model(recipe)
        feats = _feats(model, synth["textures"], cache)
        res = train(model, feats, checkpoint=tmp_path / f"{tag}.pt", progress=False)
        runs.append(torch.load(tmp_path / f"{tag}.pt", weights_only=True)["prompt_learner"])
    assert len(res.history) == 2 and all(math.isfinite(h["loss"]) for h in res.history)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    model = build_model(recipe)
    train(model, feats, checkpoint=tmp_path / "c.pt", progress=False, stop_after=1)  # interrupted
    model = build_model(recipe)
    train(model, feats, checkpoint=tmp_path / "c.pt", resume=True, progress=False)  # resumed
    resumed = torch.load(tmp_path / "c.pt", weights_only=True)["prompt_learner"]
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]) and torch.equal(runs[0][k], resumed[k]), k
    fresh = build_model(recipe)
    fresh.load_prompts(tmp_path / "a.pt")
    for k, v in fresh.prompt_learner.state_dict().items():
        assert torch.equal(v, runs[0][k]), k


def test_zero_shot_methods_have_nothing_to_train(synth, cache):
    from anomclip.engine.loading import build_model
    from anomclip.engine.train import train

    for name in ("clip", "clip-ac", "winclip"):
        model = build_model(smoke(name, epochs=2))
        res = train(model, _feats(model, synth["textures"], cache), progress=False)
        assert res.history == [] and res.checkpoint is None


def test_anomalyclip_training_is_unchanged_by_the_generic_loop(synth, cache):
    """train() on AnomalyCLIP equals the glocal loop written out here, bit for bit."""
    from anomclip.engine.loading import build_model
    from anomclip.engine.train import train
    from anomclip.model.losses import glocal_loss

    recipe = smoke("official", epochs=2)
    model = build_model(recipe)
    feats = _feats(model, synth["textures"], cache)
    train(model, feats, progress=False)
    ref = build_model(recipe)
    params = ref.trainable_parameters()
    opt = torch.optim.Adam(params, lr=recipe.lr, betas=recipe.betas, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed)
    for _ in range(2):
        order = torch.randperm(len(feats), generator=gen).numpy()
        for i in range(0, len(order), recipe.batch_size):
            g, f, labels, masks, names, _ = feats.batch(order[i:i + recipe.batch_size])
            out = ref.score_features(g, f, ref.text_for(names), with_map=False)
            loss = glocal_loss(out.image_logits, list(out.layer_probs.values()), labels, masks, lam=recipe.lam)
            opt.zero_grad(set_to_none=True)
            loss["total"].backward()
            opt.step()
    for a, b in zip(model.trainable_parameters(), params):
        assert torch.equal(a, b)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_end_to_end_through_run_experiment(synth, cache, tmp_path, method):
    from anomclip.engine.runner import DataSpec, run_experiment

    tex, obj = DataSpec(str(synth["textures"]), "textures"), DataSpec(str(synth["objects"]), "objects")
    info = METHODS[method]
    recipe = smoke(info.recipe, epochs=1, batch_size=8)
    exp = run_experiment(recipe, tex if info.trains else None, [obj], tmp_path, progress=False, cache=cache,
                         device="cpu")
    doc = exp.results["objects"]
    assert doc["provenance"]["recipe"]["method"] == recipe.method
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert 0.0 <= doc["mean"][key] <= 1.0, key
    assert (exp.checkpoint is not None) == info.trains
    again = run_experiment(recipe, tex if info.trains else None, [obj], tmp_path, progress=False, cache=cache,
                           device="cpu")
    assert again.reused
    pred = exp.predict("objects")  # maps recomputed from the cached features
    assert pred.mean["pixel_auroc"] == pytest.approx(doc["mean"]["pixel_auroc"], abs=1e-9)
