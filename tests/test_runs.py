"""The run store: keyed by content, never stale, safe to share (docs/run-store.md)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from anomclip import AnomclipError
from anomclip.data import fingerprint
from anomclip.data.dataset import load_index
from anomclip.data.synth import make_synthetic
from anomclip.engine.features import FeatureCache, extract_features
from anomclip.engine.models import build_model
from anomclip.engine.run_table import run_table
from anomclip.engine.runner import DataSpec, run_experiment
from anomclip.recipes import smoke


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth"))


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "features")


def samples(root):
    return [s for v in load_index(root).values() for s in v]


def bmp_copy(src, dst, cls="disc"):
    """One category of the synthetic data with uncompressed BMP images: a byte in the middle
    of a file is a pixel, so an in-place edit changes the picture and keeps the size."""
    items = []
    for s in load_index(src, categories=[cls])[cls]:
        rel = s.img_path.relative_to(src).with_suffix(".bmp")
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.open(s.img_path).convert("RGB").save(dst / rel)
        mask = ""
        if s.mask_path:
            mask = str(s.mask_path.relative_to(src))
            (dst / mask).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(s.mask_path, dst / mask)
        items.append({"img_path": rel.as_posix(), "mask_path": mask, "cls_name": cls,
                      "specie_name": s.specie_name, "anomaly": s.anomaly})
    (dst / "meta.json").write_text(json.dumps({"train": {}, "test": {cls: items}}))
    return dst


def edit_middle_in_place(path, keep_mtime=False):
    """Overwrite the middle third of a file with other bytes (same name, size and inode)."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 3)
        n = st.st_size // 3
        fh.write(bytes((7 * i) % 256 for i in range(n)))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size


# ------------------------------------------------------------------ fingerprints


def test_fingerprint_sees_a_change_anywhere_in_a_file(tmp_path):
    """A 1 MiB file edited in its middle (the old fingerprint read only the first and last 64 KiB)."""
    f = tmp_path / "big.bmp"
    f.write_bytes(bytes(range(256)) * 4096)
    before = fingerprint.file_digest(f)
    assert before == hashlib.blake2b(f.read_bytes(), digest_size=16).hexdigest()  # the whole file
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 1
    f.write_bytes(bytes(data))
    assert fingerprint.file_digest(f) == hashlib.blake2b(bytes(data), digest_size=16).hexdigest() != before


def test_digest_index_rehashes_only_changed_files_and_verify_rehashes_all(tmp_path, monkeypatch):
    files = [tmp_path / f"{i}.bin" for i in range(5)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 1000)
    hashed = []
    real = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda p: hashed.append(p) or real(p))
    index = fingerprint.DigestIndex(tmp_path / "index.sqlite")
    first = [index.digest(f) for f in files]
    assert len(hashed) == 5
    index.close()
    hashed.clear()
    again = fingerprint.DigestIndex(tmp_path / "index.sqlite")  # a new process: read from the file
    assert [again.digest(f) for f in files] == first and hashed == []  # a stat each, no reading
    edit_middle_in_place(files[2])
    os.utime(files[2], ns=(1, 10**18))  # an editor's save moves the mtime
    assert again.digest(files[2]) != first[2] and len(hashed) == 1
    hashed.clear()
    [again.digest(f, verify=True) for f in files]
    assert len(hashed) == 5
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(AnomclipError, match="gone is a dangling symbolic link"):
        again.digest(tmp_path / "gone")


# ------------------------------------------------------------------ never stale


def test_an_edited_image_is_recomputed_not_reused(synth, tmp_path, cache):
    root = bmp_copy(synth["objects"], tmp_path / "data")
    spec = DataSpec(str(root), "objects")
    recipe = smoke("official")
    first = run_experiment(recipe, None, [spec], tmp_path / "runs", cache=cache, progress=False)
    assert run_experiment(recipe, None, [spec], tmp_path / "runs", cache=cache, progress=False).reused
    anomalous = [s for s in samples(root) if s.anomaly]
    scores_before = first.results["objects"]["scores"]["disc"]
    edit_middle_in_place(anomalous[0].img_path)
    second = run_experiment(recipe, None, [spec], tmp_path / "runs", cache=cache, progress=False)
    assert not second.reused and second.key == first.key  # same run, new evaluation data
    assert second.results["objects"]["provenance"]["data"]["fingerprint"] != \
        first.results["objects"]["provenance"]["data"]["fingerprint"]
    assert second.results["objects"]["scores"]["disc"] != scores_before


def test_verify_catches_an_edit_that_kept_size_and_mtime(synth, tmp_path, cache):
    root = bmp_copy(synth["objects"], tmp_path / "data")
    spec = DataSpec(str(root), "objects")
    recipe = smoke("official")
    first = run_experiment(recipe, None, [spec], tmp_path / "runs", cache=cache, progress=False)
    edit_middle_in_place(samples(root)[-1].img_path, keep_mtime=True)  # stat says: unchanged
    trusting = run_experiment(recipe, None, [spec], tmp_path / "runs", cache=cache, progress=False)
    assert trusting.reused  # what the stat index alone can see
    checked = run_experiment(recipe, None, [spec], tmp_path / "runs", cache=cache, progress=False, verify=True)
    assert not checked.reused
    assert checked.results["objects"]["scores"] != first.results["objects"]["scores"]


def test_a_changed_training_image_retrains(synth, tmp_path, cache):
    train_root = bmp_copy(synth["textures"], tmp_path / "train", cls="weave")
    tr, ev = DataSpec(str(train_root), "weave"), DataSpec(str(synth["objects"]), "objects")
    recipe = smoke("official", epochs=1)
    a = run_experiment(recipe, tr, [ev], tmp_path / "runs", cache=cache, progress=False)
    edit_middle_in_place(samples(train_root)[0].img_path)
    b = run_experiment(recipe, tr, [ev], tmp_path / "runs", cache=cache, progress=False)
    assert b.key != a.key and not b.reused and b.checkpoint != a.checkpoint and b.checkpoint.is_file()


# ------------------------------------------------------------------ keys: content, not labels


def test_labels_and_recipe_names_are_not_part_of_a_run(synth, tmp_path, cache):
    from anomclip.engine.profiles import Profile

    ds = {d: DataSpec(str(p), d) for d, p in synth.items()}
    P = Profile("t", smoke("official"), ds, {"textures": ["objects"]}, tmp_path, cache=cache)
    r = smoke("official", epochs=1)
    table = run_table(P, [("first", r), ("same, other label", r.with_(name="renamed")),
                          ("other setting", r.with_(lam=1.0))])
    e = table.experiments
    assert e[("first", "textures")].key == e[("same, other label", "textures")].key
    assert e[("same, other label", "textures")].reused
    assert e[("other setting", "textures")].key != e[("first", "textures")].key
    assert sorted(set(table.frame["label"])) == ["first", "other setting", "same, other label"]
    runs = sorted(p.name for p in (tmp_path / "t" / "runs").iterdir())
    assert runs == sorted({x.key for x in e.values()})  # folders are named by key only
    untrained = run_table(P, [("untrained", r)], train=False)
    assert list(untrained.experiments) == [("untrained", None)]
    mixed = run_table(P, [("CLIP", smoke("clip")), ("tuned", r)])  # a zero-shot method: one untuned run
    assert set(mixed.experiments) == {("CLIP", None), ("tuned", "textures")}
    assert mixed.experiments[("tuned", "textures")].reused


def test_experiment_rebuilds_its_model_and_maps_without_copying(synth, tmp_path, cache):
    tr, ev = DataSpec(str(synth["textures"]), "textures"), DataSpec(str(synth["objects"]), "objects")
    exp = run_experiment(smoke("official", epochs=1), tr, [ev], tmp_path, cache=cache, progress=False)
    again = run_experiment(smoke("official", epochs=1), tr, [ev], tmp_path, cache=cache, progress=False)
    assert again.reused and again.checkpoint == exp.checkpoint
    res = again.predict("objects")
    stored = exp.results["objects"]
    for cat, m in res.categories.items():
        assert m["pixel_auroc"] == pytest.approx(stored["categories"][cat]["pixel_auroc"], abs=1e-12)
        assert res.maps[cat].shape[1:] == (96, 96)
        np.testing.assert_allclose(res.scores[cat], stored["scores"][cat], rtol=0, atol=1e-7)


def test_synthetic_is_what_the_dataset_says_not_its_path(synth, tmp_path, cache):
    plain = tmp_path / "synthetic-looking" / "synthetic"
    shutil.copytree(synth["objects"], plain)
    meta = json.loads((plain / "meta.json").read_text())
    meta.pop("synthetic", None)
    (plain / "meta.json").write_text(json.dumps(meta))
    assert DataSpec(str(synth["objects"]), "o").synthetic
    assert not DataSpec(str(plain), "o").synthetic


# ------------------------------------------------------------------ a shared, robust cache


def test_leftovers_of_a_killed_extraction_are_removed(synth, tmp_path, cache):
    model = build_model(smoke("official"))
    cache.root.mkdir(parents=True)
    stale = cache.root / ".0123456789abcdef01234567.x1y2z3"
    stale.mkdir()
    (stale / "global.npy").write_bytes(b"half written")
    fs = extract_features(model, samples(synth["objects"]), cache, progress=False)
    assert not stale.exists() and not fs.from_cache
    assert not [p for p in cache.root.iterdir() if p.is_dir() and p.name.startswith(".")]


def test_a_full_disk_is_a_one_line_error_before_writing(synth, tmp_path, cache, monkeypatch):
    import anomclip.engine.features as features

    model = build_model(smoke("paper"))
    free = 10_000  # bytes: far less than the features of 48 images
    monkeypatch.setattr(features.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, free))
    with pytest.raises(AnomclipError, match=r"not enough free space .* GiB are free"):
        extract_features(model, samples(synth["objects"]), cache, progress=False)
    assert not [p for p in cache.root.iterdir() if p.is_dir()]  # nothing half-written is left


def test_two_evaluations_on_one_empty_cache_both_succeed_identically(synth, tmp_path):
    env = dict(os.environ, ANOMCLIP_CACHE=str(tmp_path / "shared-cache"), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "anomclip", "eval", "--data", str(synth["objects"]),
                               "--out", str(tmp_path / f"r{i}.json")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    docs = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    assert docs[0]["categories"] == docs[1]["categories"] and docs[0]["scores"] == docs[1]["scores"]
    entries = [p for p in (tmp_path / "shared-cache").iterdir() if p.is_dir()]
    assert len(entries) == 1  # one extraction, read by the other


def test_a_zero_shot_method_ignores_tuning_data_and_is_reused(synth, tmp_path, cache):
    tr, ev = DataSpec(str(synth["textures"]), "textures"), DataSpec(str(synth["objects"]), "objects")
    clip = smoke("clip")
    a = run_experiment(clip, tr, [ev], tmp_path, cache=cache, progress=False)
    b = run_experiment(clip, None, [ev], tmp_path, cache=cache, progress=False)
    assert a.checkpoint is None and a.training is None and b.key == a.key and b.reused
    assert a.predict("objects").maps["disc"].shape[1:] == (96, 96)


def test_cli_cache_flags_and_verify(synth, tmp_path):
    from anomclip.cli import main

    root = bmp_copy(synth["objects"], tmp_path / "data")
    out, cache_dir = tmp_path / "r.json", tmp_path / "c16"
    assert main(["eval", "--data", root, "--out", out, "--cache-dir", cache_dir, "--cache-dtype", "float16"]) == 0
    doc = json.loads(out.read_text())
    assert doc["provenance"]["feature_dtype"] == "float16" and any(p.is_dir() for p in cache_dir.iterdir())
    edit_middle_in_place(samples(root)[-1].img_path, keep_mtime=True)
    assert main(["eval", "--data", root, "--out", out, "--cache-dir", cache_dir, "--cache-dtype", "float16",
                 "--verify"]) == 0
    assert json.loads(out.read_text())["provenance"]["data"]["fingerprint"] != doc["provenance"]["data"]["fingerprint"]
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o777 & ~umask  # the user's umask, not mkdtemp's 0700
    assert all((p.stat().st_mode & 0o777) == mode for p in cache_dir.iterdir() if p.is_dir())
