"""Small display helpers for the book's chapters (tables, provenance, maps, loss curves).

Nothing here trains or evaluates: the chapters get numbers from :mod:`anomclip.runner` /
:mod:`anomclip.tables` and use these helpers to show them honestly.
"""
from __future__ import annotations

import html as _html

import numpy as np
import pandas as pd

#: the column label of our numbers when they come from the smoke profile
SMOKE_LABEL = "ours (smoke: untrained tiny backbone, synthetic data)"
PAPER_LABEL = "paper"
#: which paper dataset each synthetic smoke domain stands in for (same role in the protocol:
#: textures are the main tuning set like MVTec AD, objects are evaluated like VisA)
SMOKE_STANDINS = {"textures": "MVTec AD", "objects": "VisA"}
METRIC_NAMES = {
    "image_auroc": "image AUROC", "image_ap": "image AP", "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max",
    "pixel_aupro": "pixel AUPRO", "pixel_aupro_official": "pixel AUPRO (authors' code)",
}


class _Box:
    """Markdown text that renders as HTML in a notebook and as itself in a terminal."""

    def __init__(self, markdown: str, html: str):
        self.markdown, self.html = markdown, html

    def _repr_html_(self):
        return self.html

    def _repr_markdown_(self):
        return self.markdown

    def __repr__(self):
        return self.markdown


def provenance_box(doc_or_provenance: dict, profile: str | None = None, title: str = "Provenance") -> _Box:
    """A box saying where numbers come from: profile, backbone + weights, data, commit, device,
    date and the honest one-line label. Accepts a results doc (with ``provenance``) or a
    provenance dict; shown when it is the last expression of a cell."""
    prov = doc_or_provenance.get("provenance", doc_or_provenance)
    bb = prov.get("backbone") or {}
    data = prov.get("data") or {}
    recipe = prov.get("recipe") or {}
    tr = prov.get("training") or {}
    if profile is None:
        profile = "smoke" if data.get("synthetic") else "paper"
    weights = bb.get("weights") or recipe.get("pretrained") or "none (random init)"
    if bb and not bb.get("trained", True) and "untrained" not in str(weights):
        weights = f"{weights} — untrained (random weights)"
    rows = [
        ("profile", profile),
        ("backbone", f"{bb.get('name', recipe.get('backbone', '?'))} @ {bb.get('image_size', recipe.get('image_size', '?'))} px"),
        ("weights", weights),
        ("recipe", f"{recipe.get('name', '?')} (layers {recipe.get('layers')}, λ={recipe.get('lam')}, "
                   f"{recipe.get('epochs')} epochs)"),
        ("evaluated on", f"{data.get('name', '?')}: {data.get('images', '?')} images, "
                         f"{len(data.get('categories', []))} categories, fingerprint {str(data.get('fingerprint', ''))[:12]}"),
        ("prompts", f"tuned on {tr['data']['name']} ({tr['data']['images']} images)" if tr.get("data")
         else prov.get("init", "untrained prompts")),
        ("commit", prov.get("commit") or "unknown (not a git checkout)"),
        ("device", prov.get("device", "?")),
        ("date", prov.get("created", "?")),
    ]
    label = prov.get("label", "")
    md = f"**{title}** — *{label}*\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in rows)
    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{_html.escape(k)}</th>"
                    f"<td style='text-align:left'>{_html.escape(str(v))}</td></tr>" for k, v in rows)
    warn = "#fff4e5" if "not a reproduction" in label else "#eef6ee"
    box = (f"<div style='border:1px solid #bbb;border-radius:6px;padding:.6em 1em;background:{warn};"
           f"font-size:90%'><b>{_html.escape(title)}</b> — <i>{_html.escape(label)}</i>"
           f"<table style='margin-top:.4em'>{cells}</table></div>")
    return _Box(md, box)


def side_by_side(ours_wide: pd.DataFrame, paper_wide: pd.DataFrame, datasets: dict | None = None,
                 ours_label: str | None = None, synthetic: bool | None = None) -> pd.DataFrame:
    """Our numbers beside the paper's, with the difference.

    Both inputs are in the shape of :func:`anomclip.tables.wide` (rows = label, columns =
    (dataset, metric), values in %). ``datasets`` maps our dataset → the paper's dataset
    it is compared with (default: same name, or :data:`SMOKE_STANDINS` for synthetic data).
    Returns one row per (label, metric, dataset pair) with the columns
    ``ours dataset, paper dataset, <ours label>, paper, Δ (ours − paper)``.
    """
    ours_ds = list(dict.fromkeys(ours_wide.columns.get_level_values(0)))
    paper_ds = set(paper_wide.columns.get_level_values(0)) if len(paper_wide.columns) else set()
    if synthetic is None:
        synthetic = not any(d in paper_ds for d in ours_ds)
    if datasets is None:
        datasets = {d: (SMOKE_STANDINS.get(d, d) if synthetic else d) for d in ours_ds}
    ours_label = ours_label or (SMOKE_LABEL if synthetic else "ours")
    rows = []
    for label in ours_wide.index:
        for (ds, metric), v in ours_wide.loc[label].items():
            pds = datasets.get(ds)
            p = np.nan
            if pds is not None and label in paper_wide.index and (pds, metric) in paper_wide.columns:
                p = paper_wide.loc[label, (pds, metric)]
            rows.append({"label": label, "metric": METRIC_NAMES.get(metric, metric), "ours dataset": ds,
                         "paper dataset": pds, ours_label: v, PAPER_LABEL: p,
                         "Δ (ours − paper)": (v - p) if pd.notna(v) and pd.notna(p) else np.nan})
    out = pd.DataFrame(rows).set_index(["label", "metric"])
    return out.round(1)


def show_maps(images, maps, masks=None, titles=None, scores=None, cmap: str = "jet", size: float = 2.2):
    """A figure with one column per image: the image, its ground-truth mask, the anomaly map
    (overlaid on the image). ``images`` are uint8 [H, W, 3] arrays (see
    :func:`anomclip.data.denormalize`), ``maps``/``masks`` [H, W] arrays or tensors."""
    import matplotlib.pyplot as plt

    n = len(images)
    rows = 3 if masks is not None else 2
    fig, axes = plt.subplots(rows, n, figsize=(size * n, size * rows), squeeze=False)
    for j in range(n):
        img = np.asarray(images[j])
        amap = np.asarray(maps[j].detach().cpu() if hasattr(maps[j], "detach") else maps[j], dtype=float)
        axes[0, j].imshow(img)
        t = titles[j] if titles is not None else f"image {j}"
        if scores is not None:
            t = f"{t}\nscore {float(scores[j]):.3f}"
        axes[0, j].set_title(t, fontsize=8)
        r = 1
        if masks is not None:
            m = masks[j]
            m = np.zeros(img.shape[:2]) if m is None else np.asarray(m.detach().cpu() if hasattr(m, "detach") else m)
            axes[1, j].imshow(m.squeeze(), cmap="gray", vmin=0, vmax=1)
            axes[1, j].set_title("ground truth", fontsize=8)
            r = 2
        axes[r, j].imshow(img)
        axes[r, j].imshow(amap, cmap=cmap, alpha=0.5)
        axes[r, j].set_title(f"map (max {amap.max():.2f})", fontsize=8)
        for a in axes[:, j]:
            a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    return fig


def _loss_frame(history) -> pd.DataFrame:
    df = pd.DataFrame(history)
    if "step" not in df.columns:
        df["step"] = np.arange(len(df))
    df = df.rename(columns={"loss": "total"})
    keep = [c for c in ("total", "global", "local") if c in df.columns]
    return df.melt(id_vars=[c for c in ("epoch", "step") if c in df.columns], value_vars=keep,
                   var_name="term", value_name="value")


def loss_curves(history, x: str = "step", title: str | None = None, ax=None, logy: bool = True):
    """Total, global and local loss against ``x`` ("step" or "epoch").

    ``history`` is a list of dicts (``exp.training["history"]`` or ``["steps"]``) or a dict
    ``{run label: list}`` for several runs (drawn with one line style per run). The total is
    ``global + λ · local``; the local term is drawn unweighted."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    runs = history if isinstance(history, dict) else {"": history}
    frames = []
    for name, h in runs.items():
        f = _loss_frame(h)
        f["run"] = name
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.5))
    style = "run" if len(runs) > 1 else None
    sns.lineplot(data=df, x=x if x in df.columns else "step", y="value", hue="term", style=style,
                 marker="o" if x == "epoch" else None, ax=ax)
    ax.set_ylabel("loss" + (" (log scale)" if logy else ""))
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2, loc="upper right", framealpha=0.7)
    if title:
        ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure
