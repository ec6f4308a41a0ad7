# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
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
# **Claim.** In CLIP's ordinary Q-K attention ({term}`DPAM modes`) every patch attends to the same few tokens
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

# %% tags=["parameters", "remove-cell"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
backbone = None  # None: tiny-random (smoke) / ViT-L-14-336 (paper)
pretrained = None  # None: random (smoke) / openai (paper)
live = True  # controls in Jupyter (mode, block, image, query); the book build turns them off

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from anomclip.book import conclusions
from anomclip.book.attention import (
                      MODES,
                      attention_by_block,
                      mask_centre,
                      noise_margin,
                      per_image_auroc,
                      pixel_auroc_by_mode,
                      raw_maps_by_mode,
)
from anomclip.book.chapter import open_chapter
from anomclip.book.examples import anomalous_samples, batch_of, method_maps
from anomclip.book.labels import (
                      MODE_NAMES,
                      fmt,
                      model_provenance,
                      provenance_box,
                      styled,
)
from anomclip.book.plots import draw_maps, plot_prominence
from anomclip.book.widgets import attention_explorer
from anomclip.engine.loading import build_model
from anomclip.methods import display_name

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
recipe = ch.recipe("paper")  # V-V DPAM, the full model (chapter 7's "full" run)
src, targets = next(iter(P.protocol.items()))

# %% tags=["remove-input"]
ch.caveat("attention maps and numbers")

# %% [markdown]
# One model whose {term}`surrogate path` runs all four modes (`dpam="qk+qq+kk+vv"`), so every mode's
# patch features come from one forward pass; the backbone is frozen, so the attention maps do not
# depend on the prompts. Four anomalous images of the evaluation dataset, one per category:

# %% tags=["hide-input"]
model = build_model(recipe.with_(dpam="qk+qq+kk+vv"), ch.device)
samples = anomalous_samples(P, targets[0], n=4)
images, masks, cls_names, rgb = batch_of(samples, model.image_size)
attn, prominence = attention_by_block(model, images)  # maps (head-averaged) + diagonal prominence
n_tokens = next(iter(attn.values()))["vv"].shape[-1]
display(Markdown(f"{model.encoder.depth} blocks, {n_tokens} tokens (CLS + patches); images: {', '.join(cls_names)}."))
provenance_box(model_provenance(model, ch.device, synthetic=ch.smoke), title="Provenance of the attention maps")

# %% [markdown]
# ## The attention of one patch
#
# Top row: where the query patch (red square, placed on the defect of the first image) looks
# under each mode in the last block; bottom row: the whole patch-by-patch attention matrix
# (head-averaged). Q-K shows vertical stripes when all queries share the same favourite keys;
# the DPAM modes concentrate on the diagonal. In the static book this is the default state; to
# explore live, open the chapter in JupyterLab (`make lab`) and run it: a mode menu and sliders
# for block (layer), image and query patch redraw the figure.

# %% tags=["remove-input"]
attention_explorer(rgb, attn, live=live, image=0, block=max(attn), query=mask_centre(masks[0]))

# %% [markdown]
# ## Diagonal prominence, block by block
#
# For each mode and block: the mean attention weight of a token on itself divided by its mean
# weight on one other token (1 = no preference for itself; averaged over heads, tokens and
# images). The dashed line marks the block where the surrogate path starts (DPAM from ¼ depth).

# %% tags=["remove-input"]
styled(prominence.pivot(index="block", columns="mode", values="ratio"), "self / other attention weight", digits=2)

# %% tags=["remove-input"]
plot_prominence(prominence, model.dpam_start, n_tokens, title="Diagonal prominence per block")
plt.show()

# %% [markdown]
# ## The anomaly maps of each mode
#
# The same images scored with each mode's patch features of the last block: first with the
# untrained prompts (random context vectors, the stand-in for CLIP's hand-made prompts), then
# with the prompts tuned on the other dataset with the V-V model — chapter 7's "full" run,
# which the run store trains once for the whole book.

# %% tags=["remove-cell"]
untrained = raw_maps_by_mode(model, images, model.encode_text(), modes=MODES)
exp = ch.experiment(recipe, src, [targets[0]])
model.load_prompts(exp.checkpoint)
tuned = raw_maps_by_mode(model, images, model.encode_text(), modes=MODES)

# %% tags=["remove-input"]
draw_maps(rgb, masks, untrained, sigma=recipe.sigma, title="untrained prompts")
plt.show()
draw_maps(rgb, masks, tuned, sigma=recipe.sigma, title=f"prompts tuned on {src} (V-V model)")
plt.show()

# %% [markdown]
# Pixel AUROC (%) of each mode's maps, pooled over the four images:

# %% tags=["remove-input"]
auroc = pd.DataFrame({"untrained prompts": pixel_auroc_by_mode(untrained, masks, recipe.sigma),
                      "tuned prompts": pixel_auroc_by_mode(tuned, masks, recipe.sigma)})
auroc.index = [MODE_NAMES[m] for m in auroc.index]
styled(auroc * 100, "pixel AUROC (%) of each mode's maps")

# %% [markdown]
# ## Beside two baselines
#
# The same four images scored by CLIP (hand-written prompts "a photo of a normal / an
# anomalous [cls]", last block's patches without DPAM, nothing trained) and by VAND (linear
# layers on four blocks' patch tokens, tuned on the same auxiliary data: chapter 4's run,
# re-used from the run store), beside AnomalyCLIP with its tuned prompts. Each column is that
# method's final map, its own smoothing included, divided by the number of layers it sums (VAND
# adds four layers' maps; the mean over layers puts every method on the fixed scale 0–1 without
# changing its ranking); each panel's title is the map's pixel AUROC on the image.

# %% tags=["remove-cell"]
methods_maps = {
    display_name("clip"): method_maps(build_model(ch.recipe("clip"), ch.device), images, cls_names, model.image_size),
    display_name("vand"): method_maps(ch.experiment(ch.recipe("vand"), src, [targets[0]]).model(), images, cls_names,
                                      model.image_size),
    display_name("official"): method_maps(exp.model(), images, cls_names, model.image_size)}

# %% tags=["remove-input"]
draw_maps(rgb, masks, methods_maps, sigma=0, what="each method's map ÷ its number of layers",
          title=f"three methods on {targets[0]} (tuned on {src})")
plt.show()

# %% [markdown]
# ## Ours vs paper
#
# Fig. 3 has no numbers, so the comparison is with its qualitative statements: which map is
# most diagonal, and which mode segments best.

# %% tags=["remove-input"]
last = prominence[prominence["block"] == max(attn)].set_index("mode")["ratio"]
paper_says = {"Q-K": "vertical stripes, weak segmentation", "Q-Q": "diagonal, some off-diagonal tokens",
              "K-K": "diagonal, some off-diagonal tokens", "V-V": "most diagonal, best segmentation"}
side = pd.DataFrame({"paper (Fig. 3, qualitative)": paper_says,
                     f"{ch.ours}: self/other ratio, last block": last.map(lambda v: fmt(v, 2)),
                     f"{ch.ours}: pixel AUROC, tuned (%)": (auroc["tuned prompts"] * 100).map(fmt)})
styled(side.reindex(["Q-K", "Q-Q", "K-K", "V-V"]))

# %% tags=["remove-input"]
tuned_auroc = 100 * auroc["tuned prompts"]
best, second = tuned_auroc.sort_values(ascending=False).index[:2]
# is the best mode ahead of the runner-up by more than the noise of four images?
per_image = 100 * per_image_auroc({MODE_NAMES[m]: v for m, v in tuned.items()}, masks, recipe.sigma)
display(Markdown(conclusions.diagonal_attention(last, tuned_auroc, noise_margin(per_image, best, second),
                                                ch.smoke).text))
