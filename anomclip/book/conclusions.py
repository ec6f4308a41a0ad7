"""The sentences a chapter concludes with, written from its numbers by tested functions.

A chapter computes its numbers, then asks one of these functions what they say; the function
picks the sentence that the numbers support (and says which case it is in), so that no chapter
holds a hidden three-way f-string, and every branch of every conclusion is tested
(tests/test_conclusions.py) without executing the chapter.
"""
from __future__ import annotations

from dataclasses import dataclass

from .labels import SMOKE_ANCHOR, fmt, fmt_sig, metric_name, plural, standin_label


@dataclass(frozen=True)
class Conclusion:
    """A conclusion: which case the numbers fall in, and the Markdown that says it."""

    case: str
    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def defect_shift(n_categories: int, median_ratio: dict, below_one: dict, delta: dict,
                 trained_backbone: bool) -> Conclusion:
    """What the defect-shift diagnostic (chapter 4) says about image-level transfer.

    ``median_ratio`` / ``below_one``: per feature (``"global"``, ``"patch"``) the median over the
    categories of (defect shift / normal spread) and the number of categories where it is below
    1; ``delta``: tuned − untrained, in points, per metric key (``image_auroc``, ``pixel_auroc``).
    Cases: ``random-global-blind`` (random weights and a global ratio below 1), ``global-sees``
    (global ratio ≥ 1), ``global-blind`` (trained weights, ratio below 1).
    """
    g, p = median_ratio["global"], median_ratio["patch"]
    measured = (f"**Measured.** Median ratio over the {plural(n_categories, 'category', 'categories')}: "
                f"global feature {fmt(g, 3)} (below 1 in {below_one['global']} of them), patch features "
                f"{fmt(p, 3)} (below 1 in {below_one['patch']}). Tuning changed the evaluated datasets' mean "
                f"image AUROC by {delta['image_auroc']:+.1f} points and their pixel AUROC by "
                f"{delta['pixel_auroc']:+.1f} points (mean over datasets, tuned − untrained). ")
    if g >= 1:
        return Conclusion("global-sees", measured + "Here the global feature does see the defect (median ratio "
                          "≥ 1), so image-level transfer has something to work with.")
    if not trained_backbone:
        return Conclusion("random-global-blind", measured + (
            "With random weights the class token hardly sees the defect: a ratio below 1 means two normal "
            "images differ more than an image and its defective twin, so no direction learned on one domain "
            "can rank another domain's images by defect. The patch tokens at the defect do move, which is "
            "what the maps use. The image-level transfer the paper reports rests on CLIP's pretrained global "
            "token, which this smoke run does not have."))
    return Conclusion("global-blind", measured + (
        "Even with these weights the global feature moves less with a defect than between normal images "
        "(median ratio < 1): image-level transfer has little to work with on these pairs."))


def gap_to_paper(mean_gap: dict, n_datasets: int, n_methods: int, smoke: bool) -> Conclusion:
    """What the mean gap ours − paper (points, per metric key) says (chapter 4).

    Cases: ``smoke`` (a smoke run: far from the paper by construction) and ``real``.
    """
    said = (f"**What it means.** Over the {plural(n_datasets, 'dataset')} this run covers and the "
            f"{plural(n_methods, 'method')}, ours − paper is "
            + ", ".join(f"{fmt(v)} points of {metric_name(m)}" for m, v in mean_gap.items()) + " on average. ")
    if smoke:
        return Conclusion("smoke", said + (f"A smoke run is far from the paper by construction ([what a smoke run "
                                           f"can and cannot show]({SMOKE_ANCHOR})); the gap says nothing about "
                                           "the method."))
    return Conclusion("real", said + "Remaining differences come from the paper-vs-code choices of chapter 14 and "
                      "run-to-run noise.")


def _smoke_case(case: str, smoke: bool) -> str:
    """A case name with the run's kind appended: ``"ahead, smoke"`` / ``"ahead, real"``."""
    return f"{case}, {'smoke' if smoke else 'real'}"


def unseen_domain(target: str, categories: str, mean: dict, paper: dict, smoke: bool) -> Conclusion:
    """What chapter 1's run on the unseen domain shows.

    ``categories``: what the means are taken over, in words (``labels.mean_categories``);
    ``mean`` / ``paper``: ``image_auroc`` and ``pixel_auroc`` as fractions (ours on ``target``,
    the paper's on VisA). Cases: ``smoke`` (the pipeline runs end to end; no more) and ``real``.
    """
    said = (f"**What it means.** On {target} ({categories}), the mean image AUROC "
            f"is **{fmt(mean['image_auroc'], percent=True)} %** and the "
            f"pixel AUROC **{fmt(mean['pixel_auroc'], percent=True)} %** (50 % is chance). The paper reports "
            f"{fmt(paper['image_auroc'], percent=True)} % and {fmt(paper['pixel_auroc'], percent=True)} % "
            "on VisA. ")
    if smoke:
        return Conclusion("smoke", said + "The smoke numbers show that the pipeline runs end to end (train → "
                          "checkpoint → scores → maps → metrics → results file); the next section says what they "
                          "cannot show.")
    return Conclusion("real", said + "These numbers come from the pretrained backbone on the real data.")


def diagonal_attention(last, tuned_auroc, margin: float, smoke: bool) -> Conclusion:
    """Which attention mode is most diagonal and which segments best (chapter 2).

    ``last``: self/other ratio of the last block per mode display name (``Q-K`` among them);
    ``tuned_auroc``: pixel AUROC (%) per mode with tuned prompts; ``margin``: the noise of the
    per-image differences between the best two modes (points). Cases: ``ahead`` (the best mode
    leads the runner-up by more than the margin) or ``within-noise``, each ``, smoke`` or ``, real``.
    """
    most = last.idxmax()
    best, second = tuned_auroc.sort_values(ascending=False).index[:2]
    lead = tuned_auroc[best] - tuned_auroc[second]
    if lead > margin:
        case = "ahead"
        segment = (f"the best-segmenting mode with tuned prompts is **{best}** ({fmt(tuned_auroc[best])} % pixel "
                   f"AUROC on four images, {fmt(lead)} points ahead of {second}, more than the noise of "
                   f"±{fmt(margin)} points). ")
    else:
        case = "within-noise"
        segment = (f"with tuned prompts the four modes lie within {fmt(tuned_auroc.min())}–{fmt(tuned_auroc.max())} "
                   f"% pixel AUROC on four images: the differences are within the noise of so few images "
                   f"(±{fmt(margin)} points, twice the standard error of the per-image differences), so no mode "
                   "segments best here. ")
    text = (f"**What it means.** In this run the most diagonal mode of the last block is **{most}** (self/other "
            f"ratio {fmt(last[most], 2)}, against {fmt(last['Q-K'], 2)} for Q-K), and " + segment
            + "The mechanism is visible in any ViT: Q-Q, K-K and V-V attention compare a token with itself through "
            "a positive semi-definite product, so the diagonal is favoured by construction, while Q-K has no such "
            "bias. ")
    if smoke:
        text += ("How much that helps segmentation depends on what a pretrained CLIP has learned to attend to, "
                 "which a random backbone has not: its maps say nothing about which mode segments best.")
    else:
        text += "These maps can be compared with Fig. 3 directly."
    return Conclusion(_smoke_case(case, smoke), text)


def object_agnostic_gain(paper_gain, ours_mean, ours_label: str, smoke: bool) -> Conclusion:
    """What the gain of object-agnostic over object-aware prompts says (chapter 6).

    ``paper_gain``: Table 7's gain (points) per (dataset, metric key); ``ours_mean``: rows with
    ``dataset``, ``metric`` (key) and ``value`` (our mean gain, points). Cases:
    ``smoke`` (a random text encoder knows no class names) and ``real``.
    """
    text = ("**What it means.** Mean gain of object-agnostic prompts — paper (Table 7): "
            + ", ".join(f"{d} {metric_name(k)} {v:+.1f}" for (d, k), v in paper_gain.items())
            + f"; {ours_label}: "
            + ", ".join(f"{standin_label(r.dataset)} {metric_name(r.metric)} {r.value:+.1f}"
                        for r in ours_mean.itertuples())
            + " points. "
            "The paper's claim is one-sided: object-agnostic prompts are better or on par, never clearly worse, by "
            f"{fmt(paper_gain.min())} to {fmt(paper_gain.max())} points over its datasets and metrics. With a real "
            "CLIP the class name pulls the text embedding towards object semantics that differ between the tuning "
            "and the target classes; Fig. 9 (the class name put back at test time) still works, slightly below "
            "AnomalyCLIP. ")
    if smoke:
        return Conclusion("smoke", text + "A random text encoder knows no class names, so here both templates are "
                          "two arbitrary token sequences.")
    return Conclusion("real", text)


def module_ablation(p4, p7, removing_t2: dict) -> Conclusion:
    """What the module ablations say (chapter 7, Tables 4 and 7).

    ``p4`` / ``p7``: the paper's numbers on MVTec AD by (label, metric key); ``removing_t2``: per
    dataset ours ran on, our image AUROC without T2 − with it (points). Cases: ``not-run`` (no
    number of ours) and ``ran``.
    """
    full, without = p7[("full", "image_auroc")], p7[("without T2 object-agnostic prompts", "image_auroc")]
    text = ("**What it means.** In the paper the big step is T2 (object-agnostic prompts that are *tuned*): "
            f"removing it costs {fmt(full - without)} points of image AUROC on MVTec AD ({fmt(full)} → {fmt(without)}); "
            "in our reading the rows before it tune nothing, and DPAM alone fixes the segmentation (pixel AUROC "
            f"{fmt(p4[('base', 'pixel_auroc')])} → {fmt(p4[('+T1 DPAM', 'pixel_auroc')])} on MVTec AD, image level "
            "unchanged).")
    steps = []
    for name, before, after in (("T3", "+T2 object-agnostic prompts", "+T3 text prompt tuning"),
                                ("T4", "+T3 text prompt tuning", "+T4 multi-layer features")):
        gains = [p4[(after, m)] - p4[(before, m)] for (lb, m) in p4.index
                 if lb == after and (before, m) in p4.index]
        if gains:
            lo, hi = min(gains), max(gains)
            steps.append(f"{name} by {lo:+.1f} points" if f"{lo:+.1f}" == f"{hi:+.1f}"
                         else f"{name} by {lo:+.1f} to {hi:+.1f} points")
    if steps:
        text += (f" Then, over the {len(gains)} metrics of Table 4 on MVTec AD, " + " and ".join(steps)
                 + " move them: small steps beside T2's.")
    if not removing_t2:
        return Conclusion("not-run", text)
    return Conclusion("ran", text + " In this run, removing T2 changes image AUROC by "
                      + ", ".join(f"{v:+.1f} points on {on}" for on, v in removing_t2.items()) + ".")


def _ours_in_this_run(ours: dict, smoke: bool, what: str, per_run) -> tuple[str, str]:
    """The case and the end of chapters 8 and 9's "In this run, …" sentence: ``per_run(on, numbers)``
    for each tuning set, then (smoke) what the differences say; ``"not-run"`` and "" when nothing ran."""
    if not ours:
        return "not-run", ""
    text = "; ".join(per_run(on, r) for on, r in ours.items()) + "."
    if smoke:
        return "smoke", text + f" With a random backbone these differences say {what}."
    return "real", text


def loss_terms(p5, p11, ours5: dict, smoke: bool) -> Conclusion:
    """What the loss ablations say (chapter 8, Tables 5 and 11).

    ``p5`` / ``p11``: the paper's numbers on MVTec AD by (label, metric key);
    ``ours5``: per tuning set ("ours on"), our pixel AUROC per Table 5 label. Cases: ``not-run``
    (no number of ours), ``smoke``, ``real``.
    """
    case, ours = _ours_in_this_run(
        ours5, smoke, "whether each term trains, not how much it helps",
        lambda on, r: f"{fmt(r.get('global only'))} → {fmt(r.get('local only'))} → {fmt(r.get('local + global'))} "
                      f"on {on}")
    text = ("**What it means.** In the paper the local loss is what makes segmentation work (pixel AUROC on MVTec AD "
            f"{fmt(p5[('global only', 'pixel_auroc')])} with the global loss alone, "
            f"{fmt(p5[('local only', 'pixel_auroc')])} with the local loss alone) while the global loss adds "
            f"image-level accuracy on top (image AUROC {fmt(p5[('local only', 'image_auroc')])} → "
            f"{fmt(p5[('local + global', 'image_auroc')])}). Focal is the stronger half of the local loss (pixel "
            f"AUROC {fmt(p11[('focal only', 'pixel_auroc')])} vs {fmt(p11[('dice only', 'pixel_auroc')])} for Dice), "
            "and the two together are best. ")
    if ours:
        text += "In this run, pixel AUROC with the global loss alone → the local loss alone → both: " + ours
    return Conclusion(case, text)


def dpam_modes(p, ours9: dict, smoke: bool) -> Conclusion:
    """What the DPAM ablation says (chapter 9, Table 4).

    ``p``: the paper's numbers on MVTec AD by (label, metric key); ``ours9``: per tuning
    set ("ours on"), our pixel AUROC per single-mode label. Cases: ``not-run``, ``smoke``, ``real``.
    """
    single = ("Q-K (no DPAM)", "Q-Q", "K-K", "V-V")
    case, ours = _ours_in_this_run(
        ours9, smoke, "whether each mode runs, not which one is better",
        lambda on, r: f"{on}: " + ", ".join(f"{lb} {fmt(r.get(lb))}" for lb in single))
    text = ("**What it means.** In the paper the choice of attention matters most for segmentation, and for "
            "image-level detection through the local loss: V-V beats Q-K (the model without DPAM) by "
            f"{fmt(p[('V-V', 'pixel_auroc')] - p[('Q-K (no DPAM)', 'pixel_auroc')])} points of pixel AUROC and "
            f"{fmt(p[('V-V', 'image_auroc')] - p[('Q-K (no DPAM)', 'image_auroc')])} of image AUROC on MVTec AD, "
            f"and the Q-Q+K-K+V-V ensemble adds a little on top (pixel AUPRO {fmt(p[('V-V', 'pixel_aupro')])} → "
            f"{fmt(p[('Q-Q+K-K+V-V ensemble', 'pixel_aupro')])}) at three times the surrogate-path cost. ")
    if ours:
        text += "In this run, pixel AUROC per single mode: " + ours
    return Conclusion(case, text)


def state_words(spread, p9, ours_spread, epochs: int, smoke: bool) -> Conclusion:
    """What the state-word and shared-prompt ablations say (chapter 10, Tables 9 and 13).

    ``spread``: the paper's max − min over the five words per (dataset, metric key), points;
    ``p9``: Table 9 on MVTec AD by (label, metric key); ``ours_spread``: ours per
    (dataset, metric key), points, after ``epochs`` epochs. Cases: ``smoke`` and ``real``.
    """
    worst = spread.idxmax()
    text = (f"**What it means.** Leaving out that one number, the five state words move the paper's numbers by "
            f"{fmt(spread.median())} points (median over datasets and metrics) and by {fmt(spread.max())} at most "
            f"({worst[0]}, {metric_name(worst[1])}): once the context is learned, the hand-written word "
            "hardly matters. Sharing the embeddings costs "
            f"{fmt(p9[('unshared prompts', 'image_auroc')] - p9[('shared prompts', 'image_auroc')])} points of "
            "image AUROC on MVTec AD. In this run the words spread by "
            + ", ".join(f"{fmt(v)} points of {metric_name(m)} on {standin_label(d)}"
                        for (d, m), v in ours_spread.items())
            + f" after {plural(epochs, 'epoch')}")
    if smoke:
        return Conclusion("smoke", text + ": with a random text encoder a different word is just a different token, "
                          "and differences of the paper's size (about a point) cannot be resolved.")
    return Conclusion("real", text + ".")


def hyperparameter_sweeps(span, epochs: int, smoke: bool) -> Conclusion:
    """What the hyperparameter sweeps say (chapter 11, Fig. 8).

    ``span``: worst-to-best AUROC difference (points) per (sweep, metric); ``epochs`` per point.
    Cases: ``smoke`` (differences of that size are noise) and ``real``.
    """
    text = ("**What it means.** In the paper every hyperparameter has an interior optimum (E = 12, the code's M = 9 "
            "and L = 4) or saturates (N = 4): more learnable capacity first helps, then over-fits the auxiliary data "
            "and generalises worse to unseen objects; the differences are a few points, so the released defaults "
            f"are a reasonable but not critical choice. In this run a sweep moves AUROC by {fmt(span.min())} to "
            f"{fmt(span.max())} points from its worst to its best point, after {plural(epochs, 'epoch')} per point "
            "in one direction")
    if smoke:
        return Conclusion("smoke", text + ": differences of that size are run-to-run noise of a random backbone.")
    return Conclusion("real", text + ".")


def method_costs(rel, prel, epochs, per_epoch, smoke: bool) -> Conclusion:
    """What the per-method cost says (chapter 12, Table 8).

    ``rel`` / ``prel``: speed relative to AnomalyCLIP per method, ours / the paper's; ``epochs``:
    our seconds per training epoch of each tuned method (may be empty); ``per_epoch``: the
    paper's minutes per epoch per method. Cases: ``tuned`` (epoch times to quote) or
    ``none-tuned``, each ``, smoke`` or ``, real``.
    """
    nan = float("nan")
    text = ("**Per method.** Relative to AnomalyCLIP, WinCLIP runs at "
            f"{fmt_sig(rel.get('WinCLIP', nan), 2)}× its speed here (paper: "
            f"{fmt_sig(prel.get('WinCLIP', nan), 2)}×) and plain CLIP at "
            f"{fmt(rel.get('CLIP', nan), 2)}× (paper: "
            f"{fmt(prel.get('CLIP', nan), 2)}×). ")
    case = "tuned" if len(epochs) else "none-tuned"
    if len(epochs):
        paper = per_epoch.reindex(epochs.index)
        text += (f"One training epoch takes {fmt_sig(epochs.min())} s ({epochs.idxmin()}) to {fmt_sig(epochs.max())} "
                 f"s ({epochs.idxmax()}) for the {len(epochs)} tuned methods (paper: {fmt(paper.min(), 2)}"
                 f"–{fmt(paper.max(), 2)} min on MVTec AD); all of them train on the cached features of a frozen "
                 "backbone, so an epoch costs only the trained part (prompts through the text encoder, or VAND's "
                 "linear layers). ")
    if smoke:
        text += ("These are costs on this machine with the tiny random-weight backbone at its small input size "
                 "(WinCLIP's window count grows with the patch grid, so its relative cost at 240 px is larger): only "
                 "the ordering is indicative, not the numbers. ")
    return Conclusion(_smoke_case(case, smoke), text)


def dpam_cost(bench, dpam_ratio_paper: float, extract: float, epoch_cached: float, paper_min_per_epoch: float,
              repeats: int, device: str, smoke: bool) -> Conclusion:
    """What DPAM and the feature cache cost (chapter 12).

    ``bench``: the benchmark row (``dpam_over_plain``, ``naive_over_plain``: time ratios to plain
    CLIP); ``dpam_ratio_paper``: Table 8's time with / without DPAM; ``extract`` / ``epoch_cached``:
    our seconds to extract the features / per epoch on the cache; ``paper_min_per_epoch``: the
    paper's minutes per epoch. Cases: ``smoke`` or ``real``, each ``, cpu`` (noisy timings) or
    ``, accelerator``.
    """
    on_cpu = device.startswith("cpu")
    text = (f"**What it means.** DPAM computes the surrogate path inside the same forward pass: here it costs "
            f"{fmt(bench['dpam_over_plain'], 2)}× the time of plain CLIP, against {fmt(bench['naive_over_plain'], 2)}× "
            "for running it as a second full pass (the paper: AnomalyCLIP takes "
            f"{fmt(dpam_ratio_paper, 2)}× the time of AnomalyCLIP without DPAM, from Table 8's FPS). The text features "
            "do not depend on the image, so they are computed once per model. Since the backbone is frozen, the "
            f"visual features of the tuning set are extracted once ({fmt(extract, 1)} s here) and each epoch then "
            f"runs on the cache ({fmt(epoch_cached, 2)} s here), which is where most of the paper's "
            f"{fmt(paper_min_per_epoch, 1)} min per epoch would otherwise go. ")
    if smoke:
        text += ("These timings come from the tiny smoke backbone at 96 px, not ViT-L-14-336 at 518 px: only the "
                 "ratios are indicative. ")
    if on_cpu:
        text += f"CPU timings on a shared machine are noisy; medians of {repeats} repeats after one warm-up."
    else:
        text += f"Medians of {repeats} repeats after one warm-up."
    return Conclusion(f"{'smoke' if smoke else 'real'}, {'cpu' if on_cpu else 'accelerator'}", text)


def tuning_separation(m, smoke: bool) -> Conclusion:
    """Whether tuning separates normal from anomalous image scores (chapter 13).

    ``m``: per prompts (``untrained``, ``tuned``) the mean ``score range`` and ``image AUROC (%)``
    over categories. Cases: ``separates`` (image AUROC up by more than 2 points) or ``overlaps``,
    each ``, smoke`` or ``, real``; the text says whether the score range widens or narrows.
    """
    lo, hi = m.loc["untrained", "score range"], m.loc["tuned", "score range"]
    wider = hi / lo
    before, after = m.loc["untrained", "image AUROC (%)"], m.loc["tuned", "image AUROC (%)"]
    separates = after > before + 2
    text = (f"**What it means.** Tuning {'widens' if wider > 1 else 'narrows'} the range of the image scores "
            f"{fmt(wider, 1)}× (mean per category {fmt(lo, 3)} → {fmt(hi, 3)}), and the image AUROC goes "
            f"{fmt(before)} → {fmt(after)} % (mean over categories): "
            + ("the classes separate better, as in the paper, though they still overlap far more than in Figs. "
               "12–13. " if separates else
               "unlike the paper, tuning does not separate the two classes; they still overlap. ")
            + "In the paper the remaining errors are semantic: the model reacts to *what looks like a defect*, "
            "wherever it is. ")
    if smoke:
        text += ("Here the scores come from random features: the worst cases are images whose defect is small or "
                 "low-contrast or whose normal texture happens to resemble one — not the background scratches and "
                 "skin-lesion look-alikes of Fig. 7.")
    return Conclusion(_smoke_case("separates" if separates else "overlaps", smoke), text)


def largest_code_change(flat, max_score_change: float, smoke: bool) -> Conclusion:
    """What the paper-vs-code switches change (chapter 14).

    ``flat``: Δ vs official (points) per switch (rows) and "<metric> on <dataset>" (columns);
    ``max_score_change``: the fp16 quirk's largest |Δ image score|. Cases: ``smoke`` (a few points
    are noise) and ``real``.
    """
    big = flat.abs().stack().idxmax()
    text = (f"**What it means.** The largest change here is {fmt(flat.loc[big])} points of {big[1]} "
            f"({big[0]}); the fp16 quirk moves the image scores by at most {fmt(max_score_change, 5)}. ")
    if smoke:
        return Conclusion("smoke", text + (
            "On a random backbone with near-chance base numbers, differences of a few points are run-to-run noise: "
            "the switches are wired in, but how much they move AnomalyCLIP needs the `paper` profile. The AUPRO "
            "comparison (b) holds on any maps: the authors' rescaled AUPRO can differ a lot from the standard one."))
    return Conclusion("real", text + "Differences under about half a point are within run-to-run noise.")
