"""What ``prepare`` wrote and found (:class:`Prepared`), and the one line comparing a dataset's
test counts with the paper's Table 6 (:func:`table6_check`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..catalogue import Dataset
from ..index import SYNTHETIC_KEY


def split_counts(meta: dict) -> tuple[int, int]:
    """(normal, anomalous) images of the test split of a meta dict."""
    items = [it for items in meta.get("test", {}).values() for it in items]
    normal = sum(1 for it in items if not it["anomaly"])
    return normal, len(items) - normal


def table6_check(dataset: Dataset | None, meta: dict) -> str:
    """One line when the test split's counts differ from the paper's Table 6, else ``""``.

    Never an error: a later release (COVID-19), a partial copy or a mock release (synthetic,
    small on purpose) is still usable, but its numbers are not the paper's.
    """
    if dataset is None:
        return ""
    normal, bad = split_counts(meta)
    if (normal, bad) == (dataset.normal, dataset.anomalous):
        return ""
    unit = " halves" if dataset.key == "sdd" else ""
    line = (f"{dataset.name}'s test split has {normal} normal + {bad} anomalous{unit}, the paper's "
            f"Table 6 has {dataset.normal} + {dataset.anomalous}")
    if meta.get(SYNTHETIC_KEY):
        return line + " (a synthetic mock release, small on purpose)"
    return line + (f": {dataset.counts_note}" if dataset.counts_note else ": results are not comparable as they are")


@dataclass
class Prepared:
    """What :func:`anomclip.data.releases.prepare` wrote and found."""

    path: Path  # the meta.json
    layout: str  # the layout key, or "meta" for an existing meta.json
    title: str
    meta: dict
    notes: list = field(default_factory=list)
    data_dir: Path | None = None  # the folder the layout was read in (the root or a wrapper below it)
    table6: str = ""  # the one line saying how the test counts differ from Table 6 ("" when equal)

    def summary(self) -> list[str]:
        """Human-readable lines: the layout, per category its counts, what metrics are defined."""
        lines = [f"{self.path.parent}: {self.title} ({self.layout})"]
        all_items = []
        for cls_name, items in self.meta.get("test", {}).items():
            normal = sum(1 for it in items if not it["anomaly"])
            bad = len(items) - normal
            masks = sum(1 for it in items if it["mask_path"])
            lines.append(f"  {cls_name}: {normal} normal, {bad} anomalous, {masks} masks")
            all_items += items
        normal = sum(1 for it in all_items if not it["anomaly"])
        masks = sum(1 for it in all_items if it["mask_path"])
        n_cats = len(self.meta.get("test", {}))
        lines.append(f"  total: {n_cats} categor{'y' if n_cats == 1 else 'ies'}, {normal} normal, "
                     f"{len(all_items) - normal} anomalous, {masks} masks")
        if self.table6:
            lines.append(f"  Table 6: {self.table6}")
        if normal == 0:
            lines.append("  image metrics: not defined (every image is anomalous)")
        if masks == 0:
            lines.append("  pixel metrics: not defined (no masks)")
        lines += [f"  note: {n}" for n in self.notes]
        if self.meta.get(SYNTHETIC_KEY):
            lines.append("  synthetic: generated data, not the real dataset")
        return lines
