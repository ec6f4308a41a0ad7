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
# # Training the prompts: the glocal loss
#
# **What this chapter reproduces.** The training procedure of §3.3 and §4.1 of the paper
# (the *glocal* objective, Eq. 3–5; 15 epochs, learning rate 0.001, batch size 8, Adam with
# β = (0.5, 0.999) in the released code), trained in both directions of the protocol
# (MVTec AD → others and VisA → MVTec AD in the paper; textures → objects and objects →
# textures in the smoke profile). It shows the loss curves, what the learned prompts look
# like, and where the checkpoint is and how to reload it.
#
# **Argument.** Only the text prompts are learned — the
# {term}`object-agnostic prompts` (12 context vectors for "normal", 12 for "damaged") and the
# {term}`deep prompts` (4 tokens at the input of each of the text blocks 2 to 9: prompt depth 9,
# block 1 reads the context vectors themselves): the backbone stays frozen. The objective, the {term}`glocal loss`, adds a
# *global* term — cross-entropy between the image-level softmax over {normal, damaged} and the
# image label — and a *local* term — focal loss plus Dice loss (on both the anomalous and the
# normal channel) between the patch-level probability maps and the ground-truth mask, summed
# over the chosen layers:
#
# $$
# \begin{aligned}
# \mathcal{L}_{total} &= \mathcal{L}_{global} + \lambda \sum_{M_k \in \mathcal{M}} \mathcal{L}_{local}^{M_k}, \\
# \mathcal{L}_{local} &= \mathrm{Focal}(S, G) + \mathrm{Dice}(S_n, I - G) + \mathrm{Dice}(S_a, G).
# \end{aligned}
# $$
#
# The paper sums the local loss over four intermediate layers with λ = 1; the released code
# (our `official` recipe) uses the last block only, counted four times (λ = 4). Chapter 14
# compares the two.

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
from IPython.display import Markdown, display

from anomclip.book.chapter import open_chapter
from anomclip.book.diagnostics import prompt_stats
from anomclip.book.labels import fmt, provenance_box, recipe_name, styled
from anomclip.book.plots import bars, loss_curves
from anomclip.engine.loading import build_model

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
recipe = ch.recipe("official")

# %% tags=["remove-input"]
ch.caveat("losses, prompts and numbers")

# %% tags=["remove-input"]
settings = {"backbone": "backbone", "image_size": "image size (px)", "layers": "feature layers (fractions of depth)",
            "lam": "λ (weight of the local loss)", "epochs": "epochs", "batch_size": "batch size", "lr": "learning rate",
            "betas": "Adam betas", "n_ctx": "learnable context vectors (E)", "prompt_depth": "deep prompt depth",
            "prompt_length": "deep prompt length"}
styled(pd.Series({name: str(getattr(recipe, k)) for k, name in settings.items()}, name="value").to_frame(),
       "the official recipe of this run")

# %% [markdown]
# ## Experiment: train in both directions
#
# One run per tuning dataset of the protocol, through the run table every chapter uses: a run
# whose recipe, weights and data are unchanged is read back from the run store (chapters 1, 4,
# 13 and 14 ask for the same runs); `force = True` retrains.

# %% tags=["hide-input"]
table = ch.run([("AnomalyCLIP", recipe)])
exps = {src: table.experiment("AnomalyCLIP", src) for src in P.protocol}
provenance_box(next(iter(exps.values())))

# %% [markdown]
# ## Result: the loss curves
#
# Per step (one batch of 8 images) and per epoch (the mean over the epoch), the total loss
# and its two parts. The curves draw the local term **unweighted** (its focal and two Dice
# losses, summed over the layers); the total adds it to the global term multiplied by λ (the
# sentence under the figures checks it on the last epoch).

# %% tags=["remove-input"]
loss_curves({f"tuned on {s}": e.training["steps"] for s, e in exps.items()}, x="step", title="glocal loss per step")
plt.show()
loss_curves({f"tuned on {s}": e.training["history"] for s, e in exps.items()}, x="epoch",
            title="glocal loss per epoch (mean)")
plt.show()
last_epoch = {s: e.training["history"][-1] for s, e in exps.items()}
display(Markdown("Last epoch: " + "; ".join(
    f"tuned on {s}, total {fmt(h['loss'], 3)} = global {fmt(h['global'], 3)} + {recipe.lam:g} × local "
    f"{fmt(h['local'], 3)}" for s, h in last_epoch.items())
    + f" (λ = {recipe.lam:g} in the {recipe_name(recipe.name)} recipe, with {len(recipe.layers)} feature "
    + ("layer: the released code counts its one layer λ times)." if len(recipe.layers) == 1 else "layers).")))

# %% tags=["remove-input"]
summary = pd.DataFrame([
    {"tuned on": s, "epochs": len(e.training["history"]), "steps": len(e.training["steps"]),
     "first epoch loss": e.training["history"][0]["loss"], "last epoch loss": e.training["history"][-1]["loss"],
     "last global": e.training["history"][-1]["global"], "last local": e.training["history"][-1]["local"],
     "train seconds": sum(h.get("seconds", 0.0) for h in e.training["history"])}
    for s, e in exps.items()
]).set_index("tuned on")
styled(summary, "training summary", digits=3)

# %% [markdown]
# ## Result: what the prompts learned
#
# We build the model twice for each direction: once with the untrained prompts (the
# N(0, 0.02) initialisation, seeded) and once with the run's prompts. We compare the norms
# of the learnable context vectors and of the deep prompts, and the cosine similarity between
# the resulting "normal" and "damaged" text features: training should pull the two texts
# apart (lower cosine), since the image-level loss needs them to separate normal from
# anomalous images.

# %% tags=["remove-input"]
rows, deep_rows = [], []
for src, e in exps.items():
    for when, model in (("before (init)", build_model(recipe, ch.device)), ("after training", e.model())):
        row, deep = prompt_stats(model)
        rows.append({"tuned on": src, "prompts": when, **row})
        deep_rows += [{"tuned on": src, "prompts": when, "text block": k, "value": v} for k, v in deep.items()]
prompts = pd.DataFrame(rows).set_index(["tuned on", "prompts"])
styled(prompts, "prompts before and after training (mean token norms; cosine of the two texts)", digits=3)

# %% tags=["remove-input"]
bars(pd.DataFrame(deep_rows), x="text block", hue="prompts", col="tuned on", ylabel="mean ‖token‖", chance=None,
     title="deep prompts: mean token norm per text block")
plt.show()

# %% [markdown]
# ## The checkpoint, and how to reload it
#
# Each run writes its prompts (≈43k parameters for ViT-L/14, a few kB for the tiny backbone)
# to `prompts.pt` in its folder of the run store, `results/<profile>/runs/<run key>/`, after
# every epoch (so training resumes after an interruption). The checkpoint stores the recipe
# and the backbone it was trained on; loading it into a model built on another backbone is
# refused. To use it:
#
# ```python
# exp = run_experiment(recipe, train_data, eval_data, "results/paper")   # read back, not retrained
# model = exp.model()                               # frozen backbone + these prompts
# out = model(images)                               # out.image_score [B], out.anomaly_map [B, H, W]
# ```
#
# or from the command line: `anomclip eval --checkpoint …/prompts.pt --data …`.

# %% tags=["remove-input"]
styled(pd.DataFrame([{"tuned on": s, "run key": e.key, "checkpoint": str(e.checkpoint)} for s, e in exps.items()])
       .set_index("tuned on"))

# %% [markdown]
# ## Ours vs the paper
#
# The training settings side by side. The zero-shot numbers these prompts reach are compared
# with Table 1 once, in chapter 4: {ref}`ours vs the paper <zero-shot-vs-paper>`.

# %% tags=["remove-input"]
settings = pd.DataFrame([
    ("epochs", 15, recipe.epochs), ("learning rate", 0.001, recipe.lr), ("batch size", 8, recipe.batch_size),
    ("context vectors per prompt (E)", 12, recipe.n_ctx),
    ("deep prompt depth / length", "9 / 4", f"{recipe.prompt_depth} / {recipe.prompt_length}"),
    ("local-loss layers", "¼, ½, ¾, 1 of depth (λ = 1)",
     ", ".join(f"{x:g}" for x in recipe.layers) + f" of depth (λ = {recipe.lam:g})"),
    ("image size", 518, recipe.image_size), ("backbone", "ViT-L-14-336 (openai)", recipe.backbone),
], columns=["setting", "paper", ch.ours]).astype(str).set_index("setting")
styled(settings)

# %% tags=["remove-input"]
first = {s: e.training["history"][0]["loss"] for s, e in exps.items()}
last = {s: e.training["history"][-1]["loss"] for s, e in exps.items()}
cos = prompts["cos(normal text, damaged text)"].unstack("prompts")
display(Markdown(
    "**What it means.** Training lowered the mean loss from the first to the last epoch in "
    + ", ".join(f"the run tuned on {s} ({fmt(first[s], 3)} → {fmt(last[s], 3)})" for s in exps)
    + "; the cosine between the normal and the damaged text went "
    + ", ".join(f"{fmt(cos.loc[s, 'before (init)'], 3)} → {fmt(cos.loc[s, 'after training'], 3)} ({s})" for s in exps)
    + ". That is what training should do whatever the backbone; whether the tuned prompts *transfer* is the "
      "question of chapter 4."))
