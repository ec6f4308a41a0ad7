# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Overview: zero-shot anomaly detection with AnomalyCLIP
#
# **What this chapter reproduces.** Nothing numeric yet: it sets the stage for the paper's
# Figure 1 / Figure 2 (the task and the pipeline). It shows the data the book runs on, trains
# the prompts once, and shows image scores and anomaly maps on images of a domain the prompts
# never saw. It ends with what one needs to run the `paper` profile for real.
#
# **Zero-shot anomaly detection (ZSAD).** An anomaly detector usually learns what *normal*
# looks like for one product (bottles, carpets…) from many normal images of it. In the
# zero-shot setting no image of the target product is available at all: the detector must
# say whether an unseen image of an unseen category is defective (an *image score*) and where
# (a *pixel-level anomaly map*). The bet of CLIP-based methods is that a vision–language model
# already knows what "damaged" looks like, so comparing an image (and each of its patches) to
# the texts "a photo of a normal object" and "a photo of a damaged object" should reveal
# anomalies in any category.
#
# **AnomalyCLIP** makes this work better by *learning* the two text prompts — but
# object-agnostically: the prompts say "[learnable words] object" and "[learnable words]
# damaged object", never the category name, so they capture normality and abnormality in
# general. They are tuned once on an auxiliary dataset with masks (MVTec AD or VisA), with a
# *glocal* loss (image-level cross-entropy + pixel-level focal and Dice losses), then applied
# unchanged to every other dataset. The frozen CLIP image encoder is modified so that patch
# tokens are local (DPAM: V–V self-attention from ¼ depth), and learnable tokens are inserted
# into the first text layers (deep prompts). Everything else is frozen.

# %% tags=["parameters"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
backbone = None  # None → the profile's backbone (smoke: tiny-random; paper: ViT-L-14-336)
pretrained = None  # None → the profile's weights (smoke: none; paper: openai)

# %% tags=["remove-cell"]
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

from anomclip.data import denormalize, load_image, load_index, read_mask
from anomclip.paper import paper_value
from anomclip.plots import provenance_box, show_maps
from anomclip.profiles import get_profile
from anomclip.runner import build_model, resolve_device, run_experiment

warnings.filterwarnings("ignore", category=UserWarning)
sns.set_theme(style="whitegrid", context="notebook")
torch.manual_seed(0);

# %%
P = get_profile(profile, data_root)
device = resolve_device(device)
overrides = {k: v for k, v in {"backbone": backbone, "pretrained": pretrained}.items() if v is not None}
recipe = P.recipe("official", **overrides)
tune_on, evaluate_on = next(iter(P.protocol.items()))  # smoke: textures → objects
weights = "untrained, random weights" if recipe.backbone == "tiny-random" else recipe.pretrained
print(f"profile {P.name} | backbone {recipe.backbone} ({weights}) "
      f"@ {recipe.image_size} px | device {device}")
print(f"tune on {tune_on!r}, evaluate zero-shot on {evaluate_on}")

# %% [markdown]
# ## The data
#
# In the `smoke` profile the book runs on a small synthetic benchmark (generated under
# `DATA_ROOT/synthetic` the first time). It has two *domains* with disjoint categories:
# **textures** (weave, marble, grid, dots) and **objects** (disc, ring, square, capsule). The
# defects — scratches, holes, stains and cracks — look alike in both, which is exactly what a
# zero-shot detector has to transfer. The two domains play the roles of MVTec AD and VisA in
# the paper's protocol: tune on one, evaluate on the other. Below: one normal and two
# anomalous test images per category, with their ground-truth masks.

# %% tags=["hide-input"]
def sample_grid(spec, per_cat=3, max_cats=4):
    idx = load_index(spec.root, "test")
    picks = []
    for cat, samples in list(idx.items())[:max_cats]:
        normal = [s for s in samples if not s.anomaly][:1]
        by_kind = {}  # one image per defect type, in turn across categories
        for s in samples:
            if s.anomaly:
                by_kind.setdefault(s.specie_name, s)
        kinds = list(by_kind)
        k0 = len(picks) % max(1, len(kinds))
        bad = [by_kind[kinds[(k0 + i) % len(kinds)]] for i in range(min(per_cat - len(normal), len(kinds)))]
        picks += normal + bad
    return picks


picks = {name: sample_grid(P.datasets[name]) for name in P.datasets if name in (tune_on, *evaluate_on)}
for name, samples in picks.items():
    n = len(samples)
    fig, axes = plt.subplots(2, n, figsize=(1.35 * n, 2.9), squeeze=False)
    for j, s in enumerate(samples):
        img = denormalize(load_image(s.img_path, 128 if P.synthetic else 256))
        axes[0, j].imshow(img)
        axes[0, j].set_title(f"{s.cls_name}\n{s.specie_name}", fontsize=7)
        mask = read_mask(s.mask_path) if s.mask_path else np.zeros(img.shape[:2])
        axes[1, j].imshow(mask, cmap="gray", vmin=0, vmax=max(1, mask.max()))
        for a in axes[:, j]:
            a.set_xticks([]), a.set_yticks([])
    fig.suptitle(f"{name}: test images (top) and ground-truth masks (bottom)", fontsize=10)
    fig.tight_layout()
    plt.show()

# %% tags=["hide-input"]
counts = pd.DataFrame([
    {"dataset": name, "category": cat, "normal": sum(1 - s.anomaly for s in v), "anomalous": sum(s.anomaly for s in v)}
    for name, spec in P.datasets.items() for cat, v in load_index(spec.root, "test").items()
])
counts.groupby("dataset")[["normal", "anomalous"]].sum().assign(
    categories=counts.groupby("dataset")["category"].nunique())

# %% [markdown]
# ## Train once, detect on an unseen domain
#
# **Experiment.** Tune the prompts with the authors' released recipe (`official`: glocal
# loss, DPAM V–V, deep prompts, anomaly map from the last block) on the test split of the
# tuning dataset, then score the other domain's images with the same prompts. The runner
# trains, evaluates and writes a results file with provenance (in `results/<profile>/main`,
# shared with chapters 3, 4 and 14, which re-use it instead of training again).

# %%
exp = run_experiment(recipe, train_data=P.datasets[tune_on], eval_data=[P.datasets[d] for d in evaluate_on],
                     out_dir=P.out / "main", label=f"AnomalyCLIP-from-{tune_on}", device=device, force=force,
                     progress=False)
print("re-used an existing results file" if exp.reused else "trained and evaluated now",
      "| prompts:", exp.training["checkpoint"])
target = evaluate_on[0]
doc = exp.results[target]
provenance_box(doc, profile=P.name)

# %% tags=["hide-input"]
hist = pd.DataFrame(exp.training["history"])
print(f"trained {len(hist)} epochs in {hist['seconds'].sum():.1f} s; "
      f"final loss {hist['loss'].iloc[-1]:.3f} (global {hist['global'].iloc[-1]:.3f}, local {hist['local'].iloc[-1]:.3f})")

# %% [markdown]
# **Result: image scores.** The image score is the softmax probability of the "damaged"
# prompt against the global image feature. A useful detector gives anomalous images higher
# scores than normal ones, per category (this is what image AUROC measures).

# %% tags=["hide-input"]
scores = pd.DataFrame([
    {"category": c, "score": s, "label": "anomalous" if y else "normal"}
    for c in doc["scores"] for s, y in zip(doc["scores"][c], doc["labels"][c])
])
fig, ax = plt.subplots(figsize=(6.5, 3.2))
sns.stripplot(data=scores, x="category", y="score", hue="label", dodge=True, alpha=0.75, size=4, ax=ax,
              palette={"normal": "tab:blue", "anomalous": "tab:red"})
ax.set_title(f"image scores on {target} (zero-shot, prompts tuned on {tune_on})\n{doc['provenance']['label']}",
             fontsize=9)
plt.show()

# %% [markdown]
# **Result: anomaly maps.** The map is the (Gaussian-smoothed) patch-level probability of
# "damaged", upsampled to the image size. Below: one normal and three anomalous images of the
# unseen domain.

# %% tags=["hide-input"]
model = build_model(recipe, device)  # frozen backbone + fresh prompts …
model.load_prompts(exp.training["checkpoint"])  # … replaced by the tuned ones
model.eval()
samples = [s for v in load_index(P.datasets[target].root, "test").values() for s in v]
chosen = [s for s in samples if not s.anomaly][:1] + [s for s in samples if s.anomaly][::7][:3]
x = torch.stack([load_image(s.img_path, model.image_size) for s in chosen]).to(model.device)
with torch.no_grad():
    out = model(x, [s.cls_name for s in chosen])
masks = [read_mask(s.mask_path) if s.mask_path else None for s in chosen]
masks = [None if m is None else
         torch.nn.functional.interpolate(torch.as_tensor(m, dtype=torch.float32)[None, None] / max(1, m.max()),
                                         size=model.image_size, mode="nearest")[0, 0] for m in masks]
fig = show_maps([denormalize(t) for t in x.cpu()], out.anomaly_map.cpu(), masks,
                titles=[f"{s.cls_name}/{s.specie_name}" for s in chosen], scores=out.image_score.cpu())
fig.suptitle(doc["provenance"]["label"], fontsize=9, y=1.02)
plt.show()

# %% tags=["hide-input"]
m = doc["mean"]
display(Markdown(
    f"**Meaning.** On {target}, mean image AUROC is **{100 * m['image_auroc']:.1f} %** and pixel AUROC "
    f"**{100 * m['pixel_auroc']:.1f} %** (paper, VisA: {100 * paper_value(1, 'VisA', 'image_auroc'):.1f} % and "
    f"{100 * paper_value(1, 'VisA', 'pixel_auroc'):.1f} %). "
    + ("These smoke numbers come from an *untrained tiny backbone on synthetic data*: they show the "
       "pipeline runs end to end (train → checkpoint → scores → maps → metrics → results file), "
       "not how well AnomalyCLIP works; they are **not** a reproduction of the paper."
       if P.synthetic else "These are real-data numbers from the pretrained backbone.")
))

# %% [markdown]
# ## Running the `paper` profile
#
# **Weights.** The paper uses open_clip's `ViT-L-14-336` with the `openai` weights (about
# 1.7 GB). `open_clip.create_model_and_transforms("ViT-L-14-336", pretrained="openai")`
# downloads them once into the Hugging Face cache (`~/.cache/huggingface`, or `$HF_HOME`).
# On a machine without internet, copy that cache over and set `HF_HUB_OFFLINE=1`, or pass a
# local file as the weights (`pretrained="/path/to/ViT-L-14-336.pt"`, the `backbone` /
# `pretrained` parameters of each chapter).
#
# **Datasets.** Put MVTec AD in `DATA_ROOT/mvtec` and VisA in `DATA_ROOT/visa` (their
# official layouts); optional MPDD, BTAD, SDD, DAGM, DTD-Synthetic and the medical sets go in
# sibling folders (`DATA_ROOT/mpdd`, …). Then write the index each dataset needs once:
#
# ```bash
# anomclip prepare /data/mvtec
# anomclip prepare /data/visa
# PROFILE=paper DATA_ROOT=/data DEVICE=cuda make book
# ```
#
# **Expected run times (estimates, not measurements).** On one modern GPU (A100/H100 class),
# at 518 px: extracting frozen ViT-L features is about 10–20 ms per image (cached on disk
# afterwards, `.cache/features`); tuning the prompts for 15 epochs on MVTec AD's 1,725 test
# images takes roughly 10–20 minutes; evaluating a dataset takes minutes (VisA, 2,162 images:
# ~5 min including the pixel metrics). One ablation row (tune on MVTec AD + VisA, evaluate)
# is therefore ~30–45 minutes, and the whole `paper` book — dozens of rows — many GPU-hours.
# The smoke profile runs the same code paths on CPU in about 15 minutes.
