"""AdaptCLIP zero-shot (docs/after-anomalyclip.md, ## AdaptCLIP; SPEC §11.2, §11.5) against its equations
written out here.

The raw DPAM features (class token kept, no normalisation, no ln_post on the global one), the residual
adapters with their BatchNorm, the two text sets, the maps, the fused score, the loss and the alternating
schedule are each computed by hand in the test (explicit means, variances, softmax, loops; no shared
helper), on the tiny random backbone. The authors' code itself is compared in tools/adaptclip_side_by_side.py.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from by_hand import ln, tokens_before_ln_pre
from anomclip import AnomclipError
from anomclip.methods import CLASSES, METHODS, build_method
from anomclip.methods.adaptclip import AdaptCLIP, static_sentences
from anomclip.recipes import get_recipe, smoke


def adaptclip(tiny_clip, **overrides):
    clip_model, tokenizer, info = tiny_clip
    return build_method(smoke("adaptclip", **overrides), clip_model, tokenizer, info)


def softmax(z):
    e = torch.exp(z - z.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def unit(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True))


# ---------------------------------------------------------------- recipe, registry, size
def test_recipe_and_registry_carry_the_authors_settings():
    r = get_recipe("adaptclip")
    assert (r.method, r.dpam, r.dpam_start, r.layers, r.global_ln_post) == ("adaptclip", "vv", 0.25, (1.0,), False)
    assert (r.n_ctx, r.epochs, r.batch_size, r.lr, r.betas, r.seed) == (12, 15, 8, 1e-3, (0.5, 0.999), 10)
    assert (r.temperature, r.sigma, r.lam) == (0.07, 4.0, 1.0)
    assert CLASSES["adaptclip"] is AdaptCLIP
    m = METHODS["adaptclip"]
    assert (m.display, m.trains, m.in_paper, m.recipe) == ("AdaptCLIP", True, False, "adaptclip")


def test_trainable_parameters_are_two_adapters_and_two_contexts(tiny_clip):
    model = adaptclip(tiny_clip)
    d, w, e = 64, 64, 12  # tiny embed dim, text width, context length
    adapter = d * (d // 4) + 2 * (d // 4) + (d // 4) * d  # W1, BN affine, W2 (no biases)
    assert sum(p.numel() for p in model.trainable_parameters()) == 2 * adapter + 2 * e * w
    vit_l = 2 * (768 * 192 + 2 * 192 + 192 * 768) + 2 * 12 * 768  # ViT-L-14-336: the README's "0.6 M"
    assert vit_l == 609_024


# ---------------------------------------------------------------- frozen features
def dpam_raw_by_hand(clip_model, images, start, layers):
    """V-V surrogate path (per head softmax(v vᵀ/√d) v, out_proj; x_s(start) = x_o(start−1) + a_s, then
    x_s += a_s), projected with ln_post @ proj, class token kept; the global x_o[CLS] @ proj (no ln_post)."""
    v_ = clip_model.visual
    x = ln(tokens_before_ln_pre(v_, images), v_.ln_pre)
    xs, out = None, {}
    for l, blk in enumerate(v_.transformer.resblocks, start=1):
        if l >= start:
            h = ln(x, blk.ln_1)
            w, bias, width = blk.attn.in_proj_weight, blk.attn.in_proj_bias, x.shape[-1]
            v = h @ w[2 * width:].T + bias[2 * width:]
            heads = blk.attn.num_heads
            dh = width // heads
            per_head = [softmax(v[..., i * dh:(i + 1) * dh] @ v[..., i * dh:(i + 1) * dh].transpose(1, 2) / math.sqrt(dh))
                        @ v[..., i * dh:(i + 1) * dh] for i in range(heads)]
            a_s = torch.cat(per_head, -1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
            xs = (x if xs is None else xs) + a_s
        x = blk(x)
        if l in layers:
            out[l] = ln(xs, v_.ln_post) @ v_.proj
    return x[:, 0] @ v_.proj, out


def test_features_are_raw_dpam_vv_with_the_class_token(tiny_clip, images):
    model = adaptclip(tiny_clip, layers=(4, 8))
    g, feats = model.encode_image(images)
    with torch.no_grad():
        g_ref, ref = dpam_raw_by_hand(tiny_clip[0], images, start=2, layers=(4, 8))
    assert set(feats) == {"vv"} and set(feats["vv"]) == {4, 8}
    for layer in (4, 8):
        assert feats["vv"][layer].shape == (2, 1 + 12 * 12, 64)
        assert torch.allclose(feats["vv"][layer], ref[layer], atol=2e-5), layer
    assert not torch.allclose(feats["vv"][4], feats["vv"][8])  # distinct layers
    assert torch.allclose(g, g_ref, atol=2e-5)
    assert (g.norm(dim=-1) - 1).abs().max() > 1e-3  # not normalised
    spec = model.feature_spec()
    assert spec["encoder"] == "adaptclip-raw" and spec["cls_token"] and not spec["normalised"]


# ---------------------------------------------------------------- text
def text_tower_by_hand(clip_model, seq, ids):
    x = seq + clip_model.positional_embedding
    for blk in clip_model.transformer.resblocks:
        x = blk(x, attn_mask=clip_model.attn_mask)
    x = ln(x, clip_model.ln_final)
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ clip_model.text_projection


def test_static_text_averages_unnormalised_features_of_231_sentences(tiny_clip):
    normal, abnormal = static_sentences()
    assert (len(normal), len(abnormal)) == (147, 84)
    assert normal[0] == "a cropped photo of the object." and abnormal[-1] == "a photo of a object with damage for anomaly detection."
    assert normal.count("a jpeg corrupted photo of the flawless object.") == 2
    model = adaptclip(tiny_clip)
    clip_model, tok, _ = tiny_clip
    with torch.no_grad():
        rows = []
        for sentences in (normal, abnormal):
            acc = torch.zeros(64)
            for i in range(0, len(sentences), 50):  # a few sentences at a time, summed
                ids = tok(sentences[i:i + 50])
                acc += text_tower_by_hand(clip_model, clip_model.token_embedding(ids), ids).sum(0)
            rows.append(unit(acc / len(sentences)))
        got = model.static_text()
    assert torch.allclose(got, torch.stack(rows), atol=1e-5)


def test_learned_prompts_are_context_then_full_stop(tiny_clip):
    model = adaptclip(tiny_clip)
    clip_model, tok, _ = tiny_clip
    ta = model.learner["textual"]
    ids = tok(["X X X X X X X X X X X X."])[0]
    assert int(ids.argmax()) == 14  # SOT, 12 X, ".", EOT: no state or object word
    with torch.no_grad():
        want = []
        for ctx in (ta.ctx_pos, ta.ctx_neg):
            seq = clip_model.token_embedding(ids[None]).clone()
            seq[0, 1:13] = ctx
            want.append(unit(text_tower_by_hand(clip_model, seq, ids[None])[0]))
        got = model.text_for(["whatever", "category"])
    assert got.shape == (2, 2, 64)
    assert torch.allclose(got[1], torch.stack(want), atol=1e-5)
    assert torch.equal(got[0], model.static_text())


# ---------------------------------------------------------------- adapters and scoring
def adapter_by_hand(mod, x, stats=None):
    """x + W2 ReLU(BN(W1 x)); BN with the given (mean, var) or the batch's (biased variance)."""
    h = x.reshape(-1, x.shape[-1]) @ mod.down.weight.T
    mean, var = (h.mean(0), ((h - h.mean(0)) ** 2).mean(0)) if stats is None else stats
    h = (h - mean) / torch.sqrt(var + mod.bn.eps) * mod.bn.weight + mod.bn.bias
    return x + (torch.clamp(h, min=0) @ mod.up.weight.T).reshape(x.shape)


def randomise(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.learner.state_dict().items():
            if t.is_floating_point():
                t.copy_(t + 0.3 * torch.randn(t.shape, generator=g) if "var" not in name
                        else 0.5 + torch.rand(t.shape, generator=g))


def branches_by_hand(model, g, p, text, batch_stats):
    bnl, bng = model.learner["visual_local"], model.learner["visual_global"]
    stats = None if batch_stats else "running"
    run = (lambda m: None) if stats is None else (lambda m: (m.bn.running_mean, m.bn.running_var))
    gv, pv = adapter_by_hand(bng, g, run(bng)), adapter_by_hand(bnl, p, run(bnl))
    out = {}
    for name, (gl, pa, tx) in {"va": (gv, pv, text[0]), "ta": (g, p, text[1])}.items():
        logits = unit(gl) @ tx.T / 0.07
        probs = softmax(unit(pa) @ tx.T / 0.07)[:, 1:]  # softmax first, then the class token dropped
        b, n, _ = probs.shape
        side = int(round(math.sqrt(n)))
        grid = probs.reshape(b, side, side, 2).permute(0, 3, 1, 2)
        out[name] = (logits, F.interpolate(grid, size=(96, 96), mode="bilinear", align_corners=False))
    return out


def test_map_and_score_fuse_the_two_branches(tiny_clip, images):
    model = adaptclip(tiny_clip)
    randomise(model)
    g, feats = model.encode_image(images)
    with torch.no_grad():
        text = model.text_for()
        out = model.score_features(g, feats, text)
        ref = branches_by_hand(model, g, feats["vv"][8], text, batch_stats=False)
    (lv, mv), (lt, mt) = ref["va"], ref["ta"]
    raw = 0.5 * (mv[:, 1] + mt[:, 1])
    smooth = torch.stack([torch.from_numpy(gaussian_filter(m.numpy().astype(np.float64), sigma=4)) for m in raw]).float()
    score = (softmax(lv)[:, 1] + softmax(lt)[:, 1] + smooth.flatten(1).max(1).values) / 3
    assert torch.allclose(out.anomaly_map, smooth, atol=1e-5)
    assert torch.allclose(out.image_score, score, atol=1e-5)
    assert torch.allclose(out.image_logits.softmax(-1), 0.5 * (softmax(lv) + softmax(lt)), atol=1e-6)
    no_map = model.score_features(g, feats, text, with_map=False)
    assert no_map.anomaly_map is None and torch.allclose(no_map.image_score, out.image_score)


def test_scoring_uses_running_statistics_whatever_the_mode(tiny_clip, images):
    model = adaptclip(tiny_clip)
    randomise(model)
    g, feats = model.encode_image(images)
    model.learner.train()
    with torch.no_grad():
        a = model.score_features(g, feats, model.text_for())
        model.learner.eval()
        b = model.score_features(g, feats, model.text_for())
    assert torch.equal(a.image_score, b.image_score)


# ---------------------------------------------------------------- training
def focal_by_hand(probs, s):
    o = torch.stack((1 - s, s), 1).clamp(1e-5, 1 - 1e-5)
    pt = (o * probs).sum(1) + 1e-5
    return (-(1 - pt) ** 2 * torch.log(pt)).mean()


def dice_by_hand(p, s):
    out = 0.0
    for i in range(p.shape[0]):
        out += (2 * (p[i] * s[i]).sum() + 1) / (p[i].sum() + s[i].sum() + 1)
    return 1 - out / p.shape[0]


def test_loss_is_ce_focal_and_two_dice_per_branch_with_batch_statistics(tiny_clip, images):
    model = adaptclip(tiny_clip)
    randomise(model)
    g, feats = model.encode_image(images)
    labels = torch.tensor([0, 1])
    masks = torch.zeros(2, 96, 96)
    masks[1, 20:50, 30:70] = 0.8  # thresholded at ½
    bn = model.learner["visual_local"].bn
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    model.learner.train()
    lo = model.training_loss(g, feats, labels, masks, ["a", "b"])
    with torch.no_grad():
        ref = branches_by_hand(model, g, feats["vv"][8], model.text_for(), batch_stats=True)
    s = (masks > 0.5).float()
    glob = local = 0.0
    for logits, maps in ref.values():
        glob += -(torch.log(softmax(logits))[torch.arange(2), labels]).mean()
        local += focal_by_hand(maps, s) + dice_by_hand(maps[:, 1], s) + dice_by_hand(maps[:, 0], 1 - s)
    lo = {k: float(v.detach()) for k, v in lo.items()}
    assert lo["global"] == pytest.approx(float(glob), abs=1e-5)
    assert lo["local"] == pytest.approx(float(local), abs=1e-5)
    assert lo["total"] == pytest.approx(float(glob + local), abs=1e-5)
    # the running statistics moved by momentum 0.1 towards the batch's (unbiased variance), over B·(N+1) tokens
    h = feats["vv"][8].reshape(-1, 64) @ model.learner["visual_local"].down.weight.T
    assert h.shape[0] == 2 * 145
    assert torch.allclose(bn.running_mean, 0.9 * mean0 + 0.1 * h.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, 0.9 * var0 + 0.1 * h.var(0, unbiased=True), atol=1e-5)


def test_alternating_is_two_decoupled_problems(tiny_clip, images):
    """Their "alternating": each adapter learns against the other modality's frozen original, in the same
    step. The VA loss has no gradient on the contexts and the TA loss none on the adapters, so one Adam
    over the union of parameters on the summed loss = each adapter trained on its own branch."""
    model = adaptclip(tiny_clip)
    g, feats = model.encode_image(images)
    labels, masks = torch.tensor([0, 1]), torch.zeros(2, 96, 96)
    masks[1, 10:40, 10:40] = 1
    text = torch.stack([model.static_text(), model.learned_text()])
    br = model.branches(g, feats, text, batch_stats=True)
    ctx = [model.learner["textual"].ctx_pos, model.learner["textual"].ctx_neg]
    va = [p for n, p in model.learner.named_parameters() if n.startswith("visual")]
    for name, params, other in (("va", va, ctx), ("ta", ctx, va)):
        logits, maps = br[name]
        loss = F.cross_entropy(logits, labels) + maps[:, 1].mean()
        grads = torch.autograd.grad(loss, params + other, allow_unused=True, retain_graph=True)
        assert all(gr is not None and gr.abs().sum() > 0 for gr in grads[:len(params)]), name
        assert all(gr is None or gr.abs().sum() == 0 for gr in grads[len(params):]), name

    def step(params, loss_of):
        opt = torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.999))
        for _ in range(2):
            opt.zero_grad()
            loss_of().backward()
            opt.step()

    def branch_loss(m, names):
        t = torch.stack([m.static_text(), m.learned_text()])
        br = m.branches(g, feats, t, batch_stats=True)
        return sum(F.cross_entropy(br[n][0], labels) + (br[n][1][:, 1] * masks).mean()
                   + (br[n][1][:, 0] * (1 - masks)).mean() for n in names)

    joint, apart = adaptclip(tiny_clip), adaptclip(tiny_clip)
    initial = [p.detach().clone() for p in joint.learner.parameters()]
    step(joint.trainable_parameters(), lambda: branch_loss(joint, ("va", "ta")))
    step([p for n, p in apart.learner.named_parameters() if n.startswith("visual")], lambda: branch_loss(apart, ("va",)))
    step([apart.learner["textual"].ctx_pos, apart.learner["textual"].ctx_neg], lambda: branch_loss(apart, ("ta",)))
    moved = 0
    for (k, a), b, init in zip(joint.learner.named_parameters(), apart.learner.parameters(), initial):
        assert torch.allclose(a, b, atol=1e-6), k
        moved += not torch.allclose(a, init)
    assert moved == len(initial)  # every parameter learned


def _featureset(model, n=6):
    from anomclip.engine.features import FeatureSet

    gen = torch.Generator().manual_seed(4)
    imgs = torch.randn(n, 3, 96, 96, generator=gen)
    g, feats = model.encode_image(imgs)
    masks = np.zeros((n, 96, 96), np.uint8)
    masks[1::2, 30:60, 30:60] = 1
    return FeatureSet(global_feats=g.numpy(), patches={m: {l: t.numpy() for l, t in d.items()} for m, d in feats.items()},
                      labels=np.arange(n) % 2, masks=masks, cls_names=["c"] * n, specie_names=["s"] * n,
                      paths=[f"{i}.png" for i in range(n)], has_mask=np.ones(n, bool))


def test_engine_trains_and_resumes_exactly_with_batchnorm_statistics(tiny_clip, tmp_path):
    from anomclip.engine.train import train

    fs = _featureset(adaptclip(tiny_clip))
    whole = adaptclip(tiny_clip, epochs=3, batch_size=4)  # 6 images: batches of 4 and 2
    hist = train(whole, fs, checkpoint=tmp_path / "a.pt", progress=False).history
    assert len(hist) == 3 and not whole.learner.training
    part = adaptclip(tiny_clip, epochs=3, batch_size=4)
    train(part, fs, checkpoint=tmp_path / "b.pt", progress=False, stop_after=1)
    again = adaptclip(tiny_clip, epochs=3, batch_size=4)
    train(again, fs, checkpoint=tmp_path / "b.pt", resume=True, progress=False)
    a = torch.load(tmp_path / "a.pt", weights_only=True)["prompt_learner"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["prompt_learner"]
    assert set(a) == set(b) and "visual_local.bn.running_var" in a and "textual.ids" not in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert int(a["visual_global.bn.num_batches_tracked"]) == 6
    loaded = adaptclip(tiny_clip)
    loaded.load_prompts(tmp_path / "a.pt")
    g, feats = fs.batch(np.arange(6))[:2]
    with torch.no_grad():
        assert torch.equal(loaded.score_features(g, feats, loaded.text_for()).image_score,
                           whole.score_features(g, feats, whole.text_for()).image_score)


def test_a_training_batch_of_one_image_uses_the_running_statistics(tiny_clip, images):
    model = adaptclip(tiny_clip)
    g, feats = model.encode_image(images[:1])
    lo = model.training_loss(g, feats, torch.tensor([1]), torch.ones(1, 96, 96), None)
    assert torch.isfinite(lo["total"])
    assert int(model.learner["visual_global"].bn.num_batches_tracked) == 0  # global: 1 row, running stats
    assert int(model.learner["visual_local"].bn.num_batches_tracked) == 1  # local: 145 tokens


# ---------------------------------------------------------------- the authors' checkpoint
def test_authors_checkpoint_keys_map_onto_the_adapters(tiny_clip, tmp_path):
    model = adaptclip(tiny_clip)
    gen = torch.Generator().manual_seed(2)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    vl = {}
    for part in ("local_adater", "global_adapter"):
        vl.update({f"{part}.fc.0.weight": r(16, 64), f"{part}.fc.1.weight": r(16), f"{part}.fc.1.bias": r(16),
                   f"{part}.fc.1.running_mean": r(16), f"{part}.fc.1.running_var": r(16).abs(),
                   f"{part}.fc.1.num_batches_tracked": torch.tensor(7), f"{part}.fc.3.weight": r(64, 16)})
    tl = {"ctx_pos": r(1, 1, 12, 64), "ctx_neg": r(1, 1, 12, 64), "token_prefix_pos": r(1, 1, 1, 64)}
    torch.save({"textual_learner": tl, "visual_learner": vl, "pq_learner": {}}, tmp_path / "epoch_15.pth")
    model.load_authors_checkpoint(tmp_path / "epoch_15.pth")
    sd = model.learner.state_dict()
    assert torch.equal(sd["textual.ctx_neg"], tl["ctx_neg"][0, 0])
    assert torch.equal(sd["visual_local.down.weight"], vl["local_adater.fc.0.weight"])
    assert torch.equal(sd["visual_global.up.weight"], vl["global_adapter.fc.3.weight"])
    assert torch.equal(sd["visual_global.bn.running_var"], vl["global_adapter.fc.1.running_var"])
    torch.save({"prompt_learner": {}}, tmp_path / "other.pth")
    with pytest.raises(AnomclipError, match="not an AdaptCLIP checkpoint"):
        model.load_authors_checkpoint(tmp_path / "other.pth")


def test_other_attention_modes_are_refused(tiny_clip):
    with pytest.raises(AnomclipError, match="V-V"):
        adaptclip(tiny_clip, dpam="qq")


# ---------------------------------------------------------------- reference numbers and the CLI
def test_reference_rows_name_their_source():
    from anomclip.book.reference import after_anomalyclip

    df = after_anomalyclip()
    rows = df[df["method"] == "AdaptCLIP"].set_index(["dataset", "level", "metric"])
    assert rows.loc[("MVTec AD", "image", "AUROC"), "value"] == 93.5
    assert rows.loc[("VisA", "pixel", "AP"), "value"] == 26.1
    assert set(rows["commit"]) == {"354d9e3332ec5348b3d8e4439111d34f8e94c0a9"}
    assert set(rows["setting"]) == {"tuned on VisA", "tuned on MVTec AD"}


@pytest.mark.slow
def test_cli_trains_and_evaluates_adaptclip_on_synthetic_data(tmp_path):
    import json

    from anomclip.cli import main
    from anomclip.data.synth import make_synthetic

    synth = make_synthetic(tmp_path / "data", n_normal=4, n_anomalous=4, size=96)
    tiny = ["--backbone", "tiny-random", "--pretrained", "none", "--image-size", "96", "--cache-dir",
            str(tmp_path / "cache")]
    ckpt = tmp_path / "adaptclip.pt"
    assert main(["train", "--method", "adaptclip", "--data", str(synth["textures"]), "--out", str(ckpt),
                 "--epochs", "1", *tiny]) == 0
    out = tmp_path / "res.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(synth["objects"]), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    doc = json.loads(out.read_text())
    assert doc["provenance"]["recipe"]["method"] == "adaptclip"
    assert 0.0 <= doc["mean"]["image_auroc"] <= 1.0
