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
# # After AnomalyCLIP: Crane, AdaptCLIP and MuSc on the same engine
#
# **Why this chapter.** The book reproduces AnomalyCLIP and the five methods it compared itself
# with. The next question is how it stands against what came after it, under one protocol, one
# backbone and one set of metrics. Each later paper re-runs or copies its own selection of
# numbers; here every method is a `Method` of the same engine (one data index, one
# preprocessing, one feature cache, one evaluation), listed in one place — the registry,
# `anomclip.METHODS` — so a method registered there appears in every table below.
#
# **What it shows.** First where each new idea sits relative to AnomalyCLIP's. Then every
# method's *published* numbers, labelled **paper** (AnomalyCLIP's Tables 1–2 for the first six,
# each later method's own paper or repository for the others: `anomclip/book/reference/`), beside
# this run's on every dataset both have. Then what each method costs — trainable parameters,
# seconds per image, peak memory — measured here, and the maps of the same images side by side.
# {term}`MuSc` has a section of its own: it is {term}`transductive`, a different setting, so it
# is never ranked with the others.
#
# **Experiment.** Each method of the `methods` parameter (default: every method of the
# registry) runs under the profile's protocol. On the smoke profile one direction only, to stay
# cheap: tuned on *textures* with the smoke profile's short `ablation` schedule and evaluated
# zero-shot on *objects*, which stands in for VisA. On the paper profile the whole protocol of
# chapter 4 (MVTec AD → every other dataset, VisA → MVTec AD), each method with its own schedule.
# Methods that train nothing are evaluated as they are. The settings of each method and where
# they come from are in `docs/after-anomalyclip.md` and `docs/compared-methods.md`.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
backbone = None  # None: tiny-random (smoke) / ViT-L-14-336 (paper)
pretrained = None  # None: random (smoke) / openai (paper)
live = False  # no interactive figure in this chapter
methods = None  # recipe names; None: every method of the registry (anomclip.METHODS), in its order
set_size = 8  # images of one category encoded and scored together (costs, maps; MuSc's set)
repeats = 2  # timed calls per method (the fastest is kept)
shown = 3  # of them, the anomalous images whose maps are drawn

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from anomclip.bench.cost import method_cost, rescaled
from anomclip.bench.musc import PAPER as MUSC_PAPER
from anomclip.book.after import (
    REFERENCE,
    category_set,
    cost_sentence,
    gains,
    gains_sentence,
    methods_present,
    smoke_ranking_note,
)
from anomclip.book.chapter import open_chapter
from anomclip.book.examples import batch_of
from anomclip.book.labels import (
    MISSING,
    compare,
    fmt,
    fmt_sig,
    metric_name,
    provenance_box,
    short_metric_name,
    standin_label,
    styled,
    wide_caption,
    wide_compare,
)
from anomclip.book.plots import draw_maps, plot_dots
from anomclip.book.reference import published_long
from anomclip.data.dataset import load_index
from anomclip.engine.results import device_name
from anomclip.methods.musc import peak_bytes

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
present = methods_present(methods)
inductive = present[~present["transductive"]]
transductive = present[present["transductive"]]
later = present.loc[~present["in_paper"], "label"].tolist()
# the profile's first tuning dataset and the datasets evaluated with it (smoke: the only direction run)
src = next(iter(P.protocol))
targets = P.protocol[src]
GIB, MB = 2 ** 30, 1e6


def recipe_of(row):
    """The method's recipe on this profile: a trained method on the short smoke schedule."""
    return ch.recipe(row.recipe, schedule="ablation") if row.trains else ch.recipe(row.recipe)


def run(rows):
    """The rows' runs: on the smoke profile one direction (tuned on src), on the paper profile its
    whole protocol; a dataset evaluated in two directions keeps the first (src's) numbers."""
    t = ch.run([(r.label, recipe_of(r)) for r in rows.itertuples()], datasets=targets if ch.smoke else None)
    t.frame = t.frame.drop_duplicates(["label", "dataset", "metric"])
    return t


# %% tags=["remove-input"]
ch.caveat()

# %% [markdown]
# ## Where each new idea sits
#
# AnomalyCLIP (chapters 1–3) keeps CLIP frozen and learns two things only: a pair of
# {term}`object-agnostic prompts` ("[learned words] object" / "… damaged object", with
# {term}`deep prompts` in the text encoder), and — without learning — a {term}`DPAM`
# {term}`surrogate path` through the visual encoder whose patch features stay local. Its image
# score compares the global feature with the two prompts; its map compares every patch.
# The later methods change one of these pieces each.
#
# **E-Attn vs DPAM (Crane).** DPAM replaces the query–key attention of the surrogate path by one
# "self" attention: V-V, each value compared with the other values ({term}`DPAM modes`;
# chapter 9 compares V-V with Q-Q and K-K). {term}`Crane`'s {term}`E-Attn` sums the three:
# softmax(q qᵀ) + softmax(k kᵀ) + softmax(v vᵀ), one path with the three maps added — not
# the *ensemble* of three paths whose logits AnomalyCLIP's Table 10 averages (`Q-Q+K-K+V-V` in
# chapter 9). It is still training-free, still a surrogate path beside CLIP's own; here it is the
# DPAM mode `eattn` of `anomclip/model/dpam.py`, so the rest of the engine is unchanged.
#
# **Image-conditioned vs object-agnostic prompts (Crane).** AnomalyCLIP's prompts are the same
# for every image: that is what makes them transfer. Crane, *during training*, writes each
# image's global feature into its prompts' token sequence ({term}`image-conditioned prompts`),
# so the text features depend on the image; its test script leaves this off, so at test time
# its prompts are object-agnostic again. Its image score pools the patch features
# weighted by their own anomaly scores (score-based pooling) before comparing with the text —
# the local evidence feeds the global decision, where AnomalyCLIP keeps them apart.
#
# **Adapters vs prompts (AdaptCLIP).** {term}`AdaptCLIP` learns on both sides of the frozen
# CLIP. Its visual adapter is a small residual layer on the global and patch features
# ({term}`adapters`), whose output is compared with *fixed* hand-written prompts; its textual
# adapter is a pair of learnable contexts — not even the word "object" is kept — compared with the
# *un-adapted* features. Each branch learns against the other side held fixed, and their scores
# are averaged. AnomalyCLIP learns on the text side only; the visual adapter is closest to
# {term}`VAND`'s linear layers, which also transform the patch features. Like AnomalyCLIP it
# reads its patches from DPAM's V-V surrogate path.
#
# **Transductive scoring (MuSc).** Every other method scores each test image alone, with
# prompts tuned once on auxiliary data. {term}`MuSc` uses no text and trains nothing: it scores
# each patch by its distance to the *most similar patches of the other test images of the same
# category*, so it needs the whole unlabelled test set of a category at once, and one image's
# score depends on the set it came with. That is another setting — the test set itself is the
# reference of normality — hence its section apart below.
#
# Where each setting of these methods comes from (file and commit of its authors' code), where
# their code departs from their papers, and the side-by-side checks against their code on
# identical random weights: `docs/after-anomalyclip.md`.

# %% tags=["remove-input"]
role = {True: "transductive: scores a category's test images together", False: "each image alone"}
styled(present.set_index("label").assign(
    trained=lambda d: d["trains"], scoring=lambda d: d["transductive"].map(role),
    origin=lambda d: d["in_paper"].map({True: "AnomalyCLIP's Tables 1–3", False: "published after it"}),
    recipe=lambda d: d["recipe"])[["recipe", "trained", "scoring", "origin"]].rename_axis(None),
       "the methods of the registry (anomclip.METHODS), in its order")

# %% [markdown]
# ## The published numbers
#
# Each method's zero-shot means as published (values in %): AnomalyCLIP's Tables 1–2 for the
# paper's six methods, the later methods' own tables (`anomclip/book/reference/after_anomalyclip.csv`,
# each value with its source). Crane is tuned on MVTec AD and evaluated elsewhere, and tuned on
# VisA for MVTec AD — AnomalyCLIP's protocol. First MVTec AD and VisA, which every paper reports:

# %% tags=["remove-input"]
published = published_long(present["label"])
pub = published[published["label"].isin(inductive["label"])]
main = [d for d in ("MVTec AD", "VisA") if d in set(pub["dataset"])]
if main:
    t = pub[pub["dataset"].isin(main)].pivot_table(index="label", columns=["dataset", "metric"], values="value",
                                                   sort=False)
    t = t.reindex(index=[lb for lb in inductive["label"] if lb in t.index]).rename_axis(None)
    t.columns = pd.MultiIndex.from_tuples([(d, short_metric_name(m)) for d, m in t.columns])
    note = "; ".join(f"{short_metric_name(m)} = {metric_name(m)}" for m in dict.fromkeys(pub["metric"]))
    display(styled(t, f"paper: zero-shot means on {' and '.join(main)} ({note}; %)"))

# %% tags=["remove-input"]
if main:
    plot_dots(pub[pub["dataset"].isin(main)].assign(value=lambda d: d["value"] / 100),
              title="paper: each method's published zero-shot means", xlabel="published, %")
    plt.show()

# %% [markdown]
# Every other dataset of the seventeen, one row per dataset and method (folded: click to show).

# %% tags=["remove-input", "hide-output"]
rest = pub[~pub["dataset"].isin(main)]
if len(rest):
    t = rest.pivot_table(index=["dataset", "label"], columns="metric", values="value", sort=False)
    display(styled(t[[m for m in ("pixel_auroc", "pixel_aupro", "image_auroc", "image_ap") if m in t.columns]],
                   "paper: zero-shot means on the other datasets (%)"))

# %% tags=["remove-input"]
said = [gains_sentence(gains(pub, m), m).text for m in later if m in set(inductive["label"])]
display(Markdown("\n\n".join(said) if said else "No later method is registered beside the paper's six."))

# %% [markdown]
# ## This run beside the published numbers
#
# Every method that scores images alone, run on this engine: tuned on one dataset and evaluated
# on the others of its direction (the runs come from the run store: a run asked for by another
# chapter, or by an earlier execution of this one, is read back, not trained again).

# %% tags=["hide-input"]
table = run(inductive)
ours = table.frame
first = next(iter(table.experiments.values()))
shown_run = table.experiment(REFERENCE, src) if REFERENCE in set(inductive["label"]) else first
provenance_box(next(iter(shown_run.results.values())), title=f"Provenance ({shown_run.recipe.name} run)")

# %% [markdown]
# One table per dataset this run evaluated: the rows are the methods, the columns each metric's
# published number (**paper**) and this run's; on the paper profile also Δ = ours − paper. On
# the smoke profile a smoke domain stands in for a paper dataset (the same role in the protocol,
# nothing more) and there is no Δ: a difference to the paper measures nothing there.

# %% tags=["remove-input"]
all_published = list(dict.fromkeys(pub["dataset"]))
cmp = compare(ours, pub, synthetic=ch.smoke, missing=ch.not_run(all_published))
ran = list(dict.fromkeys(cmp.loc[cmp["ours"].notna(), "dataset"]))
for ds in ran:
    t = wide_compare(cmp, ds, labels=list(inductive["label"]), delta=not ch.smoke)
    display(styled(t, wide_caption(t, f"{ch.ours} vs paper: {ds}")))
gone = [d for d in all_published if d not in ran]
if gone:
    display(Markdown(f"Not in this run ({'not in the smoke run' if ch.smoke else 'not found or not evaluated'}; "
                     f"their published numbers are above): {', '.join(gone)}."))

# %% tags=["remove-input"]
here = ours[ours["metric"].isin(pub["metric"].unique())].assign(value=lambda d: 100 * d["value"])
lines = [] if ch.smoke else [gains_sentence(gains(here, m), m, whose=ch.ours).text
                             for m in later if m in set(inductive["label"])]
display(Markdown("\n\n".join(lines + [smoke_ranking_note(ch.smoke).text])))

# %% [markdown]
# ## MuSc, apart: a transductive method
#
# MuSc scores each test image against the other unlabelled test images of its category: the
# engine hands it a whole category at once (`score_category`; `docs/after-anomalyclip.md`, "How
# the engine runs a transductive method"). Its numbers are therefore not comparable with the
# others' — it sees the test set, they see one image — and they are shown here alone, beside its
# own published numbers (its README: the comparison row, or the mean of its per-category tables
# where the comparison has none).

# %% tags=["remove-input"]
if len(transductive):
    tt = run(transductive)
    tpub = published[published["label"].isin(transductive["label"])]
    tcmp = compare(tt.frame, tpub, synthetic=ch.smoke, missing=ch.not_run(list(dict.fromkeys(tpub["dataset"]))))
    for ds in dict.fromkeys(tcmp.loc[tcmp["ours"].notna(), "dataset"]):
        t = wide_compare(tcmp, ds, labels=list(transductive["label"]), delta=not ch.smoke)
        display(styled(t, wide_caption(t, f"transductive, {ch.ours} vs paper: {ds}")))
    for lb, d in tpub.groupby("label", sort=False):
        display(Markdown(f"{lb}'s published numbers cover {', '.join(dict.fromkeys(d['dataset']))} "
                         f"({len(d)} values); the paper's other methods are not compared with them here."))
else:
    display(Markdown("No transductive method among the methods of this chapter."))

# %% [markdown]
# ## What each method costs
#
# A set of test images of one category of the evaluation dataset (anomalous and normal in turn;
# how many: the table's caption), preprocessed as evaluation does, encoded and scored by each
# method in one call after a warm-up (`anomclip.bench.cost.method_cost`). **s/image**: the
# fastest of a few such calls, its seconds ÷ the number of images. **Peak MB**: the most memory
# the call's tensors held at once beyond what was allocated before it (on a CPU, the tensor
# storages alive at once; on a GPU, the allocator's peak). **Weights MB**: the model's
# parameters and buffers, frozen backbone included. **Trainable**: the parameters its training
# updates. MuSc scores the set as one category, so its seconds and memory per image grow with
# the size of the set; the others' do not.

# %% tags=["hide-input"]
eval_on = targets[0]
index = load_index(P.datasets[eval_on].root, P.datasets[eval_on].split)
category = sorted(index)[0]
samples = category_set(index[category], set_size)
images, masks, cls_names, rgb = batch_of(samples, P.base.image_size)
models = {r.label: (table if not r.transductive else tt).experiment(r.label, src if r.trains else None).model()
          for r in present.itertuples()}
measured = {lb: method_cost(m, images, cls_names, ch.device, repeats) for lb, m in models.items()}

# %% tags=["remove-input"]
costs = pd.DataFrame({lb: {"trainable parameters": c["trainable_parameters"], "s/image": c["seconds_per_image"],
                           "peak MB": c["peak_bytes"] / MB, "weights MB": c["weights_bytes"] / MB}
                      for lb, c in measured.items()}).T
shown_costs = costs.copy()
shown_costs["trainable parameters"] = shown_costs["trainable parameters"].map(lambda v: f"{int(v):,}")
for c in ("s/image", "peak MB", "weights MB"):
    shown_costs[c] = shown_costs[c].map(fmt_sig)
backbones = sorted({f"{m.info.name} @ {m.image_size} px" for m in models.values()})
styled(shown_costs.rename(columns={"trainable parameters": "trainable"}),
       f"{ch.ours}: cost of each method on {device_name(ch.device)}, {len(samples)} images of "
       f"{standin_label(eval_on)} / {category}, the fastest of {repeats} calls ({'; '.join(backbones)}; memory: "
       f"{next(iter(measured.values()))['memory_how']})")

# %% tags=["remove-input"]
sets = set(transductive["label"])
lines = [cost_sentence(costs, m, set_of=len(samples) if m in sets else None).text for m in later if m in costs.index]
musc_paper = peak_bytes(MUSC_PAPER["n"], MUSC_PAPER["patches"], MUSC_PAPER["width"], MUSC_PAPER["size"])
if len(transductive):
    lines.append(f"MuSc's memory grows with the category: by `anomclip.methods.musc.peak_bytes`, a category of "
                 f"{MUSC_PAPER['n']} images at {MUSC_PAPER['size']} px ({MUSC_PAPER['patches']} patches of width "
                 f"{MUSC_PAPER['width']}) is scored in about {fmt(musc_paper['total'] / GIB)} GiB beyond the cached "
                 "features and the backbone (`docs/after-anomalyclip.md`, \"Memory\"), and its comparisons grow as "
                 "the square of the number of images.")
if ch.smoke:
    lines.append("On the tiny backbone these seconds and megabytes are small and noisy; their ratios are what "
                 "carries over, and only roughly (chapter 12 measures the paper-scale costs).")
display(Markdown("\n\n".join(lines)))

# %% [markdown]
# ## The same images, every method's map
#
# The first anomalous images of that set (their masks: red contours), with each method's map
# from the call above. Methods do not share a scale (AnomalyCLIP's maps are probabilities summed
# over layers, MuSc's a distance), so each method's maps are rescaled to their own range over
# the whole set (0: its lowest pixel in any of the images, 1: its highest); each panel's title is
# that map's pixel AUROC on the image, which no rescaling changes.

# %% tags=["remove-input"]
bad = [i for i, s in enumerate(samples) if s.anomaly][:shown]
maps = {lb: rescaled(c["maps"])[bad] for lb, c in measured.items()}
groups = [("the paper's methods", present.loc[present["in_paper"], "label"].tolist()),
          ("after AnomalyCLIP", [REFERENCE] * (REFERENCE in maps) + later)]
for title, labels in groups:
    labels = [lb for lb in labels if lb in maps]
    if len(labels) < 1 or not bad:
        continue
    fig = draw_maps(rgb[bad], masks.numpy()[bad], {lb: maps[lb] for lb in labels}, sigma=0,
                    title=f"{ch.ours}: {title}, {standin_label(eval_on)} / {category}")
    fig.axes[-1].set_xlabel("each method's map, rescaled to its range over the set (0 = lowest, 1 = highest)")
    plt.show()
if not bad:
    display(Markdown(f"The set of {category} has no anomalous image: no map to draw."))

# %% [markdown]
# ## What to take from it
#
# The published numbers are the comparison: they come from each method's authors, on the same
# datasets, and the sentences above are computed from them. This run adds what the papers do not give on one
# footing: every method run by one engine on the same images, with the same metrics and the
# same costs measured on the same machine. On the paper profile (real weights, real data) the
# same cells put this run's numbers beside the published ones dataset by dataset.
