"""``anomclip synth | prepare | train | eval | predict | bench`` — the runner without a notebook.

Defaults run on the synthetic data and the tiny random backbone on CPU; ``--recipe``,
``--backbone ViT-L-14-336 --pretrained openai``, ``--image-size 518`` and ``--device cuda``
select the paper's setting. A user's mistake ends with one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

from .errors import AnomclipError

DEFAULT_DATA = "data"


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--recipe", default="official", help="official | paper | official-fp16-quirk (default official)")
    g.add_argument("--backbone", default=None, help="open_clip model name, e.g. ViT-L-14-336 (default: tiny-random)")
    g.add_argument("--pretrained", default=None,
                   help="open_clip tag (openai), a weights file, or 'none' for random weights (benchmarks)")
    g.add_argument("--image-size", type=int, default=None, help="input size (paper: 518; tiny default: 96)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def _recipe(args, base=None):
    from .recipes import Recipe, get_recipe, smoke

    random_weights = str(args.pretrained).lower() in ("none", "random")
    if random_weights:
        args.pretrained = None
    if base is not None:
        r = Recipe.from_dict(base)
    elif args.backbone in (None, "tiny-random"):
        r = smoke(args.recipe)
    else:
        r = get_recipe(args.recipe, backbone=args.backbone, pretrained=args.pretrained)
    over = {}
    if args.backbone and args.backbone != r.backbone:
        over["backbone"], over["pretrained"] = args.backbone, args.pretrained
    elif args.pretrained and args.pretrained != r.pretrained:
        over["pretrained"] = args.pretrained
    if args.image_size:
        over["image_size"] = args.image_size
    for key in ("epochs", "batch_size", "lr", "seed"):
        if getattr(args, key, None) is not None:
            over[key] = getattr(args, key)
    if random_weights and r.backbone != "tiny-random":
        over["pretrained"] = None
    return r.with_(**over) if over else r


def _data_spec(root: str | None, default_domain: str):
    from .profiles import ensure_synthetic
    from .runner import DataSpec

    if root is None:
        domains = ensure_synthetic(DEFAULT_DATA)
        return DataSpec(str(domains[default_domain]), default_domain, synthetic=True)
    path = Path(root)
    if not path.exists():
        raise AnomclipError(f"dataset folder {root} does not exist")
    return DataSpec(str(path), path.name, synthetic="synthetic" in path.parts)


def _samples(spec, categories=None):
    from .data import load_index

    index = load_index(spec.root, spec.split, categories)
    return [s for v in index.values() for s in v]


# ----------------------------------------------------------------------------- commands
def cmd_synth(args) -> None:
    from .synth import make_synthetic

    t0 = time.perf_counter()
    roots = make_synthetic(args.out, seed=args.seed, size=args.size)
    for name, root in roots.items():
        print(f"{name}: {root}")
    print(f"synthetic data written in {time.perf_counter() - t0:.1f} s")


def cmd_prepare(args) -> None:
    from .data import prepare

    path = prepare(args.root, layout=args.layout)
    print(f"wrote {path}")


def cmd_train(args) -> None:
    from .features import extract_features
    from .runner import build_model, resolve_device
    from .train import train

    device = resolve_device(args.device)
    spec = _data_spec(args.data, "textures")
    recipe = _recipe(args)
    model = build_model(recipe, device)
    samples = _samples(spec, args.categories)
    feats = extract_features(model, samples, desc=f"features {spec.name}")
    res = train(model, feats, checkpoint=args.out, resume=args.resume)
    for h in res.history:
        print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  global {h['global']:.4f}  local {h['local']:.4f}"
              f"  {h['seconds']:.1f}s")
    print(f"prompts saved to {args.out} ({model.info.weights}; {len(samples)} images of {spec.name})")


def _load_for_eval(args, device):
    from .model import read_checkpoint
    from .runner import build_model

    base = None
    if args.checkpoint:
        ckpt = read_checkpoint(args.checkpoint)
        if "recipe" not in ckpt:
            raise AnomclipError(f"{args.checkpoint} is not an anomclip prompt checkpoint "
                                "(use --authors-checkpoint for the authors' files)")
        base = ckpt["recipe"]
    recipe = _recipe(args, base)
    if base is not None and args.backbone and args.backbone != base["backbone"]:
        raise AnomclipError(f"{args.checkpoint} was trained on {base['backbone']}, not {args.backbone}")
    model = build_model(recipe, device)
    init = "untrained prompts (N(0, 0.02) init)"
    if args.checkpoint:
        model.load_prompts(args.checkpoint)
        init = f"checkpoint {args.checkpoint}"
    elif getattr(args, "authors_checkpoint", None):
        model.load_authors_checkpoint(args.authors_checkpoint)
        init = f"authors' checkpoint {args.authors_checkpoint}"
    return model, init


def cmd_eval(args) -> None:
    from .runner import evaluate_dataset, resolve_device

    device = resolve_device(args.device)
    spec = _data_spec(args.data, "objects")
    model, init = _load_for_eval(args, device)
    samples = _samples(spec, args.categories)
    doc, res = evaluate_dataset(model, spec, samples, args.out, device, init=init, experiment="cli eval",
                                skip_unreadable=args.skip_unreadable)
    keys = ("image_auroc", "image_ap", "pixel_auroc", "pixel_aupro")
    print("category".ljust(16) + "".join(k.rjust(13) for k in keys))
    rows = list(doc["categories"].items()) + [("mean", doc["mean"])]
    for cat, m in rows:
        print(cat[:16].ljust(16) + "".join(f"{100 * m.get(k, float('nan')):13.1f}" for k in keys))
    for note in doc["notes"]:
        print(f"note: {note}")
    for path, reason in doc["provenance"].get("skipped", []):
        print(f"skipped: {reason}")
    print(f"[{doc['provenance']['label']}] results written to {args.out}")


def cmd_predict(args) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from .data import image_to_tensor, read_image
    from .results import atomic_write_text
    from .runner import resolve_device

    device = resolve_device(args.device)
    model, _ = _load_for_eval(args, device)
    out = Path(args.out)
    images = []
    for p in args.images:  # read everything first: a bad file stops before anything is written
        images.append((Path(p), read_image(p)))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    import matplotlib

    cmap = matplotlib.colormaps["jet"]
    for path, img in images:
        x = image_to_tensor(img, model.image_size).unsqueeze(0)
        with torch.no_grad():
            res = model(x, cls_names=[args.class_name])
        score = float(res.image_score[0])
        amap = res.anomaly_map[0].cpu().numpy()
        lo, hi = float(amap.min()), float(amap.max())
        heat = cmap((amap - lo) / (hi - lo + 1e-12))[..., :3]
        base = np.asarray(img.resize((model.image_size, model.image_size), Image.BICUBIC), np.float32) / 255
        overlay = (0.5 * base + 0.5 * heat) * 255
        Image.fromarray(overlay.clip(0, 255).astype(np.uint8)).resize(img.size, Image.BILINEAR).save(
            out / f"{path.stem}_overlay.png")
        row = {"image": str(path), "score": score, "map_max": hi, "overlay": str(out / f"{path.stem}_overlay.png")}
        if args.threshold is not None:
            mask = Image.fromarray(((amap >= args.threshold) * 255).astype(np.uint8)).resize(img.size, Image.NEAREST)
            mask.save(out / f"{path.stem}_mask.png")
            row["mask"] = str(out / f"{path.stem}_mask.png")
        rows.append(row)
        print(f"{score:.4f}  {path}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=sorted({k for r in rows for k in r}))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "scores.csv", buf.getvalue())
    atomic_write_text(out / "scores.json", json.dumps({"backbone": model.info.weights, "predictions": rows}, indent=1))
    print(f"wrote {len(rows)} overlays and scores.csv/json to {out}")


def cmd_bench(args) -> None:
    from .bench import run_bench

    run_bench(args)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anomclip", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write the synthetic two-domain dataset")
    s.add_argument("--out", default=f"{DEFAULT_DATA}/synthetic")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=128)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("prepare", help="write meta.json for an MVTec AD, VisA or folder layout")
    s.add_argument("root")
    s.add_argument("--layout", default="auto", choices=["auto", "mvtec", "visa", "folder"])
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train", help="train the prompts on a dataset's test split (the auxiliary data)")
    s.add_argument("--data", default=None, help="dataset root (default: synthetic 'textures')")
    s.add_argument("--out", required=True, help="checkpoint file to write")
    s.add_argument("--categories", default=None, help="comma-separated subset")
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--lr", type=float, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    _model_args(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="evaluate zero-shot on a dataset, write a results JSON")
    s.add_argument("--data", default=None, help="dataset root (default: synthetic 'objects')")
    s.add_argument("--out", required=True, help="results JSON to write")
    s.add_argument("--checkpoint", default=None, help="anomclip prompts (default: untrained prompts)")
    s.add_argument("--authors-checkpoint", default=None, help="the authors' released epoch_15.pth")
    s.add_argument("--categories", default=None)
    s.add_argument("--skip-unreadable", action="store_true", help="warn about and skip unreadable files")
    _model_args(s)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("predict", help="score images and write heat-map overlays")
    s.add_argument("images", nargs="+")
    s.add_argument("--out", required=True)
    s.add_argument("--checkpoint", default=None)
    s.add_argument("--authors-checkpoint", default=None)
    s.add_argument("--threshold", type=float, default=None, help="also write a binary mask at this map value")
    s.add_argument("--class-name", default="object", help="category name (object-aware prompts)")
    _model_args(s)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("bench", help="time DPAM vs plain CLIP, the feature cache and AUPRO; writes JSON")
    s.add_argument("--out", default="results/bench.json")
    s.add_argument("--batch-sizes", default="1,4")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--aupro-maps", type=int, default=100)
    s.add_argument("--aupro-size", type=int, default=518)
    s.add_argument("--skip-train", action="store_true")
    s.add_argument("--bf16", action="store_true", help="also time bf16 autocast (GPU)")
    _model_args(s)
    s.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    try:
        args.func(args)
    except AnomclipError as e:
        print(f"anomclip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"anomclip {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
