"""Live explorers of the book (ipywidgets): attention maps, anomaly maps, failure cases.

Each explorer draws its default state with :mod:`anomclip.book.plots` (that is what the static book
shows). With ``live=True`` in a running Jupyter kernel with ``ipywidgets`` it also shows
controls that redraw the figure; anywhere else it quietly falls back to the default drawing.
"""
from __future__ import annotations

import torch

from ..model.scoring import gaussian_blur
from .labels import MODE_NAMES, case_name
from .plots import draw_attention, draw_cases, draw_maps


def live_ok(live: bool) -> bool:
    """True when ``live`` is asked for and a Jupyter kernel with ipywidgets is running."""
    if not live:
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def _controls(redraw, **widgets) -> None:
    """Lay out ``widgets`` above an output area redrawn by ``redraw(**values)`` and display them.

    Returns None: an explorer is the last line of its cell, and a returned widget would be shown
    a second time under the first."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    out = W.Output()

    def draw(**values):
        with out:
            out.clear_output(wait=True)
            fig = redraw(**values)
            plt.show()
            plt.close(fig)

    ctl = W.interactive(draw, **widgets)
    display(W.VBox([W.HBox(list(ctl.children[:-1])), out]))
    ctl.update()
    return None


def _static(fig):
    import matplotlib.pyplot as plt

    plt.show()  # shown once (not returned, so not displayed twice)
    return None


def attention_explorer(rgb, attn: dict, live: bool = False, image: int = 0, block: int | None = None,
                       query=(0.5, 0.5), mode: str = "all"):
    """Mode/block/image/query-patch explorer of the attention maps (:func:`~anomclip.book.plots.draw_attention`)."""
    modes = list(next(iter(attn.values())))

    def pick(mode):
        return modes if mode == "all" else [mode]

    block = block or max(attn)
    if not live_ok(live):
        return _static(draw_attention(rgb, attn, image, block, query, modes=pick(mode)))
    import ipywidgets as W

    g = int(round((next(iter(attn[block].values())).shape[-1] - 1) ** 0.5))
    return _controls(
        lambda mode, block, image, row, col: draw_attention(rgb, attn, image, block, ((row + 0.5) / g, (col + 0.5) / g),
                                                            modes=pick(mode)),
        mode=W.Dropdown(options=[("all", "all")] + [(MODE_NAMES.get(m, m), m) for m in modes], value=mode,
                        description="mode"),
        block=W.SelectionSlider(options=sorted(attn), value=block, description="block"),
        image=W.IntSlider(value=image, min=0, max=len(rgb) - 1, description="image"),
        row=W.IntSlider(value=min(g - 1, int(query[0] * g)), min=0, max=g - 1, description="query row"),
        col=W.IntSlider(value=min(g - 1, int(query[1] * g)), min=0, max=g - 1, description="query col"))


def map_explorer(rgb, masks, maps: dict, live: bool = False, mode: str = "all", sigma: float = 4.0,
                 threshold: float | None = None, title: str | None = None):
    """(mode, σ, threshold) explorer of the anomaly maps of each DPAM mode
    (:func:`~anomclip.book.plots.draw_maps`); ``threshold`` is a map value (probability) or None."""
    def pick(mode):
        return list(maps) if mode == "all" else [mode]

    if not live_ok(live):
        return _static(draw_maps(rgb, masks, maps, sigma, threshold, pick(mode), title=title))
    import ipywidgets as W

    return _controls(
        lambda mode, sigma, threshold: draw_maps(rgb, masks, maps, sigma, None if threshold <= 0 else threshold,
                                                 pick(mode)),
        mode=W.Dropdown(options=[("all", "all")] + [(MODE_NAMES.get(m, m), m) for m in maps], value=mode,
                        description="mode"),
        sigma=W.FloatSlider(value=sigma, min=0.0, max=12.0, step=0.5, description="σ"),
        threshold=W.FloatSlider(value=threshold or 0.0, min=0.0, max=1.0, step=0.01, description="threshold"))


def failure_explorer(rgb, masks, raw, cases, threshold: float, live: bool = False, image: str | int = "all",
                     sigma: float = 4.0):
    """(image, threshold, σ) explorer of the worst cases (:func:`~anomclip.book.plots.draw_cases`)."""
    def pick(image):
        return None if image == "all" else [int(image)]

    if not live_ok(live):
        return _static(draw_cases(rgb, masks, raw, cases, threshold, sigma, pick(image)))
    import ipywidgets as W

    hi = float(gaussian_blur(torch.as_tensor(raw).float(), 0.0).max())
    options = [("all", "all")] + [(f"{c.kind.upper()} {case_name(c.category, getattr(c, 'path', ''), c.i)}", str(k))
                                  for k, c in enumerate(cases.itertuples())]
    return _controls(
        lambda image, threshold, sigma: draw_cases(rgb, masks, raw, cases, threshold, sigma, pick(image)),
        image=W.Dropdown(options=options, value=str(image), description="image"),
        threshold=W.FloatSlider(value=threshold, min=0.0, max=max(hi, threshold), step=0.005, readout_format=".3f",
                                description="threshold"),
        sigma=W.FloatSlider(value=sigma, min=0.0, max=12.0, step=0.5, description="σ"))
