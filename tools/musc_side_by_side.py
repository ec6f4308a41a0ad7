"""MuSc side by side with its authors' code, on identical random weights and images.

    python tools/musc_side_by_side.py /tmp/musc_src [--backbone ViT-L-14-336] [--size 224] [--images 6]

``/tmp/musc_src`` is a tree of xrli-U/MuSc (e.g. ``git --git-dir=… archive HEAD | tar -x``). Their
vendored open_clip, ``LNAMD``, ``MSM`` and ``RsCIN`` run as released; the glue between them (the order
of ``models/musc.py``'s ``make_category_data``: extraction, LNAMD per r, MSM per layer, means,
upsampling, max, RsCIN) is written here. Their CLIP is built at the config's size with seeded random
weights, rebuilt at ``--size`` with their ``resize_pos_embed`` (as their loader does for the OpenAI
weights at 518 px); ours loads the same state dict into open_clip (nn.GELU, as theirs) and resizes with
the recipe's ``bicubic``. CPU, fp32 (their autocast is a no-op without CUDA). Prints one JSON object:
the largest |Δ| of the features, the patch-grid maps, the upsampled maps and the image scores.
``cv2`` (imported by their transformer.py for a debugging write only) is stubbed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="a tree of xrli-U/MuSc")
    ap.add_argument("--backbone", default="ViT-L-14-336")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commit", default=None, help="the commit of src (recorded)")
    ap.add_argument("--visa", action="store_true", help="RsCIN as for VisA (k = 1, 8, 9) instead of MVTec AD's")
    args = ap.parse_args(argv)

    src = Path(args.src).resolve()
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    sys.path.insert(0, str(src))
    sys.path.append(str(src / "models" / "backbone"))
    import models.backbone.open_clip as their_clip  # noqa: E402
    from models.backbone.open_clip.model import CLIP as TheirCLIP, resize_pos_embed as their_resize  # noqa: E402
    from models.modules._LNAMD import LNAMD  # noqa: E402
    from models.modules._MSM import MSM  # noqa: E402
    from models.modules._RsCIN import RsCIN  # noqa: E402

    from anomclip.model.backbone import describe, load_clip, set_image_size
    from anomclip.methods.musc import MuSc
    from anomclip.recipes import get_recipe

    # --- their model: random weights at the config's size, rebuilt at --size as their openai path does
    cfg = their_clip.get_model_config(args.backbone)
    torch.manual_seed(args.seed)
    base = TheirCLIP(**cfg).eval()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    cfg_s = json.loads(json.dumps(cfg))
    cfg_s["vision_cfg"]["image_size"] = args.size
    theirs = TheirCLIP(**cfg_s).eval()
    resized = dict(state)
    their_resize(resized, theirs)
    theirs.load_state_dict(resized, strict=True)

    # --- ours: the same weights in open_clip (nn.GELU), the engine's bicubic resize
    ours_clip, tok, _ = load_clip(args.backbone, None, image_size=None, quick_gelu=False)
    ours_clip.load_state_dict(state, strict=True)
    set_image_size(ours_clip.visual, args.size, "bicubic")
    info = describe(ours_clip, args.backbone, "random (parity)", False, "bicubic")
    recipe = get_recipe("musc", backbone=args.backbone, pretrained=None, image_size=args.size)
    ours = MuSc(ours_clip, tok, info, recipe).eval()
    depth = info.vision_layers
    layers = list(ours.layers)  # 1-based blocks (their features_list = feature_layers + 1)

    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.images, 3, args.size, args.size, generator=g)

    # --- theirs: extraction, LNAMD, MSM, means, upsampling, max, RsCIN (models/musc.py's order)
    t0 = time.perf_counter()
    with torch.no_grad():
        cls, tokens = theirs.encode_image(x, layers)
        cls = cls / cls.norm(dim=-1, keepdim=True)
        maps_r = []
        for r in recipe.musc_r:
            lnamd = LNAMD(device="cpu", r=r, feature_dim=tokens[0].shape[-1], feature_layer=layers)
            z = lnamd._embed(tokens)
            z = z / z.norm(dim=-1, keepdim=True)
            maps_l = [MSM(Z=z[:, :, li, :], device="cpu", topmin_min=0, topmin_max=0.3) for li in range(len(layers))]
            maps_r.append(torch.stack(maps_l).mean(0))
        grid_theirs = torch.stack(maps_r).mean(0)
        n, p = grid_theirs.shape
        h = int(np.sqrt(p))
        map_theirs = F.interpolate(grid_theirs.view(n, 1, h, h), size=args.size, mode="bilinear", align_corners=True)
        ac = map_theirs.reshape(n, -1).max(-1)[0].numpy()
        score_theirs = RsCIN(ac, list(cls.numpy()), k_list=[1, 8, 9] if args.visa else [1, 2, 3])
    t_theirs = time.perf_counter() - t0

    # --- ours: the engine's path (encode_image → features → score_features as one category)
    t0 = time.perf_counter()
    with torch.no_grad():
        gl, feats = ours.encode_image(x)
        out = ours.score_features(gl, feats, dataset="VisA" if args.visa else "MVTec AD")
    t_ours = time.perf_counter() - t0

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.abs(a - b).max()), float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))

    feat_d = max(rel(feats["raw"][l], t[:, 1:])[0] for l, t in zip(layers, tokens))
    grid_ours = ours.last_grid
    res = {
        "commit": args.commit, "backbone": args.backbone, "blocks": depth, "layers": layers, "size": args.size,
        "images": args.images, "seed": args.seed, "rscin_k": [1, 8, 9] if args.visa else [1, 2, 3],
        "features_max_abs": feat_d,
        "global_max_abs": rel(gl, cls)[0],
        "grid_map_max_abs": rel(grid_ours.flatten(1), grid_theirs)[0],
        "grid_map_max_rel": rel(grid_ours.flatten(1), grid_theirs)[1],
        "map_max_abs": rel(out.anomaly_map, map_theirs[:, 0])[0],
        "map_max_rel": rel(out.anomaly_map, map_theirs[:, 0])[1],
        "first_score_max_abs": rel(out.anomaly_map.flatten(1).amax(1), ac)[0],
        "score_max_abs": rel(out.image_score, score_theirs)[0], "score_max_rel": rel(out.image_score, score_theirs)[1],
        "seconds_theirs": t_theirs, "seconds_ours": t_ours,
        "torch": torch.__version__,
    }
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
