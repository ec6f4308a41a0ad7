"""Seconds from a workbench's Run to its new row, per ablation chapter (issue 18).

For each ablation chapter the workbench is built as the chapter builds it (its reference
recipe, the recipe fields it exposes, the datasets it evaluates) and :meth:`Workbench.run` is
called twice with one setting changed from the reference: in an empty run store (a setting
never run: it trains and evaluates) and again (the setting is now stored: it comes back at
once). The feature cache is the book's (``.cache``, or $ANOMCLIP_CACHE, relative to the current
folder: run it from the checkout), as a researcher who has built the book has it; a setting that
changes the visual features (DPAM mode, start, layers) extracts them once if that cache lacks them.
Before the Runs, the workbench's warm-up (:meth:`Workbench.warm_up`: importing open_clip and
loading the backbone, done in the background while the reader sets the controls) is waited for
and timed on its own (``warm_up_s``; once per process: the backbone is then loaded).

The chapters' settings are repeated here (chapters 6–11's ``Workbench(...)`` cells); the
changed setting of each is the last column of ``CHAPTERS``.
"""
from __future__ import annotations

import tempfile
import time

from .timing import machine

#: chapter → (reference label, recipe name, the chapter's schedule, the chapter's fields, datasets
#: rule, the setting changed). Schedule: a named schedule of the profile (chapters 6–9:
#: ``ch.recipe(name, schedule="ablation")``, :data:`anomclip.engine.profiles.SMOKE_SCHEDULES`) or,
#: as an int, the ``smoke_epochs`` parameter of chapters 10 and 11 (smoke profile only). Datasets
#: rule: "ablation" = ``ch.ablation_datasets``, "one" = the first target of the protocol (chapters
#: 10 and 11 evaluate one direction on the smoke profile).
CHAPTERS = {
    "06_object_aware": ("object-agnostic", "paper", "ablation", ["object_aware", "state_word", "prompt_length"],
                        "ablation", {"state_word": "flawed"}),
    "07_module_ablation": ("full", "paper", "ablation", ["dpam", "object_aware", "prompt_depth", "layers", "lam"],
                           "ablation", {"prompt_depth": 6}),
    "08_losses": ("local + global", "paper", "ablation",
                  ["use_global_loss", "use_focal_loss", "use_dice_loss", "lam"], "ablation", {"use_dice_loss": False}),
    "09_dpam": ("V-V", "paper", "ablation", ["dpam", "dpam_start"], "ablation", {"dpam": "qk"}),
    "10_prompt_design": ("state word: damaged", "official", 3, ["state_word", "shared_ctx", "n_ctx"], "one",
                         {"n_ctx": 8}),
    "11_hyperparameters": ("official", "official", 2, ["n_ctx", "prompt_depth", "prompt_length", "layers", "lam"],
                           "one", {"prompt_length": 6}),
}


def reference_recipe(ch, name: str) -> tuple:
    """Chapter ``name``'s reference recipe as the chapter builds it on ``ch``'s profile, with its
    label: ``(label, recipe)``."""
    ref_label, recipe, schedule = CHAPTERS[name][:3]
    if isinstance(schedule, str):
        return ref_label, ch.recipe(recipe, schedule=schedule)
    return ref_label, ch.recipe(recipe, **({"epochs": schedule} if ch.smoke else {}))


def bench_workbench(profile: str = "smoke", data_root: str = "data", device: str = "auto", chapters=tuple(CHAPTERS),
                    on_row=None) -> dict:
    """``chapters``: one row per chapter (its controls, the change, and the seconds of the ``new``
    and the ``stored`` Run), with the profile and the machine. ``on_row(row)`` is called after
    each chapter."""
    from ..book.chapter import open_chapter
    from ..book.workbench import Workbench

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-workbench-") as store:
        ch = open_chapter(profile, data_root, device, results_dir=store)
        for name in chapters:
            ref_label, reference = reference_recipe(ch, name)
            fields, rule, change = CHAPTERS[name][3:]
            if rule == "ablation":
                datasets = ch.ablation_datasets
            else:
                src = next(iter(ch.profile.protocol))
                datasets = [ch.profile.protocol[src][0]]
            wb = Workbench(ch, None, (ref_label, reference), fields, datasets=datasets)
            row = {"chapter": name, "controls": len(fields), "fields": fields, "change": change,
                   "epochs": reference.with_(**change).epochs, "evaluations": len(wb.targets())}
            t0 = time.perf_counter()
            wb.warm_up().join()  # as shown in JupyterLab: the backbone loads while the controls are set
            row["warm_up_s"] = round(time.perf_counter() - t0, 2)
            for when in ("new", "stored"):
                t0 = time.perf_counter()
                label = wb.run(**change)
                row[f"{when}_s"] = round(time.perf_counter() - t0, 2)
            row["row"] = label
            rows.append(row)
            if on_row:
                on_row(row)
    return {"what": "seconds from Workbench.run to the new row: a setting never run (new) and the same again "
                    "(stored), after the workbench's warm-up (warm_up_s: the backbone loaded in the background)",
            "profile": profile, "machine": machine(),
            "label": ("untrained tiny backbone on synthetic data: costs of the plumbing, not the paper's"
                      if profile == "smoke" else profile),
            "chapters": rows}


def row_summary(row: dict) -> str:
    n = row["evaluations"]
    return (f"{row['chapter']:20} {row['controls']} controls  {str(row['change']):28} new {row['new_s']:7.2f} s"
            f"   stored {row['stored_s']:6.2f} s   ({n} evaluation{'s' if n != 1 else ''}, {row['epochs']} epochs"
            + (f"; warm-up {row['warm_up_s']:.2f} s)" if "warm_up_s" in row else ")"))
