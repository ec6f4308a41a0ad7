"""The model half of AnomalyCLIP (docs/anomalyclip.md §1–4, §9) against formulas written out here."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from anomclip import AnomalyCLIP, AnomclipError
from anomclip.model.backbone import resize_pos_embed
from anomclip.model.prompt_learner import (
    PromptLearner,
    encode_prompts,
    prompt_sentences,
)
from anomclip.model.scoring import gaussian_blur
from by_hand import tokens_before_ln_pre


def embed_by_hand(v, images):
    """The ViT's input tokens written out: conv1 as a product over non-overlapping patches
    (CLIP's conv1 has no bias), the class token, the positional embedding, then ``ln_pre``."""
    x = tokens_before_ln_pre(v, images)
    return F.layer_norm(x, x.shape[-1:], v.ln_pre.weight, v.ln_pre.bias, v.ln_pre.eps)


def wrap(tiny_clip, **overrides):
    clip_model, tokenizer, info = tiny_clip
    from anomclip.recipes import smoke

    return AnomalyCLIP(clip_model, tokenizer, info, smoke("official", **overrides))


# ---------------------------------------------------------------- correctness anchors
def test_dpam_off_global_feature_equals_open_clip_encode_image(tiny_clip, images):
    clip_model = tiny_clip[0]
    model = wrap(tiny_clip, dpam="none", global_ln_post=True)
    g = model.encode_image(images).global_feature
    with torch.no_grad():
        ref = F.normalize(clip_model.encode_image(images), dim=-1)
    assert torch.allclose(g, ref, atol=1e-5), (g - ref).abs().max()


def test_global_feature_without_ln_post_is_cls_token_times_proj(tiny_clip, images):
    clip_model = tiny_clip[0]
    model = wrap(tiny_clip)  # authors: no ln_post on the global feature
    g = model.encode_image(images).global_feature
    v = clip_model.visual
    with torch.no_grad():
        x = embed_by_hand(v, images)
        for blk in v.transformer.resblocks:
            x = blk(x)
        ref = F.normalize(x[:, 0] @ v.proj, dim=-1)
    assert torch.allclose(g, ref, atol=1e-5)


def test_text_without_learnable_tokens_equals_open_clip_encode_text(tiny_clip):
    clip_model, tokenizer, _ = tiny_clip
    learner = PromptLearner(clip_model.token_embedding, tokenizer, n_ctx=0, depth=1, length=0)
    emb, ids = learner()
    with torch.no_grad():
        ours = encode_prompts(clip_model, emb, ids, learner)
        ref = F.normalize(clip_model.encode_text(tokenizer(["object.", "damaged object."])), dim=-1)
    assert torch.allclose(ours, ref, atol=1e-5)


# ---------------------------------------------------------------- DPAM against the formula
def reference_dpam(clip_model, images, mode, start, layers):
    """docs/anomalyclip.md §2 written out head by head with explicit softmax (no SDPA, no shared code)."""
    v_ = clip_model.visual
    x = embed_by_hand(v_, images)
    xs, out = None, {}
    for l, blk in enumerate(v_.transformer.resblocks, start=1):
        if l >= start:
            h = blk.ln_1(x)
            W, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
            width = x.shape[-1]
            q = h @ W[:width].T + b[:width]
            k = h @ W[width:2 * width].T + b[width:2 * width]
            v = h @ W[2 * width:].T + b[2 * width:]
            heads = blk.attn.num_heads
            d = width // heads
            pair = {"vv": (v, v), "qq": (q, q), "kk": (k, k), "qk": (q, k)}[mode]
            per_head = []
            for i in range(heads):
                sl = slice(i * d, (i + 1) * d)
                a, bb = pair[0][..., sl], pair[1][..., sl]
                att = torch.softmax(a @ bb.transpose(1, 2) / math.sqrt(d), dim=-1)
                per_head.append(att @ v[..., sl])
            a_s = torch.cat(per_head, dim=-1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
            xs = (x if xs is None else xs) + a_s  # no MLP, no ln_2; input is ln_1 of x_o
        x = blk(x)  # the original path: open_clip's untouched block
        if l in layers:
            out[l] = F.normalize(v_.ln_post(xs[:, 1:]) @ v_.proj, dim=-1)
    return out


@pytest.mark.parametrize("mode", ["vv", "qq", "kk", "qk"])
def test_dpam_mode_matches_spec_formula(tiny_clip, images, mode):
    model = wrap(tiny_clip, dpam=mode, dpam_start=3, layers=(3, 5, 8))
    patches = model.encode_image(images).by_layer()
    with torch.no_grad():
        ref = reference_dpam(tiny_clip[0], images, mode, start=3, layers=(3, 5, 8))
    assert set(patches) == {3, 5, 8}
    for layer in (3, 5, 8):
        assert patches[layer].shape == (2, 144, 64)
        assert torch.allclose(patches[layer], ref[layer], atol=1e-5), (mode, layer)


def test_surrogate_path_ignores_mlp_and_ln2(tiny_clip, images):
    """Changing a DPAM block's MLP changes later original tokens but not that block's own surrogate."""
    clip_model = tiny_clip[0]
    model = wrap(tiny_clip, dpam="vv", dpam_start=3, layers=(3,))
    before = model.encode_image(images).by_layer()
    blk = clip_model.visual.transformer.resblocks[2]  # block 3
    saved = blk.mlp.c_fc.bias.detach().clone()
    try:
        with torch.no_grad():
            blk.mlp.c_fc.bias.add_(1.0)
            blk.ln_2.weight.mul_(3.0)
        after = model.encode_image(images).by_layer()
    finally:
        with torch.no_grad():
            blk.mlp.c_fc.bias.copy_(saved)
            blk.ln_2.weight.div_(3.0)
    assert torch.allclose(before[3], after[3], atol=1e-6)


def test_dpam_off_patches_come_from_original_path(tiny_clip, images):
    clip_model = tiny_clip[0]
    model = wrap(tiny_clip, dpam="none", layers=(4,))
    patches = model.encode_image(images).by_layer()
    v = clip_model.visual
    with torch.no_grad():
        x = embed_by_hand(v, images)
        for blk in v.transformer.resblocks[:4]:
            x = blk(x)
        ref = F.normalize(v.ln_post(x[:, 1:]) @ v.proj, dim=-1)
    assert torch.allclose(patches[4], ref, atol=1e-5)


def test_layers_given_as_fractions_scale_with_depth(tiny_clip):
    paper = wrap(tiny_clip, layers=(0.25, 0.5, 0.75, 1.0), dpam_start=0.25)
    assert paper.layers == (2, 4, 6, 8) and paper.dpam_start == 2  # ViT-L: 6, 12, 18, 24 and 6


# ---------------------------------------------------------------- deep prompts
def test_object_aware_training_text_of_several_categories_equals_one_pass_per_category(tiny_clip):
    """In training, the prompts of every category of a batch go through the text tower together:
    the features and their gradients are those of one pass per category (the rows never meet)."""
    model = wrap(tiny_clip, object_aware=True, prompt_depth=9, prompt_length=4)
    names = ["bottle", "metal nut", "bottle", "carpet"]
    together = model.text_for(names)
    grads = torch.autograd.grad(together.square().sum(), list(model.prompt_learner.parameters()))
    # one category at a time, by the unbatched path, with the same loss summed over the batch
    alone = {n: model.encode_text(n) for n in dict.fromkeys(names)}
    separate = torch.stack([alone[n] for n in names])
    want = torch.autograd.grad(separate.square().sum(), list(model.prompt_learner.parameters()))
    assert together.shape == (4, 2, separate.shape[-1])
    torch.testing.assert_close(together, separate, atol=1e-6, rtol=1e-5)
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_deep_prompts_overwrite_positions_of_blocks_2_to_depth(tiny_clip):
    clip_model, tokenizer, _ = tiny_clip
    learner = PromptLearner(clip_model.token_embedding, tokenizer, n_ctx=12, depth=9, length=4, seed=1)
    seen = {}
    # what enters block j is what its ln_1 normalises (the block's module itself may not be called:
    # blocks.forward_block runs its operations)
    hooks = [blk.ln_1.register_forward_pre_hook(lambda mod, args, j=j: seen.__setitem__(j, args[0].detach().clone()))
             for j, blk in enumerate(clip_model.transformer.resblocks, start=1)]
    try:
        emb, ids = learner()
        encode_prompts(clip_model, emb, ids, learner)
    finally:
        for h in hooks:
            h.remove()
    pos = clip_model.positional_embedding
    # block 1 gets the context tokens (+ positional embedding), not a deep prompt
    assert torch.allclose(seen[1][0, 1:13], learner.ctx_normal.detach() + pos[1:13], atol=1e-6)
    assert torch.allclose(seen[1][1, 1:13], learner.ctx_abnormal.detach() + pos[1:13], atol=1e-6)
    for j in range(2, 10):  # blocks 2..9: positions 1..4 overwritten (no positional embedding added)
        for row in (0, 1):
            assert torch.equal(seen[j][row, 1:5], learner.deep_prompts[j - 2].detach())
    for j in range(10, 13):  # blocks 10..12 get nothing
        assert not torch.equal(seen[j][0, 1:5], learner.deep_prompts[-1].detach())


def full_length_text(clip_model, emb, ids, learner):
    """The text tower over all 77 positions with the whole causal mask, deep prompts inserted
    by hand (docs/anomalyclip.md §3): what the authors' code computes."""
    x = emb + clip_model.positional_embedding
    mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1)
    for j, blk in enumerate(clip_model.transformer.resblocks, start=1):
        if 2 <= j <= learner.depth:
            d = learner.deep(j - 2)  # the deep prompt as inserted (fp16-rounded with the authors' quirk)
            x = torch.cat([x[:, :1], d.expand(x.shape[0], -1, -1), x[:, 1 + d.shape[0]:]], dim=1)
        # open_clip 2.26–3.x say how their blocks run; the development branch runs batch-first only
        x = blk(x, attn_mask=mask) if getattr(clip_model.transformer, "batch_first", True) else \
            blk(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
    x = clip_model.ln_final(x)[torch.arange(x.shape[0]), ids.argmax(dim=-1)]
    return F.normalize(x @ clip_model.text_projection, dim=-1)


@pytest.mark.parametrize("cls_name", [None, "metal nut with a long name"])
def test_text_tower_on_the_positions_up_to_end_of_text_equals_the_full_length_pass(tiny_clip, cls_name):
    """encode_prompts runs only the positions up to the last end-of-text token (causal mask):
    the features and the gradients of every learnable tensor equal the 77-position pass."""
    clip_model, tokenizer, _ = tiny_clip
    learner = PromptLearner(clip_model.token_embedding, tokenizer, n_ctx=12, depth=9, length=4, seed=3,
                            object_aware=cls_name is not None)
    emb, ids = learner(cls_name)
    assert int(ids.argmax(dim=-1).max()) + 1 < 40  # the short pass is much shorter than 77
    ours = encode_prompts(clip_model, emb, ids, learner)
    ref = full_length_text(clip_model, *learner(cls_name), learner)
    assert torch.allclose(ours, ref, atol=1e-6), (ours - ref).abs().max()
    tensors = [learner.ctx_normal, learner.ctx_abnormal, *learner.deep_prompts]
    w = torch.randn_like(ref)
    g_ours = torch.autograd.grad((ours * w).sum(), tensors)
    g_ref = torch.autograd.grad((ref * w).sum(), tensors)
    for a, b in zip(g_ours, g_ref):
        scale = float(b.abs().max())  # float32 round-off through twelve blocks, relative to the gradient
        assert torch.allclose(a, b, atol=1e-5 * scale, rtol=1e-5), ((a - b).abs().max(), scale)


def test_the_authors_arithmetic_recipe_runs_all_77_positions_bit_for_bit(tiny_clip):
    """official-fp16-quirk reproduces the authors' code bit for bit: its text tower is their
    77-position pass, not the shortened one (equal only to round-off)."""
    clip_model, tokenizer, _ = tiny_clip
    learner = PromptLearner(clip_model.token_embedding, tokenizer, n_ctx=12, depth=9, length=4, seed=3,
                            fp16_quirk=True)
    emb, ids = learner()
    with torch.no_grad():
        assert torch.equal(encode_prompts(clip_model, emb, ids, learner), full_length_text(clip_model, emb, ids, learner))


def test_each_learnable_tensor_changes_the_text_and_gets_gradients(tiny_clip):
    model = wrap(tiny_clip)
    text = model.encode_text()
    (text[1] - text[0]).pow(2).sum().backward()
    learner = model.prompt_learner
    named = dict(learner.named_parameters())
    assert len(named) == 2 + 8
    for name, p in named.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.clip.parameters())
    with torch.no_grad():
        base = model.encode_text().clone()
        for name, p in named.items():  # (a constant shift would vanish in the LayerNorms)
            delta = torch.randn(p.shape, generator=torch.Generator().manual_seed(1))
            p.add_(delta)
            assert not torch.allclose(model.encode_text(), base, atol=1e-4), name
            p.sub_(delta)


def test_trainable_parameters_number_43008_for_vit_l_text_tower(tiny_clip):
    tokenizer = tiny_clip[1]
    emb = torch.nn.Embedding(49408, 768)
    learner = PromptLearner(emb, tokenizer, n_ctx=12, depth=9, length=4, text_layers=12)
    assert sum(p.numel() for p in learner.parameters()) == 12 * 768 * 2 + 8 * 4 * 768 == 43008
    shared = PromptLearner(emb, tokenizer, n_ctx=12, shared=True, depth=9, length=4, text_layers=12)
    assert sum(p.numel() for p in shared.parameters()) == 12 * 768 + 8 * 4 * 768


def test_prompt_templates_and_variants():
    assert prompt_sentences(3) == ("X X X object.", "X X X damaged object.")
    assert prompt_sentences(2, "flawed", "metal_nut") == ("X X metal nut.", "X X flawed metal nut.")


def test_shared_context_is_one_tensor_for_both_prompts(tiny_clip):
    model = wrap(tiny_clip, shared_ctx=True)
    emb, _ = model.prompt_learner()
    assert torch.equal(emb[0, 1:13], emb[1, 1:13])


def test_text_features_are_cached_until_prompts_change(tiny_clip):
    model = wrap(tiny_clip)
    with torch.no_grad():
        a = model.encode_text()
        assert model.encode_text() is a
        model.prompt_learner.ctx_normal.mul_(2.0)
        b = model.encode_text()
        assert b is not a and not torch.allclose(a, b)


# ---------------------------------------------------------------- scoring
def test_image_score_and_map_follow_spec_formulas(tiny_clip, images):
    model = wrap(tiny_clip, layers=(4, 8), dpam_start=2)
    with torch.no_grad():
        out = model(images)
        g, patches = model.encode_image(images)
        patches = patches["vv"]
        t = model.encode_text()
    logits = (g @ t.T) / 0.07
    p_anom = torch.exp(logits[:, 1]) / torch.exp(logits).sum(1)
    assert torch.allclose(out.image_score, p_anom, atol=1e-6)
    total = np.zeros((2, 96, 96))
    for layer in (4, 8):
        pl = torch.softmax(patches[layer] @ t.T / 0.07, dim=-1)  # [B, 144, 2]
        grid = pl.permute(0, 2, 1).reshape(2, 2, 12, 12)
        up = F.interpolate(grid, size=(96, 96), mode="bilinear", align_corners=False)
        total += (0.5 * (1 - up[:, 0]) + 0.5 * up[:, 1]).numpy()
    expected = np.stack([gaussian_filter(m, sigma=4) for m in total])
    assert out.anomaly_map.shape == (2, 96, 96)
    assert np.allclose(out.anomaly_map.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("shape,sigma", [((3, 40, 33), 4.0), ((1, 10, 7), 4.0), ((2, 20, 20), 1.5)])
def test_gaussian_blur_equals_scipy_gaussian_filter(shape, sigma):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours = gaussian_blur(x, sigma).numpy()
    ref = np.stack([gaussian_filter(m, sigma=sigma) for m in x.numpy()])  # mode reflect, truncate 4
    assert np.allclose(ours, ref, atol=1e-12)


def test_dpam_ensemble_averages_logits_of_each_mode(tiny_clip, images):
    model = wrap(tiny_clip, dpam="qq+vv", layers=(8,))
    with torch.no_grad():
        out = model(images)
        _, feats = model.encode_image(images)
        t = model.encode_text()
    mean_logits = (feats["qq"][8] @ t.T + feats["vv"][8] @ t.T) / 2 / 0.07
    pa = torch.softmax(mean_logits, -1)[..., 1].reshape(2, 1, 12, 12)
    up = F.interpolate(pa, size=(96, 96), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(out.layer_probs[8][:, 1], up, atol=1e-6)


# ---------------------------------------------------------------- backbone
def test_positional_embedding_resize_is_bilinear_align_corners_false():
    g, n, w = 4, 7, 3
    pos = torch.randn(1 + g * g, w, generator=torch.Generator().manual_seed(0))
    out = resize_pos_embed(pos, n, "bilinear")
    assert torch.equal(out[0], pos[0])  # class position kept as is
    grid = pos[1:].reshape(g, g, w)

    def src(o):  # PyTorch's align_corners=False source coordinate, clamped at 0
        s = max((o + 0.5) * g / n - 0.5, 0.0)
        i0 = min(int(math.floor(s)), g - 1)
        return i0, min(i0 + 1, g - 1), s - i0

    expected = torch.zeros(n, n, w)
    for oy in range(n):
        y0, y1, wy = src(oy)
        for ox in range(n):
            x0, x1, wx = src(ox)
            expected[oy, ox] = ((1 - wy) * ((1 - wx) * grid[y0, x0] + wx * grid[y0, x1])
                                + wy * ((1 - wx) * grid[y1, x0] + wx * grid[y1, x1]))
    assert torch.allclose(out[1:].reshape(n, n, w), expected, atol=1e-6)
    assert not torch.allclose(resize_pos_embed(pos, n, "bicubic"), out)


def test_bicubic_resize_is_open_clips_resize_pos_embed_as_vands_loader_uses():
    """VAND's loader resizes with open_clip's resize_pos_embed (bicubic, antialias, align_corners=False)."""
    from open_clip.model import resize_pos_embed as open_clip_resize

    from anomclip.model.backbone import _tiny_clip, load_clip
    from anomclip.recipes import get_recipe

    native = _tiny_clip()  # 64 px: an 8×8 grid
    state = {"visual.positional_embedding": native.visual.positional_embedding.detach().clone()}
    clip_model, _, info = load_clip("tiny-random", None, image_size=96, pos_interpolation="bicubic-antialias")
    open_clip_resize(state, clip_model)  # to the 12×12 grid of the model at 96 px
    want = state["visual.positional_embedding"]
    assert want.shape == (1 + 12 * 12, 64) and info.pos_interpolation == "bicubic-antialias"
    assert torch.allclose(clip_model.visual.positional_embedding, want, atol=1e-6)
    for other in ("bilinear", "bicubic"):  # neither is open_clip's resize (antialiasing changes the kernel)
        model, _, _ = load_clip("tiny-random", None, image_size=96, pos_interpolation=other)
        assert not torch.allclose(model.visual.positional_embedding, want, atol=1e-3), other
    assert get_recipe("vand").pos_interpolation == "bicubic-antialias"
    assert get_recipe("official").pos_interpolation == "bilinear"


def test_unknown_backbone_and_missing_weights_file_are_one_line_errors():
    with pytest.raises(AnomclipError, match="unknown backbone") as e:
        AnomalyCLIP.create(backbone="ViT-Q-99", pretrained=None)
    assert "\n" not in str(e.value)
    with pytest.raises(AnomclipError, match="does not exist"):
        AnomalyCLIP.create(backbone="ViT-B-16", pretrained="/nowhere/ViT-B-16.pt")


@pytest.mark.slow  # builds ViT-B-16 before open_clip looks for its weights
def test_unreachable_openai_weights_say_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(AnomclipError) as e:
        AnomalyCLIP.create(backbone="ViT-B-16", pretrained="openai", image_size=224, cache_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg and "ViT-B-16" in msg
    assert "ViT-B-16.pt" in msg and "ViT-L-14-336px.pt" not in msg  # the file of the model asked for


def test_the_openai_file_to_download_is_named_after_the_model():
    from anomclip.model.backbone import weights_file_hint

    assert weights_file_hint("ViT-L-14-336", "openai").endswith(" ViT-L-14-336px.pt")  # OpenAI's own file names
    assert weights_file_hint("ViT-B-16", "openai").endswith(" ViT-B-16.pt")
    assert "OpenAI" not in weights_file_hint("ViT-B-16", "laion2b_s34b_b88k")


# ---------------------------------------------------------------- checkpoints
def authors_state(width, n_ctx=12, n_deep=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {
        "ctx_pos": torch.randn(1, 1, n_ctx, width, generator=g),
        "ctx_neg": torch.randn(1, 1, n_ctx, width, generator=g),
        "token_prefix_pos": torch.randn(1, 1, 1, width), "token_prefix_neg": torch.randn(1, 1, 1, width),
        "token_suffix_pos": torch.randn(1, 1, 64, width), "token_suffix_neg": torch.randn(1, 1, 64, width),
        "tokenized_prompts_pos": torch.zeros(1, 1, 77, dtype=torch.long),
        "tokenized_prompts_neg": torch.zeros(1, 1, 77, dtype=torch.long),
    }
    for i in range(n_deep):
        sd[f"compound_prompts_text.{i}"] = torch.randn(4, width, generator=g)
        sd[f"compound_prompt_projections.{i}.weight"] = torch.randn(896, width)
        sd[f"compound_prompt_projections.{i}.bias"] = torch.randn(896)
    return sd


def test_authors_checkpoint_import_round_trips(tiny_clip, tmp_path):
    sd = authors_state(64)
    path = tmp_path / "epoch_15.pth"
    torch.save({"prompt_learner": sd, "epoch": 15}, path)
    model = wrap(tiny_clip)
    model.load_authors_checkpoint(path)
    pl = model.prompt_learner
    assert torch.equal(pl.ctx_normal.detach(), sd["ctx_pos"][0, 0])
    assert torch.equal(pl.ctx_abnormal.detach(), sd["ctx_neg"][0, 0])
    for i in range(8):
        assert torch.equal(pl.deep_prompts[i].detach(), sd[f"compound_prompts_text.{i}"])


def test_authors_checkpoint_for_another_backbone_is_refused(tiny_clip, tmp_path):
    path = tmp_path / "vitl.pth"
    torch.save({"prompt_learner": authors_state(768)}, path)
    with pytest.raises(AnomclipError, match="vitl.pth.*another backbone"):
        wrap(tiny_clip).load_authors_checkpoint(path)


def test_own_checkpoint_round_trip_and_junk_files(tiny_clip, tmp_path):
    model = wrap(tiny_clip)
    with torch.no_grad():
        model.prompt_learner.ctx_normal.mul_(3.0)
    path = model.save_prompts(tmp_path / "prompts.pt")
    other = wrap(tiny_clip)
    other.load_prompts(path)
    for a, b in zip(model.prompt_learner.parameters(), other.prompt_learner.parameters()):
        assert torch.equal(a, b)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(AnomclipError, match="junk.pt"):
        other.load_prompts(junk)
    with pytest.raises(AnomclipError, match="does not exist"):
        other.load_prompts(tmp_path / "missing.pt")
    wrong = wrap(tiny_clip, prompt_depth=5)
    with pytest.raises(AnomclipError, match="do not fit"):
        wrong.load_prompts(path)


# ---------------------------------------------------------------- the real backbone (slow)
@pytest.mark.slow
def test_vit_l_14_336_at_518_gives_37x37_patches_and_518_maps():
    torch.manual_seed(0)
    model = AnomalyCLIP.create("paper", backbone="ViT-L-14-336", pretrained=None, image_size=518)
    assert model.layers == (6, 12, 18, 24) and model.dpam_start == 6
    x = torch.randn(1, 3, 518, 518)
    with torch.no_grad():
        out = model(x)
        g, patches = model.encode_image(x)
    patches = patches["vv"]
    assert g.shape == (1, 768)
    assert all(p.shape == (1, 37 * 37, 768) for p in patches.values())
    assert out.anomaly_map.shape == (1, 518, 518)
    assert sum(p.numel() for p in model.trainable_parameters()) == 43008


# ---------------------------------------------------------------- typed results, one factory
@pytest.mark.parametrize("dpam,modes", [("none", ["none"]), ("vv", ["vv"]), ("qq+vv", ["qq", "vv"])])
def test_encode_image_returns_the_same_fields_whatever_the_recipe(tiny_clip, images, dpam, modes):
    model = wrap(tiny_clip, dpam=dpam, layers=(6, 8), dpam_start=2)
    feats = model.encode_image(images)
    assert type(feats).__name__ == "VisualFeatures" and feats._fields == ("global_feature", "patches")
    assert feats.global_feature.shape == (2, 64)
    assert sorted(feats.patches) == modes and all(sorted(d) == [6, 8] for d in feats.patches.values())
    if len(modes) == 1:
        assert feats.by_layer() is feats.patches[modes[0]]
    else:
        with pytest.raises(AnomclipError, match="several DPAM modes"):
            feats.by_layer()
        assert feats.by_layer("qq") is feats.patches["qq"]


def test_attention_maps_match_the_softmax_of_each_product(tiny_clip, images):
    clip_model = tiny_clip[0]
    model = wrap(tiny_clip)
    v = clip_model.visual
    with torch.no_grad():
        maps = model.encoder.attention_maps(images, 3)
        x = embed_by_hand(v, images)
        for blk in v.transformer.resblocks[:2]:
            x = blk(x)
        blk = v.transformer.resblocks[2]
        h = F.layer_norm(x, x.shape[-1:], blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        q, k, val = (h @ w[i * 64:(i + 1) * 64].T + b[i * 64:(i + 1) * 64] for i in range(3))
        heads, d = blk.attn.num_heads, 64 // blk.attn.num_heads
        for mode, (a, c) in {"qk": (q, k), "qq": (q, q), "kk": (k, k), "vv": (val, val)}.items():
            for i in range(heads):
                sl = slice(i * d, (i + 1) * d)
                ref = torch.softmax(a[..., sl] @ c[..., sl].transpose(1, 2) / math.sqrt(d), dim=-1)
                assert torch.allclose(maps[mode][:, i], ref, atol=1e-5), (mode, i)


def test_create_builds_the_recipe_with_settings_as_given():
    model = AnomalyCLIP.create("paper", backbone="tiny-random", pretrained=None, image_size=64)
    assert model.recipe.pretrained is None and model.recipe.layers == (0.25, 0.5, 0.75, 1.0)
    assert model.layers == (2, 4, 6, 8) and model.image_size == 64 and not model.info.trained
    assert not hasattr(AnomalyCLIP, "from_recipe")


# ---------------------------------------------------------------- OpenAI's TorchScript weights file
class _Archive(torch.nn.Module):
    """A TorchScript archive holding a state dict, as OpenAI's ViT-L-14-336px.pt does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def torchscript_archive(state: dict, path) -> None:
    root = _Archive()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        mod = root
        for part in parents:
            if not hasattr(mod, part):
                mod.add_module(part, torch.nn.Module())
            mod = getattr(mod, part)
        mod.register_buffer(leaf, value.clone())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch calls TorchScript deprecated
        torch.jit.script(root).save(str(path))


def random_tiny_state(seed: int = 5) -> dict:
    from anomclip.model.backbone import _tiny_clip

    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in _tiny_clip().state_dict().items()}
    state.update(input_resolution=torch.tensor(64), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    return state


def test_torchscript_weights_file_is_loaded_through_its_state_dict(tmp_path):
    from anomclip.model.backbone import is_torchscript, load_clip

    state = random_tiny_state()
    path = tmp_path / "ViT-tiny.pt"
    torchscript_archive(state, path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "plain.pt")
    assert is_torchscript(path) and not is_torchscript(tmp_path / "plain.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no third-party warning escapes the loader
        model, _, info = load_clip("tiny-random", str(path), image_size=None)
    own = model.state_dict()
    assert set(own) == set(state) - {"input_resolution", "context_length", "vocab_size"}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key
    assert info.trained and "ViT-tiny.pt" in info.weights


def test_named_backbone_with_a_torchscript_file_skips_open_clips_loader(tmp_path, monkeypatch):
    """open_clip's own loader refuses TorchScript (weights_only): the architecture comes from it,
    the weights from the archive."""
    import open_clip

    from anomclip.model.backbone import _tiny_clip, load_clip

    calls = []

    def create_model(name, pretrained=None, **kw):
        calls.append((name, pretrained))
        return _tiny_clip()

    monkeypatch.setattr(open_clip, "list_models", lambda: ["ViT-Tiny-8"])
    monkeypatch.setattr(open_clip, "create_model", create_model)
    monkeypatch.setattr(open_clip, "get_tokenizer", lambda name: open_clip.tokenizer.SimpleTokenizer())
    state = random_tiny_state(7)
    path = tmp_path / "ViT-Tiny-8px.pt"
    torchscript_archive(state, path)
    model, _, info = load_clip("ViT-Tiny-8", str(path), image_size=None)
    assert calls == [("ViT-Tiny-8", None)]
    assert torch.equal(model.visual.proj, state["visual.proj"]) and "ViT-Tiny-8px.pt" in info.weights
    wrong = {k: v for k, v in state.items() if not k.startswith("visual.ln_post")}
    torchscript_archive(wrong, tmp_path / "wrong.pt")
    with pytest.raises(AnomclipError, match="wrong.pt does not fit backbone ViT-Tiny-8") as e:
        load_clip("ViT-Tiny-8", str(tmp_path / "wrong.pt"), image_size=None)
    assert "\n" not in str(e.value)


def test_loading_quiets_only_the_loaders_loggers(caplog):
    import logging

    from anomclip.model.backbone import quiet_loggers

    with caplog.at_level(logging.INFO):
        with quiet_loggers():
            logging.getLogger("open_clip").warning("retrying download")
            logging.info("Loading pretrained weights")  # open_clip logs on the root logger
            logging.getLogger("my.experiment").warning("still heard")
        logging.info("heard after loading")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["still heard", "heard after loading"]
    assert logging.root.manager.disable == 0
