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
# # Glocal context optimisation: which loss terms matter (Tables 5 and 11)
#
# **Reproduces** Table 5 (global and local loss, with and without each) and Table 11 (appendix D:
# the local loss split into its Focal and Dice terms) of the paper.
#
# **Claim.** The prompts are tuned with a *global* loss (cross-entropy of the image score against
# the image label) plus a *local* loss (Focal + Dice of the normal/abnormal segmentation maps
# S_n, S_a against the mask). The global term mostly helps image-level detection, the local term
# mostly pixel-level segmentation, and together they are best (Table 5). Inside the local loss,
# Focal and Dice each help and their sum is best (Table 11).
#
# **Experiment.** Every row is the {term}`four-layer recipe` with some loss terms switched off
# (`use_global_loss`, `use_focal_loss`, `use_dice_loss`), tuned on one dataset and evaluated
# zero-shot on the other. "No local, no global" has nothing to optimise, so it is evaluated with
# the untrained prompts. As in the paper, Table 11 keeps the global loss on in every row (so its
# "no Focal, no Dice" row is Table 5's "global only"). On the smoke profile chapters 6–9 tune with
# its short `ablation` schedule (fewer epochs than the paper's 15, so that a workbench setting
# runs in seconds; the table of rows gives the epochs).

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
from anomclip.book.labels import provenance_box, standin_label, styled
from anomclip.book.plots import loss_curves
from anomclip.book.tables import ours_by_run, paper_on
from anomclip.book.workbench import Workbench, ablation

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
full = ch.recipe("paper", schedule="ablation")  # smoke: the short tuning schedule of chapters 6–9

# %% tags=["remove-input"]
ch.caveat()

# %% tags=["remove-input"]
trained = [
    ("full", full),  # = local + global (the run of chapters 6, 7 and 9; and 2 on the paper profile)
    ("global only", full.with_(use_focal_loss=False, use_dice_loss=False)),
    ("local only", full.with_(use_global_loss=False)),
    ("dice only", full.with_(use_focal_loss=False)),
    ("focal only", full.with_(use_dice_loss=False)),
]
untrained = [("no local, no global", full)]
# the untrained row tunes nothing: its loss switches do not apply ("–")
styled(pd.DataFrame([{"label": l, "global": r.use_global_loss if t else None, "focal": r.use_focal_loss if t else None,
                      "dice": r.use_dice_loss if t else None, "tuned": t, "epochs": r.epochs if t else None}
                     for l, r, t in [(l, r, True) for l, r in trained] + [(l, r, False) for l, r in untrained]])
       .set_index("label"), "the rows: which loss terms tune the prompts", digits=0)

# %% tags=["hide-input"]
runs = [ch.run(trained, datasets=ch.ablation_datasets), ch.run(untrained, datasets=ch.ablation_datasets, train=False)]
ours = pd.concat([r.frame for r in runs], ignore_index=True)
provenance_box(runs[0].experiment("full", next(iter(P.protocol))))

# %% [markdown]
# Table 5 and Table 11 name the same runs differently: our "full" run is Table 5's "local +
# global" and Table 11's "focal + dice"; our "global only" is Table 11's "no focal, no dice".

# %% tags=["remove-cell"]
# our run labels are the paper's row names, except where a pair gives the paper's name
table5 = ablation(ch, ours, ["no local, no global", "global only", "local only", ("full", "local + global")],
                  table=5, title="Table 5: loss terms", figure=False)
table11 = ablation(ch, ours, [("global only", "no focal, no dice"), "dice only", "focal only", ("full", "focal + dice")],
                   table=11, title="Table 11: Focal and Dice", figure=False)
cmp5, cmp11 = table5.cmp, table11.cmp
table5_rows = table5.names  # {our label: Table 5's row name}

# %% [markdown]
# ## Table 5, global and local context optimisation
#
# Ours and the paper's (%, mean over categories, zero-shot), one table per dataset:

# %% tags=["remove-input"]
table5.show("Table 5")

# %% [markdown]
# ## Table 11, Focal and Dice inside the local loss

# %% tags=["remove-input"]
table11.show("Table 11")

# %% tags=["remove-input"]
Workbench(ch, table5, ("local + global", full), ["use_global_loss", "use_focal_loss", "use_dice_loss", "lam"],
          datasets=ch.ablation_datasets).show(live)

# %% [markdown]
# The training curves say what each loss set-up optimised: the global and the local loss per
# epoch of each run tuned on the first dataset of the protocol. A switched-off term is not
# computed: it is recorded as 0, so its line lies flat at zero (the global loss of "local only",
# the local loss of "global only").

# %% tags=["remove-input"]
src = next(iter(P.protocol))
for term in ("global", "local"):
    hist = {table5_rows.get(l, l): [{"epoch": h["epoch"], term: h[term]} for h in
                                    runs[0].experiment(l, src).training["history"]] for l, _ in trained}
    loss_curves(hist, x="epoch", title=f"{term} loss per epoch (tuned on {standin_label(src)})", logy=False)
    plt.show()

# %% tags=["remove-input"]
display(Markdown(conclusions.loss_terms(paper_on(cmp5), paper_on(cmp11), ours_by_run(cmp5, "pixel_auroc"),
                                        ch.smoke).text))
