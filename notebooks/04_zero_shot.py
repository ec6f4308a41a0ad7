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
# # Zero-shot results: Tables 1, 2 and 15–26
#
# **What this chapter reproduces.** The paper's main comparison — AnomalyCLIP against {term}`CLIP`,
# {term}`CLIP-AC`, {term}`WinCLIP`, {term}`VAND` and {term}`CoOp` in Table 1 (industrial datasets) and Table 2 (medical
# datasets), each method run on the same engine (docs/compared-methods.md) — and AnomalyCLIP's per-category
# Tables 15–26 (MVTec AD, VisA and MPDD: pixel {term}`AUROC`, pixel {term}`AUPRO`, image AUROC, image
# {term}`AP`).
# It also measures what training buys: the same model with the *untrained* prompts.
#
# **Argument.** Object-agnostic prompts tuned once on an auxiliary dataset (MVTec AD, or VisA
# when MVTec AD is the target) should beat the baselines and transfer to datasets whose
# objects, textures and even modalities were never seen, reaching high image- and pixel-level
# scores everywhere.
#
# **Experiment.** Each method of the `methods` parameter (a list of recipe names; default
# the six methods of `anomclip.PAPER_METHODS`, in the order of the tables: the paper's five baselines
# and AnomalyCLIP as the authors released it) is tuned on each tuning dataset of
# the profile's protocol and evaluated on the datasets tuned elsewhere (smoke: textures →
# objects and objects → textures; paper: MVTec AD → all others, VisA → MVTec AD); methods
# that tune nothing (CLIP, WinCLIP) are evaluated as they are. The untrained baseline
# evaluates AnomalyCLIP with its prompts at their random initialisation.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
backbone = None  # None: tiny-random (smoke) / ViT-L-14-336 (paper)
pretrained = None  # None: random (smoke) / openai (paper)
live = False  # no interactive figure in this chapter
methods = None  # recipe names; None: the six of anomclip.PAPER_METHODS, in the tables' order

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from anomclip.book import conclusions
from anomclip.book.chapter import open_chapter
from anomclip.book.diagnostics import defect_shift
from anomclip.book.labels import (
    SHOWN,
    compare,
    compare_table,
    mean_categories,
    metric_name,
    notes_box,
    provenance_box,
    styled,
)
from anomclip.book.plots import bars, plot_compare
from anomclip.book.reference import DAGGER_NOTE, RERUN, daggered, paper_values, with_dagger, with_rerun
from anomclip.book.tables import paper_long, wide
from anomclip.data.synth import defect_pairs
from anomclip.engine.loading import build_model
from anomclip.methods import PAPER_METHODS, display_name

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
recipe = ch.recipe("official")
methods = methods or [m.recipe for m in PAPER_METHODS.values()]
names = {name: display_name(name) for name in methods}

# %% tags=["remove-input"]
ch.caveat()

# %% [markdown]
# ## The paper's numbers
#
# First what the paper reports, labelled **paper** (values in %, from
# `anomclip/book/reference/paper_results.csv`): Tables 1 and 2, one row per dataset and metric
# (the paper reports image metrics, pixel metrics or both depending on the dataset; folded:
# click to show — the datasets this run covers are side by side with ours at the end).

# %% tags=["remove-input", "hide-output"]
paper_main = pd.concat([paper_long(t, method=None, label_by="method") for t in (1, 2)], ignore_index=True)
paper_main = paper_main[paper_main["label"].isin(names.values())]
t = paper_main.pivot_table(index=["dataset", "metric"], columns="label", values="value", sort=False)
styled(t[[n for n in names.values() if n in t.columns]].rename_axis(columns="method"),
       "paper, Tables 1–2: zero-shot (%)")

# %% [markdown]
# Tables 15–26: AnomalyCLIP per category, for the three datasets the appendix details (folded:
# click to show).

# %% tags=["remove-input", "hide-output"]
per_cat = pd.concat([paper_long(t, category=None) for t in range(15, 27)], ignore_index=True)
for ds, d in per_cat.groupby("dataset", sort=False):
    tab = d.pivot_table(index="category", columns="metric", values="value", sort=False)
    tab = tab[[k for k in SHOWN if k in tab.columns]]
    tab = pd.concat([tab.drop(index="mean", errors="ignore"), tab.loc[["mean"]] if "mean" in tab.index else None])
    display(styled(tab, f"paper, Tables 15–26: {ds}, AnomalyCLIP per category (%)"))

# %% [markdown]
# ## This run
#
# The same protocol, both directions; every method's runs come from the run store (the
# `official` runs are the ones chapters 1 and 3 trained).

# %% tags=["hide-input"]
table = ch.run([(names[n], ch.recipe(n)) for n in methods])  # zero-shot methods: one run, no tuning
ours = table.frame
docs = {(lbl, t): doc for (lbl, _), e in table.experiments.items() for t, doc in e.results.items()}
provenance_box(next(iter(docs.values())))

# %% [markdown]
# Per category and mean, for each method and evaluated dataset (values in %; folded: click to
# show; the means are in the comparison below).
# **In the smoke profile these categories are synthetic** (discs, rings, weaves…), *not* the
# paper's categories: there is nothing to compare category by category.

# %% tags=["remove-input", "hide-output"]
for (lbl, ds), doc in docs.items():
    t = pd.DataFrame(doc["categories"]).T
    t.loc[mean_categories(doc, SHOWN)] = pd.Series(doc["mean"])  # the mean row says its categories
    t = t[[k for k in SHOWN]] * 100
    tuned = (doc["provenance"].get("training") or {}).get("data", {}).get("name", "nothing (untrained)")
    display(styled(t, f"{ch.ours}, {lbl}: {ds} (prompts tuned on {tuned}), per category (%)"))
notes_box(list(docs.values()), metrics=SHOWN)  # only the notes of the metrics shown

# %% tags=["remove-input"]
rows = [{"dataset": ds, "category": c, "metric": metric_name(k), "value": 100 * v}
        for (lbl, ds), doc in docs.items() if lbl == "AnomalyCLIP"
        for c, m in doc["categories"].items() for k, v in m.items() if k in SHOWN]
if rows:
    bars(pd.DataFrame(rows), x="metric", hue="category", col="dataset",
         title=f"{ch.ours}: AnomalyCLIP per category (dotted: chance)")
    plt.show()

# %% [markdown]
# ## What training buys: untrained vs trained prompts
#
# The same backbone, DPAM and scoring, with the prompts at their N(0, 0.02) initialisation
# (no tuning data) vs tuned on the other domain.

# %% tags=["hide-input"]
tuned = ch.run([("AnomalyCLIP", recipe)]).frame
untrained = ch.run([("untrained prompts", recipe)], train=False).frame
both = pd.concat([untrained, tuned], ignore_index=True)
styled(wide(both), "untrained vs tuned prompts (%)")

# %% tags=["remove-input"]
d = both[both["metric"].isin(SHOWN)].assign(value=lambda x: 100 * x["value"],
                                            metric=lambda x: x["metric"].map(metric_name))
bars(d, x="metric", hue="label", col="dataset", title=f"{ch.ours}: untrained vs tuned prompts (dotted: chance)")
plt.show()

# %% [markdown]
# ## Why the maps can transfer when the image score does not
#
# The image score reads the global feature alone; the map reads the patch features (docs/anomalyclip.md §4).
# Prompts tuned on one dataset can carry "damaged" to another only through a feature that a
# defect moves *more* than two normal images of the same category differ. We measure both on
# pairs of synthetic images that differ by the defect alone (`anomclip.data.synth.defect_pairs`,
# generated in memory, 8 per category), with this chapter's backbone
# (`anomclip.book.diagnostics.defect_shift`):
#
# * **shift**: cosine distance between an image's feature and the same image's with the defect
#   (patch: the patch cell the defect covers most, last layer of the map);
# * **spread**: the same distance between two normal images of the category;
# * **ratio** = shift / spread: above 1 the defect stands out of normal variation.

# %% tags=["hide-input"]
diag_model = build_model(recipe, ch.device)  # the frozen image encoder: prompts play no part here
shifts = defect_shift(diag_model, defect_pairs(n_per_category=8))
styled(shifts.pivot_table(index=["domain", "category"], columns="feature", values=["shift", "spread", "ratio"],
                          sort=False), "what a defect moves (cosine distances)", digits=4)

# %% tags=["remove-input"]
bars(shifts.rename(columns={"ratio": "value"}).assign(  # "global feature": not the global *loss*'s colour
    feature=lambda d: d["feature"].map({"global": "global feature", "patch": "patch features"}).fillna(d["feature"])),
     x="category", hue="feature", col="domain", chance=1.0,
     ylabel="shift / spread", logy=True, title=f"{diag_model.info.name}: defect shift / normal spread")
plt.show()

# %% tags=["remove-input"]
ratio = shifts.groupby("feature")["ratio"].median()
below = shifts[shifts["ratio"] < 1].groupby("feature").size().reindex(["global", "patch"], fill_value=0)
n_cat = shifts["category"].nunique()
w = wide(both)
delta = (w.xs("AnomalyCLIP") - w.xs("untrained prompts")).groupby(level="metric").mean()
display(Markdown(conclusions.defect_shift(n_cat, ratio, below, delta, diag_model.info.trained).text))

# %% [markdown]
# (zero-shot-vs-paper)=
# ## Ours vs the paper, mean vs mean
#
# Every dataset of Tables 1–2, with the paper's number, this run's number where it has one
# (smoke: *objects* stands in for VisA, *textures* for MVTec AD — the same role in the
# protocol, nothing more), or why it has none; on the paper profile also Δ = ours − paper, in
# points (on the smoke profile a difference to the paper measures nothing, so there is none).
# This is the one place the book puts the main results side by side; other chapters link here.

# %% tags=["remove-input"]
all_paper = paper_values(1)["dataset"].unique().tolist() + paper_values(2)["dataset"].unique().tolist()
cmp = compare(ours, paper_main, synthetic=ch.smoke, missing=ch.not_run(all_paper))
order = {n: i for i, n in enumerate(names.values())}  # methods in the paper's column order, datasets as listed
cmp = cmp.assign(_d=cmp["dataset"].map({d: i for i, d in enumerate(dict.fromkeys(cmp["dataset"]))}),
                 _m=cmp["label"].map(order)).sort_values(["_d", "_m"], kind="stable").drop(columns=["_d", "_m"])
ran = list(dict.fromkeys(cmp.loc[cmp["ours"].notna(), "dataset"]))
for ds in ran:  # this run's rows beside the paper's, one narrow table per dataset it ran
    t = with_dagger(compare_table(cmp, ds, labels=list(names.values())), ds)
    display(styled(t.drop(columns="Δ") if ch.smoke else t, f"{ch.ours} vs paper, Tables 1–2: {ds} (%)"))
if any(d in ran for d, _, _ in daggered(1)):  # the paper's † values were not run by its authors
    display(Markdown(DAGGER_NOTE + "."))
rest = cmp[~cmp["dataset"].isin(ran)].drop_duplicates("dataset")
if len(rest):  # the others in one line: their paper numbers are the tables above
    why = rest.groupby(rest["status"].where(rest["status"] != "", "no number"), sort=False)["dataset"].apply(list)
    display(Markdown("Not in this run (the paper's numbers for them are in the tables above): "
                     + "; ".join(f"{', '.join(v)} ({k})" for k, v in why.items()) + "."))

# %% [markdown]
# The AnomalyCLIP authors re-ran their released code and committed the logs
# (`results/*/zero_shot/log.txt` in zqhang/AnomalyCLIP, commit ff7ca47 of 2024-03-19): a
# reference of its own, labelled **authors' re-run**, beside the paper and this run.

# %% tags=["remove-input"]
styled(with_rerun(cmp), f"AnomalyCLIP: paper, {RERUN} and {ch.ours} (%)")

# %% tags=["remove-input"]
have = cmp[cmp["ours"].notna()]
plot_compare(have, metrics=("pixel_auroc", "image_auroc"), ours_label=ch.ours,
             title="Tables 1–2: zero-shot means, ours vs paper")
plt.show()

# %% tags=["remove-input"]
gap = have.groupby("metric")["Δ"].mean()
per_method = have.pivot_table(index="label", columns="metric", values="Δ", aggfunc="mean", sort=False)
if not ch.smoke:  # on the smoke profile the difference measures nothing (chapter 1): no Δ table
    display(styled(per_method.reindex([n for n in names.values() if n in per_method.index]),
                   f"mean Δ = {ch.ours} − paper per method, over the datasets this run covers (points)"))
display(Markdown(conclusions.gap_to_paper(gap.to_dict(), have["dataset"].nunique(), have["label"].nunique(),
                                          ch.smoke).text))
