"""The workbench and an explorer driven the way JupyterLab drives them: a real ipykernel executes
a small notebook with ``live = True``, then every control is changed with the comm messages a
browser front end sends (@jupyter-widgets/base, protocol 2.1) and Run is clicked; each click must
bring new output (a table and a figure), different from the one before.

The notebook's chapter is the toy chapter (tests/toy_chapter.py), whose runs are a known
function of the recipe, so the test measures the widget plumbing, not training (the real run
store is tested in test_runs.py).
Seconds per click are printed, never asserted.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipywidgets")

NOTEBOOK = r'''
live = True

import sys
sys.path.insert(0, TESTS_DIR)  # the toy chapter, shared with tests/test_workbench.py
from toy_chapter import ToyChapter
from anomclip.book import workbench as wbm
from anomclip.book.widgets import map_explorer
from anomclip.recipes import get_recipe

ch = ToyChapter()
full = get_recipe("paper")
ab = wbm.ablation(ch, ch.run([("full", full)]).frame, [("full", "local + global")], table=5, figure=False,
                  metrics=("pixel_auroc", "image_auroc"))
wb = wbm.Workbench(ch, ab, ("local + global", full), ["use_focal_loss", "dpam", "lam", "prompt_depth", "layers"],
                   loader=lambda recipe, device: None)  # the toy chapter's runs need no model
shown = wb.show(live)
assert shown is wb, "the workbench fell back to its static line in a live kernel"

import numpy as np
rng = np.random.default_rng(0)
rgb = rng.random((2, 16, 16, 3)); masks = (rng.random((2, 16, 16)) > 0.8).astype(float)
maps = {m: rng.random((2, 16, 16)) for m in ("vv", "qq")}
map_explorer(rgb, masks, maps, live=live)
'''


def _collect(kc, parent_id, timeout=120):
    msgs = []
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != parent_id:
            continue
        msgs.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return msgs


def _comm_msg(kc, comm_id, data):
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def _outputs(msgs):
    """(mime type, content) of what a message sequence displays, and any error."""
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert not errors, errors
    shown = []
    for m in msgs:
        if m["msg_type"] in ("display_data", "execute_result"):
            for mime in ("text/html", "image/png"):
                if mime in m["content"]["data"]:
                    shown.append((mime, m["content"]["data"][mime]))
    return shown


def _track(models, msgs):
    for m in msgs:
        if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "jupyter.widget":
            models[m["content"]["comm_id"]] = dict(m["content"]["data"]["state"])
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") in ("update", "echo_update"):
            models.setdefault(m["content"]["comm_id"], {}).update(m["content"]["data"]["state"])


@pytest.mark.slow
def test_workbench_and_explorer_answer_browser_messages(tmp_path):
    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline", PYTHONHASHSEED="0")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=env)
    models: dict = {}
    try:
        mid = kc.execute(NOTEBOOK.replace("TESTS_DIR", repr(str(Path(__file__).parent))))
        msgs = _collect(kc, mid)
        reply = kc.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "ok", [m["content"] for m in msgs if m["msg_type"] == "error"]
        _track(models, msgs)
        first = _outputs(msgs)
        assert any(mime == "image/png" for mime, _ in first)  # the default figure, drawn live

        def comm(model, description):
            found = [c for c, s in models.items() if s.get("_model_name") == model and s.get("description") == description]
            assert len(found) == 1, (model, description, sorted({s.get("description") for s in models.values()}))
            return found[0]

        def send(comm_id, data):
            mid = _comm_msg(kc, comm_id, data)
            t0 = time.perf_counter()
            msgs = _collect(kc, mid)
            _track(models, msgs)
            return msgs, time.perf_counter() - t0

        run = comm("ButtonModel", "Run")
        before = {mime: data for mime, data in first if mime == "image/png"}
        changes = [("CheckboxModel", "focal loss", {"value": False}, "focal loss off"),
                   ("DropdownModel", "DPAM", None, "DPAM=Q-K"),
                   ("FloatSliderModel", "λ", {"value": 2.0}, "λ=2.0"),
                   ("IntSliderModel", "prompt depth", {"value": 3}, "prompt depth=3"),
                   ("SelectionSliderModel", "layers", None, "layers=last")]
        seen_tables = []
        for model, desc, state, expect in changes:
            cid = comm(model, desc)
            if state is None:  # selection widgets sync the index, not the value
                labels = models[cid]["_options_labels"]
                state = {"index": labels.index(expect.split("=", 1)[1])}
            msgs, _ = send(cid, {"method": "update", "state": state, "buffer_paths": []})
            assert not [m for m in msgs if m["msg_type"] == "error"]
            msgs, seconds = send(run, {"method": "custom", "content": {"event": "click"}})
            shown = dict(_outputs(msgs))
            print(f"[widgets] {desc}: Run → new row in {seconds:.2f} s")
            assert "image/png" in shown and "text/html" in shown, (desc, [m["msg_type"] for m in msgs])
            assert expect in shown["text/html"], (expect, shown["text/html"][:300])
            assert shown["image/png"] != before.get("image/png"), desc
            assert shown["text/html"] not in seen_tables, desc
            bars = [st for st in models.values() if st.get("_model_name") == "FloatProgressModel"]
            assert len(bars) == 1 and bars[0]["value"] == bars[0]["max"] == 2, bars  # two targets, run through
            moved = [m["content"]["data"]["state"]["value"] for m in msgs if m["msg_type"] == "comm_msg"
                     and m["content"]["data"].get("state", {}).get("value") is not None
                     and models.get(m["content"]["comm_id"], {}).get("_model_name") == "FloatProgressModel"]
            assert [v for v in moved if v] == [0.5, 1.0, 1.5, 2.0], moved  # by epochs, between the targets
            assert bars[0]["description"] == "done" and bars[0]["bar_style"] == "success", bars
            before, seen_tables = shown, seen_tables + [shown["text/html"]]
        # the last table holds one row per run, plus the reference
        assert seen_tables[-1].count("yours:") >= len(changes)

        # the explorer: each control redraws the figure, differently
        last = None
        for model, desc, state in (("FloatSliderModel", "σ", {"value": 1.0}),
                                   ("FloatSliderModel", "threshold", {"value": 0.5}),
                                   ("DropdownModel", "mode", {"index": 1})):
            msgs, seconds = send(comm(model, desc), {"method": "update", "state": state, "buffer_paths": []})
            pngs = [d for mime, d in _outputs(msgs) if mime == "image/png"]
            print(f"[widgets] explorer {desc}: redraw in {seconds:.2f} s")
            assert pngs and pngs[-1] != last, desc
            last = pngs[-1]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
