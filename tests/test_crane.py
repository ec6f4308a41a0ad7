"""Crane (docs/after-anomalyclip.md, ## Crane; SPEC §11.1, §11.5) against its equations written out here.

E-Attn head by head, the image-context prompt sequence, score-based pooling, the soft-mean map and
the training loss are each computed by hand in the test (explicit softmax, loops over heads and
pixels, no shared helper), on the tiny random backbone. The authors' code itself is compared in
tools/crane_side_by_side.py (figures in the docs).
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
from anomclip.methods.crane import Crane
from anomclip.recipes import get_recipe, smoke


def crane(tiny_clip, name="crane", **overrides):
    clip_model, tokenizer, info = tiny_clip
    return build_method(smoke(name, **overrides), clip_model, tokenizer, info)


# ---------------------------------------------------------------- recipes and registry
def test_crane_recipes_carry_the_authors_settings():
    r = get_recipe("crane")
    assert (r.method, r.dpam, r.dpam_start, r.layers, r.lam) == ("crane", "eattn", 0.25, (1.0,), 8.0)
    assert r.global_ln_post and r.epochs == 5 and r.betas == (0.6, 0.999) and r.lr == 1e-3 and r.batch_size == 8
    assert (r.n_ctx, r.prompt_depth, r.prompt_length, r.temperature, r.sigma, r.seed) == (12, 9, 4, 0.07, 4.0, 111)
    p = get_recipe("crane-paper")
    assert p.layers == (0.25, 0.5, 0.75, 1.0) and p.lam == 2.0 and p.method == "crane"
    assert CLASSES["crane"] is Crane and METHODS["crane"].display == "Crane" and METHODS["crane"].trains


def test_unknown_attention_mode_lists_eattn():
    with pytest.raises(AnomclipError, match="eattn"):
        get_recipe("crane", dpam="ee")


# ---------------------------------------------------------------- E-Attn
def eattn_by_hand(clip_model, images, start, layers):
    """Crane's surrogate path: per head (softmax(q qᵀ/√d) + softmax(k kᵀ/√d) + softmax(v vᵀ/√d)) v,
    heads concatenated, out_proj (bias once); x_s(start) = x_o(start−1) + a_s, then x_s += a_s;
    no MLP, no ln_2, the input always ln_1 of the original path."""
    v_ = clip_model.visual
    x = ln(tokens_before_ln_pre(v_, images), v_.ln_pre)
    xs, out = None, {}
    for l, blk in enumerate(v_.transformer.resblocks, start=1):
        if l >= start:
            h = ln(x, blk.ln_1)
            w, bias, width = blk.attn.in_proj_weight, blk.attn.in_proj_bias, x.shape[-1]
            q, k, v = (h @ w[i * width:(i + 1) * width].T + bias[i * width:(i + 1) * width] for i in range(3))
            heads = blk.attn.num_heads
            d = width // heads
            per_head = []
            for i in range(heads):
                sl = slice(i * d, (i + 1) * d)
                att = sum(torch.exp(e[..., sl] @ e[..., sl].transpose(1, 2) / math.sqrt(d)) /
                          torch.exp(e[..., sl] @ e[..., sl].transpose(1, 2) / math.sqrt(d)).sum(-1, keepdim=True)
                          for e in (q, k, v))
                assert torch.allclose(att.sum(-1), torch.full_like(att.sum(-1), 3.0), atol=1e-5)  # rows sum to 3
                per_head.append(att @ v[..., sl])
            a_s = torch.cat(per_head, -1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
            xs = (x if xs is None else xs) + a_s
        x = blk(x)
        if l in layers:
            out[l] = F.normalize(ln(xs[:, 1:], v_.ln_post) @ v_.proj, dim=-1)
    g = F.normalize(ln(x[:, 0], v_.ln_post) @ v_.proj, dim=-1)  # global feature with ln_post
    return g, out


def test_eattn_surrogate_path_and_global_feature_match_the_equations(tiny_clip, images):
    model = crane(tiny_clip, dpam_start=3, layers=(3, 5, 8))
    g, feats = model.encode_image(images)
    with torch.no_grad():
        g_ref, ref = eattn_by_hand(tiny_clip[0], images, start=3, layers=(3, 5, 8))
    assert set(feats) == {"eattn"} and set(feats["eattn"]) == {3, 5, 8}
    for layer in (3, 5, 8):
        assert torch.allclose(feats["eattn"][layer], ref[layer], atol=2e-5), layer
    assert torch.allclose(g, g_ref, atol=2e-5)
    with torch.no_grad():  # the original path is CLIP itself: open_clip's embedding (with ln_post)
        assert torch.allclose(g, F.normalize(tiny_clip[0].encode_image(images), dim=-1), atol=1e-5)


# ---------------------------------------------------------------- prompts with the image's context
def test_context_prompt_puts_g_after_the_context_and_moves_end_of_text(tiny_clip):
    from anomclip.model.prompt_learner import encode_prompts

    model = crane(tiny_clip)
    pl = model.prompt_learner
    gen = torch.Generator().manual_seed(3)
    g = F.normalize(torch.randn(3, 64, generator=gen), dim=-1)
    got = model.context_text(g)
    assert got.shape == (3, 2, 64)
    tok = tiny_clip[1]
    emb_layer = tiny_clip[0].token_embedding
    for c, (sentence, ctx) in enumerate(zip(("X X X X X X X X X X X X object.",
                                             "X X X X X X X X X X X X damaged object."),
                                            (pl.ctx_normal, pl.ctx_abnormal))):
        ids = tok([sentence])[0]
        eot = int(ids.argmax())
        for i in range(3):
            rows = [emb_layer.weight[ids[0]]] + list(ctx) + [g[i]] + [emb_layer.weight[t] for t in ids[13:76]]
            seq = torch.stack(rows)[None]  # 77 tokens: SOT, 12 X, g, the rest without the last pad
            new_ids = torch.cat([ids[:13], ids[13:14], ids[13:76]])[None]  # their code repeats the id after g
            assert int(new_ids.argmax()) == eot + 1
            want = encode_prompts(tiny_clip[0], seq, new_ids, pl)[0]
            assert torch.allclose(got[i, c], want, atol=1e-5), (c, i)
    assert not torch.allclose(got[0], got[1])  # one pair of text features per image


def test_context_prompts_are_used_in_training_only(tiny_clip, images):
    model = crane(tiny_clip)
    g, feats = model.encode_image(images)
    with torch.no_grad():
        out = model(images)
        plain = model.score_features(g, feats, model.text_for())
    assert torch.equal(out.image_score, plain.image_score)
    model.context_at_test = True
    with torch.no_grad():
        ctx = model(images)
        want = model.score_features(g, feats, model.context_text(g))
    assert torch.allclose(ctx.image_score, want.image_score) and not torch.allclose(ctx.image_score, plain.image_score)


# ---------------------------------------------------------------- scoring
def random_features(b=2, n=144, d=64, layers=(2, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = F.normalize(torch.randn(b, d, generator=gen), dim=-1)
    feats = {"eattn": {l: F.normalize(torch.randn(b, n, d, generator=gen), dim=-1) for l in layers}}
    text = F.normalize(torch.randn(2, d, generator=gen), dim=-1)
    return g, feats, text


def bilinear_up(p, size):
    return F.interpolate(p, size=(size, size), mode="bilinear", align_corners=False)


def test_score_based_pooling_and_soft_mean_map_follow_the_equations(tiny_clip):
    model = crane(tiny_clip, layers=(2, 4))
    g, feats, text = random_features()
    out = model.score_features(g, feats, text)
    t = 0.07
    for b in range(2):
        logits = [feats["eattn"][l][b] @ text.T / t for l in (2, 4)]  # [N, 2] per layer
        mean_logits = (logits[0] + logits[1]) / 2
        w = torch.exp(mean_logits[:, 1]) / torch.exp(mean_logits).sum(-1)  # softmax of the mean logits
        mean_p = (feats["eattn"][2][b] + feats["eattn"][4][b]) / 2
        z = sum(w[p] * mean_p[p] for p in range(144))
        z = z / z.norm()
        fused = 0.5 * z + 0.5 * g[b]
        fused = fused / fused.norm()
        s = fused @ text.T / t
        score = math.exp(s[1]) / (math.exp(s[0]) + math.exp(s[1]))
        assert out.image_score[b].item() == pytest.approx(score, abs=1e-5)
        probs = [torch.softmax(lg, -1).T.reshape(1, 2, 12, 12) for lg in logits]
        soft_mean = (bilinear_up(probs[0], 96) + bilinear_up(probs[1], 96))[0, 1] / 2
        want = gaussian_filter(soft_mean.double().numpy(), sigma=4)
        np.testing.assert_allclose(out.anomaly_map[b].numpy(), want, atol=1e-5)


# ---------------------------------------------------------------- training loss
def test_training_loss_matches_a_hand_computation(tiny_clip):
    model = crane(tiny_clip, layers=(2, 4), lam=2.0)
    g, feats, _ = random_features()
    labels = torch.tensor([0, 1])
    masks = torch.zeros(2, 96, 96)
    masks[1, 20:50, 30:70] = 1.0
    loss = model.training_loss(g, feats, labels, masks)
    with torch.no_grad():
        text = model.context_text(g)  # [B, 2, D]: training always uses the image's context
        focal_dice, logits = 0.0, []
        for l in (2, 4):
            lg = torch.einsum("bnd,bcd->bnc", feats["eattn"][l], text) / 0.07
            logits.append(lg)
            p = torch.softmax(lg, -1).transpose(1, 2).reshape(2, 2, 12, 12)
            p = p.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)  # nearest: each patch covers 8×8 px
            onehot = torch.stack([1 - masks, masks], 1).clamp(1e-5, 1 - 1e-5)
            pt = (onehot * p).sum(1) + 1e-5
            focal = (-(1 - pt) ** 2 * torch.log(pt)).mean()
            a = (1 - p[:, 0] + p[:, 1]) / 2  # their one dice term, on the anomalous probability
            dice = 1 - ((2 * (a * masks).sum((1, 2)) + 1) / (a.sum((1, 2)) + masks.sum((1, 2)) + 1)).mean()
            focal_dice += focal + dice
        ce = 0.0
        for b in range(2):
            ml = (logits[0][b] + logits[1][b]) / 2
            w = torch.softmax(ml, -1)[:, 1:]
            z = F.normalize(((feats["eattn"][2][b] + feats["eattn"][4][b]) / 2 * w).sum(0), dim=-1)
            fused = F.normalize(0.5 * z + 0.5 * g[b], dim=-1)
            s = text[b] @ fused / 0.01  # τ = 0.01 in training
            ce += -(s[labels[b]] - torch.logsumexp(s, 0)) / 2
    assert loss["local"].item() == pytest.approx(float(focal_dice), rel=1e-5)
    assert loss["global"].item() == pytest.approx(float(ce), rel=1e-5)
    assert loss["total"].item() == pytest.approx(2.0 * float(focal_dice) + 0.2 * float(ce), rel=1e-5)
    loss["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trainable_parameters())


# ---------------------------------------------------------------- the authors' checkpoints
def crane_state(width, n_ctx=12, n_deep=8, seed=0, tokenizer=None):
    """A prompt_learner state dict with the keys and shapes Crane's code saves (their
    PromptLearner.state_dict(): parameters and token buffers)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {"ctx_pos": torch.randn(1, 1, n_ctx, width, generator=gen),
          "ctx_neg": torch.randn(1, 1, n_ctx, width, generator=gen)}
    for i in range(n_deep):
        sd[f"compound_prompts_text.{i}"] = torch.randn(4, width, generator=gen)
    ids = tokenizer(["X " * n_ctx + "object.", "X " * n_ctx + "damaged object."]).int()
    sd["tokenized_prompts_pos"], sd["tokenized_prompts_neg"] = ids[0].view(1, 1, 77), ids[1].view(1, 1, 77)
    for kind in ("pos", "neg"):
        sd[f"token_prefix_{kind}"] = torch.randn(1, 1, 1, width, generator=gen)
        sd[f"token_suffix_{kind}"] = torch.randn(1, 1, 77 - 1 - n_ctx, width, generator=gen)
    return sd


def test_authors_checkpoint_import_takes_their_token_buffers(tiny_clip, tmp_path):
    from anomclip.model.prompt_learner import encode_prompts

    sd = crane_state(64, tokenizer=tiny_clip[1])
    path = tmp_path / "epoch_5.pth"
    torch.save({"prompt_learner": sd}, path)
    model = crane(tiny_clip)
    before = model.text_for().clone()
    model.load_authors_checkpoint(path)
    pl = model.prompt_learner
    assert torch.equal(pl.ctx_normal.detach(), sd["ctx_pos"][0, 0])
    assert torch.equal(pl.ctx_abnormal.detach(), sd["ctx_neg"][0, 0])
    for i in range(8):
        assert torch.equal(pl.deep_prompts[i].detach(), sd[f"compound_prompts_text.{i}"])
    text = model.text_for()
    for c, kind in enumerate(("pos", "neg")):  # the sequence is their prefix, context and suffix buffers
        seq = torch.cat([sd[f"token_prefix_{kind}"][0, 0], sd[f"ctx_{kind}"][0, 0], sd[f"token_suffix_{kind}"][0, 0]])
        want = encode_prompts(tiny_clip[0], seq[None], sd[f"tokenized_prompts_{kind}"][0].long(), pl)[0]
        assert torch.allclose(text[c], want, atol=1e-5)
    assert not torch.allclose(text, before)


def test_wrong_files_for_the_crane_importer_are_one_line_errors(tiny_clip, tmp_path):
    model = crane(tiny_clip)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(AnomclipError, match="junk.pth") as e:
        model.load_authors_checkpoint(junk)
    assert "\n" not in str(e.value)
    sd = crane_state(64, tokenizer=tiny_clip[1])
    no_buffers = {k: v for k, v in sd.items() if not k.startswith("token")}
    path = tmp_path / "anomalyclip.pth"
    torch.save({"prompt_learner": no_buffers}, path)
    with pytest.raises(AnomclipError, match="token_prefix_pos.*missing"):
        model.load_authors_checkpoint(path)
    torch.save({"state_dict": {}}, path)
    with pytest.raises(AnomclipError, match="not a Crane checkpoint"):
        model.load_authors_checkpoint(path)
    vitl = tmp_path / "vitl.pth"
    torch.save({"prompt_learner": crane_state(768, tokenizer=tiny_clip[1])}, vitl)
    with pytest.raises(AnomclipError, match="vitl.pth.*another backbone"):
        model.load_authors_checkpoint(vitl)


# ---------------------------------------------------------------- the engine
def test_anomalyclip_paths_are_untouched_by_eattn(tiny_clip, images):
    clip_model, tokenizer, info = tiny_clip
    from anomclip import AnomalyCLIP

    a = AnomalyCLIP(clip_model, tokenizer, info, smoke("official", dpam="vv"))
    b = AnomalyCLIP(clip_model, tokenizer, info, smoke("official", dpam="vv+eattn"))
    fa, fb = a.encode_image(images), b.encode_image(images)
    assert torch.equal(fa.patches["vv"][8], fb.patches["vv"][8])
    assert torch.equal(fa.global_feature, fb.global_feature)


@pytest.mark.slow
def test_cli_trains_and_evaluates_crane_on_synthetic_data(tmp_path):
    from anomclip.cli import main
    from anomclip.data.synth import make_synthetic

    synth = make_synthetic(tmp_path / "data", n_normal=4, n_anomalous=4, size=96)
    ckpt = tmp_path / "crane.pt"
    assert main(["train", "--method", "crane", "--data", synth["textures"], "--out", ckpt, "--epochs", "1"]) == 0
    out = tmp_path / "res.json"
    assert main(["eval", "--checkpoint", ckpt, "--data", synth["objects"], "--out", out]) == 0
    import json

    doc = json.loads(out.read_text())
    assert doc["provenance"]["recipe"]["method"] == "crane"
