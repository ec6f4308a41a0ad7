"""What a reader sees in a figure: legends that cover plotted data, and legends that use one
look (colour, line style, marker) for two labels.

:func:`legend_overlaps` lists, for a drawn matplotlib figure, every legend box (an axes' legend
or the figure's) that covers plotted data of any of the figure's axes: a line or curve passing
under it (reference lines included), a bar or filled area reaching into it, a scatter point
inside it. Images (maps) and text are not data here. :func:`colour_clashes` lists every look
(colour, line style, marker, hatch) that the legends of one figure give to two different labels:
a reader cannot tell those two apart, whatever the book's colour table says.

:func:`install` makes every figure a chapter displays carry that list: an IPython display
formatter adds the mimetype :data:`MIME` (JSON) beside the figure's PNG. The rendered book shows
the PNG only; ``tools/check_book.py`` reads the executed chapters and fails on any figure whose
list is not empty. Chapters get it from :func:`anomclip.book.chapter.open_chapter`.
"""
from __future__ import annotations

import numpy as np

#: the mimetype of a displayed figure's check (beside its image/png)
MIME = "application/vnd.anomclip.figure-check+json"
#: a legend touching data by less than this (pixels at the figure's dpi) is not counted
TOLERANCE_PX = 1.0


def _label(artist) -> str:
    label = artist.get_label() or ""
    return label if label and not label.startswith("_") else type(artist).__name__


def _segments_hit(xy: np.ndarray, box) -> bool:
    """Whether a polyline (display coordinates, NaN breaks it) enters ``box`` (x0, y0, x1, y1):
    each segment clipped against the box (Liang–Barsky)."""
    x0, y0, x1, y1 = box
    if len(xy) == 1:
        x, y = xy[0]
        return bool(x0 < x < x1 and y0 < y < y1)
    for (ax_, ay), (bx, by) in zip(xy[:-1], xy[1:]):
        if not np.isfinite([ax_, ay, bx, by]).all():
            continue
        dx, dy = bx - ax_, by - ay
        lo, hi = 0.0, 1.0
        for p, q in ((-dx, ax_ - x0), (dx, x1 - ax_), (-dy, ay - y0), (dy, y1 - ay)):
            if p == 0:
                if q <= 0:  # parallel to this edge and outside it
                    break
                continue
            t = q / p
            if p < 0:
                lo = max(lo, t)
            else:
                hi = min(hi, t)
            if lo > hi:
                break
        else:
            if lo < hi or (lo == hi and 0 <= lo <= 1):
                return True
    return False


def _shrunk(bbox, px: float):
    return (bbox.x0 + px, bbox.y0 + px, bbox.x1 - px, bbox.y1 - px)


def _overlaps_box(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _data_artists(ax):
    """(label, kind, artist) of what is plotted in ``ax``."""
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection
    from matplotlib.patches import Patch

    legend = ax.get_legend()
    own = set(legend.get_patches()) if legend is not None else set()
    series = {id(p): c.get_label() for c in ax.containers for p in c if isinstance(p, Patch)}  # bars' series
    for line in ax.lines:
        if line.get_visible() and len(line.get_xydata()):
            yield _label(line), "line", line
    for patch in ax.patches:
        if isinstance(patch, Patch) and patch.get_visible() and patch not in own:
            name = series.get(id(patch))
            yield (name if name and not name.startswith("_") else _label(patch)), "patch", patch
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        if isinstance(coll, PathCollection):
            yield _label(coll), "points", coll
        elif isinstance(coll, (PolyCollection, LineCollection)):
            yield _label(coll), "area", coll


def _hits(kind: str, artist, box, renderer) -> bool:
    if kind == "line":
        xy = artist.get_transform().transform(np.asarray(artist.get_xydata(), dtype=float))
        return _segments_hit(xy, box)
    if kind == "patch":
        from matplotlib.patches import Rectangle

        ext = artist.get_window_extent(renderer)
        if ext.width <= 0 and ext.height <= 0:
            return False
        if isinstance(artist, Rectangle):  # a bar: its box is its shape
            return _overlaps_box((ext.x0, ext.y0, ext.x1, ext.y1), box)
        path = artist.get_path().transformed(artist.get_transform())
        return _segments_hit(path.vertices, box) or _inside_any(path, box)
    if kind == "points":
        offsets = np.asarray(artist.get_offsets(), dtype=float)
        if not len(offsets):
            return False
        xy = artist.get_offset_transform().transform(offsets)
        x0, y0, x1, y1 = box
        return bool(((xy[:, 0] > x0) & (xy[:, 0] < x1) & (xy[:, 1] > y0) & (xy[:, 1] < y1)).any())
    # areas: an edge crosses the box, or the box lies inside the area
    for path in artist.get_paths():
        p = path.transformed(artist.get_transform())
        if _segments_hit(p.vertices, box) or _inside_any(p, box):
            return True
    return False


def _inside_any(path, box) -> bool:
    """Whether the box's centre lies inside the closed display-space path."""
    return bool(path.contains_point(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)))


def _clipped(box, artist):
    """The part of ``box`` where ``artist`` can be seen: inside its clip box (its axes) when it
    is clipped, as it is drawn; None when nothing is left."""
    clip = artist.get_clip_box() if artist.get_clip_on() else None
    if clip is None:
        return box
    x0, y0 = max(box[0], clip.x0), max(box[1], clip.y0)
    x1, y1 = min(box[2], clip.x1), min(box[3], clip.y1)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _renderer(fig):
    """A renderer laid out as the figure is drawn; a figure made without pyplot (whose canvas
    cannot render) gets an Agg canvas, as the inline backend prints it with Agg."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def legend_overlaps(fig) -> list[dict]:
    """Every (legend, plotted artist) pair of ``fig`` that meet where the artist is drawn (inside
    its axes when clipped): dicts with ``axes`` (the title of the axes the artist is in),
    ``legend`` (its entries), ``artist`` (label), ``kind`` (line, patch, points, area) and
    ``count`` (how many such artists: the bars of one series are one entry). The figure is laid
    out first (as it is drawn)."""
    renderer = _renderer(fig)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    found: dict = {}
    for lg in legends:
        if not lg.get_visible():
            continue
        box = _shrunk(lg.get_window_extent(renderer), TOLERANCE_PX)
        entries = [t.get_text() for t in lg.get_texts()]
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            for label, kind, artist in _data_artists(ax):
                seen = _clipped(box, artist)
                if seen is not None and _hits(kind, artist, seen, renderer):
                    where = ax.get_title() or ax.get_ylabel() or f"axes {fig.axes.index(ax) + 1}"
                    key = (where, tuple(entries), label, kind)
                    found[key] = found.get(key, 0) + 1
    return [{"axes": w, "legend": list(e), "artist": a, "kind": k, "count": n} for (w, e, a, k), n in found.items()]


def _look(handle):
    """How a legend entry's handle looks: (colour as hex, dash, marker, hatch) — a solid line and a
    patch of one colour look alike ("" dash); None for a handle that shows nothing (seaborn's invisible section titles, a fully transparent patch)."""
    from matplotlib.colors import to_hex, to_rgba
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if handle is None or not handle.get_visible():
        return None
    if isinstance(handle, Line2D):
        ls = handle.get_linestyle()
        marker = handle.get_marker()
        marker = "" if marker in (None, "None", "none", "") else str(marker)
        if (ls in ("None", "none", "", " ") or handle.get_linewidth() == 0) and not marker:
            return None  # draws nothing: e.g. seaborn's section titles ("term", "run"), white lines of width 0
        rgba = to_rgba(handle.get_color())
        # a solid line reads like a patch of its colour; a dash or a marker tells it apart
        return (to_hex(rgba), "" if ls in ("None", "none", "", " ", "-", "solid") else str(ls), marker, "")
    if isinstance(handle, Patch):
        rgba = handle.get_facecolor()
        if rgba[3] == 0:
            rgba = handle.get_edgecolor()
        if rgba[3] == 0 or (hasattr(handle, "get_width") and handle.get_width() == 0 and handle.get_height() == 0):
            return None
        return (to_hex(rgba), "", "", str(handle.get_hatch() or ""))
    try:  # collections (scatter points): the first face colour
        colors = handle.get_facecolor()
        if len(colors):
            return (to_hex(colors[0]), "", "o", "")
    except Exception:
        pass
    return None


def legend_entries(fig) -> list[tuple[str, tuple]]:
    """(label, look) of every entry of every legend of ``fig`` (axes' and the figure's), in
    order; entries that show nothing (section titles) are left out."""
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    out = []
    for lg in legends:
        if not lg.get_visible():
            continue
        handles = getattr(lg, "legend_handles", None) or getattr(lg, "legendHandles", [])
        for h, t in zip(handles, lg.get_texts()):
            look = _look(h)
            label = t.get_text()
            if look is not None and label and not label.startswith("_"):
                out.append((label, look))
    return out


def colour_clashes(fig) -> list[dict]:
    """Every look that the legends of ``fig`` give to two or more different labels: dicts with
    ``colour`` (hex), ``labels`` (the labels, in order), and ``style`` (line style, marker,
    hatch: entries of one colour told apart by their dash or marker are not a clash)."""
    by_look: dict = {}
    for label, look in legend_entries(fig):
        by_look.setdefault(look, [])
        if label not in by_look[look]:
            by_look[look].append(label)
    return [{"colour": look[0], "style": list(look[1:]), "labels": labels}
            for look, labels in by_look.items() if len(labels) > 1]


def check_figure(fig) -> dict:
    """The JSON shown beside a figure: its legend overlaps and colour clashes (empty when none)."""
    try:
        return {"legend_overlaps": legend_overlaps(fig), "colour_clashes": colour_clashes(fig),
                "legend_labels": list(dict.fromkeys(label for label, _ in legend_entries(fig)))}
    except Exception as exc:  # a figure the check cannot lay out: say so, never break the display
        return {"legend_overlaps": [], "colour_clashes": [], "error": f"{type(exc).__name__}: {exc}"}


def install(shell=None) -> bool:
    """Register the formatter of :data:`MIME` for matplotlib figures in the running IPython
    kernel (``shell``: the current one); False outside IPython."""
    from IPython.core.formatters import JSONFormatter

    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    from matplotlib.figure import FigureBase

    formatters = shell.display_formatter.formatters
    if MIME not in formatters:
        fmt = JSONFormatter(parent=shell.display_formatter)
        fmt.format_type = MIME
        formatters[MIME] = fmt
    # on FigureBase, not Figure: configuring the inline backend (on the first figure) pops every
    # formatter's Figure entry; a base class entry applies to Figure through its MRO and stays
    formatters[MIME].for_type(FigureBase, check_figure)
    return True


def figure_checks(notebook: dict) -> list[tuple[int, dict]]:
    """(cell number, check) of every checked figure in a notebook (its JSON as read)."""
    out = []
    for i, cell in enumerate(notebook.get("cells", []), start=1):
        for output in cell.get("outputs", []) or []:
            check = (output.get("data") or {}).get(MIME)
            if check is not None:
                out.append((i, check))
    return out
