"""Crane in anomclip vs the authors' code (AlirezaSalehy/Crane), side by side on identical random weights.

    git --git-dir=<mirror> archive HEAD | tar -x -C /tmp/crane_src
    python tools/crane_side_by_side.py --crane-src /tmp/crane_src [--images 2] [--full]

One random CLIP (open_clip, QuickGELU, fp32) is built; its state dict is given to the authors'
``models.build_model`` (their loader of OpenAI state dicts), then E-Attn is switched on there
with their ``replace_with_EAttn(to_layer=20)`` and here with the ``crane`` recipe. The default
configuration is small in the vision tower (24 blocks of width 128, 2 heads, patch 14, 336 px
positions resized to 518 as theirs) and real-sized in the text tower (width 768, 12 heads,
12 blocks), so that their **released checkpoints** load into both prompt learners unchanged;
``--full`` uses ViT-L-14-336's vision tower (width 1024, 16 heads: ~10 s per image on CPU).

Compared (largest |Δ| printed; the figures go to docs/after-anomalyclip.md, ## Crane):
  1. the global and the patch features (their ``--features_list 6 12 18 24``: layer 24 four times);
  2. the test-time text features, the pre-smoothing anomaly maps, the σ = 4 maps and the image
     scores (their ``test.py`` ``ScoreCalculator`` with ``--soft_mean True``), for prompts drawn by
     their initialisation and for each released checkpoint ``epoch_5.pth`` (imported with
     :meth:`Crane.load_authors_checkpoint`);
  3. the image-context text features of training and the training loss, composed of their
     ``FocalLoss``, ``BinaryDiceLoss``, ``regrid_upsample(nearest)``, ``ScoreBasePooling`` and
     ``calc_similarity_logits`` with train.py's weights.
Their modules that need packages this venv lacks (cv2, skimage, torchmetrics, albumentations,
termcolor, humanhash, pkg_resources) are replaced by empty stand-ins: none is on the compared path.
"""
from __future__ import annotations

import argparse
import copy
import importlib
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

    def module(name, **attrs):
        if name in sys.modules:
            return
        try:
            importlib.import_module(name)
            return
        except ImportError:
            pass
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m

    module("pkg_resources", packaging=types.SimpleNamespace(version=packaging.version))
    module("humanhash", humanize=lambda *a, **k: "")
    module("cv2")
    module("skimage")
    module("skimage.measure")
    sys.modules["skimage"].measure = sys.modules["skimage.measure"]
    module("torchmetrics", AUROC=object, AveragePrecision=object)
    module("albumentations")
    module("termcolor", colored=lambda s, *a, **k: s)


def authors_args(features, prob):
    return argparse.Namespace(image_size=518, features_list=features, train_with_img_cls_prob=prob,
                              train_with_img_cls_type="pad_suffix", dino_model="none", both_eattn_dattn=False,
                              use_scorebase_pooling=True, soft_mean=True, attn_type="qq+kk+vv", sigma=4,
                              interpolation="nearest")


def design(args):
    return {"Prompt_length": 12, "learnabel_text_embedding_depth": 9, "learnabel_text_embedding_length": 4,
            "others": args}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crane-src", default="/tmp/crane_src")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="ViT-L-14-336's vision tower (width 1024)")
    ap.add_argument("--fp16-quirk", action=argparse.BooleanOptionalAction, default=True,
                    help="compare the crane-fp16-quirk recipe (their fp16 cast of the deep prompts), else crane")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    src = Path(a.crane_src).resolve()
    stub_missing_modules()
    sys.path.insert(0, str(src))
    os.chdir(src)  # their modules open files relative to the repository
    from models import build_model as authors_build  # noqa: E402
    from models.Crane import ScoreBasePooling  # noqa: E402
    from models.prompt_ensemble import PromptLearner as AuthorsPromptLearner  # noqa: E402
    from utils.loss import BinaryDiceLoss, FocalLoss  # noqa: E402
    from utils.similarity import calc_similarity_logits, regrid_upsample  # noqa: E402
    import test as authors_test  # noqa: E402

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from anomclip.methods.crane import Crane

    commit = os.environ.get("CRANE_COMMIT", "39181f9f718a28c1b06b5aa72bfb81e74b9a2cc3")
    width = 1024 if a.full else 128
    clip = random_clip(width)
    sd = copy.deepcopy(clip.state_dict())
    test_args = authors_args([6, 12, 18, 24], 0.0)
    authors_test.args = test_args  # ScoreCalculator reads the module-level args (image_size)
    theirs = authors_build.build_model("ViT", sd, design(test_args))
    theirs.visual.replace_with_EAttn(to_layer=20, type="qq+kk+vv")
    theirs.eval()
    recipe = "crane-fp16-quirk" if a.fp16_quirk else "crane"
    ours = Crane.from_open_clip(clip, image_size=518, recipe=recipe, name=f"random-w{width}", weights="random").eval()

    g = torch.Generator().manual_seed(7)
    images = torch.randn(a.images, 3, 518, 518, generator=g)
    report = {"commit": commit, "vision_width": width, "images": a.images, "recipe": recipe}

    # 1. visual features
    t0 = time.perf_counter()
    with torch.no_grad():
        g_t, p_t = theirs.encode_image(images, [6, 12, 18, 24], self_cor_attn_layers=20)
    t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    g_o, feats = ours.encode_image(images)
    t_ours = time.perf_counter() - t0
    g_t = F.normalize(g_t, dim=-1)
    p_t = [F.normalize(p, dim=-1) for p in p_t]
    report["global"] = rel(g_o, g_t)
    report["patches"] = max((rel(feats["eattn"][24], p) for p in p_t), key=lambda x: x[0])
    report["four_layers_identical_in_theirs"] = all(torch.equal(p_t[0], p) for p in p_t[1:])
    report["seconds_per_image_encode"] = {"ours": t_ours / a.images, "theirs": t_theirs / a.images}

    # 2. test time: prompts from their init, then each released checkpoint
    def test_time(label, state):
        pl = AuthorsPromptLearner(theirs, design(test_args))
        if state is not None:
            pl.load_state_dict(state, strict=True)
        path = Path("/tmp") / f"crane_side_by_side_{label}.pth"
        torch.save({"prompt_learner": pl.state_dict()}, path)
        with torch.no_grad():
            prompts, tok, deep, _ = pl()
            text_t = theirs.encode_text_learn(prompts, tok, deep).float()
            text_t = F.normalize(torch.stack(torch.chunk(text_t, dim=0, chunks=2), dim=1), dim=-1)
            calc = authors_test.ScoreCalculator(theirs, None, test_args, pl, ScoreBasePooling())
            calc.text_features = text_t
            score_t, map_t = calc(images)
        smooth_t = torch.stack([torch.from_numpy(gaussian_filter(m.numpy(), sigma=4)) for m in map_t])
        ours.load_authors_checkpoint(path)
        with torch.no_grad():
            text_o = ours.text_for()
            out = ours.score_features(g_o, feats, text_o)
            raw = torch.stack(list(out.layer_probs.values())).mean(0)[:, 1]
        path.unlink()
        return {"text": rel(text_o, text_t[0]), "map_before_smoothing": rel(raw, map_t),
                "map": rel(out.anomaly_map, smooth_t), "score": rel(out.image_score, score_t),
                "scores_ours": out.image_score.tolist(), "scores_theirs": score_t.tolist()}

    report["test_random_prompts"] = test_time("random", None)
    for ds in ("mvtec", "visa"):
        ck = src / "checkpoints" / f"trained_on_{ds}_crane" / "epoch_5.pth"
        if ck.is_file():
            state = torch.load(ck, map_location="cpu", weights_only=True)["prompt_learner"]
            report[f"test_released_{ds}_epoch5"] = test_time(ds, state)

    # 3. training: image-context text features and the loss
    train_args = authors_args([6, 12, 18, 24], 1.0)
    pl = AuthorsPromptLearner(theirs, design(train_args))
    path = Path("/tmp/crane_side_by_side_train.pth")
    torch.save({"prompt_learner": pl.state_dict()}, path)
    ours.load_authors_checkpoint(path)
    path.unlink()
    labels = torch.arange(a.images) % 2
    masks = torch.zeros(a.images, 518, 518)
    masks[1::2, 200:320, 150:260] = 1.0
    prompts, tok, deep, with_cls = pl(img_emb=g_t)
    assert with_cls
    text_t = torch.stack([theirs.encode_text_learn(prompts[0], tok[0], deep),
                          theirs.encode_text_learn(prompts[1], tok[1], deep)], dim=1)
    text_t = F.normalize(text_t, dim=-1).float()
    focal, dice = FocalLoss(), BinaryDiceLoss()
    focal_sum, dice_sum, logits_list = 0, 0, []
    for p in torch.stack(p_t):
        lg = calc_similarity_logits(p, text_t, temp=0.07)
        sm = regrid_upsample(lg.softmax(dim=-1), 518, mode="nearest")
        dice_sum = dice_sum + dice((1 - sm[..., 0] + sm[..., 1]) / 2, masks)
        focal_sum = focal_sum + focal(sm.permute(0, 3, 1, 2), masks)
        logits_list.append(lg)
    fused = F.normalize(0.5 * ScoreBasePooling()(torch.stack(p_t), logits_list) + 0.5 * g_t, dim=1)
    ce = F.cross_entropy(calc_similarity_logits(fused, text_t, temp=0.01), labels)
    total_t = 2 * focal_sum + 2 * dice_sum + 0.2 * ce
    text_o = ours.context_text(g_o)
    loss_o = ours.training_loss(g_o, feats, labels, masks)
    report["train_context_text"] = rel(text_o, text_t)
    report["train_loss"] = {"ours": float(loss_o["total"]), "theirs": float(total_t),
                            "delta": rel(loss_o["total"].detach(), total_t.detach())}
    report["train_global_ce"] = rel(loss_o["global"].detach(), ce.detach())
    total_t.backward()
    loss_o["total"].backward()
    grad_t = torch.cat([pl.ctx_pos.grad.flatten(), pl.ctx_neg.grad.flatten()]
                       + [p.grad.flatten() for p in pl.compound_prompts_text])
    pl_o = ours.prompt_learner
    grad_o = torch.cat([pl_o.ctx_normal.grad.flatten(), pl_o.ctx_abnormal.grad.flatten()]
                       + [p.grad.flatten() for p in pl_o.deep_prompts])
    report["train_gradients"] = rel(grad_o, grad_t)
    report["train_gradients_context"] = rel(torch.cat([pl_o.ctx_normal.grad.flatten(), pl_o.ctx_abnormal.grad.flatten()]),
                                            torch.cat([pl.ctx_pos.grad.flatten(), pl.ctx_neg.grad.flatten()]))
    report["train_gradients_deep"] = [rel(po.grad, pt.grad)[1] for po, pt in zip(pl_o.deep_prompts, pl.compound_prompts_text)]
    report["trainable_parameters"] = sum(p.numel() for p in ours.trainable_parameters())
    for k, v in report.items():
        print(f"{k}: {v}")
    return report


if __name__ == "__main__":
    main()
