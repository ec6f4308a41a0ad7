"""The benchmarks (anomclip.bench): they return data and print nothing; `anomclip bench` prints and writes JSON."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from anomclip.cli import main
from anomclip.engine.loading import build_model
from anomclip.recipes import smoke


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def model():
    return build_model(smoke("official").with_(dpam_start=8), "cpu")  # DPAM in the last of 8 blocks only


def test_naive_two_pass_reference_computes_vv_attention_on_open_clips_own_tokens(model, images):
    """The reference's surrogate tokens, against V-V attention written out on the input that
    open_clip's own forward gives the last block (captured with a hook)."""
    from anomclip.bench.forward import naive_dual_path
    from anomclip.model.blocks import is_batch_first

    blk = model.clip.visual.transformer.resblocks[-1]
    seen = []
    hook = blk.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with torch.no_grad():
        model.clip.encode_image(images)
        hook.remove()
        g, xs = naive_dual_path(model, images)
        x = seen[0] if is_batch_first(blk) else seen[0].transpose(0, 1)  # [B, N, W]
        w = x.shape[-1]
        heads = blk.attn.num_heads
        h = torch.nn.functional.layer_norm(x, (w,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        v = h @ blk.attn.in_proj_weight[2 * w:].T + blk.attn.in_proj_bias[2 * w:]
        v = v.view(*v.shape[:2], heads, w // heads).transpose(1, 2)  # [B, heads, N, d]
        a = torch.softmax(v @ v.transpose(-1, -2) / math.sqrt(w // heads), dim=-1) @ v
        expected = x + blk.attn.out_proj(a.transpose(1, 2).reshape(x.shape))
        assert torch.allclose(g, model.clip.encode_image(images))
    assert torch.allclose(xs, expected, atol=1e-5)


def test_forward_and_text_benches_return_rows_and_print_nothing(model, capsys):
    from anomclip.bench.forward import bench_forward
    from anomclip.bench.text import bench_text

    rows = bench_forward(model, [1, 2], 1, "cpu")
    text = bench_text(model, "cpu", calls=3)
    assert capsys.readouterr() == ("", "")
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["dpam_over_plain"] == pytest.approx(r["dpam_s"] / r["plain_s"])
        assert r["naive_img_per_s"] == pytest.approx(r["batch"] / r["naive_s"])
    assert text["text_first_s"] > 0 and text["text_cached_s"] > 0


def test_clear_text_cache_makes_the_next_call_compute_again(model, monkeypatch):
    calls = []
    real = model._encode_text
    monkeypatch.setattr(model, "_encode_text", lambda name: calls.append(name) or real(name))
    with torch.no_grad():
        model.clear_text_cache()
        first = model.encode_text()
        model.encode_text()
        assert len(calls) == 1
        model.clear_text_cache()
        assert torch.equal(model.encode_text(), first) and len(calls) == 2


def test_aupro_bench_reports_the_baseline_and_their_differences(capsys):
    from anomclip.bench.metrics import bench_aupro, blob_data
    from anomclip.engine.metrics import aupro

    r = bench_aupro(n=4, size=48, seed=3, naive=True)
    assert capsys.readouterr() == ("", "")
    maps, masks = blob_data(4, 48, 3)
    assert r["n_pixels"] == 4 * 48 * 48 and r["n_distinct_scores"] == np.unique(maps).size
    assert r["pixel_metrics"]["pixel_aupro"] == pytest.approx(aupro(maps, masks), abs=1e-12)
    assert set(r["max_abs_diff"]) == {*r["pixel_metrics"], "aupro"}
    assert r["largest_abs_diff"] < 1e-9


def test_cli_bench_aupro_prints_a_summary_and_writes_json(tmp_path, capsys):
    out = tmp_path / "a" / "aupro.json"
    code, stdout, err = run(capsys, "bench", "aupro", "--maps", "3", "--size", "40", "--out", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["n_images"] == 3 and doc["size"] == 40 and "naive_extrapolated_s" not in doc
    assert stdout.splitlines()[0].startswith("AUPRO on 3 maps of 40²") and f"wrote {out}" in stdout


@pytest.mark.parametrize("argv,culprit", [
    (["aupro", "--maps", "0"], "--maps"),
    (["methods", "--images", "0"], "--images"),
    (["predict", "--counts", "4,x"], "--counts"),
    (["workbench", "--chapters", "06_object_aware,nope"], "nope"),
    (["fingerprint", "--gib", "0"], "--gib"),
])
def test_cli_bench_choices_check_their_numbers_first(tmp_path, capsys, argv, culprit):
    out = tmp_path / "b.json"
    code, _, err = run(capsys, "bench", *argv, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and culprit in err, err
    assert not out.exists()


def test_every_bench_choice_has_help(capsys):
    from anomclip.cli import build_parser

    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    choices = bench._subparsers._group_actions[0].choices
    assert set(choices) == {"aupro", "methods", "workbench", "predict", "musc", "intervals", "fingerprint"}
    for name, p in choices.items():
        assert all(a.help and a.help.strip() for a in p._actions if a.dest != "help"), name
        code, out, _ = run(capsys, "bench", name, "--help")
        assert code == 0 and "`" not in out, name


def test_interleaved_medians_call_each_function_once_per_round_and_keep_the_median(monkeypatch):
    """Rounds a, b, a, b … after one warm-up round; each median over that function's own rounds
    (a fake clock: a call of a takes 1, 5, 2 s, of b 10, 10, 30 s, so the medians are 2 and 10)."""
    from anomclip.bench import timing

    calls, clock = [], [0.0]
    took = {"a": iter([0, 1, 5, 2]), "b": iter([0, 10, 10, 30])}

    def fn(name):
        def run():
            calls.append(name)
            clock[0] += next(took[name])
        return run

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    out = timing.interleaved_medians({"a": fn("a"), "b": fn("b")}, 3, "cpu")
    assert calls == ["a", "b"] * 4
    assert out == {"a": 2.0, "b": 10.0}
