"""The ablation chapters' two shared pieces: the compare → table → plot block, and the workbench.

:func:`ablation` puts a chapter's runs beside one of the paper's tables: the comparison
(:func:`~anomclip.book.labels.compare`), one table per dataset and the bar figure
(:func:`~anomclip.book.plots.plot_compare`). Its rows are our labels, each either also the
paper's row name (``"base"``) or paired with it (``("full", "+T4 multi-layer features")``).

:class:`Workbench` re-runs an ablation from controls: one control per recipe field the chapter
exposes (:data:`CONTROLS`: checkboxes for the modules and loss terms, dropdowns for the DPAM mode
and the state word, sliders for λ, the prompt length and depth, E, the DPAM start and the
layers; a dropdown or step slider offers only the values that can run with the other controls'
current values and says beside it which it leaves out), a Run button with a progress bar, and
the result: a new row in the chapter's table and a new bar in its figure, beside the paper's
rows, with the difference to the chapter's reference setting. Runs go through the chapter's run store (:meth:`anomclip.book.chapter.Chapter.run`), so
a setting already run comes back at once. Outside a live Jupyter kernel (the built book) the
workbench shows one box (:meth:`Workbench.note`, a tip) saying what ``make lab`` offers there; the
chapter's default table and figure are the ablation's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from ..errors import AnomclipError
from ..recipes import TINY_BACKBONE, resolve_block
from .labels import SHOWN, admonition, compare, compare_table, styled, wide_caption, wide_compare
from .plots import plot_compare
from .tables import paper_long, relabel
from .widgets import live_ok

#: the metrics of the ablation figures (the tables show all of :data:`SHOWN`)
PLOTTED = ("pixel_auroc", "image_auroc")


# --------------------------------------------------------------------------- compare → table → plot
@dataclass
class Ablation:
    """An ablation beside the paper: ``cmp`` (long, :func:`compare`), ``tables`` ({dataset: table}),
    ``figure``, ``order`` (row names as shown) and ``names`` ({our label: shown name})."""

    cmp: pd.DataFrame
    tables: dict
    figure: object
    order: list
    names: dict
    ours: pd.DataFrame = field(repr=False, default=None)  # our long frame, labels as shown
    paper: pd.DataFrame = field(repr=False, default=None)  # the paper's long frame
    title: str = ""
    ours_label: str = "ours"
    metrics: tuple = SHOWN  # the metric keys compared
    delta: bool = False  # Δ = ours − paper columns in the shown tables (the paper profile only)

    def __iter__(self):  # table, figure = ablation(...)
        return iter((self.tables, self.figure))

    def wide(self, dataset: str) -> pd.DataFrame:
        """The shown table of one dataset: rows = the variants, columns = metric × {paper, ours}
        (and Δ on the paper profile), :func:`~anomclip.book.labels.wide_compare`."""
        return wide_compare(self.cmp, dataset, labels=self.order, delta=self.delta)

    def show(self, caption: str = "") -> None:
        """Display one wide table per dataset (:meth:`wide`), then the figure."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        for ds in self.tables:
            t = self.wide(ds)
            display(styled(t, wide_caption(t, f"{caption} — {ds}" if caption else ds)))
        fig = self.figure if self.figure is not None else self.draw()
        display(fig)
        plt.close(fig)

    def draw(self, plotted=PLOTTED):
        """The bar figure (ours beside the paper) of this ablation."""
        return plot_compare(self.cmp, order=self.order, metrics=plotted, ours_label=self.ours_label,
                            title=self.title or None)


def _names(rows) -> dict:
    """``rows`` (labels, or (our label, shown name) pairs) as {our label: shown name}."""
    out = {}
    for r in rows:
        ours, shown = (r, r) if isinstance(r, str) else tuple(r)
        out[ours] = shown
    return out


def ablation(ch, ours: pd.DataFrame, rows, table: int | str | None = None, title: str | None = None,
             metrics=SHOWN, plotted=PLOTTED, figure: bool = True, paper: pd.DataFrame | None = None,
             paper_datasets=None) -> Ablation:
    """Our runs (``ours``: the long frame of :meth:`Chapter.run`) beside the paper's Table ``table``
    (None: no paper numbers; ``paper``: a long frame of the paper's numbers already labelled like
    the rows), for the rows ``rows``: each an our label that is also the paper's row name, or an
    ``(our label, paper row name)`` pair; ``paper_datasets`` keeps the paper's datasets we have
    no number for to those (default: all). Returns an :class:`Ablation` (iterates as ``tables,
    figure``); the figure is not shown (``Ablation.show`` or ``plt.show`` does; ``figure=False``
    leaves it to ``Ablation.show``)."""
    names = _names(rows)
    order = list(names.values())
    mine = relabel(ours, names)
    if paper is None:
        paper = (paper_long(table, variants={v: v for v in order}, metrics=metrics) if table is not None
                 else pd.DataFrame(columns=["label", "dataset", "category", "metric", "value"]))
    cmp = compare(mine, paper, synthetic=ch.smoke, metrics=metrics, paper_datasets=paper_datasets)
    tables = {ds: compare_table(cmp, ds, labels=order) for ds in cmp["dataset"].unique()}
    fig = None
    if figure:
        fig = plot_compare(cmp, order=order, metrics=plotted, ours_label=ch.ours, title=title)
    return Ablation(cmp, tables, fig, order, names, mine, paper, title or "", ch.ours, tuple(metrics),
                    delta=not ch.smoke)


# --------------------------------------------------------------------------- controls
@dataclass(frozen=True)
class Control:
    """One recipe field as a control: ``kind`` check | choice | int | float | steps (a
    selection slider over ``options``, pairs of (shown, value))."""

    field: str
    kind: str
    description: str
    options: tuple = ()
    lo: float = 0
    hi: float = 1
    step: float = 1


LAYER_STEPS = (("last", (1.0,)), ("¾, 1", (0.75, 1.0)), ("½, ¾, 1", (0.5, 0.75, 1.0)),
               ("¼, ½, ¾, 1", (0.25, 0.5, 0.75, 1.0)))

CONTROLS = {c.field: c for c in (
    Control("use_global_loss", "check", "global loss"),
    Control("use_focal_loss", "check", "focal loss"),
    Control("use_dice_loss", "check", "dice loss"),
    Control("object_aware", "check", "object-aware"),
    Control("shared_ctx", "check", "shared prompts"),
    Control("dpam", "choice", "DPAM", (("none", "none"), ("V-V", "vv"), ("Q-Q", "qq"), ("K-K", "kk"),
                                       ("Q-K", "qk"), ("Q-Q+K-K+V-V", "qq+kk+vv"))),
    Control("state_word", "choice", "state word", tuple((w, w) for w in
                                                        ("damaged", "anomalous", "flawed", "defective", "blemished"))),
    Control("lam", "float", "λ", lo=0.0, hi=8.0, step=0.25),
    Control("prompt_length", "int", "prompt length", lo=0, hi=8),
    Control("prompt_depth", "int", "prompt depth", lo=1, hi=12),
    Control("n_ctx", "int", "E", lo=0, hi=16),
    Control("dpam_start", "steps", "DPAM from", (("¼", 0.25), ("½", 0.5), ("¾", 0.75))),
    Control("layers", "steps", "layers", LAYER_STEPS),
)}


def _option(c: Control, value):
    """``value`` among ``c.options`` (a value not listed is added, shown as itself)."""
    values = [v for _, v in c.options]
    if value in values:
        return c.options
    return c.options + ((str(value), value),)


def make_widget(c: Control, value):
    """The ipywidget of a control, set to ``value``."""
    import ipywidgets as W

    if c.kind == "check":
        return W.Checkbox(value=bool(value), description=c.description, indent=False)
    if c.kind == "choice":
        return W.Dropdown(options=_option(c, value), value=value, description=c.description)
    if c.kind == "steps":
        return W.SelectionSlider(options=_option(c, value), value=value, description=c.description)
    if c.kind == "int":
        return W.IntSlider(value=int(value), min=int(c.lo), max=max(int(c.hi), int(value)), step=int(c.step),
                           description=c.description)
    return W.FloatSlider(value=float(value), min=c.lo, max=max(c.hi, float(value)), step=c.step,
                         description=c.description)


def visual_depth(recipe) -> int | None:
    """The number of visual blocks of a recipe's backbone, read from its configuration (no
    weights are loaded); None for a backbone open_clip has no configuration of."""
    from ..model.backbone import TINY_CONFIG, open_clip_module

    if recipe.backbone == TINY_BACKBONE:
        return int(TINY_CONFIG["vision"]["layers"])
    open_clip = open_clip_module()

    config = open_clip.get_model_config(recipe.backbone)
    return int(config["vision_cfg"]["layers"]) if config else None


def why_not(reference, depth: int | None, **settings) -> str:
    """Why the ``reference`` recipe with ``settings`` cannot run on a backbone of ``depth``
    visual blocks ("" when it can): the recipe's own check of its settings, then DPAM's rule
    that every feature layer lies at or after the block the surrogate path starts at (the
    blocks resolved as the model resolves them; with ``depth`` None only the recipe's check)."""
    try:
        recipe = reference.with_(**settings)
        if depth is None:
            return ""
        start = resolve_block(recipe.dpam_start, depth, setting="dpam_start")
        layers = sorted({resolve_block(m, depth, setting="layers") for m in recipe.layers})
    except AnomclipError as e:
        return str(e)
    if recipe.dpam != "none" and layers[0] < start:
        return f"feature layer {layers[0]} comes before the DPAM start block {start}"
    return ""


def setting_label(reference, recipe, fields, reference_label: str) -> str:
    """A run's row name: what it changes from the reference recipe (``yours: λ=2, focal loss off``)."""
    parts = []
    for f in fields:
        a, b = getattr(reference, f), getattr(recipe, f)
        if a == b:
            continue
        c = CONTROLS.get(f)
        name = c.description if c else f
        if isinstance(b, bool):
            parts.append(f"{name} {'on' if b else 'off'}")
        else:
            shown = dict((v, s) for s, v in c.options).get(b, b) if c and c.options else b
            parts.append(f"{name}={shown}")
    return "yours: " + ", ".join(parts) if parts else f"yours: {reference_label}"


# --------------------------------------------------------------------------- the workbench
class Workbench:
    """Controls for ``fields`` of the ``reference`` recipe ((shown label, recipe): the chapter's
    reference row), a Run button and the chapter's ablation with one more row per run.

    A dropdown or step slider offers only the values that can run with the other controls'
    current values (:func:`why_not` on a backbone of ``depth`` visual blocks, default: the
    reference's, :func:`visual_depth`); the note beside it says which values it leaves out and
    why. ``loader(recipe, device)`` builds a recipe's model (default
    :func:`anomclip.engine.loading.build_model`; :meth:`warm_up` calls it)."""

    def __init__(self, ch, base: Ablation, reference, fields, datasets=None, train: bool = True,
                 depth: int | None = None, loader=None):
        self.ch, self.base = ch, base
        self.reference_label, self.reference = reference
        unknown = [f for f in fields if f not in CONTROLS]
        if unknown:
            raise ValueError(f"no control for recipe field{'s' if len(unknown) > 1 else ''} {unknown}: choose among {sorted(CONTROLS)}")
        self.fields = list(fields)
        self.datasets, self.train = datasets, train
        self.runs: dict[str, pd.DataFrame] = {}  # shown label → our long frame
        self.seconds: dict[str, float] = {}
        self.widgets: dict = {}
        self.notes: dict = {}  # field → the note beside its control (values left out, and why)
        self.out = None
        self._depth, self._loader = depth, loader
        self._refreshing = False

    # -- the numbers
    def recipe(self, **settings):
        return self.reference.with_(**settings)

    def targets(self) -> list:
        """The evaluation datasets, one run step each (the progress bar's steps)."""
        P = self.ch.profile
        seen = [t for ts in P.protocol.values() for t in ts if t in P.datasets]
        ts = list(dict.fromkeys(seen))
        return [t for t in ts if self.datasets is None or t in self.datasets]

    def run(self, progress=None, **settings) -> str:
        """Run the reference recipe with ``settings`` (through the run store); returns the row's
        label. ``progress(done, total)``: ``total`` evaluation datasets, ``done`` advancing by
        training epochs between them (a stored run jumps straight to the next)."""
        recipe = self.recipe(**settings)
        label = setting_label(self.reference, recipe, self.fields, self.reference_label)
        t0 = time.perf_counter()
        frames = []
        targets = self.targets()
        n = len(targets)
        for i, t in enumerate(targets):
            on_epoch = None
            if progress is not None:
                def on_epoch(epoch, epochs, i=i):
                    progress(i + epoch / max(epochs, 1), n)
            frames.append(self.ch.run([(label, recipe)], datasets=[t], train=self.train, on_epoch=on_epoch).frame)
            if progress is not None:
                progress(i + 1, n)
        self.runs[label] = pd.concat(frames, ignore_index=True)
        self.seconds[label] = time.perf_counter() - t0
        return label

    def comparison(self) -> pd.DataFrame:
        """The ablation's comparison with the runs added and a column "Δ ref": ours − ours of the
        reference row (same dataset and metric), points."""
        cmp = self.base.cmp
        if self.runs:
            mine = pd.concat(list(self.runs.values()), ignore_index=True)
            extra = compare(mine, self.base.paper.iloc[0:0], synthetic=self.ch.smoke, metrics=self.base.metrics)
            extra = extra[extra["label"].isin(self.runs)]
            cmp = pd.concat([cmp, extra], ignore_index=True)
        ref = cmp[cmp["label"] == self.reference_label].set_index(["dataset", "metric"])["ours"]
        delta = [o - ref.get((d, m), float("nan")) for o, d, m in zip(cmp["ours"], cmp["dataset"], cmp["metric"])]
        return cmp.assign(**{"Δ ref": pd.Series(delta, index=cmp.index).round(1)})

    def table(self, cmp: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows (label, metric) in the ablation's order then the runs', columns (dataset, ours | paper | Δ ref)."""
        cmp = self.comparison() if cmp is None else cmp
        order = self.base.order + [l for l in self.runs if l not in self.base.order]
        metrics = list(dict.fromkeys(cmp["metric"]))
        t = cmp.pivot_table(index=["label", "metric"], columns="dataset", values=["ours", "paper", "Δ ref"],
                            aggfunc="first", dropna=False)
        t = t.swaplevel(0, 1, axis=1)
        cols = [(ds, v) for ds in dict.fromkeys(cmp["dataset"]) for v in ("ours", "paper", "Δ ref")
                if (ds, v) in t.columns]
        idx = [(l, m) for l in order for m in metrics if (l, m) in t.index]
        return t.reindex(index=pd.MultiIndex.from_tuples(idx, names=["label", "metric"]),
                         columns=pd.MultiIndex.from_tuples(cols))

    def figure(self, cmp: pd.DataFrame | None = None):
        cmp = self.comparison() if cmp is None else cmp
        order = self.base.order + [l for l in self.runs if l not in self.base.order]
        return plot_compare(cmp, order=order, ours_label=self.ch.ours,
                            title=(self.base.title or "ablation") + " + your runs")

    # -- the controls
    @property
    def depth(self) -> int | None:
        """The number of visual blocks the settings are checked against."""
        if self._depth is None:
            self._depth = visual_depth(self.reference)
        return self._depth

    def settings(self) -> dict:
        """The controls' current values, ``{field: value}``."""
        return {f: w.value for f, w in self.widgets.items()}

    def offered(self, field: str, settings: dict) -> tuple[tuple, dict]:
        """The options ((shown, value) pairs) of ``field``'s control that can run with the other
        fields at ``settings``, and ``{shown: why not}`` for the options it leaves out (the
        current value is always offered)."""
        c = CONTROLS[field]
        ok, left_out = [], {}
        for shown, v in _option(c, getattr(self.reference, field)):
            why = why_not(self.reference, self.depth, **{**settings, field: v})
            if why and v != settings.get(field):
                left_out[shown] = why
            else:
                ok.append((shown, v))
        return tuple(ok), left_out

    def refresh(self, change=None) -> None:
        """Offer on every dropdown and step slider only the values that can run with the others'
        current values, and say beside it which it leaves out."""
        if self._refreshing:
            return
        self._refreshing = True
        try:
            settings = self.settings()
            for f, note in self.notes.items():
                ok, left_out = self.offered(f, settings)
                w = self.widgets[f]
                if tuple(w.options) != ok:
                    w.options = ok
                    w.value = settings[f]
                note.value = ("" if not left_out else "<small>cannot run with the other settings: "
                              + ", ".join(f"{shown} ({why})" for shown, why in left_out.items()) + "</small>")
        finally:
            self._refreshing = False

    def build(self):
        """The controls, the Run button, its progress bar and status line and the output area, as
        one widget (:meth:`show` displays it in a live kernel)."""
        import ipywidgets as W
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.widgets = {f: make_widget(CONTROLS[f], getattr(self.reference, f)) for f in self.fields}
        self.notes = {f: W.HTML("") for f in self.fields if CONTROLS[f].kind in ("choice", "steps")}
        for w in self.widgets.values():
            w.observe(self.refresh, names="value")
        self.refresh()
        button = W.Button(description="Run", button_style="primary", icon="play")
        bar = W.FloatProgress(value=0, min=0, max=len(self.targets()), description="idle")
        self.status = status = W.HTML("")
        self.out = out = W.Output()

        def redraw():
            cmp = self.comparison()
            with out:
                out.clear_output(wait=True)
                display(styled(self.table(cmp), "ours, the paper and Δ to the reference (%)"))
                fig = self.figure(cmp)
                plt.show()
                plt.close(fig)

        def on_run(_=None):
            button.disabled = True
            bar.value, bar.bar_style, bar.description = 0, "info", "running"
            try:
                def step(i, n):
                    bar.value = i

                label = self.run(progress=step, **self.settings())
                bar.bar_style, bar.description = "success", "done"
                status.value = f"<b>{label}</b>: {self.seconds[label]:.1f} s"
                redraw()
            except Exception as e:  # a bad setting: say it, keep the controls usable
                bar.bar_style, bar.description = "danger", "failed"
                status.value = f"<b>error</b>: {type(e).__name__}: {e}"
            finally:
                button.disabled = False

        button.on_click(on_run)
        self.button, self.redraw = button, redraw
        controls = [W.VBox([w, self.notes[f]]) if f in self.notes else w for f, w in self.widgets.items()]
        return W.VBox([W.HBox(controls[:3]), *([W.HBox(controls[3:])] if controls[3:] else []),
                       W.HBox([button, bar, status]), out])

    # -- the display
    def note(self):
        """The box that says what the workbench offers in JupyterLab (``make lab``): its controls,
        the Run button, and where a run lands."""
        import html

        names = ", ".join(CONTROLS[f].description for f in self.fields)
        body = (f"Open this chapter in JupyterLab (<code>make lab</code>) and this box gets controls for "
                f"{html.escape(names)} and a Run button: your setting is trained and evaluated through the run "
                "store (a setting already run comes back at once) and lands as a new row of the table above and a "
                f"new bar of its figure, with its difference to \"{html.escape(self.reference_label)}\".")
        md = (f"Open this chapter in JupyterLab (`make lab`) and this box gets controls for {names} and a Run "
              "button: your setting is trained and evaluated through the run store (a setting already run comes "
              "back at once) and lands as a new row of the table above and a new bar of its figure, with its "
              f"difference to \"{self.reference_label}\".")
        return admonition("tip", "Try your own setting", body, md)

    def show(self, live: bool = False):
        """Controls, Run, progress and result in a live kernel (under :meth:`note`); the note
        alone elsewhere (the static book)."""
        from IPython.display import display

        display(self.note())
        if not live_ok(live):
            return None
        display(self.build())
        self.redraw()
        self.warm_up()
        return self

    def warm_up(self):
        """Load the reference recipe's backbone in a background thread while the reader sets the
        controls (open_clip's import and the weights: seconds on the smoke profile, more for
        ViT-L), so that the first Run does not wait for it; a failure is left for Run to report."""
        import threading

        def load():
            try:
                loader = self._loader
                if loader is None:
                    from ..engine.loading import build_model as loader
                loader(self.reference, self.ch.device)
            except Exception:  # Run builds the model again and reports the error in its status line
                pass

        self._warming = threading.Thread(target=load, name="workbench-warm-up", daemon=True)
        self._warming.start()
        return self._warming
