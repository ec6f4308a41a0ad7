"""Seconds from a workbench's Run to its new row, per ablation chapter (issue 18).

For each ablation chapter the workbench is built as the chapter builds it (its reference
recipe, the recipe fields it exposes, the datasets it evaluates) and :meth:`Workbench.run` is
called twice with one setting changed from the reference: in an empty run store (a setting
never run: it trains and evaluates) and again (the setting is now stored: it comes back at
once). The feature cache is the book's (``.cache``, or $ANOMCLIP_CACHE), as a researcher who
has built the book has it; a setting that changes the visual features (DPAM mode, start,
layers) extracts them once if that cache lacks them. The figures are written as JSON and
printed; nothing is asserted (timings on a shared machine vary). Run it alone on the machine.

    python tools/bench_workbench.py --out results/bench_workbench.json
    python tools/bench_workbench.py --profile paper --data-root /data --device cuda   # the real scale

The chapters' settings are repeated here (chapters 6–11's ``Workbench(...)`` cells); the
changed setting of each is the ``CHANGE`` column.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: chapter → (reference label, recipe name, smoke epochs or None, the chapter's fields, datasets
#: rule, the setting changed). Datasets rule: "ablation" = ``ch.ablation_datasets``, "one" = the
#: first target of the protocol (chapters 10 and 11 evaluate one direction on the smoke profile).
CHAPTERS = {
    "06_object_aware": ("object-agnostic", "paper", None, ["object_aware", "state_word", "prompt_length"],
                        "ablation", {"state_word": "flawed"}),
    "07_module_ablation": ("full", "paper", None, ["dpam", "object_aware", "prompt_depth", "layers", "lam"],
                           "ablation", {"prompt_depth": 6}),
    "08_losses": ("local + global", "paper", None, ["use_global_loss", "use_focal_loss", "use_dice_loss", "lam"],
                  "ablation", {"use_dice_loss": False}),
    "09_dpam": ("V-V", "paper", None, ["dpam", "dpam_start"], "ablation", {"dpam": "qk"}),
    "10_prompt_design": ("state word: damaged", "official", 3, ["state_word", "shared_ctx", "n_ctx"], "one",
                         {"n_ctx": 8}),
    "11_hyperparameters": ("official", "official", 2, ["n_ctx", "prompt_depth", "prompt_length", "layers", "lam"],
                           "one", {"prompt_length": 6}),
}


def bench(profile: str, data_root: str, device: str, chapters) -> list[dict]:
    from anomclip.book.chapter import open_chapter
    from anomclip.book.workbench import Workbench

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-workbench-") as store:
        ch = open_chapter(profile, data_root, device, results_dir=store)
        for name in chapters:
            ref_label, recipe, smoke_epochs, fields, rule, change = CHAPTERS[name]
            reference = ch.recipe(recipe, **({"epochs": smoke_epochs} if ch.smoke and smoke_epochs else {}))
            if rule == "ablation":
                datasets = ch.ablation_datasets
            else:
                src = next(iter(ch.P.protocol))
                datasets = [ch.P.protocol[src][0]]
            wb = Workbench(ch, None, (ref_label, reference), fields, datasets=datasets)
            row = {"chapter": name, "controls": len(fields), "fields": fields, "change": change,
                   "epochs": reference.with_(**change).epochs, "evaluations": len(wb.targets())}
            for when in ("new", "stored"):
                t0 = time.perf_counter()
                label = wb.run(**change)
                row[f"{when}_s"] = round(time.perf_counter() - t0, 2)
            row["row"] = label
            rows.append(row)
            print(f"{name:20} {len(fields)} controls  {json.dumps(change):28} new {row['new_s']:7.2f} s"
                  f"   stored {row['stored_s']:6.2f} s   ({row['evaluations']} evaluation"
                  f"{'s' if row['evaluations'] != 1 else ''}, {row['epochs']} epochs)", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="smoke")
    p.add_argument("--data-root", default="data")
    p.add_argument("--device", default="auto")
    p.add_argument("--chapters", default=",".join(CHAPTERS), help="comma-separated (default: all six)")
    p.add_argument("--out", default="results/bench_workbench.json", help="JSON file to write")
    a = p.parse_args(argv)
    os.chdir(ROOT)
    chapters = [c for c in a.chapters.split(",") if c]
    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        print(f"error: --chapters: unknown {', '.join(unknown)} (choose among {', '.join(CHAPTERS)})", file=sys.stderr)
        return 2
    import torch

    rows = bench(a.profile, a.data_root, a.device, chapters)
    doc = {"what": "seconds from Workbench.run to the new row: a setting never run (new) and the same again (stored)",
           "profile": a.profile, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                             "torch": torch.__version__, "threads": torch.get_num_threads()},
           "label": ("untrained tiny backbone on synthetic data: costs of the plumbing, not the paper's"
                     if a.profile == "smoke" else a.profile),
           "chapters": rows}
    from anomclip.io import atomic_write_text

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(doc, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
