"""Shared helpers of the ablation and attention chapters: recipes, comparisons, live explorers.

Chapters 02 (attention maps, Fig. 3), 07 (module ablation), 08 (losses) and 09 (DPAM modes)
call these so that no chapter copies code from another. Nothing here trains or evaluates by
itself except through :mod:`anomclip.runner`; the plotting helpers only draw.

The two explorers (:func:`attention_explorer`, :func:`map_explorer`) draw their default state
with matplotlib (that is what the static book shows). With ``live=True`` in a running Jupyter
kernel with ``ipywidgets`` they also show controls that redraw the figure; anywhere else they
quietly fall back to the default drawing.
"""
from __future__ import annotations

import datetime as _dt
import math

import numpy as np
import pandas as pd
import torch

from .scoring import gaussian_blur

MODES = ("qk", "qq", "kk", "vv")
MODE_NAMES = {"qk": "Q-K", "qq": "Q-Q", "kk": "K-K", "vv": "V-V", "none": "no DPAM (Q-K)",
              "qq+kk+vv": "Q-Q+K-K+V-V", "qk+qq+kk+vv": "Q-K+Q-Q+K-K+V-V"}
#: training epochs of the smoke book's ablation chapters; None = the profile's own (15, ~5 s per
#: run on an idle 2-core CPU). Set a small number to make the chapters faster on a busy machine.
SMOKE_EPOCHS: int | None = None
METRIC_NAMES = {"pixel_auroc": "pixel AUROC", "pixel_aupro": "pixel AUPRO",
                "image_auroc": "image AUROC", "image_ap": "image AP"}


# --------------------------------------------------------------------------- recipes & labels
def chapter_recipe(P, name: str = "official", **overrides):
    """``P.recipe(name, **overrides)``; the smoke profile trains :data:`SMOKE_EPOCHS` epochs if set."""
    if P.name == "smoke" and SMOKE_EPOCHS and "epochs" not in overrides:
        overrides["epochs"] = SMOKE_EPOCHS
    return P.recipe(name, **overrides)


def ablation_datasets(P):
    """Evaluation datasets of the ablation tables: the paper reports MVTec AD and VisA only."""
    return ["MVTec AD", "VisA"] if P.name == "paper" else None


def ours_label(P) -> str:
    """How our numbers are labelled next to the paper's."""
    if P.name == "paper":
        return "ours"
    return "ours — smoke: untrained tiny backbone, synthetic data"


def provenance_line(P, ours: pd.DataFrame | None, device: str) -> str:
    """One line: profile, backbone + weights, results label, commit, device, date."""
    from .results import device_name, git_commit
    from .runner import resolve_device

    from .recipes import TINY_BACKBONE

    r = P.base
    weights = "random weights, seed 0" if r.backbone == TINY_BACKBONE else (r.pretrained or "random weights")
    label = ""
    if ours is not None and len(ours) and "provenance" in ours:
        label = "; ".join(sorted(set(ours["provenance"].dropna().astype(str)) - {""}))
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"profile **{P.name}**", f"backbone {r.backbone} ({weights}, {r.image_size} px)"]
    if label:
        parts.append(f"results: {label}")
    parts += [f"commit {git_commit() or 'unknown'}", f"device {device_name(resolve_device(device))}", date]
    return "Provenance: " + " · ".join(parts)


# --------------------------------------------------------------------------- ours vs paper
def compare(ours_wide: pd.DataFrame, paper: pd.DataFrame, P, metrics=("pixel_auroc", "image_auroc")) -> pd.DataFrame:
    """Ours and the paper side by side: rows = label, columns = (source, dataset, metric), %.

    Our datasets are the profile's (smoke: ``objects``/``textures``), the paper's are MVTec AD
    and VisA; each column is zero-shot (tuned on the other dataset of its pair).
    """
    def pick(t):
        datasets = list(dict.fromkeys(c[0] for c in t.columns))
        return t.loc[:, [(d, m) for d in datasets for m in metrics if (d, m) in t.columns]]

    o, p = pick(ours_wide), pick(paper)
    order = list(dict.fromkeys(list(o.index) + list(p.index)))
    return pd.concat({ours_label(P): o.reindex(order), "paper": p.reindex(order)}, axis=1)


def long_compare(ours: pd.DataFrame, paper: pd.DataFrame, P, metrics=("pixel_auroc", "image_auroc")) -> pd.DataFrame:
    """Long table (label, dataset, metric, value %, source) of ours and the paper, for plots."""
    o = ours[ours["metric"].isin(metrics)][["label", "dataset", "metric", "value"]].copy()
    o["value"] = o["value"] * 100
    o["source"] = ours_label(P)
    p = paper.stack(level=[0, 1], future_stack=True).rename("value").reset_index()
    p = p[p["metric"].isin(metrics)]
    p["source"] = "paper"
    d = pd.concat([o, p], ignore_index=True)
    d["metric"] = d["metric"].map(METRIC_NAMES).fillna(d["metric"])
    return d


def plot_compare(ours: pd.DataFrame, paper: pd.DataFrame, P, order=None, metrics=("pixel_auroc", "image_auroc"),
                 title: str | None = None):
    """Bars of ours (left panels) and the paper (right panels), one colour per dataset."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    d = long_compare(ours, paper, P, metrics)
    order = order or list(dict.fromkeys(d["label"]))
    sources = [ours_label(P), "paper"]
    mnames = [METRIC_NAMES.get(m, m) for m in metrics]
    fig, axes = plt.subplots(len(mnames), 2, figsize=(12, 2.2 + 0.45 * len(order) * len(mnames)),
                             squeeze=False, sharey=True)  # legends sit right of each panel
    for i, m in enumerate(mnames):
        for j, s in enumerate(sources):
            ax = axes[i, j]
            sub = d[(d["metric"] == m) & (d["source"] == s)]
            if len(sub):
                sns.barplot(data=sub, y="label", x="value", hue="dataset", order=order, ax=ax, orient="h")
                ax.legend(fontsize=7, title="zero-shot on", title_fontsize=7, loc="upper left",
                          bbox_to_anchor=(1.0, 1.0), frameon=False)
            ax.axvline(50, color="grey", lw=0.8, ls=":")
            ax.set_xlim(0, 100)
            ax.set_xlabel(f"{m} (%)")
            ax.set_ylabel("")
            ax.set_title(s if i == 0 else "", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- samples
def anomalous_samples(P, dataset: str = "objects", n: int = 4, per_category: int = 1):
    """``n`` anomalous samples with masks, spread over the categories of ``dataset``."""
    from .data import load_index

    idx = load_index(P.datasets[dataset].root, P.datasets[dataset].split)
    out = []
    for k in range(per_category * 100):
        for cat in sorted(idx):
            bad = [s for s in idx[cat] if s.anomaly and s.mask_path is not None]
            if k < len(bad):
                out.append(bad[k])
            if len(out) == n:
                return out
    return out


def batch_of(samples, image_size: int):
    """Stacked ``(images [B,3,S,S], masks [B,S,S], cls_names, rgb [B,S,S,3] uint8)``."""
    from .data import AnomalyDataset, denormalize

    ds = AnomalyDataset(samples, image_size)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items])
    masks = torch.stack([it["mask"] for it in items])
    rgb = np.stack([denormalize(im) for im in images])
    return images, masks, [it["cls_name"] for it in items], rgb


# --------------------------------------------------------------------------- attention (Fig. 3)
@torch.no_grad()
def attention_by_block(model, images: torch.Tensor, keep=None):
    """Attention of Q-K, Q-Q, K-K and V-V in every block: ``(maps, prominence)``.

    ``maps``: ``{block: {mode: [B, N+1, N+1]}}`` head-averaged softmax maps of the blocks in
    ``keep`` (default: every block for small models, else the blocks at ¼, ½, ¾ and all of the
    depth, so that ViT-L at 518 px stays within memory). ``prominence``: the diagonal
    prominence of every block (:func:`diagonal_prominence`).
    """
    depth = model.encoder.depth
    n_tokens = model.encoder.visual.positional_embedding.shape[0]
    if keep is None:
        keep = range(1, depth + 1) if n_tokens <= 600 else {max(1, round(f * depth)) for f in (0.25, 0.5, 0.75, 1.0)}
    keep = set(int(b) for b in keep)
    kept, rows = {}, []
    for b in range(1, depth + 1):
        _, _, maps = model.encoder(images.to(model.device), return_attention=b)
        avg = {m: maps[m].float().mean(1) for m in MODES}  # averaged over heads
        rows.append(diagonal_prominence({b: avg}))
        if b in keep:
            kept[b] = {m: a.cpu() for m, a in avg.items()}
    return kept, pd.concat(rows, ignore_index=True)


def diagonal_prominence(attn: dict) -> pd.DataFrame:
    """Mean attention weight a token puts on itself vs. on one other token, per mode and block.

    ``attn``: ``{block: {mode: [B, N+1, N+1]}}`` (head-averaged) maps. ``ratio`` = self /
    mean-other (1 = no diagonal preference), averaged over tokens and images.
    """
    rows = []
    for block, maps in attn.items():
        for mode, a in maps.items():
            a = a.float()
            n = a.shape[-1]
            diag = torch.diagonal(a, dim1=-2, dim2=-1)  # [B, N+1]
            other = (a.sum(-1) - diag) / (n - 1)
            rows.append({"block": block, "mode": MODE_NAMES[mode], "self": float(diag.mean()),
                         "other": float(other.mean()), "ratio": float((diag / other).mean())})
    return pd.DataFrame(rows)


def _grid(n_patches: int) -> int:
    return int(round(math.sqrt(n_patches)))


def draw_attention(rgb, attn: dict, image: int = 0, block: int | None = None, query=(0.5, 0.5), modes=MODES,
                   fig=None):
    """One image with its query patch, and the attention of that patch over all patches per mode.

    ``query`` is a (row, column) position as fractions of the image (0..1). The bottom row shows
    the head-averaged attention matrices (patch × patch) of the same block.
    """
    import matplotlib.pyplot as plt

    block = block or max(attn)
    maps = attn[block]
    n = next(iter(maps.values())).shape[-1] - 1
    g = _grid(n)
    r = min(g - 1, int(query[0] * g))
    c = min(g - 1, int(query[1] * g))
    q = 1 + r * g + c  # token index (0 = CLS)
    if fig is None:
        fig = plt.figure(figsize=(2.4 * (len(modes) + 1), 5.0))
    axes = fig.subplots(2, len(modes) + 1)
    size = rgb.shape[1]
    axes[0, 0].imshow(rgb[image])
    axes[0, 0].add_patch(plt.Rectangle((c * size / g, r * size / g), size / g, size / g, fill=False,
                                       ec="red", lw=2))
    axes[0, 0].set_title(f"image {image}, query patch ({r},{c})", fontsize=8)
    axes[1, 0].axis("off")
    axes[1, 0].text(0.0, 0.5, f"block {block}\nhead-averaged\nsoftmax maps\n(patch tokens,\nCLS left out)",
                    fontsize=8, va="center")
    for j, m in enumerate(modes, start=1):
        a = maps[m][image].float()  # [N+1, N+1], head-averaged
        row = a[q, 1:].reshape(g, g).numpy()
        axes[0, j].imshow(rgb[image], alpha=0.5)
        axes[0, j].imshow(row, cmap="inferno", alpha=0.7, extent=(0, size, size, 0), interpolation="nearest")
        axes[0, j].set_title(f"{MODE_NAMES[m]}: self {a[q, q]:.3f}, max {row.max():.3f}", fontsize=8)
        axes[1, j].imshow(a[1:, 1:].numpy(), cmap="viridis", interpolation="nearest")
        axes[1, j].set_title(f"{MODE_NAMES[m]} attention matrix", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _live_ok(live: bool) -> bool:
    if not live:
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def attention_explorer(rgb, attn: dict, live: bool = False, image: int = 0, block: int | None = None,
                       query=(0.5, 0.5), mode: str = "all"):
    """Mode/block/image/query-patch explorer of the attention maps.

    Static (default, and whenever no live Jupyter kernel with ipywidgets is running): draws the
    default state. ``live=True`` in Jupyter: a mode menu ("all" or one of Q-K, Q-Q, K-K, V-V) and
    sliders for block, image and the query patch.
    """
    import matplotlib.pyplot as plt

    def pick(mode):
        return MODES if mode == "all" else (mode,)

    block = block or max(attn)
    if not _live_ok(live):
        draw_attention(rgb, attn, image, block, query, modes=pick(mode))
        plt.show()  # the static figure is displayed (not returned, so it is not shown twice)
        return None
    import ipywidgets as W
    from IPython.display import display

    g = _grid(next(iter(attn[block].values())).shape[-1] - 1)
    out = W.Output()

    def redraw(mode, block, image, row, col):
        with out:
            out.clear_output(wait=True)
            fig = draw_attention(rgb, attn, image, block, ((row + 0.5) / g, (col + 0.5) / g), modes=pick(mode))
            plt.show()
            plt.close(fig)

    ctl = W.interactive(redraw,
                        mode=W.Dropdown(options=[("all", "all")] + [(MODE_NAMES[m], m) for m in MODES], value=mode,
                                        description="mode"),
                        block=W.SelectionSlider(options=sorted(attn), value=block, description="block"),
                        image=W.IntSlider(value=image, min=0, max=len(rgb) - 1, description="image"),
                        row=W.IntSlider(value=min(g - 1, int(query[0] * g)), min=0, max=g - 1, description="query row"),
                        col=W.IntSlider(value=min(g - 1, int(query[1] * g)), min=0, max=g - 1, description="query col"))
    display(W.VBox([W.HBox(list(ctl.children[:-1])), out]))
    ctl.update()
    return ctl


# --------------------------------------------------------------------------- maps per DPAM mode
@torch.no_grad()
def raw_maps_by_mode(model, images: torch.Tensor, text: torch.Tensor, modes=MODES) -> dict:
    """Unsmoothed anomaly maps ``{mode: [B, H, W]}`` of one model whose encoder computes ``modes``.

    ``model`` must be built with an ensemble recipe covering ``modes`` (e.g. ``qk+qq+kk+vv``);
    each mode's map uses only that mode's patch features, ensembles average the logits.
    Keys may be single modes or ``"a+b"`` ensembles.
    """
    g, feats = model.encoder(images.to(model.device))
    out = {}
    for key in modes:
        sub = {m: feats[m] for m in key.split("+")}
        o = model.score_features(g, sub, text, sigma=0.0)
        out[key] = o.anomaly_map.detach().cpu()
    return out


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def draw_maps(rgb, masks, maps: dict, sigma: float = 4.0, threshold: float | None = None, modes=None,
              images=None, fig=None, title: str | None = None):
    """Rows = images, columns = image + mask, then one smoothed map per mode (optionally thresholded).

    Each panel's title gives that map's pixel AUROC on the image (with this σ).
    """
    import matplotlib.pyplot as plt

    modes = list(modes or maps)
    images = list(range(len(rgb))) if images is None else list(images)
    sm = {m: gaussian_blur(maps[m].float(), sigma).numpy() for m in modes}
    if fig is None:
        fig = plt.figure(figsize=(2.0 * (len(modes) + 1), 2.1 * len(images) + 0.4))
    axes = np.atleast_2d(fig.subplots(len(images), len(modes) + 1, squeeze=False))
    for i, k in enumerate(images):
        ax = axes[i, 0]
        ax.imshow(rgb[k])
        ax.contour(np.asarray(masks[k]), levels=[0.5], colors="red", linewidths=1)
        ax.set_title("image + mask" if i == 0 else "", fontsize=8)
        for j, m in enumerate(modes, start=1):
            s = sm[m][k]
            ax = axes[i, j]
            if threshold is None:
                ax.imshow(s, cmap="jet")
            else:
                ax.imshow(rgb[k])
                ax.imshow(np.ma.masked_less(s, np.quantile(s, threshold)), cmap="autumn", alpha=0.6)
            ax.contour(np.asarray(masks[k]), levels=[0.5], colors="white", linewidths=0.8)
            au = _auroc(s.ravel(), (np.asarray(masks[k]) > 0.5).ravel().astype(int))
            ax.set_title((f"{MODE_NAMES.get(m, m)}\n" if i == 0 else "") + f"AUROC {100 * au:.0f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def map_explorer(rgb, masks, maps: dict, live: bool = False, mode: str = "all", sigma: float = 4.0,
                 threshold: float | None = None):
    """(mode, σ, threshold) explorer of the anomaly maps of each DPAM mode.

    ``threshold`` is a quantile of each map (0.9 = show the top 10 % pixels); ``None`` shows the
    continuous map. Static unless ``live=True`` in a running Jupyter kernel with ipywidgets.
    """
    import matplotlib.pyplot as plt

    def pick(mode):
        return list(maps) if mode == "all" else [mode]

    if not _live_ok(live):
        draw_maps(rgb, masks, maps, sigma, threshold, pick(mode),
                        title=f"σ = {sigma}" + ("" if threshold is None else f", top {100 * (1 - threshold):.0f} %"))
        plt.show()
        return None
    import ipywidgets as W
    from IPython.display import display

    out = W.Output()

    def redraw(mode, sigma, threshold):
        with out:
            out.clear_output(wait=True)
            fig = draw_maps(rgb, masks, maps, sigma, None if threshold <= 0 else threshold, pick(mode))
            plt.show()
            plt.close(fig)

    ctl = W.interactive(redraw,
                        mode=W.Dropdown(options=[("all", "all")] + [(MODE_NAMES.get(m, m), m) for m in maps],
                                        value=mode, description="mode"),
                        sigma=W.FloatSlider(value=sigma, min=0.0, max=12.0, step=0.5, description="σ"),
                        threshold=W.FloatSlider(value=threshold or 0.0, min=0.0, max=0.99, step=0.01,
                                                description="quantile"))
    display(W.VBox([W.HBox(list(ctl.children[:-1])), out]))
    ctl.update()
    return ctl


def checkpoint_path(P, folder: str, label: str, recipe, src: str):
    """Where :func:`anomclip.tables.run_table` keeps the prompts of ``label`` tuned on ``src``."""
    from .runner import experiment_id, slug

    return P.out / folder / f"{slug(f'{label}-from-{src}')}-{experiment_id(recipe, P.datasets[src], None)}" / "prompts.pt"


def pixel_auroc_by_mode(maps: dict, masks, sigma: float = 4.0) -> dict:
    """Pixel AUROC of each mode's smoothed maps, pooled over the given images (NaN without defects)."""
    y = (np.asarray(masks) > 0.5).ravel().astype(int)
    return {m: _auroc(gaussian_blur(v.float(), sigma).numpy().ravel(), y) for m, v in maps.items()}


def mask_centre(mask) -> tuple[float, float]:
    """(row, column) of the centre of mass of a mask, as fractions of its size (centre if empty)."""
    m = np.asarray(mask) > 0.5
    if not m.any():
        return 0.5, 0.5
    r, c = np.nonzero(m)
    return (r.mean() + 0.5) / m.shape[0], (c.mean() + 0.5) / m.shape[1]


def gap_note(P, what: str = "numbers") -> str:
    """The one honest sentence on how far our numbers are from the paper's."""
    if P.name == "paper":
        return (f"These {what} come from the paper's backbone on the real datasets; remaining differences to the "
                "paper come from the recipe details documented in the README.")
    return (f"**Gap.** The *{ours_label(P)}* {what} are not a reproduction: a random-weight tiny ViT at 96 px, "
            f"tuned for {SMOKE_EPOCHS or P.base.epochs} epochs on synthetic defects, can show at most coarse effects (such as tuned "
            "vs untrained prompts), and the differences between its tuned rows are within the noise of such a run; "
            "the `paper` profile on a GPU gives the real comparison.")
