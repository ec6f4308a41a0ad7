"""AdaptCLIP in anomclip vs the authors' code (gaobb/AdaptCLIP), side by side on identical random weights.

    git --git-dir=<mirror> archive HEAD | tar -x -C /tmp/adaptclip_src
    python tools/adaptclip_side_by_side.py --src /tmp/adaptclip_src [--images 2] [--full]

One random CLIP (open_clip, QuickGELU, fp32, every parameter perturbed) is built; its state dict is given
to the authors' ``build_model`` (their loader of OpenAI state dicts) and DPAM is switched on there with
their ``DAPM_replace(DPAM_layer=20)`` (V-V in blocks 6..24), here with the ``adaptclip`` recipe. The
default configuration is small in the vision tower (24 blocks of width 128, 2 heads, patch 14, 336 px
positions resized to 518 as theirs) and real-sized in the text tower and the joint space (width 768, 12
heads, 12 blocks; embed dim 768), so the adapters have their real shapes (768 → 192 → 768, 609,024
learnable parameters); ``--full`` uses ViT-L-14-336's vision tower (width 1024, 16 heads).

Their ``TextualAdapter`` and ``VisualAdapter`` are built with their initialisation; the BatchNorm affine
and running statistics are then perturbed (a trained state) and saved in their checkpoint layout
(``{"textual_learner", "visual_learner"}``), which :meth:`AdaptCLIP.load_authors_checkpoint` imports.

Compared (largest |Δ| and |Δ| / max|theirs| printed; the figures go to docs/after-anomalyclip.md):
  1. the global feature (no ln_post) and the layer-24 patch features with their class token;
  2. T_static (their ``prepare_static_text_feature``) and T_learn (their ``encode_text_learn``, test.py);
  3. test time, zero-shot (their test.py with ``--k_shots 0``, ``--fusion_type average_mean``, σ = 4): the
     VA and TA logits and maps, the fused map before and after scipy's ``gaussian_filter``, the image scores;
  4. one training step: their train.py's loss (VA + TA, ``FocalLoss``, ``BinaryDiceLoss``, adapters in
     ``train()`` mode), its gradients on every learnable tensor, and the BatchNorm running statistics after it.
Their ``pkg_resources`` import is replaced by a stand-in carrying ``packaging``; their ``.cuda()`` calls are
made no-ops (CPU). Nothing else of theirs is changed.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from side_by_side import rel, random_clip


def stub_missing_modules() -> None:
    import packaging.version

    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        m = types.ModuleType("pkg_resources")
        m.packaging = types.SimpleNamespace(version=packaging.version)
        sys.modules["pkg_resources"] = m
    torch.Tensor.cuda = lambda self, *a, **k: self  # their code moves text tokens and labels with .cuda()


#: our learner's tensor → theirs (checkpoint layout)
NAMES = {"textual.ctx_pos": ("textual_learner", "ctx_pos"), "textual.ctx_neg": ("textual_learner", "ctx_neg")}
for _ours, _theirs in (("visual_local", "local_adater"), ("visual_global", "global_adapter")):
    for _a, _b in (("down.weight", "fc.0.weight"), ("bn.weight", "fc.1.weight"), ("bn.bias", "fc.1.bias"),
                   ("bn.running_mean", "fc.1.running_mean"), ("bn.running_var", "fc.1.running_var"),
                   ("up.weight", "fc.3.weight")):
        NAMES[f"{_ours}.{_a}"] = ("visual_learner", f"{_theirs}.{_b}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="/tmp/adaptclip_src")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="ViT-L-14-336's vision tower (width 1024)")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    src = Path(a.src).resolve()
    stub_missing_modules()
    sys.path.insert(0, str(src))
    from adaptcliplib import BinaryDiceLoss, FocalLoss, TextualAdapter, VisualAdapter, fusion_fun  # noqa: E402
    from adaptcliplib.build_model import build_model  # noqa: E402

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from anomclip.methods.adaptclip import AdaptCLIP
    from anomclip.model import backbone as bb
    from anomclip.recipes import get_recipe

    commit = os.environ.get("ADAPTCLIP_COMMIT", "354d9e3332ec5348b3d8e4439111d34f8e94c0a9")
    width = 1024 if a.full else 128
    clip = random_clip(width)
    theirs = build_model("ViT", copy.deepcopy(clip.state_dict()))
    theirs.visual.DAPM_replace(DPAM_layer=20)
    theirs.eval()
    bb.set_image_size(clip.visual, 518, "bilinear")  # the authors' resize of the position grid
    info = bb.describe(clip, name=f"random-w{width}", weights="random", pos_interpolation="bilinear")
    recipe = get_recipe("adaptclip", backbone=info.name, pretrained="random", image_size=518)
    ours = AdaptCLIP(clip, bb.open_clip_module().tokenizer.SimpleTokenizer(), info, recipe).eval()

    # their adapters, with a perturbed ("trained") state, imported into ours through their checkpoint layout
    torch.manual_seed(10)
    tl = TextualAdapter(theirs, 518, 12)
    vl = VisualAdapter(518, 14, input_dim=768, reduction=4)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mod in (vl.local_adater.fc[1], vl.global_adapter.fc[1]):
            mod.weight.add_(0.2 * torch.randn(mod.weight.shape, generator=gen))
            mod.bias.add_(0.2 * torch.randn(mod.bias.shape, generator=gen))
            mod.running_mean.add_(0.05 * torch.randn(mod.running_mean.shape, generator=gen))
            mod.running_var.mul_(0.002 + 0.001 * torch.rand(mod.running_var.shape, generator=gen))
    path = Path("/tmp/adaptclip_side_by_side_epoch.pth")
    torch.save({"textual_learner": tl.state_dict(), "visual_learner": vl.state_dict(), "pq_learner": {}}, path)
    ours.load_authors_checkpoint(path)
    path.unlink()
    report = {"commit": commit, "vision_width": width, "images": a.images,
              "learnable_parameters": {"ours": sum(p.numel() for p in ours.trainable_parameters()),
                                       "theirs": sum(p.numel() for p in tl.parameters()) +
                                       sum(p.numel() for p in vl.parameters())}}

    g = torch.Generator().manual_seed(7)
    images = torch.randn(a.images, 3, 518, 518, generator=g)

    # 1. visual features
    t0 = time.perf_counter()
    with torch.no_grad():
        g_t, p_t = theirs.encode_image(images, [6, 12, 18, 24], DPAM_layer=20)
    t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    g_o, feats = ours.encode_image(images)
    t_ours = time.perf_counter() - t0
    report["global"] = rel(g_o, g_t)
    report["patches_layer24_with_cls"] = rel(feats["vv"][24], p_t[-1])
    report["their_layers_distinct"] = not any(torch.equal(p_t[i], p_t[j]) for i in range(4) for j in range(i + 1, 4))
    report["seconds_per_image_encode"] = {"ours": t_ours / a.images, "theirs": t_theirs / a.images}

    # 2. text
    with torch.no_grad():
        tl.prepare_static_text_feature(theirs)
        static_t = tl.static_text_features
        prompts, tok = tl()
        learned_t = theirs.encode_text_learn(prompts, tok).float()
        text_o = ours.text_for()
    report["text_static"] = rel(text_o[0], F.normalize(static_t, dim=-1))
    report["text_learned"] = rel(text_o[1], F.normalize(learned_t, dim=-1))

    # 3. test time (their test.py, k_shots 0, average_mean, sigma 4)
    vl.eval()
    tl.eval()
    with torch.no_grad():
        lv_t, mv_t = vl(g_t, p_t, static_t)
        lt_t, mt_t = tl.compute_global_local_score(g_t, p_t, learned_t)
        raw_t = fusion_fun([mv_t[:, 1], mt_t[:, 1]], fusion_type="average_mean")
        map_t = torch.stack([torch.from_numpy(gaussian_filter(m, sigma=4)) for m in raw_t.numpy()])
        score_t = fusion_fun([lv_t.softmax(-1)[:, 1], lt_t.softmax(-1)[:, 1], map_t.flatten(1).max(1).values],
                             fusion_type="average_mean")
        br = ours.branches(g_o, feats, text_o)
        out = ours.score_features(g_o, feats, text_o)
    report["va_logits"], report["va_map"] = rel(br["va"][0], lv_t), rel(br["va"][1], mv_t)
    report["ta_logits"], report["ta_map"] = rel(br["ta"][0], lt_t), rel(br["ta"][1], mt_t)
    report["map_before_smoothing"] = rel(0.5 * (br["va"][1][:, 1] + br["ta"][1][:, 1]), raw_t)
    report["map"] = rel(out.anomaly_map, map_t)
    report["score"] = rel(out.image_score, score_t)
    report["scores_ours"], report["scores_theirs"] = out.image_score.tolist(), score_t.tolist()

    # 4. one training step's loss and gradients (their train.py: VA and TA, adapters in train mode)
    labels = torch.arange(a.images) % 2
    gt = torch.zeros(a.images, 518, 518)
    gt[1::2, 200:320, 150:260] = 1.0
    vl.train()
    tl.train()
    focal, dice = FocalLoss(), BinaryDiceLoss()
    glob_t = local_t = 0
    gl, ls = vl(g_t, p_t, static_t)
    glob_t = glob_t + F.cross_entropy(gl, labels.long())
    local_t = local_t + focal(ls, gt) + dice(ls[:, 1], gt) + dice(ls[:, 0], 1 - gt)
    prompts, tok = tl()
    learned = theirs.encode_text(prompts, tok).float()  # train.py calls encode_text with the prompts
    gl, ls = tl.compute_global_local_score(g_t, p_t, learned)
    glob_t = glob_t + F.cross_entropy(gl, labels.long())
    local_t = local_t + focal(ls, gt) + dice(ls[:, 1], gt) + dice(ls[:, 0], 1 - gt)
    (glob_t + local_t).backward()
    ours.learner.train()
    ref = copy.deepcopy(ours.learner).double()  # the visual adapters' gradients in float64 (conditioning check)
    lo = ours.training_loss(g_o, feats, labels, gt, None)
    lo["total"].backward()
    report["train_loss"] = rel(lo["total"], glob_t + local_t)
    report["train_loss_values"] = {"ours": float(lo["total"].detach()), "theirs": float((glob_t + local_t).detach())}
    their_mods = {"textual_learner": tl, "visual_learner": vl}
    grads, stats = {}, {}
    for name, p in ours.learner.named_parameters():
        part, key = NAMES[name]
        q = dict(their_mods[part].named_parameters())[key]
        grads[name] = rel(p.grad.reshape(q.grad.shape), q.grad) + (float(q.grad.abs().max()),)
    for name, b in ours.learner.named_buffers():
        if name in NAMES and "running" in name:
            part, key = NAMES[name]
            stats[name] = rel(b, dict(their_mods[part].named_buffers())[key])
    report["gradients"] = grads  # per tensor: max |Δ|, relative, max |theirs|
    # The BatchNorm of the global adapter normalises over B rows only: its backward cancels the part of
    # W1's gradient common to the images, so fp32 round-off shows. Both sides against float64:
    from anomclip.model.losses import dice_loss, focal_loss
    from anomclip.model.scoring import probability_maps
    gd, pd_ = g_o.double(), feats["vv"][24].double()
    tx = text_o[0].double()
    gl = F.normalize(ref["visual_global"](gd, True), dim=-1) @ tx.t() / 0.07
    pl = F.normalize(ref["visual_local"](pd_, True), dim=-1) @ tx.t() / 0.07
    maps = probability_maps(pl[:, 1:], 518)
    s_ = gt.double()
    (F.cross_entropy(gl, labels) + focal_loss(maps, s_) + dice_loss(maps[:, 1], s_) + dice_loss(maps[:, 0], 1 - s_)).backward()
    f64 = {}
    for name, p in ref.named_parameters():
        if name.startswith("visual"):
            part, key = NAMES[name]
            q = dict(their_mods[part].named_parameters())[key]
            ours_p = dict(ours.learner.named_parameters())[name]
            f64[name] = {"ours_vs_float64": rel(ours_p.grad, p.grad)[1],
                         "theirs_vs_float64": rel(q.grad, p.grad.reshape(q.grad.shape))[1]}
    report["visual_gradients_vs_float64_worst"] = max(f64.items(), key=lambda kv: max(kv[1].values()))
    report["gradients_worst"] = max(grads.items(), key=lambda kv: kv[1][1])
    report["bn_running_stats_after_step_worst"] = max(stats.items(), key=lambda kv: kv[1][1])
    return report


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))
