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
# # Module ablation: what each part of AnomalyCLIP buys (Tables 4 and 7)
#
# **Reproduces** Table 4 (modules added one at a time) and Table 7 (appendix D: each module
# removed from the full model) of the paper.
#
# **Claim.** All four modules help: T1 DPAM (diagonally prominent attention in the visual
# encoder), T2 object-agnostic learnable prompts, T3 learnable tokens inside the text encoder
# ("text prompt tuning") and T4 patch features from several layers. T2 matters most: removing it
# costs more image AUROC on MVTec AD than removing any other module (the paper's rows of Table 7,
# below, give the figures).
#
# **Experiment.** Every row is one recipe, i.e. a variation of the {term}`four-layer recipe`, trained on one
# dataset and evaluated zero-shot on the other (smoke: `textures` ↔ `objects`; paper: VisA ↔
# MVTec AD). How we read the rows of Table 4:
#
# | row | recipe | trained? |
# |---|---|---|
# | base | no DPAM (`dpam="none"`), object-aware prompts ("X… damaged bottle"), no deep prompts (`prompt_depth=1`), last layer | no |
# | +T1 DPAM | base with V-V DPAM | no |
# | +T2 object-agnostic prompts | +T1 with object-agnostic prompts ("X… damaged object"), **tuned** | yes |
# | +T3 text prompt tuning | +T2 with deep text prompts (`prompt_depth=9`) = the `official` recipe | yes |
# | +T4 multi-layer features | +T3 with the layers ¼, ½, ¾, 1 of the depth = the four-layer recipe | yes |
#
# The paper's *base* and *+T1* rows have identical image-level numbers, which only happens if no
# prompt is tuned in them (DPAM does not touch the global feature), so we evaluate those two with
# untrained prompts. Table 7 removes one module from the four-layer recipe: without T1 = no DPAM,
# without T2 = object-aware prompts, without T3 = `prompt_depth=1`, without T4 = last layer only
# (the `official` recipe, whose λ = 4 keeps the weight of the local loss of four layers).
# On the smoke profile chapters 6–9 tune with its short `ablation` schedule (fewer epochs than
# the paper's 15, so that a workbench setting runs in seconds; the table of rows gives the epochs).

# %% tags=["parameters", "remove-cell"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
backbone = None  # None: tiny-random (smoke) / ViT-L-14-336 (paper)
pretrained = None  # None: random (smoke) / openai (paper)
live = True  # controls in Jupyter; the book build turns them off

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from anomclip.book import conclusions
from anomclip.book.chapter import open_chapter
from anomclip.book.labels import MODE_NAMES, provenance_box, styled
from anomclip.book.tables import ours_difference, paper_on
from anomclip.book.workbench import Workbench, ablation

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
full = ch.recipe("paper", schedule="ablation")  # smoke: the short tuning schedule of chapters 6–9
single = ch.recipe("official", schedule="ablation")  # last layer only, λ = 4
untuned = dict(object_aware=True, prompt_depth=1)

# %% tags=["remove-input"]
ch.caveat()

# %% [markdown]
# The recipes. Table 4's +T3 row is Table 7's "without T4" and +T4 is "full", so each distinct
# recipe is one run of the run store, shared with chapters 6, 8 and 9 (and 2 on the paper profile).

# %% tags=["remove-input"]
trained = [
    ("+T2 object-agnostic prompts", single.with_(prompt_depth=1)),
    ("+T3 text prompt tuning", single),
    ("full", full),
    ("without T1 DPAM", full.with_(dpam="none")),
    ("without T2 object-agnostic prompts", full.with_(object_aware=True)),
    ("without T3 text prompt tuning", full.with_(prompt_depth=1)),
]
untrained = [
    ("base", single.with_(**untuned, dpam="none")),
    ("+T1 DPAM", single.with_(**untuned, dpam="vv")),
]
styled(pd.DataFrame([{"label": l, "DPAM": MODE_NAMES.get(r.dpam, r.dpam), "object-aware": r.object_aware,
                      "prompt depth": r.prompt_depth, "layers": ", ".join(f"{x:g}" for x in r.layers),
                      "λ": f"{r.lam:g}", "tuned": l not in dict(untrained), "epochs": r.epochs}
                     for l, r in untrained + trained]).set_index("label"),
       "the rows (layers: fractions of the depth)", digits=0)

# %% tags=["hide-input"]
runs = [ch.run(trained, datasets=ch.ablation_datasets), ch.run(untrained, datasets=ch.ablation_datasets, train=False)]
ours = pd.concat([r.frame for r in runs], ignore_index=True)
provenance_box(runs[0].experiment("full", next(iter(P.protocol))))

# %% tags=["remove-cell"]
# our run labels are the paper's row names, except where a pair gives the paper's name
table4 = ablation(ch, ours, ["base", "+T1 DPAM", "+T2 object-agnostic prompts", "+T3 text prompt tuning",
                             ("full", "+T4 multi-layer features")],
                  table=4, title="Table 4: modules added one at a time", figure=False)
table7 = ablation(ch, ours, ["full", "without T1 DPAM", "without T2 object-agnostic prompts",
                             "without T3 text prompt tuning", ("+T3 text prompt tuning", "without T4 multi-layer features")],
                  table=7, title="Table 7: one module removed", figure=False)
cmp4, cmp7 = table4.cmp, table7.cmp

# %% [markdown]
# ## Table 4, adding modules one at a time
#
# Ours and the paper's (%, mean over categories; each of our columns evaluated zero-shot with
# prompts tuned on the other dataset), one table per dataset:

# %% tags=["remove-input"]
table4.show("Table 4")

# %% [markdown]
# ## Table 7, removing one module from the full model

# %% tags=["remove-input"]
table7.show("Table 7")

# %% tags=["remove-input"]
Workbench(ch, table7, ("full", full), ["dpam", "object_aware", "prompt_depth", "layers", "lam"],
          datasets=ch.ablation_datasets).show(live)

# %% tags=["remove-input"]
# our change of image AUROC without T2, named by the dataset ours ran on (a smoke domain:
# "textures (stands in for MVTec AD)")
removing_t2 = ours_difference(cmp7, "image_auroc", "without T2 object-agnostic prompts", "full")
display(Markdown(conclusions.module_ablation(paper_on(cmp4), paper_on(cmp7), removing_t2).text))
