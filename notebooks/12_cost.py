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
# # Computation cost: inference speed and training time (Table 8)
#
# **Reproduces** Table 8 (appendix D: training minutes per epoch and inference frames per second
# on one RTX 3090) of the paper, measured here on this machine.
#
# **Claim.** Fine-tuning takes about as long per epoch as the other prompt-tuning methods (CoOp,
# VAND) and only 15 epochs; DPAM adds little per epoch. At inference AnomalyCLIP is slower than
# plain CLIP but far faster than WinCLIP, which needs many forward passes of image crops. The
# paper's numbers (Table 8) are in the first table below.
#
# **Experiment.** With the profile's backbone and the `official` recipe we time, on the current
# device (functions of `anomclip.bench`, which measure and return data, and never assert):
#
# | what | how |
# |---|---|
# | inference | images/s of open_clip's plain `encode_image` vs our DPAM forward (both paths in one pass), and a naive reference that runs the surrogate path as a second full pass |
# | text side | the text features of the two prompts: first call vs cached call (they are computed once per model) |
# | training | read from the `official` run of the run store: seconds per epoch on cached features, and the one-off extraction of the frozen features an epoch would repeat without the cache |
# | the book | the seconds each chapter of this book took in its latest execution |
#
# The paper's numbers include data loading and scoring; ours time the forward passes only.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"
data_root = "data"
device = "auto"
force = False
backbone = None  # None: tiny-random (smoke) / ViT-L-14-336 (paper)
pretrained = None  # None: random (smoke) / openai (paper)
live = False  # no interactive figure in this chapter
batch_sizes = [1, 4]  # paper profile: e.g. [1, 8]
repeats = 3
methods = None  # recipe names; None: Table 8's six methods (anomclip.PAPER_METHODS)
method_images = 4  # images per batch when timing each method

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from anomclip.bench.forward import bench_forward
from anomclip.bench.methods import throughput
from anomclip.bench.text import bench_text
from anomclip.book import conclusions
from anomclip.book.build import read_timings
from anomclip.book.chapter import open_chapter
from anomclip.book.labels import fmt, fmt_sig, model_provenance, provenance_box, styled
from anomclip.book.plots import COLUMN_WIDTH_IN, colour
from anomclip.book.reference import paper_values
from anomclip.book.tables import training_cost
from anomclip.engine.loading import build_model
from anomclip.engine.results import device_name
from anomclip.methods import PAPER_METHODS, display_name, trains

methods = methods or [m.recipe for m in PAPER_METHODS.values()]

ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
P = ch.profile
recipe = ch.recipe("official")
model = build_model(recipe, ch.device)

# %% tags=["remove-input"]
ch.caveat("timings")

# %% [markdown]
# ## The paper's numbers
#
# Table 8, labelled **paper** (one RTX 3090; FPS on VisA, minutes per epoch on MVTec AD,
# 1725 images).

# %% tags=["remove-input"]
t8 = paper_values(8)
paper8 = t8.pivot_table(index="method", columns="metric", values="value", sort=False)
paper8 = paper8.rename(columns={"fps": "inference FPS (VisA)", "train_minutes_per_epoch": "training min/epoch (MVTec AD)"})
styled(paper8, "paper, Table 8 (RTX 3090)", digits=2)

# %% [markdown]
# ## Our measurements
#
# Inference: images per second per batch size (median of the repeats after one warm-up).

# %% tags=["hide-input"]
fwd = pd.DataFrame(bench_forward(model, batch_sizes, repeats, ch.device))
text = bench_text(model, ch.device)
provenance_box(model_provenance(model, ch.device, synthetic=ch.smoke), title="Provenance of the timings")

# %% tags=["remove-input"]
f = fwd.set_index("batch")[["plain_img_per_s", "dpam_img_per_s", "naive_img_per_s", "dpam_over_plain",
                            "naive_over_plain"]]
f.columns = ["plain CLIP (img/s)", "DPAM (img/s)", "naive two-pass (img/s)", "DPAM / plain time",
             "two-pass / plain time"]
rates = f.iloc[:, :3].apply(lambda c: c.map(fmt_sig))  # measured rates: three significant figures
styled(pd.concat([rates, f.iloc[:, 3:]], axis=1), f"inference on {device_name(ch.device)}", digits=2)

# %% tags=["remove-input"]
fig, axes = plt.subplots(2, 1, figsize=(COLUMN_WIDTH_IN - 0.4, 5.0), layout="constrained")
f.iloc[:, :3].plot.bar(ax=axes[0], rot=0, color=[colour("CLIP"), colour("V-V"), colour("naive two-pass")])
axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # outside: covers no bar
axes[0].set_ylabel("images / s")
axes[0].set_title(f"{ch.ours}: inference on {device_name(ch.device)}")
paper8["inference FPS (VisA)"].dropna().plot.barh(ax=axes[1], color=colour("paper"))
axes[1].set_xlabel("FPS")
axes[1].set_title("paper, Table 8 (RTX 3090, ViT-L-14-336 at 518 px)")
plt.show()

# %% [markdown]
# Training: the `official` run of the run store (the one chapters 1, 3 and 4 use), read back
# with its recorded durations.

# %% tags=["hide-input"]
exp = ch.experiment(recipe, next(iter(P.protocol)), [P.protocol[next(iter(P.protocol))][0]])
hist = pd.DataFrame(exp.training["history"])
durations = exp.training.get("durations", {})
epoch_cached = float(hist["seconds"].median())
extract = float(durations.get("train_features_s", float("nan")))
# every epoch runs on cached features; the flag says whether the cache already held them before
# this run (then the extraction was skipped and its seconds are ≈ 0)
styled(pd.Series({"epochs": len(hist), "seconds per epoch, cached features (median)": epoch_cached,
                  "feature extraction of the tuning set, once (s)": extract,
                  "features already cached before this run (extraction skipped)":
                      bool(exp.training.get("features_from_cache"))},
                 name=ch.ours).to_frame(), "training cost of the official run", digits=2)

# %% [markdown]
# ## The methods
#
# Each method of Table 8 (and CLIP-AC) with the profile's backbone (WinCLIP: its own, see
# docs/compared-methods.md): images/s of the visual encoder (what feature extraction costs: WinCLIP runs
# the ViT once per window), of scoring cached features (text features, maps), and of both, on
# a batch of `method_images` random images (`anomclip.bench.methods.throughput`, medians of
# `repeats` after one warm-up). Training: the runs of chapter 4, read back from the run store
# (tuned on the first tuning dataset of the protocol) with the durations and per-epoch seconds
# their provenance records; the methods that train nothing have none ("–").

# %% tags=["hide-input"]
src0 = next(iter(P.protocol))
cost_rows = {}
for name in methods:
    r = ch.recipe(name)
    speed = throughput(r, method_images, repeats, ch.device)
    training = ch.experiment(r, src0, [P.protocol[src0][0]]).training if trains(r) else None
    cost_rows[display_name(name)] = {
        "backbone": f"{speed['backbone']} @ {speed['image_size']} px",
        "encode (img/s)": speed["encode_images_per_s"], "score (img/s)": speed["score_images_per_s"],
        "encode + score (img/s)": speed["forward_images_per_s"], **training_cost(training)}
costs = pd.DataFrame(cost_rows).T
shown = costs.copy()
for c in shown.columns:
    if c.endswith("(img/s)") or c.endswith("(s)") or c.startswith("s per epoch"):
        shown[c] = shown[c].map(fmt_sig)  # measured rates and seconds: three significant figures
bb = shown.pop("backbone")
display(Markdown("Backbones: " + "; ".join(f"{b_} ({', '.join(bb.index[bb == b_])})" for b_ in bb.unique()) + "."))
short = {"encode (img/s)": "encode", "score (img/s)": "score", "encode + score (img/s)": "both",
         "epochs": "epochs", "s per epoch (median)": "s/epoch", "feature extraction (s)": "extract (s)",
         "training (s)": "train (s)", "features cached before the run": "cached"}
styled(shown.rename(columns=short),
       f"{ch.ours}: cost of each method on {device_name(ch.device)} (encode, score, both: images/s of the visual "
       "encoder, of scoring cached features, of the two; epochs, s/epoch: training epochs and the median seconds of "
       "one on cached features; extract (s): the one-off feature extraction of the tuning set; train (s): the whole "
       "training; cached: the features were in the cache before the run)", digits=2)

# %% tags=["remove-input"]
fps = paper8["inference FPS (VisA)"]
per_epoch = paper8["training min/epoch (MVTec AD)"]
ours_speed = costs["encode + score (img/s)"].astype(float)
ours_ref = float(ours_speed["AnomalyCLIP"]) if "AnomalyCLIP" in ours_speed.index else float("nan")
side = pd.DataFrame({
    ("img/s", "paper"): fps.reindex(costs.index), ("img/s", ch.ours): ours_speed,
    ("÷ AnomalyCLIP", "paper"): (fps / fps.get("AnomalyCLIP", float("nan"))).reindex(costs.index),
    ("÷ AnomalyCLIP", ch.ours): ours_speed / ours_ref,
    ("s/epoch", "paper"): 60 * per_epoch.reindex(costs.index),
    ("s/epoch", ch.ours): costs["s per epoch (median)"].astype(float)})
paper_rel, ours_rel = ("÷ AnomalyCLIP", "paper"), ("÷ AnomalyCLIP", ch.ours)
side_shown = side.copy()
for c in (("img/s", ch.ours), ("s/epoch", "paper"), ("s/epoch", ch.ours)):
    side_shown[c] = side_shown[c].map(fmt_sig)
styled(side_shown, f"Table 8 per method, paper vs {ch.ours} (img/s: the paper's FPS on an RTX 3090, ours encode + "
                   f"score on {device_name(ch.device)}; ÷ AnomalyCLIP: that speed over AnomalyCLIP's (1 = as fast); "
                   "s/epoch: seconds per training epoch, the paper's minutes × 60)", digits=2)

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN - 0.4, 2.6), layout="constrained")
side[[paper_rel, ours_rel]].set_axis(["paper", ch.ours], axis=1).plot.barh(
    ax=ax, color=[colour("paper"), colour("ours")])
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # outside: covers no bar
ax.axvline(1.0, color="grey", linestyle=":")
ax.set_xlabel("images/s relative to AnomalyCLIP (1 = as fast)")
ax.set_title("inference speed per method, relative to AnomalyCLIP")
plt.show()

# %% tags=["remove-input"]
rel, prel = side[ours_rel], side[paper_rel]
epochs = side[("s/epoch", ch.ours)].dropna()
display(Markdown(conclusions.method_costs(rel, prel, epochs, per_epoch, ch.smoke).text))

# %% [markdown]
# ## Ours vs paper
#
# Side by side; the ratios are the comparable part (absolute times depend on the device, the
# backbone and the image size).

# %% tags=["remove-input"]
b = fwd.iloc[-1]
nan = float("nan")
dpam_ratio_paper = (paper8.loc["AnomalyCLIP without DPAM", "inference FPS (VisA)"]
                    / paper8.loc["AnomalyCLIP", "inference FPS (VisA)"])


def ms_text(v):
    """A duration in ms at a precision that means something (below 0.1 ms: "< 0.1")."""
    return "< 0.1" if v < 0.1 else fmt(v, 1)


ours_tab = pd.DataFrame({
    # like with like: the time with DPAM over the time without it (paper: AnomalyCLIP without DPAM's
    # FPS over AnomalyCLIP's, Table 8)
    "inference: with DPAM / without DPAM time": [b["dpam_over_plain"], dpam_ratio_paper],
    "inference: images/s with DPAM": [b["dpam_img_per_s"], paper8.loc["AnomalyCLIP", "inference FPS (VisA)"]],
    "training: s per epoch (cached features)": [epoch_cached, nan],
    "training: s per epoch without the cache (≈ extraction + epoch)": [
        extract + epoch_cached, 60 * paper8.loc["AnomalyCLIP", "training min/epoch (MVTec AD)"]],
    "training: with DPAM / without DPAM": [nan, paper8.loc["AnomalyCLIP", "training min/epoch (MVTec AD)"]
                                           / paper8.loc["AnomalyCLIP without DPAM", "training min/epoch (MVTec AD)"]],
    "text features: first / cached call (ms)": [f"{fmt(1e3 * text['text_first_s'], 0)} / "
                                                f"{ms_text(1e3 * text['text_cached_s'])}", nan],
}, index=[f"{ch.ours} — {device_name(ch.device)}, batch {int(b['batch'])}", "paper — RTX 3090"]).T
styled(ours_tab, digits=2)

# %% [markdown]
# ## The book itself
#
# The seconds each chapter took in the latest execution of the book (`python -m anomclip.book
# execute`, which writes `results/<profile>/book_timings.json` after every chapter). This chapter
# executes after all the others, so their seconds are those of this very execution (or of an
# earlier one, for a chapter that was up to date); its own seconds are written when it ends, so
# they come from the previous execution, if there was one.

# %% tags=["remove-input"]
times = read_timings(P.name)
source = (f"`results/{P.name}/book_timings.json`, which `python -m anomclip.book execute` (and `make book`) writes "
          "after every chapter it executes")
if times is None or not len(times):
    display(Markdown(f"No book timings here: they are read from {source}, and no such execution has written them on "
                     "this machine yet (this chapter was executed on its own, e.g. with `--only`). Executing the book "
                     "fills this table."))
else:
    display(Markdown(f"Read from {source}."))
    display(styled(times.set_index("chapter"), f"seconds per chapter ({times.attrs.get('device')}, "
                                               f"{times.attrs.get('created')})", digits=1))
    display(Markdown(f"Total of the chapters listed: **{fmt(times.attrs['total_s'] / 60)} minutes** "
                     f"({len(times)} chapters)."))

# %% tags=["remove-input"]
display(Markdown(conclusions.dpam_cost(b, dpam_ratio_paper, extract, epoch_cached,
                                       paper8.loc["AnomalyCLIP", "training min/epoch (MVTec AD)"], repeats, ch.device,
                                       ch.smoke).text))
