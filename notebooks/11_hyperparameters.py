# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Hyperparameters: prompt length, prompt depth, token length and feature layers (Fig. 8)
#
# **Reproduces** Fig. 8 (appendix D, "Hyperparameter analysis") of the paper: the length E of
# the learnable text prompts, the depth M and the length L of the learnable token embeddings in
# the text encoder, and the number N of visual layers whose patch features are used.
#
# **Claim.** Each hyperparameter trades fitting the auxiliary data against generalising to
# unseen objects. Performance first rises with E and declines from E = 12 to 16 (redundant
# prompt tokens); deeper token embeddings refine the text space more, until too much refinement
# hurts; the token length shows the same trade-off; and using the most local visual semantics
# (N = 4 layers) gives the best overall result. The released code uses E = 12, M = 9, L = 4.
#
# **Experiment.** The `official` recipe with one hyperparameter changed at a time, tuned on one
# dataset and evaluated zero-shot on the other. To bound the smoke compute we run **one
# direction only** (smoke: tuned on `textures`, evaluated on `objects`; paper: tuned on MVTec AD,
# evaluated on VisA). The sweeps:
#
# | sweep | recipe field | values | official |
# |---|---|---|---|
# | E, prompt length | `n_ctx` | 2, 6, 12, 16 | 12 |
# | M, prompt depth | `prompt_depth` | 1, 5, 9, 12 | 9 |
# | L, token length | `prompt_length` | 1, 2, 4, 6 | 4 |
# | N, feature layers | `layers` | 1, 2, 3, 4 of the depth fractions ¼, ½, ¾, 1 | 1 (×λ = 4) |
#
# The official point is shared by the four sweeps and trained once. The tiny smoke text tower
# has 12 blocks, so depth 12 is the deepest possible. In the layer sweep λ = 4 / N keeps the total
# weight of the local loss constant; N = 4 with λ = 1 is exactly the `paper` recipe.

# %% tags=["parameters"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False

# %%
import warnings

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from anomclip.metrics import UndefinedMetricWarning
from anomclip.profiles import get_profile
from anomclip.tables import run_table, wide
from anomclip.widgets import METRIC_NAMES, chapter_recipe, gap_note, ours_label, provenance_line

P = get_profile(profile, data_root, results_dir="results")
warnings.simplefilter("ignore", UndefinedMetricWarning)  # undefined metrics stay as notes in the results files
short = {"epochs": 2} if P.name == "smoke" else {}  # smoke: 2 epochs per point bound the CPU time
official = chapter_recipe(P, "official", **short)
full = chapter_recipe(P, "paper", **short)  # 4 layers, λ = 1
src = next(iter(P.protocol))
target = P.protocol[src][0]
print(f"tuned on {src}, evaluated zero-shot on {target}")

# %% [markdown]
# The recipes (runs in `ch11`). The official point is trained once and shared by the four
# sweeps; the 4-layer point is the `paper` recipe. The smoke book tunes every point for 2 epochs
# only, to keep the 13 trainings within a few CPU minutes.

# %%
LAYERS = {1: (1.0,), 2: (0.75, 1.0), 3: (0.5, 0.75, 1.0), 4: (0.25, 0.5, 0.75, 1.0)}
sweeps = {
    "E (prompt length, n_ctx)": {v: official.with_(n_ctx=v) for v in (2, 6, 16)} | {12: official},
    "M (prompt depth)": {v: official.with_(prompt_depth=v) for v in (1, 5, 12)} | {9: official},
    "L (token length)": {v: official.with_(prompt_length=v) for v in (1, 2, 6)} | {4: official},
    "N (feature layers)": {n: official.with_(layers=LAYERS[n], lam=4.0 / n) for n in (2, 3)}
                          | {1: official, 4: full},
}
shared = {"official": official, "N=4 (paper recipe)": full}
label_of = {}  # (sweep, value) → run label
for sweep, points in sweeps.items():
    for v, r in points.items():
        label_of[sweep, v] = next((l for l, s in shared.items() if s == r), f"{sweep.split()[0]}={v}")
rows = {l: r for (sw, v), l in label_of.items() for r in [sweeps[sw][v]] if l not in shared}
pd.DataFrame([{"sweep": sw, "value": v, "run": label_of[sw, v], "n_ctx": r.n_ctx, "prompt depth": r.prompt_depth,
               "prompt length": r.prompt_length, "layers": r.layers, "λ": r.lam, "epochs": r.epochs}
              for sw, pts in sweeps.items() for v, r in sorted(pts.items())])

# %%
ours = run_table(P, list(shared.items()) + list(rows.items()), folder="ch11", datasets=[target], device=device,
                 force=force)
curves = pd.DataFrame([{"sweep": sw, "setting": v, "label": l} for (sw, v), l in label_of.items()]).merge(ours, on="label")

# %% [markdown]
# ## Result: Fig. 8, one hyperparameter at a time
#
# Our numbers (%, mean over the categories of the evaluation dataset):

# %%
t = wide(curves.assign(label=curves["sweep"].str.split().str[0] + " = " + curves["setting"].astype(str)))
t.reindex(sorted(t.index, key=lambda s: (s.split(" = ")[0], int(s.split(" = ")[1]))))

# %% tags=["hide-input"]
d = curves.rename(columns={"value": "score"})
d = d[d["metric"].isin(METRIC_NAMES)].assign(score=lambda x: 100 * x["score"],
                                              metric=lambda x: x["metric"].map(METRIC_NAMES))
official_at = {"E (prompt length, n_ctx)": 12, "M (prompt depth)": 9, "L (token length)": 4, "N (feature layers)": 1}
fig, axes = plt.subplots(2, len(sweeps), figsize=(3.4 * len(sweeps), 5.6), sharey="row")
for i, (level, metrics) in enumerate({"pixel": ["pixel AUROC", "pixel AUPRO"],
                                      "image": ["image AUROC", "image AP"]}.items()):
    for j, sw in enumerate(sweeps):
        ax = axes[i, j]
        sub = d[(d["sweep"] == sw) & d["metric"].isin(metrics)].sort_values("setting")
        sns.lineplot(data=sub, x="setting", y="score", hue="metric", hue_order=metrics, marker="o", ax=ax,
                     palette=sns.color_palette(n_colors=2), legend=(j == len(sweeps) - 1))
        ax.axvline(official_at[sw], color="grey", lw=0.8, ls=":")
        ax.set_xticks(sorted(sweeps[sw]))
        ax.set_xlabel(sw if i == 1 else "")
        ax.set_ylabel(f"{level} (%)" if j == 0 else "")
        ax.set_title(sw.split(" (")[0] + f" ablation ({level})", fontsize=9)
        if j == len(sweeps) - 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
fig.suptitle(f"Fig. 8 — {ours_label(P)}; tuned on {src}, zero-shot on {target} (dotted: official value)",
             fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Ours vs paper
#
# Fig. 8 of the paper is a set of line plots without printed numbers (and it is not in
# `anomclip/reference/paper_results.csv`), so only its **trend** can be put beside ours. The
# paper (pixel AUPRO and image AP on MVTec AD and VisA) reports:
#
# | sweep | paper: trend | paper: chosen |
# |---|---|---|
# | E | rises with E, then declines from 12 to 16 | E = 12 |
# | M | refining deeper helps, until excessive refinement hurts generalisation | M = 9 in the code |
# | L | the same trade-off between fitting and generalisation | L = 4 in the code |
# | N | the most local visual semantics is best overall | N = 4 |
#
# Our trend for each sweep (change of pixel / image AUROC from the smallest to the official value
# and from the official to the largest value, in points):

# %% tags=["hide-input"]
au = d[d["metric"].isin(["pixel AUROC", "image AUROC"])]
trend = []
for sw, off in official_at.items():
    s = au[au["sweep"] == sw].pivot_table(index="setting", columns="metric", values="score")
    lo, hi = s.index.min(), s.index.max()
    trend.append({"sweep": sw, "best pixel AUROC at": s["pixel AUROC"].idxmax(),
                  "best image AUROC at": s["image AUROC"].idxmax(),
                  "pixel Δ min→official": round(s.loc[off, "pixel AUROC"] - s.loc[lo, "pixel AUROC"], 1),
                  "pixel Δ official→max": round(s.loc[hi, "pixel AUROC"] - s.loc[off, "pixel AUROC"], 1),
                  "image Δ min→official": round(s.loc[off, "image AUROC"] - s.loc[lo, "image AUROC"], 1),
                  "image Δ official→max": round(s.loc[hi, "image AUROC"] - s.loc[off, "image AUROC"], 1)})
pd.DataFrame(trend).set_index("sweep").rename_axis(ours_label(P), axis=1)

# %% [markdown]
# ## What it means
#
# In the paper every hyperparameter has an interior optimum (E = 12, the code's M = 9 and L = 4)
# or saturates (N = 4): more learnable capacity first helps, then over-fits the auxiliary data
# and generalises worse to unseen objects. The differences in Fig. 8 are a few points, so the
# released defaults are a reasonable but not critical choice.

# %% tags=["hide-input"]
display(Markdown(gap_note(P) if P.name == "paper" else (
    f"**Gap.** The *{ours_label(P)}* curves are not a reproduction: a random-weight tiny ViT at 96 px, tuned for "
    f"{official.epochs} epochs per point on synthetic defects, in one direction only. A single run's noise is of the "
    "same size as the differences between neighbouring points, so our curves say nothing about the paper's optima; "
    "the `paper` profile on a GPU gives the real comparison.")))
display(Markdown(provenance_line(P, ours, device)))
