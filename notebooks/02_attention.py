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
# # Attention maps: why DPAM makes the attention diagonal (Fig. 3)
#
# **Reproduces** Fig. 3 of the paper (and the argument of its appendix C): the attention maps of
# CLIP's visual encoder under Q-K, Q-Q, K-K and V-V self-attention, and the similarity (anomaly)
# maps each of them gives.
#
# **Claim.** In CLIP's ordinary Q-K attention every patch attends to the same few tokens
# (vertical stripes in the attention matrix), so each patch's feature is dominated by those
# tokens and loses its local meaning. Q-Q, K-K and V-V attention put most weight on the
# diagonal, i.e. on the patch itself, and V-V most of all, because V never takes part in
# computing the original attention. The diagonally prominent maps give much better anomaly
# maps, with CLIP's prompts and even more with AnomalyCLIP's learned ones.
#
# **Experiment.** For a few anomalous images we read the four attention maps of every block
# (`model.encoder.attention_maps(images, block)`), show those of one query patch, measure how
# much weight a token puts on itself compared with any other token (*diagonal prominence*), and
# draw the anomaly map each mode's patch features give with untrained and with tuned prompts.

# %% tags=["parameters"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
live = False  # True in a running Jupyter kernel: controls for mode, block, image and query patch

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from anomclip.profiles import get_profile
from anomclip.runner import build_model, resolve_device, run_experiment
from anomclip.widgets import (MODE_NAMES, MODES, anomalous_samples, attention_by_block, attention_explorer,
                              batch_of, chapter_recipe, draw_maps, mask_centre,
                              ours_label, pixel_auroc_by_mode, provenance_line, raw_maps_by_mode)

P = get_profile(profile, data_root, results_dir="results")
dev = resolve_device(device)
recipe = chapter_recipe(P, "paper")  # V-V DPAM, the full model
src, targets = next(iter(P.protocol.items()))

# %% [markdown]
# One model whose surrogate path runs all four modes (`dpam="qk+qq+kk+vv"`), so every mode's
# patch features come from one forward pass; the backbone is frozen, so the attention maps do not
# depend on the prompts. Four anomalous images of the evaluation dataset, one per category:

# %%
model = build_model(recipe.with_(dpam="qk+qq+kk+vv"), dev)
samples = anomalous_samples(P, targets[0], n=4)
images, masks, cls_names, rgb = batch_of(samples, model.image_size)
attn, prominence = attention_by_block(model, images)  # maps (head-averaged) + diagonal prominence
print(f"{model.encoder.depth} blocks, {next(iter(attn.values()))['vv'].shape[-1]} tokens (CLS + patches); "
      f"images: {cls_names}")

# %% [markdown]
# ## The attention of one patch
#
# Top row: where the query patch (red square, placed on the defect of the first image) looks
# under each mode in the last block; bottom row: the whole patch-by-patch attention matrix
# (head-averaged). Q-K shows vertical stripes when all queries share the same favourite keys;
# the DPAM modes concentrate on the diagonal. In the static book this is the default state; to
# explore live, open the notebook in Jupyter (`jupytext --to ipynb notebooks/02_attention.py`),
# set `live = True` in the first cell and run it: a mode menu and sliders for block (layer),
# image and query patch redraw the figure.

# %% tags=["hide-input"]
attention_explorer(rgb, attn, live=live, image=0, block=max(attn), query=mask_centre(masks[0]))

# %% [markdown]
# ## Diagonal prominence, block by block
#
# For each mode and block: the mean attention weight of a token on itself divided by its mean
# weight on one other token (1 = no preference for itself; averaged over heads, tokens and
# images). The dashed line marks the block where the surrogate path starts (DPAM from ¼ depth).

# %%
prominence.pivot(index="block", columns="mode", values="ratio").round(2)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
sns.lineplot(data=prominence, x="block", y="ratio", hue="mode", marker="o", ax=axes[0])
axes[0].set_ylim(0, 1.3 * prominence["ratio"].max())
axes[0].legend(title=None, ncol=4, loc="upper center", fontsize=8)
axes[0].set_ylabel("self / other attention weight")
sns.lineplot(data=prominence, x="block", y="self", hue="mode", marker="o", ax=axes[1], legend=False)
axes[1].set_ylabel("mean attention on itself")
for ax in axes:
    ax.axvline(model.dpam_start, color="grey", ls="--", lw=0.8)
    ax.axhline(1.0 if ax is axes[0] else 1 / next(iter(attn.values()))["vv"].shape[-1], color="grey", ls=":", lw=0.8)
fig.suptitle(f"Diagonal prominence per block — {ours_label(P)}", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The anomaly maps of each mode
#
# The same images scored with each mode's patch features of the last block: first with the
# untrained prompts (random context vectors, the stand-in for CLIP's hand-made prompts), then
# with the prompts tuned on the other dataset with the V-V model (the chapter re-uses the "full"
# run of the `ablations` folder when chapters 07–09 made it, and trains it otherwise).

# %%
untrained = raw_maps_by_mode(model, images, model.encode_text(), modes=MODES)
exp = run_experiment(recipe, P.datasets[src], [P.datasets[targets[0]]], P.out / "ablations",
                     label=f"full-from-{src}", device=device, force=force, progress=False)
model.load_prompts(exp.folder / "prompts.pt")
tuned = raw_maps_by_mode(model, images, model.encode_text(), modes=MODES)

# %% tags=["hide-input"]
draw_maps(rgb, masks, untrained, sigma=recipe.sigma, title="untrained prompts")
plt.show()
draw_maps(rgb, masks, tuned, sigma=recipe.sigma, title=f"prompts tuned on {src} (V-V model)")
plt.show()

# %% [markdown]
# Pixel AUROC of each mode's maps, pooled over the four images:

# %%
auroc = pd.DataFrame({"untrained prompts": pixel_auroc_by_mode(untrained, masks, recipe.sigma),
                      "tuned prompts": pixel_auroc_by_mode(tuned, masks, recipe.sigma)})
auroc.index = [MODE_NAMES[m] for m in auroc.index]
(auroc * 100).round(1)

# %% [markdown]
# ## Ours vs paper
#
# Fig. 3 has no numbers, so the comparison is with its qualitative statements: which map is
# most diagonal, and which mode segments best.

# %%
last = prominence[prominence["block"] == max(attn)].set_index("mode")["ratio"]
paper_says = {"Q-K": "vertical stripes, weak segmentation", "Q-Q": "diagonal, some off-diagonal tokens",
              "K-K": "diagonal, some off-diagonal tokens", "V-V": "most diagonal, best segmentation"}
side = pd.DataFrame({"paper (Fig. 3, qualitative)": paper_says,
                     f"{ours_label(P)}: self/other ratio, last block": last.round(2),
                     f"{ours_label(P)}: pixel AUROC, tuned prompts (%)": (auroc["tuned prompts"] * 100).round(1)})
side.reindex(["Q-K", "Q-Q", "K-K", "V-V"])

# %% [markdown]
# ## What it means
#
# The mechanism is visible in any ViT: Q-Q, K-K and V-V attention compare a token with itself
# through a positive semi-definite product, so the diagonal is favoured by construction, while
# Q-K has no such bias. How much that helps segmentation depends on what the pretrained CLIP
# has learned to attend to.

# %% tags=["hide-input"]
if P.name == "paper":
    note = ("These maps come from the paper's backbone on the real data; they can be compared with Fig. 3 "
            "directly.")
else:
    note = (f"**Gap.** The *{ours_label(P)}* maps are not a reproduction: the diagonal bias of Q-Q, K-K and "
            "V-V shows up even with random weights (it is built into the products), but a random tiny backbone "
            "has no visual semantics, so its anomaly maps are close to chance for every mode and say nothing "
            "about which mode segments best.")
display(Markdown(note))
display(Markdown(provenance_line(P, None, device)))
