"""Training, evaluation, the feature cache, results files and the CLI, on the synthetic data."""
import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from anomclip import AnomclipError
from anomclip.cli import main
from anomclip.data.dataset import load_index
from anomclip.engine.evaluate import evaluate
from anomclip.engine.features import FeatureCache, extract_features
from anomclip.engine.loading import build_model
from anomclip.engine.runner import DataSpec, run_experiment
from anomclip.engine.train import train
from anomclip.recipes import smoke


@pytest.fixture(autouse=True)
def feature_cache(tmp_path_factory, monkeypatch):
    """The CLI reads $ANOMCLIP_CACHE; the API is given the same cache explicitly (``CACHE``)."""
    monkeypatch.setenv("ANOMCLIP_CACHE", str(tmp_path_factory.getbasetemp() / "features"))
    global CACHE
    CACHE = FeatureCache(tmp_path_factory.getbasetemp() / "features")


def samples(root):
    return [s for v in load_index(root).values() for s in v]


# ---------------------------------------------------------------- the method learns and transfers
@pytest.mark.slow  # two full smoke tunings of 15 epochs: what the claim needs
@pytest.mark.parametrize("source,target", [("textures", "objects"), ("objects", "textures")])
def test_training_on_one_domain_improves_the_unseen_domain(synth, source, target):
    """Zero-shot transfer: prompts tuned on one domain raise the other domain's pixel AUROC.

    Measured on this synthetic data with the untrained tiny backbone: textures→objects
    +0.08, objects→textures +0.54 (pixel AUROC, mean over categories). The image score does
    not transfer with a random-weight backbone: its class token hardly moves when a defect
    appears (tests/test_diagnostics.py, chapter 4), so only the pixel margin is asserted.
    """
    model = build_model(smoke("official"))
    train_feats = extract_features(model, samples(synth[source]), CACHE, progress=False)
    test_feats = extract_features(model, samples(synth[target]), CACHE, progress=False)
    before = evaluate(model, test_feats, progress=False).mean
    history = train(model, train_feats, progress=False).history
    after = evaluate(model, test_feats, progress=False).mean
    assert history[-1]["loss"] < history[0]["loss"]
    assert after["pixel_auroc"] - before["pixel_auroc"] >= 0.05, (before["pixel_auroc"], after["pixel_auroc"])


def test_same_seed_gives_identical_checkpoint_and_resume_matches(synth, tmp_path):
    recipe = smoke("official", epochs=3)
    runs = []
    data = load_index(synth["textures"])["dots"]  # one category: what is checked is the order of the steps
    for name in ("a", "b"):
        model = build_model(recipe)
        feats = extract_features(model, data, CACHE, progress=False)
        train(model, feats, checkpoint=tmp_path / f"{name}.pt", progress=False)
        runs.append(torch.load(tmp_path / f"{name}.pt", weights_only=True)["prompt_learner"])
    model = build_model(recipe)
    feats = extract_features(model, data, CACHE, progress=False)
    train(model, feats, checkpoint=tmp_path / "c.pt", progress=False, stop_after=1)  # interrupted
    model = build_model(recipe)  # a new process would start from scratch…
    train(model, feats, checkpoint=tmp_path / "c.pt", resume=True, progress=False)  # …and resume
    resumed = torch.load(tmp_path / "c.pt", weights_only=True)["prompt_learner"]
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k
        assert torch.equal(runs[0][k], resumed[k]), k
    changed = build_model(smoke("official", epochs=3, seed=5))
    train(changed, feats, checkpoint=tmp_path / "d.pt", progress=False)
    other = torch.load(tmp_path / "d.pt", weights_only=True)["prompt_learner"]
    assert not torch.equal(other["ctx_normal"], runs[0]["ctx_normal"])


def test_feature_cache_is_reused_and_keyed_by_what_features_depend_on(synth):
    model = build_model(smoke("official"))
    first = extract_features(model, samples(synth["objects"]), CACHE, progress=False)
    again = extract_features(build_model(smoke("official", n_ctx=4, lam=1.0)), samples(synth["objects"]),
                             CACHE, progress=False)
    assert again.from_cache and again.key == first.key  # prompt settings don't change visual features
    assert np.array_equal(np.asarray(again.patches["vv"][8]), np.asarray(first.patches["vv"][8]))
    direct, _ = model.encode_image(torch.stack([_image(synth, again.paths[0])]))
    assert torch.allclose(direct, torch.from_numpy(np.asarray(again.global_feats[:1])), atol=1e-6)
    other = extract_features(build_model(smoke("paper")), samples(synth["objects"]), CACHE, progress=False)
    assert other.key != first.key and set(other.patches["vv"]) == {2, 4, 6, 8}


def test_feature_extraction_streams_to_disk_and_matches_in_memory(synth, tmp_path):
    """The cache is filled batch by batch (memory maps), and holds exactly the in-memory features."""
    import tracemalloc

    model = build_model(smoke("paper"))  # four layers: the largest features of the smoke recipes
    items = samples(synth["textures"])

    def peak_extra(**kw):
        """(features, the most memory numpy/Python held at once beyond what was held before)."""
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        fs = extract_features(model, items, progress=False, **kw)
        return fs, tracemalloc.get_traced_memory()[1] - before

    tracemalloc.start()
    try:
        in_memory, peak_memory = peak_extra(cache=None)
        cached, peak_cached = peak_extra(cache=FeatureCache(tmp_path / "cache"))
    finally:
        tracemalloc.stop()
    patch_bytes = sum(a.nbytes for d in in_memory.patches.values() for a in d.values())
    assert peak_memory >= patch_bytes  # all patch features were held at once
    assert peak_cached < patch_bytes / 4, (peak_cached, patch_bytes)  # only a batch at a time
    assert not cached.from_cache and isinstance(cached.patches["vv"][8], np.memmap)
    assert np.array_equal(cached.global_feats, in_memory.global_feats)
    assert np.array_equal(np.asarray(cached.masks), in_memory.masks)
    for layer, a in in_memory.patches["vv"].items():
        assert np.array_equal(np.asarray(cached.patches["vv"][layer]), a), layer
    assert list(cached.labels) == list(in_memory.labels) and cached.paths == in_memory.paths
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".") and p.is_dir()]  # no temp


def test_half_precision_cache_is_opt_in_keyed_and_recorded(synth, tmp_path, monkeypatch):
    model = build_model(smoke("official"))
    items = samples(synth["objects"])
    full = extract_features(model, items, FeatureCache(tmp_path / "c"), progress=False)
    half = extract_features(model, items, FeatureCache(tmp_path / "c", "float16"), progress=False)
    assert half.key != full.key and not half.from_cache
    a32, a16 = np.asarray(full.patches["vv"][8]), np.asarray(half.patches["vv"][8])
    assert a16.dtype == np.float16 and a16.nbytes * 2 == a32.nbytes
    assert np.array_equal(a16, a32.astype(np.float16))  # round to nearest, nothing else
    assert np.array_equal(half.global_feats, full.global_feats)  # the global feature stays fp32
    _, feats, *_ = half.batch(np.arange(3))
    assert feats["vv"][8].dtype == torch.float32
    # results: recorded, and not re-used across dtypes
    data = DataSpec(str(synth["objects"]), "objects")
    c16, c32 = FeatureCache(tmp_path / "c", "float16"), FeatureCache(tmp_path / "c")
    e16 = run_experiment(smoke("official"), None, [data], tmp_path / "r", progress=False, cache=c16)
    assert e16.results["objects"]["provenance"]["feature_dtype"] == "float16"
    e32 = run_experiment(smoke("official"), None, [data], tmp_path / "r", progress=False, cache=c32)
    assert not e32.reused and e32.results["objects"]["provenance"]["feature_dtype"] == "float32"
    assert e32.key != e16.key
    assert run_experiment(smoke("official"), None, [data], tmp_path / "r", progress=False, cache=c32).reused
    d = {k: abs(e16.results["objects"]["mean"][k] - e32.results["objects"]["mean"][k]) for k in ("pixel_auroc",)}
    assert d["pixel_auroc"] < 0.01, d
    with pytest.raises(AnomclipError, match="bfloat16"):
        FeatureCache(tmp_path / "c", "bfloat16")
    with pytest.raises(AnomclipError, match="ANOMCLIP_CACHE_DTYPE"):
        FeatureCache.from_env({"ANOMCLIP_CACHE_DTYPE": "bfloat16"})


def _image(synth, path):
    from anomclip.data.preprocess import load_image

    return load_image(path, 96)


def test_runner_writes_results_with_provenance_and_reuses_them(synth, tmp_path):
    spec_t, spec_o = DataSpec(str(synth["textures"]), "textures"), DataSpec(str(synth["objects"]), "objects")
    recipe = smoke("official", epochs=1)
    exp = run_experiment(recipe, spec_t, [spec_o], tmp_path, progress=False, cache=CACHE)
    (path,) = exp.folder.glob("eval-*.json")
    doc = json.loads(path.read_text())
    assert set(doc["categories"]) == {"disc", "ring", "square", "capsule"}
    for key in ("image_auroc", "image_ap", "pixel_auroc", "pixel_aupro"):
        vals = [doc["categories"][c][key] for c in doc["categories"]]
        assert doc["mean"][key] == pytest.approx(np.mean(vals))
        assert all(0.0 <= v <= 1.0 for v in vals)
    prov = doc["provenance"]
    assert prov["recipe"]["epochs"] == 1 and prov["backbone"]["name"] == "tiny-random"
    assert "untrained tiny backbone" in prov["label"] and prov["data"]["fingerprint"]
    assert {"torch", "open_clip_torch"} <= set(prov["versions"]) and prov["device"].startswith("cpu")
    assert prov["training"]["data"]["name"] == "textures" and "commit" in prov
    assert prov["data"]["synthetic"] is True  # the dataset's meta.json says so
    assert prov["keys"] == {"run": exp.key, "eval": path.stem[len("eval-"):]}
    assert not exp.reused
    assert run_experiment(recipe, spec_t, [spec_o], tmp_path, progress=False, cache=CACHE).reused
    assert not run_experiment(recipe, spec_t, [spec_o], tmp_path, progress=False, force=True, cache=CACHE).reused


# ---------------------------------------------------------------- the CLI
def run_cli(*args):
    """The CLI as a terminal sees it (exit code, stdout, stderr), run in this process: ``main`` is
    what ``python -m anomclip`` runs (tests/test_cli.py::test_a_real_process_prints_one_line checks
    a real process the same way)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if "error:" in l]  # (progress bars may precede it)
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def test_cli_train_eval_predict_end_to_end(synth, tmp_path):
    ckpt, res = tmp_path / "prompts.pt", tmp_path / "results.json"
    assert main(["train", "--data", synth["textures"], "--out", ckpt, "--epochs", "2"]) == 0
    assert main(["eval", "--data", synth["objects"], "--checkpoint", ckpt, "--out", res]) == 0
    doc = json.loads(res.read_text())
    assert doc["provenance"]["init"].startswith("checkpoint") and doc["mean"]["pixel_auroc"] is not None
    imgs = sorted((synth["objects"] / "disc" / "test" / "hole").glob("*.png"))[:2]
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", ckpt, "--out", out, "--threshold", "0.5", *imgs]) == 0
    scores = json.loads((out / "scores.json").read_text())["predictions"]
    assert len(scores) == 2 and all(0 <= r["score"] <= 1 for r in scores)
    assert Image.open(out / f"{imgs[0].stem}_overlay.png").size == Image.open(imgs[0]).size
    assert (out / f"{imgs[0].stem}_mask.png").is_file() and (out / "scores.csv").is_file()


def _copy_category(src, dst, cls="disc"):
    import shutil

    shutil.copytree(src / cls, dst / cls)
    return dst


def test_cli_bad_inputs_give_one_line_errors(synth, tmp_path):
    assert_one_line_error(run_cli("eval", "--data", tmp_path / "nowhere", "--out", tmp_path / "r.json"), "nowhere")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "readme.txt").write_text("hi")
    assert_one_line_error(run_cli("eval", "--data", tmp_path / "odd", "--out", tmp_path / "r.json"), "odd")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00junk")
    assert_one_line_error(run_cli("eval", "--checkpoint", junk, "--out", tmp_path / "r.json"), "junk.pt")
    note = tmp_path / "note.txt"
    note.write_text("not an image")
    assert_one_line_error(run_cli("predict", "--out", tmp_path / "p", note), "note.txt")
    assert not (tmp_path / "p").exists()


def test_corrupt_image_fails_or_is_skipped_and_results_are_not_clobbered(synth, tmp_path):
    root = _copy_category(synth["objects"], tmp_path / "data")
    bad = sorted((root / "disc" / "test" / "good").glob("*.png"))[0]
    bad.write_bytes(b"\x89PNG broken")
    out = tmp_path / "r.json"
    out.write_text('{"previous": true}')
    proc = run_cli("eval", "--data", root, "--out", out)
    assert_one_line_error(proc, bad.name)
    assert out.read_text() == '{"previous": true}'  # nothing already written is lost
    proc = run_cli("eval", "--data", root, "--out", out, "--skip-unreadable")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert any(bad.name in p for p, _ in doc["provenance"]["skipped"])


def test_missing_or_wrong_size_mask_and_empty_category(synth, tmp_path):
    root = _copy_category(synth["objects"], tmp_path / "m")
    mask = sorted((root / "disc" / "ground_truth" / "hole").glob("*.png"))[0]
    Image.open(mask).resize((50, 40)).save(mask)
    assert_one_line_error(run_cli("eval", "--data", root, "--out", tmp_path / "r.json"), mask.name)
    mask.unlink()
    meta = {"train": {}, "test": {"disc": [{"img_path": "disc/test/hole/000.png",
                                            "mask_path": "disc/ground_truth/hole/000_mask.png",
                                            "cls_name": "disc", "specie_name": "hole", "anomaly": 1}]}}
    (root / "meta.json").write_text(json.dumps(meta))
    assert_one_line_error(run_cli("eval", "--data", root, "--out", tmp_path / "r.json"), "000_mask.png")
    meta["test"]["disc"] = []
    (root / "meta.json").write_text(json.dumps(meta))
    assert_one_line_error(run_cli("eval", "--data", root, "--out", tmp_path / "r.json"), "disc")


def test_category_with_one_class_gives_nan_with_a_note(synth, tmp_path):
    root = _copy_category(synth["objects"], tmp_path / "one")
    index = load_index(root)
    meta = {"train": {}, "test": {"disc": [
        {"img_path": str(s.img_path.relative_to(root)), "mask_path": "", "cls_name": "disc",
         "specie_name": "good", "anomaly": 0} for s in index["disc"] if not s.anomaly]}}
    (root / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "r.json"
    with pytest.warns(UserWarning):
        assert main(["eval", "--data", root, "--out", out]) == 0
    doc = json.loads(out.read_text())
    assert doc["categories"]["disc"]["image_auroc"] is None and doc["notes"]


def test_checkpoint_for_another_backbone_is_refused(synth, tmp_path):
    ckpt = tmp_path / "p.pt"
    assert main(["train", "--data", synth["textures"], "--out", ckpt, "--epochs", "1"]) == 0
    proc = run_cli("eval", "--checkpoint", ckpt, "--backbone", "ViT-B-16", "--out", tmp_path / "r.json")
    assert_one_line_error(proc, "p.pt", "tiny-random")


def test_runner_starts_from_our_own_prompts(synth, tmp_path):
    """Evaluating a checkpoint through ``init_prompts`` gives exactly the trained run's numbers."""
    spec_t, spec_o = DataSpec(str(synth["textures"]), "textures"), DataSpec(str(synth["objects"]), "objects")
    recipe = smoke("official", epochs=2)
    trained = run_experiment(recipe, spec_t, [spec_o], tmp_path, progress=False, cache=CACHE)
    again = run_experiment(recipe, None, [spec_o], tmp_path, progress=False, init_prompts=trained.checkpoint,
                           cache=CACHE)
    untrained = run_experiment(recipe, None, [spec_o], tmp_path, progress=False, cache=CACHE)
    assert again.results["objects"]["mean"] == trained.results["objects"]["mean"]
    assert again.results["objects"]["mean"] != untrained.results["objects"]["mean"]
    assert again.results["objects"]["provenance"]["init"].startswith("prompts prompts.pt")
    assert len({trained.key, again.key, untrained.key}) == 3


# ---------------------------------------------------------------- open_clip's root-logger line
OFFLINE_OPEN_CLIP = """
import logging, sys
from anomclip.cli import main
from anomclip.model.backbone import open_clip_module

open_clip = open_clip_module()  # as anomclip imports it (a timm deprecation notice of old releases kept quiet)

SAID = "Failed to download weights for tag 'openai': no network in this test"

def offline(*a, **k):
    logging.error(SAID)  # what open_clip's factory does before raising
    raise RuntimeError(SAID)

open_clip.create_model = offline
code = main(sys.argv[1:])
logging.error("heard after loading")  # the process's logging still works (lastResort: stderr)
sys.exit(code)
"""


@pytest.mark.slow  # a process that builds ViT-B-16
def test_open_clips_root_logger_line_is_folded_into_our_one_line(synth, tmp_path, caplog):
    """open_clip logs a failed download with ``logging.error`` on the root logger, then raises:
    the user sees one line (ours, with open_clip's reason in it); logging works afterwards."""
    import logging

    said = "Failed to download weights for tag 'openai': no network in this test"
    argv = ["eval", "--data", synth["objects"], "--backbone", "ViT-B-16", "--pretrained", "openai",
            "--out", tmp_path / "r.json"]
    proc = subprocess.run([sys.executable, "-c", OFFLINE_OPEN_CLIP, *map(str, argv)], capture_output=True,
                          text=True, timeout=600)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr  # ours, then the check after loading
    assert lines[0].startswith("anomclip eval: error: could not get the ViT-B-16 'openai' weights"), lines
    assert said in lines[0] and lines[1].endswith("heard after loading"), lines
    assert not (tmp_path / "r.json").exists()
    # in-process: the record reaches no handler, and the root logger is left as it was
    from anomclip.model.backbone import quiet_loggers

    filters = list(logging.getLogger().filters)
    with caplog.at_level(logging.INFO):
        with quiet_loggers() as captured:
            logging.error(said)
            logging.info("Loading pretrained weights")
        logging.error("heard after loading")
    assert captured == [said]
    assert [r.getMessage() for r in caplog.records] == ["heard after loading"]
    assert logging.getLogger().filters == filters and logging.root.manager.disable == 0
