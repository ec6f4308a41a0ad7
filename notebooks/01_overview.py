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
# Figures 1–2 (the task and the pipeline). It shows the data the book runs on, trains the
# prompts once, shows image scores and anomaly maps on images of a domain the prompts never
# saw, says once what a smoke run can and cannot show, and ends with what the `paper` profile
# needs.
#
# **{term}`Zero-shot anomaly detection <zero-shot anomaly detection>` (ZSAD).** An anomaly detector usually learns what *normal*
# looks like for one product (bottles, carpets…) from many normal images of it. In the
# zero-shot setting no image of the target product is available at all: the detector must
# say whether an unseen image of an unseen category is defective (an *image score*) and where
# (a *pixel-level anomaly map*). The bet of CLIP-based methods is that a vision–language model
# already knows what "damaged" looks like, so comparing an image (and each of its patches) to
# the texts "a photo of a normal object" and "a photo of a damaged object" should reveal
# anomalies in any category.
#
# **AnomalyCLIP** makes this work better by *learning* the two text prompts — but
# object-agnostically ({term}`object-agnostic prompts`): the prompts say "[learnable words] object" and "[learnable words]
# damaged object", never the category name, so they capture normality and abnormality in
# general. They are tuned once on an auxiliary dataset with masks (MVTec AD or VisA), with a
# {term}`glocal loss` (image-level cross-entropy + pixel-level focal and Dice losses), then applied
# unchanged to every other dataset. The frozen CLIP image encoder is modified so that patch
# tokens are local ({term}`DPAM`: V–V self-attention from ¼ depth), and learnable tokens are inserted
# into the first text layers ({term}`deep prompts`). Everything else is frozen.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
backbone = None  # None: tiny-random (smoke) / ViT-L-14-336 (paper)
pretrained = None  # None: random (smoke) / openai (paper)
live = False  # no interactive figure in this chapter

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

from anomclip.book import conclusions
from anomclip.book.chapter import open_chapter
from anomclip.book.examples import batch_of, overview_samples
from anomclip.book.failures import score_frame
from anomclip.book.labels import fmt, mean_categories, notes_box, provenance_box, styled
from anomclip.book.plots import plot_distributions, show_maps, show_samples
from anomclip.book.reference import paper_value
from anomclip.data.dataset import load_index

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
recipe = ch.recipe("official")
tune_on, evaluate_on = next(iter(P.protocol.items()))  # smoke: textures → objects

# %% tags=["remove-input"]
ch.caveat()

# %% [markdown]
# ## The data
#
# In the `smoke` profile the book runs on a small synthetic benchmark (generated under
# `DATA_ROOT/synthetic` the first time). It has two *domains* with disjoint categories:
# **textures** (weave, marble, grid, dots) and **objects** (disc, ring, square, capsule). The
# defects — scratches, holes, stains and cracks — look alike in both, which is exactly what a
# zero-shot detector has to transfer. The two domains play the roles of MVTec AD and VisA in
# the paper's protocol: tune on one, evaluate on the other. Below: one normal and two
# anomalous test images of each category, with their ground-truth masks, at the model's input
# size (read exactly as evaluation reads them).

# %% tags=["remove-input"]
for name in dict.fromkeys([tune_on, *evaluate_on]):
    samples = overview_samples(P, name, per_category=3, max_categories=4)
    _, masks, _, rgb = batch_of(samples, recipe.image_size)
    show_samples(rgb, masks, [f"{s.cls_name}\n{s.specie_name}" for s in samples],
                 title=f"{name}: test images (top) and ground-truth masks (below each)")
    plt.show()

# %% tags=["remove-input"]
counts = pd.DataFrame([
    {"dataset": name, "category": cat, "normal": sum(1 - s.anomaly for s in v), "anomalous": sum(s.anomaly for s in v)}
    for name, spec in P.datasets.items() for cat, v in load_index(spec.root, spec.split).items()
])
styled(counts.groupby("dataset")[["normal", "anomalous"]].sum()
       .assign(categories=counts.groupby("dataset")["category"].nunique()), "test images per dataset", digits=0)

# %% [markdown]
# ## Train once, detect on an unseen domain
#
# **Experiment.** Tune the prompts with the authors' released recipe (`official`: glocal
# loss, DPAM V–V, deep prompts, anomaly map from the last block) on the test split of the
# tuning dataset, then score the other domain's images with the same prompts. The runner keys
# the run by its content (recipe, weights, data), so chapters 3, 4, 13 and 14 ask for the
# same run and get it back without training again.

# %% tags=["hide-input"]
exp = ch.experiment(recipe, tune_on, evaluate_on)
target = evaluate_on[0]
doc = exp.results[target]
provenance_box(doc)

# %% tags=["remove-input"]
hist = pd.DataFrame(exp.training["history"])
display(Markdown(
    f"Trained {len(hist)} epochs on {tune_on} in {fmt(hist['seconds'].sum())} s (on cached features); the loss "
    f"went from {fmt(hist['loss'].iloc[0], 3)} to {fmt(hist['loss'].iloc[-1], 3)} (global "
    f"{fmt(hist['global'].iloc[-1], 3)}, local {fmt(hist['local'].iloc[-1], 3)} in the last epoch)."))

# %% [markdown]
# **Result: image scores.** The image score is the softmax probability of the "damaged"
# prompt against the global image feature. A useful detector gives anomalous images higher
# scores than normal ones, per category (this is what image {term}`AUROC` measures).

# %% tags=["remove-input"]
plot_distributions(score_frame(doc, target),
                   title=f"{target}: image scores (zero-shot, prompts tuned on {tune_on})")

# %% [markdown]
# **Result: anomaly maps.** The map is the Gaussian-smoothed patch-level probability of
# "damaged", upsampled to the image size, drawn on the fixed scale 0–1. Below: one normal
# and three anomalous images of the unseen domain.

# %% tags=["remove-input"]
model = exp.model()
samples = [s for v in load_index(P.datasets[target].root, P.datasets[target].split).values() for s in v]
chosen = [s for s in samples if not s.anomaly][:1] + [s for s in samples if s.anomaly][::7][:3]
images, masks, cls_names, rgb = batch_of(chosen, model.image_size)
with torch.no_grad():
    out = model(images.to(model.device), cls_names)
show_maps(rgb, out.anomaly_map.cpu(), list(masks), titles=[f"{s.cls_name}\n{s.specie_name}" for s in chosen],
          scores=out.image_score.cpu())
plt.show()

# %% tags=["remove-input"]
display(Markdown(conclusions.unseen_domain(
    target, mean_categories(doc, ("image_auroc", "pixel_auroc")), doc["mean"],
    {k: paper_value(1, "VisA", k) for k in ("image_auroc", "pixel_auroc")}, ch.smoke).text))
notes_box([doc], metrics=("image_auroc", "pixel_auroc"))  # only the notes of the metrics shown here

# %% [markdown]
# (smoke-runs)=
# ## What a smoke run can and cannot show
#
# The smoke profile runs every chapter of this book with a tiny CLIP whose weights are
# **random** (`tiny-random`: a few blocks, 96 px input) on **generated synthetic data**, on a
# CPU, in minutes. Its numbers are labelled "ours (smoke run)" and every chapter says so in a
# box at its top; this section says, once, what they mean.
#
# * **What they show.** That each experiment is wired as the paper describes: the recipe
#   trains, the loss goes down, checkpoints load, maps and scores are computed and scored by
#   the same metrics as the paper's, tables are filled from results files with provenance,
#   and a switch in a recipe (a loss term, a DPAM mode, a layer) changes the run it names.
#   Effects built into the method's arithmetic also show up: the diagonal of Q-Q, K-K and V-V
#   attention (chapter 2), the cost of DPAM's second path (chapter 12), the difference between
#   the two AUPRO definitions (chapter 14).
# * **What they cannot show.** How well AnomalyCLIP detects anomalies. A random backbone has
#   no notion of "damaged": its image scores hardly move when a defect appears (chapter 4
#   measures this), so image AUROCs stay near chance whatever the prompts, and differences of
#   a few points between rows of an ablation table are run-to-run noise. A smoke number beside
#   a paper number is **not** a reproduction and the difference between them measures nothing
#   about the paper; the synthetic domains only take the *role* of MVTec AD (textures) and
#   VisA (objects) in the protocol.
# * **What does.** The `paper` profile below: the pretrained ViT-L-14-336 on the real
#   datasets, on a GPU; every chapter then compares real numbers with the paper's.

# %% [markdown]
# ## Running the `paper` profile
#
# **Weights.** The paper uses open_clip's `ViT-L-14-336` with the `openai` weights (about
# 1.7 GB). `open_clip.create_model_and_transforms("ViT-L-14-336", pretrained="openai")`
# downloads them once into the Hugging Face cache (`~/.cache/huggingface`, or `$HF_HOME`).
# On a machine without internet, copy that cache over and set `HF_HUB_OFFLINE=1`, or pass a
# local file (`pretrained="/path/to/ViT-L-14-336px.pt"`, the `backbone` / `pretrained`
# parameters every chapter has).
#
# **The authors' prompts.** The authors publish their tuned prompts in the `checkpoints/`
# folder of their GitHub repository (`zqhang/AnomalyCLIP`):
# `checkpoints/9_12_4_multiscale/epoch_15.pth` was tuned on VisA (use it to evaluate MVTec AD)
# and `checkpoints/9_12_4_multiscale_visa/epoch_15.pth` on MVTec AD (use it for VisA and the
# other datasets); `anomclip eval --authors-checkpoint …/epoch_15.pth` evaluates them.
#
# **GPU.** `requirements.lock` pins torch 2.14.1 built for CUDA 13.0, which needs an NVIDIA
# driver of the 580 series or newer (`nvidia-smi` shows the driver version); with an older
# driver, install the torch build for your CUDA version from the PyTorch index instead.
#
# **Datasets.** Put MVTec AD in `DATA_ROOT/mvtec` and VisA in `DATA_ROOT/visa` (their
# official layouts); the optional MPDD, BTAD, SDD, DAGM, DTD-Synthetic and the medical sets go
# in sibling folders (`DATA_ROOT/mpdd`, …; a missing one is listed and skipped). The medical
# auxiliary set of Table 3 is built by hand, as the paper's appendix describes: in
# `DATA_ROOT/medical_aux/colon/`, put the 380 CVC-ColonDB images in `anomalous/` with their
# masks in `masks/<stem>_mask.png`, and the 163 normal images of the Endo (EndoTect 2020)
# classification test split in `normal/` (chapter 5).
#
# ```bash
# PROFILE=paper DATA_ROOT=/data DEVICE=cuda make book
# ```
#
# **Cost.** Estimated from the paper's Table 8 (RTX 3090) and our measurements, not measured
# on a GPU here: extracting the frozen features of MVTec AD + VisA once takes a few minutes
# on a modern GPU, after which an epoch of prompt training runs on cached features in seconds
# to a minute; the whole book is a few hours of GPU time, dominated by the feature extraction
# of every dataset. Chapter 12 measures the costs on the machine that runs it.
