"""The run store: keyed by content, never stale, safe to share (docs/run-store.md)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from anomclip import AnomclipError
from anomclip.data import fingerprint
from anomclip.data.dataset import load_index
from anomclip.engine.features import FeatureCache, extract_features
from anomclip.engine.loading import build_model
from anomclip.engine.run_table import run_table
from anomclip.engine.runner import DataSpec, run_experiment
from anomclip.recipes import smoke


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A small synthetic benchmark (4 normal, 4 anomalous images per category): what the run store's
    behaviour needs, at a third of the evaluation cost of the defaults."""
    from anomclip.data.synth import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synth"), n_normal=4, n_anomalous=4)


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


def test_on_epoch_reports_each_epoch_of_a_training_and_none_of_a_stored_run(synth, tmp_path, cache):
    train_root = bmp_copy(synth["textures"], tmp_path / "train", cls="weave")
    tr, ev = DataSpec(str(train_root), "weave"), DataSpec(str(synth["objects"]), "objects")
    seen = []
    run_experiment(smoke("official", epochs=3), tr, [ev], tmp_path / "runs", cache=cache, progress=False,
                   on_epoch=lambda e, n: seen.append((e, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    seen.clear()
    again = run_experiment(smoke("official", epochs=3), tr, [ev], tmp_path / "runs", cache=cache, progress=False,
                           on_epoch=lambda e, n: seen.append((e, n)))
    assert again.reused and seen == []


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
    with pytest.raises(AnomclipError, match=r"not enough free space .* MiB are free") as e:
        extract_features(model, samples(synth["objects"]), cache, progress=False)
    assert not [p for p in cache.root.iterdir() if p.is_dir()]  # nothing half-written is left
    assert "\n" not in str(e.value)
    # the reserve is named, and scaled to the job: a tenth of it, 1 MiB at least
    need = float(str(e.value).split("features need ")[1].split(" MiB")[0])
    reserve = float(str(e.value).split("a reserve of ")[1].split(" MiB")[0])
    assert reserve == pytest.approx(max(1.0, need / 10), abs=0.01)


def test_the_disk_margin_is_scaled_to_the_job():
    from anomclip.engine.features import disk_margin

    mib = 1 << 20
    assert disk_margin(300_000) == mib  # a 0.3 MB job keeps 1 MiB, not a hidden 64 MiB
    assert disk_margin(200 * mib) == 20 * mib
    assert disk_margin(10 << 30) == 64 * mib


def test_a_failed_reservation_is_one_line_and_leaves_no_folder(synth, cache, monkeypatch):
    import errno

    import anomclip.engine.features as features

    calls = []

    def full(fd, offset, length):
        calls.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(features.os, "posix_fallocate", full)
    with pytest.raises(AnomclipError, match="no space left on the device for the feature cache") as e:
        extract_features(build_model(smoke("official")), samples(synth["objects"]), cache, progress=False)
    assert calls and "\n" not in str(e.value)
    assert not [p for p in cache.root.iterdir() if p.is_dir()]


FILL_A_TINY_DISK = """
import shutil, sys
import anomclip.engine.features as features
from anomclip.data.dataset import load_index
from anomclip.engine.features import FeatureCache, extract_features
from anomclip.engine.loading import build_model
from anomclip.errors import AnomclipError
from anomclip.recipes import smoke

root, data = sys.argv[1], sys.argv[2]
samples = [s for v in load_index(data).values() for s in v]
model = build_model(smoke("official"))
# the free-space check is told the disk is large: only the reservation can stop the writes now
features.shutil.disk_usage = lambda p: shutil._ntuple_diskusage(10**12, 0, 10**12)
try:
    extract_features(model, samples, FeatureCache(root + "/cache"), progress=False)
except AnomclipError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.slow  # a real tiny file system, in a process of its own
def test_a_real_tiny_disk_never_ends_in_sigbus(synth, tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        proc = subprocess.run([sys.executable, "-c", FILL_A_TINY_DISK, str(mnt), str(synth["objects"])],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])  # -7 would be SIGBUS
        assert proc.stderr.count("\n") == 1 and "no space left" in proc.stderr, proc.stderr
        assert not [p for p in (mnt / "cache").iterdir() if p.is_dir()]  # no temporary folder left
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.slow  # two processes at once
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


# ------------------------------------------------------------------ stored files carry their digest
def canonical_sha256(doc: dict) -> str:
    """The documented digest (docs/run-store.md), computed here with hashlib alone."""
    body = {k: v for k, v in doc.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _zero_shot_run(synth, tmp_path, cache):
    ev = DataSpec(str(synth["objects"]), "objects")
    return run_experiment(smoke("clip"), None, [ev], tmp_path, cache=cache, progress=False)


def test_stored_files_carry_the_digest_of_their_content(synth, tmp_path, cache):
    tr, ev = DataSpec(str(synth["textures"]), "textures"), DataSpec(str(synth["objects"]), "objects")
    exp = run_experiment(smoke("official", epochs=1), tr, [ev], tmp_path, cache=cache, progress=False)
    (path,) = exp.folder.glob("eval-*.json")
    doc = json.loads(path.read_text())
    assert doc["digest"] == canonical_sha256(doc)
    run = json.loads((exp.folder / "run.json").read_text())
    assert run["digest"] == canonical_sha256(run)
    assert run["prompts_digest"] == "sha256:" + hashlib.sha256((exp.folder / "prompts.pt").read_bytes()).hexdigest()


def test_an_edited_results_file_is_recomputed_with_the_true_numbers(synth, tmp_path, cache, capsys):
    exp = _zero_shot_run(synth, tmp_path, cache)
    (path,) = exp.folder.glob("eval-*.json")
    true = json.loads(path.read_text())
    edited = json.loads(path.read_text())
    edited["mean"]["image_auroc"] = 0.999  # a hand edit, digest left as it was
    path.write_text(json.dumps(edited, indent=1))
    capsys.readouterr()
    again = _zero_shot_run(synth, tmp_path, cache)
    err = capsys.readouterr().err
    assert not again.reused and err.count("\n") == 1 and str(path) in err and "digest" in err, err
    assert again.results["objects"]["mean"]["image_auroc"] == true["mean"]["image_auroc"] != 0.999
    assert again.results["objects"]["scores"] == true["scores"]
    fixed = json.loads(path.read_text())
    assert fixed["mean"] == true["mean"] and fixed["digest"] == canonical_sha256(fixed)
    assert _zero_shot_run(synth, tmp_path, cache).reused and capsys.readouterr().err == ""  # repaired


@pytest.mark.parametrize("damage", ["truncate", "drop digest", "empty"])
def test_a_damaged_results_file_is_recomputed_not_a_dead_end(synth, tmp_path, cache, capsys, damage):
    exp = _zero_shot_run(synth, tmp_path, cache)
    (path,) = exp.folder.glob("eval-*.json")
    true = json.loads(path.read_text())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "drop digest":
        path.write_text(json.dumps({k: v for k, v in true.items() if k != "digest"}))
    else:
        path.write_bytes(b"")
    capsys.readouterr()
    again = _zero_shot_run(synth, tmp_path, cache)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "recomputed" in err, err
    assert again.results["objects"]["mean"] == true["mean"]
    assert json.loads(path.read_text())["digest"] == canonical_sha256(json.loads(path.read_text()))


def test_a_damaged_run_record_or_edited_prompts_retrain(synth, tmp_path, cache, capsys):
    tr, ev = DataSpec(str(synth["textures"]), "textures"), DataSpec(str(synth["objects"]), "objects")
    r = smoke("official", epochs=1)
    exp = run_experiment(r, tr, [ev], tmp_path, cache=cache, progress=False)
    prompts = (exp.folder / "prompts.pt").read_bytes()
    trained = torch.load(exp.folder / "prompts.pt", weights_only=True)["prompt_learner"]
    true = exp.results["objects"]["mean"]
    # prompts.pt replaced by other bytes: trained again, the same prompts (seeded), the same numbers
    (exp.folder / "prompts.pt").write_bytes(prompts[:-1] + bytes([prompts[-1] ^ 1]))
    capsys.readouterr()
    again = run_experiment(r, tr, [ev], tmp_path, cache=cache, progress=False)
    err = capsys.readouterr().err
    assert not again.reused and err.count("\n") == 1 and "prompts.pt" in err and "trained again" in err, err
    retrained = torch.load(exp.folder / "prompts.pt", weights_only=True)["prompt_learner"]
    assert retrained.keys() == trained.keys() and all(torch.equal(retrained[k], trained[k]) for k in trained)
    assert again.results["objects"]["mean"] == true
    digest = "sha256:" + hashlib.sha256((exp.folder / "prompts.pt").read_bytes()).hexdigest()
    assert json.loads((exp.folder / "run.json").read_text())["prompts_digest"] == digest
    # run.json truncated: said, retrained, served again afterwards
    run_json = exp.folder / "run.json"
    run_json.write_text(run_json.read_text()[:50])
    again = run_experiment(r, tr, [ev], tmp_path, cache=cache, progress=False)
    err = capsys.readouterr().err
    assert not again.reused and err.count("\n") == 1 and "run.json" in err, err
    assert again.results["objects"]["mean"] == true
    assert run_experiment(r, tr, [ev], tmp_path, cache=cache, progress=False).reused
    assert capsys.readouterr().err == ""
    # prompts.pt deleted: said in one line like the others, trained again, the same numbers
    (exp.folder / "prompts.pt").unlink()
    again = run_experiment(r, tr, [ev], tmp_path, cache=cache, progress=False)
    err = capsys.readouterr().err
    assert not again.reused and err.count("\n") == 1 and "prompts.pt" in err and "missing" in err, err
    assert again.results["objects"]["mean"] == true and (exp.folder / "prompts.pt").is_file()
