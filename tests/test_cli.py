"""The command line: every recipe setting is a flag, and every user mistake is one line, exit 2.

Most tests call :func:`anomclip.cli.main` in-process (fast); two run ``python -m anomclip``
to check what a user's terminal really shows. Each mistake test asserts exit code 2, exactly
one stderr line naming the culprit, no traceback, and that what was there before is intact.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomclip import AnomclipError
from anomclip.cli import build_parser, main, recipe_from_args
from anomclip.data.synth import make_synthetic
from anomclip.engine.predict import output_names
from anomclip.recipes import DESCRIPTIONS, RECIPES, Recipe, get_recipe


# ---------------------------------------------------------------- helpers and fixtures
def run(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``anomclip *argv`` run in-process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exit (usage mistakes)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(result, *needles):
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and "error:" in lines[0], err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes (what 'intact' means)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth"), n_normal=4, n_anomalous=4, size=64)


@pytest.fixture(autouse=True)
def feature_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ANOMCLIP_CACHE", str(tmp_path_factory.getbasetemp() / "cli-features"))


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    """A checkpoint of one epoch on the textures domain, made by ``anomclip train``."""
    path = tmp_path_factory.mktemp("ckpt") / "prompts.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANOMCLIP_CACHE", str(tmp_path_factory.getbasetemp() / "cli-features"))
        assert main(["train", "--data", str(synth["textures"]), "--out", str(path), "--epochs", "1"]) == 0
    return path


@pytest.fixture
def ckpt(trained, tmp_path):
    """A private copy of the trained checkpoint (tests may try to damage it)."""
    path = tmp_path / "ckpt" / "prompts.pt"
    path.parent.mkdir()
    shutil.copy(trained, path)
    return path


# ---------------------------------------------------------------- recipe flags
def test_every_recipe_field_is_a_flag_with_a_description(capsys):
    fields = [f.name for f in dataclasses.fields(Recipe)]
    assert set(fields) <= set(DESCRIPTIONS), set(fields) - set(DESCRIPTIONS)
    for command in ("train", "eval", "predict", "bench"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        for name in fields:
            flag = "--" + name.replace("_", "-")
            assert flag in out, (command, flag)
            if name != "method":  # --method names a baseline's recipe
                start = "".join(DESCRIPTIONS[name][:30].split())  # (help text is wrapped)
                assert start in "".join(out.split()), (command, name)


def test_flags_are_typed_from_the_fields():
    args = build_parser().parse_args([
        "eval", "--out", "r.json", "--layers", "6,12,0.5", "--dpam", "qq+kk+vv", "--dpam-start", "6",
        "--no-object-aware", "--object-aware", "--pretrained", "none", "--betas", "0.9,0.99", "--lam", "2",
        "--state-word", "flawed", "--prompt-depth", "5", "--no-use-dice-loss", "--sigma", "0"])
    r = recipe_from_args(args)
    assert r.layers == (6, 12, 0.5) and [type(x) for x in r.layers] == [int, int, float]
    assert r.dpam_start == 6 and type(r.dpam_start) is int
    assert r.dpam == "qq+kk+vv" and r.object_aware is True and r.use_dice_loss is False
    assert r.pretrained is None and r.betas == (0.9, 0.99) and r.lam == 2.0 and r.sigma == 0.0
    assert r.state_word == "flawed" and r.prompt_depth == 5
    assert r.backbone == "tiny-random" and r.image_size == 96  # the CLI's default backbone
    untouched = {f.name for f in dataclasses.fields(Recipe)} - {
        "layers", "dpam", "dpam_start", "object_aware", "pretrained", "betas", "lam", "state_word",
        "prompt_depth", "use_dice_loss", "sigma", "backbone", "image_size"}
    for name in untouched:  # everything else is the official recipe's
        assert getattr(r, name) == getattr(RECIPES["official"], name), name


def test_help_strings_everywhere_and_no_rest_backticks(capsys):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]
    assert set(sub.choices) >= {"synth", "prepare", "train", "eval", "predict", "bench", "recipes", "book"}
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help and action.help.strip(), (name, action.dest)
        code, out, _ = run(capsys, name, "--help")
        assert code == 0 and "`" not in out, (name, [l for l in out.splitlines() if "`" in l])
    code, out, _ = run(capsys, "--help")
    assert "`" not in out


def test_recipe_by_name_by_json_file_and_method(tmp_path, capsys):
    parse = build_parser().parse_args
    assert recipe_from_args(parse(["eval", "--out", "r", "--recipe", "paper"])).layers == (0.25, 0.5, 0.75, 1.0)
    doc = dict(get_recipe("paper").to_dict(), lam=2.5, name="mine")
    (tmp_path / "mine.json").write_text(json.dumps(doc))
    from_file = recipe_from_args(parse(["eval", "--out", "r", "--recipe", str(tmp_path / "mine.json")]))
    assert from_file.lam == 2.5 and from_file.name == "mine" and from_file.backbone == "ViT-L-14-336"
    (tmp_path / "part.json").write_text(json.dumps({"lam": 3.0, "layers": [6, 8]}))  # no backbone named
    partial = recipe_from_args(parse(["eval", "--out", "r", "--recipe", str(tmp_path / "part.json")]))
    assert partial.lam == 3.0 and partial.layers == (6, 8) and partial.backbone == "tiny-random"
    assert recipe_from_args(parse(["eval", "--out", "r", "--method", "clip"])).method == "clip"
    assert_one_line_error(run(capsys, "eval", "--out", tmp_path / "r", "--recipe", "paper", "--method", "clip"),
                          "--recipe", "--method")
    (tmp_path / "bad.json").write_text(json.dumps({"lamda": 1}))
    assert_one_line_error(run(capsys, "eval", "--out", tmp_path / "r", "--recipe", tmp_path / "bad.json"),
                          "bad.json", "lamda")
    code, out, _ = run(capsys, "recipes")
    assert code == 0 and all(name in out for name in RECIPES)
    code, out, _ = run(capsys, "recipes", "paper")
    assert code == 0 and json.loads(out) == json.loads(json.dumps(get_recipe("paper").to_dict()))
    assert_one_line_error(run(capsys, "recipes", "nope"), "nope")


# ---------------------------------------------------------------- output paths
def test_out_that_is_a_folder_or_a_file_of_the_wrong_kind(synth, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.json").write_text("{}")
    before = snapshot(tmp_path)
    assert_one_line_error(run(capsys, "eval", "--data", synth["objects"], "--out", folder), str(folder))
    assert_one_line_error(run(capsys, "train", "--data", synth["textures"], "--out", folder), str(folder))
    file = folder / "keep.json"
    img = sorted(synth["objects"].rglob("*.png"))[0]
    assert_one_line_error(run(capsys, "predict", "--out", file, img), str(file))
    assert snapshot(tmp_path) == before


@pytest.fixture
def deny_writes(monkeypatch):
    """Make a folder refuse new files (as a read-only folder does for a non-root user).

    Root ignores permission bits, so ``os.open`` is wrapped: creating a file directly inside
    the folder fails with EACCES, exactly as the kernel answers a read-only folder.
    """
    real_open = os.open

    def install(folder: Path):
        folder = folder.resolve()

        def guarded(path, flags, *a, **k):
            if flags & os.O_CREAT and Path(os.path.abspath(path)).parent == folder:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", guarded)
        if os.geteuid() != 0:  # a real read-only folder as well
            folder.chmod(0o555)

    yield install


def test_out_in_a_read_only_folder_fails_before_any_work(synth, tmp_path, capsys, deny_writes, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "old.json").write_text('{"old": 1}')
    deny_writes(ro)
    monkeypatch.setattr("anomclip.engine.loading.build_model", lambda *a, **k: pytest.fail("work started"))
    img = sorted(synth["objects"].rglob("*.png"))[0]
    for argv in (["eval", "--data", synth["objects"], "--out", ro / "r.json"],
                 ["train", "--data", synth["textures"], "--out", ro / "p.pt"],
                 ["predict", "--out", ro, img],
                 ["bench", "--out", ro / "bench.json"]):
        assert_one_line_error(run(capsys, *argv), str(ro))
    assert sorted(p.name for p in ro.iterdir()) == ["old.json"] and (ro / "old.json").read_text() == '{"old": 1}'


@pytest.fixture
def full_disk(monkeypatch):
    """Make writes of a file's temporary copy fail with ENOSPC (its data goes to /dev/full)."""
    real_open = os.open

    def install(target: Path):
        prefix = f".{target.name}."

        def to_dev_full(path, flags, *a, **k):
            if flags & os.O_CREAT and Path(path).name.startswith(prefix):
                fd = real_open(path, flags, *a, **k)  # the file exists (and is removed on failure)…
                os.close(fd)
                return real_open("/dev/full", os.O_WRONLY)  # …but its bytes go nowhere
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", to_dev_full)

    yield install


def test_full_disk_is_one_line_and_the_previous_file_is_kept(synth, ckpt, tmp_path, capsys, full_disk):
    out = tmp_path / "r.json"
    out.write_text('{"previous": true}')
    full_disk(out)
    assert_one_line_error(run(capsys, "eval", "--data", synth["objects"], "--checkpoint", ckpt, "--out", out),
                          str(out), "no space")
    assert out.read_text() == '{"previous": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "r.json"]  # no temporary file left
    before = ckpt.read_bytes()
    full_disk(ckpt)
    assert_one_line_error(run(capsys, "train", "--data", synth["textures"], "--out", ckpt, "--force"),
                          str(ckpt), "no space")
    assert ckpt.read_bytes() == before


# ---------------------------------------------------------------- numbers and devices
@pytest.mark.parametrize("command,extra,culprit", [
    ("eval", ["--image-size", "0"], "image_size"),
    ("eval", ["--image-size", "100"], "image_size 100"),  # not a multiple of the tiny patch size 8
    ("eval", ["--image-size", "abc"], "--image-size"),
    ("train", ["--batch-size", "0"], "batch_size"),
    ("train", ["--epochs", "0"], "epochs"),
    ("train", ["--epochs", "-3"], "epochs"),
    ("train", ["--lr", "nan"], "lr"),
    ("train", ["--lr", "inf"], "lr"),
    ("train", ["--layers", "0"], "layers"),
    ("predict", ["--threshold", "1.5"], "--threshold"),
    ("predict", ["--threshold", "-0.1"], "--threshold"),
    ("eval", ["--device", "gpu"], "gpu"),
    ("eval", ["--device", "cuda:7"], "cuda:7"),
    ("train", ["--method", "clip", "--epochs", "1"], "nothing to train"),  # hand-written prompts only
    ("bench", ["--repeats", "0"], "--repeats"),
    ("bench", ["--batch-sizes", "4,0"], "--batch-sizes"),
])
def test_bad_numbers_and_devices(synth, tmp_path, capsys, command, extra, culprit):
    out = {"eval": tmp_path / "r.json", "train": tmp_path / "p.pt", "predict": tmp_path / "pred",
           "bench": tmp_path / "b.json"}[command]
    data = [] if command in ("predict", "bench") else ["--data", synth["objects"]]
    images = [sorted(synth["objects"].rglob("*.png"))[0]] if command == "predict" else []
    assert_one_line_error(run(capsys, command, *data, "--out", out, *extra, *images), culprit)
    assert not out.exists()


def test_the_api_gets_the_same_checks():
    for bad in (dict(image_size=0), dict(batch_size=0), dict(epochs=-1), dict(lr=float("nan")),
                dict(lr=0.0), dict(temperature=float("inf")), dict(sigma=-1.0), dict(layers=(1.5,))):
        with pytest.raises(AnomclipError, match=next(iter(bad)).split("_")[0]):
            get_recipe("official").with_(**bad)


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_records_recipe_and_training_data(trained, synth):
    from anomclip.data.dataset import load_index
    from anomclip.data.fingerprint import dataset_fingerprint

    state = torch.load(trained, map_location="cpu", weights_only=True)
    samples = [s for v in load_index(synth["textures"]).values() for s in v]
    assert state["train_data"]["fingerprint"] == dataset_fingerprint(samples)
    assert state["train_data"]["images"] == len(samples)
    assert state["recipe"]["epochs"] == 1 and state["recipe"]["backbone"] == "tiny-random"


def test_train_never_overwrites_silently(synth, ckpt, capsys):
    before = ckpt.read_bytes()
    assert_one_line_error(run(capsys, "train", "--data", synth["textures"], "--out", ckpt), str(ckpt), "--force")
    assert ckpt.read_bytes() == before
    code, _, err = run(capsys, "train", "--data", synth["textures"], "--out", ckpt, "--force", "--seed", "3",
                       "--epochs", "1")
    assert code == 0, err
    assert ckpt.read_bytes() != before


def test_resume_refuses_another_recipe_or_other_data(synth, ckpt, capsys):
    before = ckpt.read_bytes()
    train = ["train", "--out", ckpt, "--resume"]
    assert_one_line_error(run(capsys, *train, "--data", synth["textures"], "--lr", "0.01"), str(ckpt), "lr")
    assert_one_line_error(run(capsys, *train, "--data", synth["textures"], "--recipe", "paper"), str(ckpt), "layers")
    assert_one_line_error(run(capsys, *train, "--data", synth["objects"]), str(ckpt), "other data")
    assert ckpt.read_bytes() == before
    code, out, err = run(capsys, *train, "--data", synth["textures"], "--epochs", "2")  # more epochs: fine
    assert code == 0, err
    assert [h["epoch"] for h in torch.load(ckpt, weights_only=True)["history"]] == [1, 2]


def test_recipe_flag_with_a_checkpoint_of_another_recipe(synth, ckpt, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert_one_line_error(run(capsys, "eval", "--data", synth["objects"], "--checkpoint", ckpt, "--recipe", "paper",
                              "--out", out), str(ckpt), "paper", "layers")
    assert_one_line_error(run(capsys, "predict", "--checkpoint", ckpt, "--method", "clip", "--out", tmp_path / "p",
                              sorted(synth["objects"].rglob("*.png"))[0]), str(ckpt))
    assert not out.exists() and not (tmp_path / "p").exists()


# ---------------------------------------------------------------- predict's file names
def test_output_names_mirror_folders_and_keep_suffixes_apart(tmp_path):
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    assert output_names([a, b]) == ["a/x", "b/x"]
    assert output_names([tmp_path / "x.png", tmp_path / "x.jpg"]) == ["x_png", "x_jpg"]
    assert output_names([tmp_path / "x.png", tmp_path / "y.png"]) == ["x", "y"]


def test_predict_keeps_both_images_with_the_same_name(synth, ckpt, tmp_path, capsys):
    sources = sorted(synth["objects"].rglob("test/hole/*.png"))[:2]
    inputs = []
    for folder, src in zip(("a", "b"), sources):
        (tmp_path / "in" / folder).mkdir(parents=True)
        inputs.append(Path(shutil.copy(src, tmp_path / "in" / folder / "same.png")))
    out = tmp_path / "out"
    code, _, err = run(capsys, "predict", "--checkpoint", ckpt, "--out", out, "--threshold", "0.5", *inputs)
    assert code == 0, err
    rows = json.loads((out / "scores.json").read_text())["predictions"]
    assert len({r["overlay"] for r in rows}) == 2 and len({r["mask"] for r in rows}) == 2
    over_a, over_b = (np.asarray(Image.open(out / d / "same_overlay.png")) for d in ("a", "b"))
    assert over_a.shape == over_b.shape and not np.array_equal(over_a, over_b)  # two images, two overlays


# ---------------------------------------------------------------- files get the user's umask
def test_results_and_checkpoints_follow_the_umask(tmp_path, tiny_clip):
    from anomclip.io import atomic_write, atomic_write_text
    from anomclip.model.anomalyclip import AnomalyCLIP
    from anomclip.recipes import smoke

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
        atomic_write(tmp_path / "b.bin", b"\x00")
        AnomalyCLIP(*tiny_clip, smoke("official")).save_prompts(tmp_path / "p.pt")
    finally:
        os.umask(old)
    for name in ("r.json", "b.bin", "p.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~0o027, name  # 0o640, not mkstemp's 0o600


# ---------------------------------------------------------------- warnings and the book command
def test_third_party_warnings_do_not_spill_into_an_error(tmp_path, capsys, monkeypatch):
    def chatty(device):
        warnings.warn("torch.load: weights_only default will change", FutureWarning)
        warnings.warn("some library: QuickGELU mismatch", UserWarning)
        raise AnomclipError("device 'tpu' is not available")

    monkeypatch.setattr("anomclip.engine.loading.resolve_device", chatty)
    assert_one_line_error(run(capsys, "eval", "--out", tmp_path / "r.json"), "tpu")


def test_book_command_runs_execute_then_html(tmp_path, capsys, monkeypatch):
    from anomclip.book import build as book

    calls = []
    monkeypatch.setattr(book, "execute_all", lambda *a, **k: calls.append(("execute", a, k)))
    monkeypatch.setattr(book, "build_html", lambda *a, **k: calls.append(("html", a, k)))
    code, _, err = run(capsys, "book", "--profile", "paper", "--data-root", tmp_path, "--device", "cpu", "--force")
    assert code == 0, err
    assert calls == [("execute", ("paper", str(tmp_path), "cpu", True, None), {}), ("html", (), {"force": True})]  # --force renders again too

    def fail(*a, **k):
        raise book.ChapterError("04_zero_shot", "ValueError: boom")

    monkeypatch.setattr(book, "execute_all", fail)
    code, _, err = run(capsys, "book")
    assert code == 1 and err.count("\n") == 1 and "04_zero_shot" in err


# ---------------------------------------------------------------- what a terminal shows (subprocess)
def cli(*args):
    return subprocess.run([sys.executable, "-m", "anomclip", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # two processes that import torch and open_clip
def test_a_real_process_prints_one_line(tmp_path):
    proc = cli("eval", "--out", tmp_path, "--lr", "nan")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    proc = cli("train", "--out", tmp_path / "p.pt", "--image-size", "abc")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--image-size" in proc.stderr, proc.stderr
    assert not (tmp_path / "p.pt").exists()


def test_pretrained_accepts_an_openai_style_torchscript_file(synth, tmp_path, capsys):
    """README: pass OpenAI's ViT-L-14-336px.pt (a TorchScript archive) as --pretrained."""
    from test_model import random_tiny_state, torchscript_archive

    archive = tmp_path / "ViT-tiny.pt"
    torchscript_archive(random_tiny_state(), archive)
    out = tmp_path / "r.json"
    code, _, err = run(capsys, "eval", "--data", synth["objects"], "--categories", "disc", "--pretrained", archive,
                       "--out", out)
    assert code == 0, err
    assert "ViT-tiny.pt" in json.dumps(json.loads(out.read_text())["provenance"])


# ---------------------------------------------------------------- epochs per tuning set
def test_vand_trains_the_epochs_its_script_sets_for_the_folder_it_tunes_on(synth, tmp_path, capsys):
    """VAND's train.sh: 15 epochs tuned on VisA, 3 on MVTec AD; a folder named after the dataset
    picks its entry and says so; --epochs and any other folder keep the recipe's epochs."""
    visa = tmp_path / "visa"
    shutil.copytree(synth["textures"], visa)
    ran = {}
    for name, argv in (("visa", ["--data", visa]), ("visa explicit", ["--data", visa, "--epochs", "2"]),
                       ("other", ["--data", synth["textures"]])):
        out = tmp_path / f"{name}.pt"
        # one category: a quarter of the steps per epoch, the same epochs
        code, stdout, err = run(capsys, "train", "--recipe", "vand", *argv, "--categories", "dots", "--out", out)
        assert code == 0, err
        ran[name] = (len(torch.load(out, weights_only=False)["history"]), stdout)
    assert ran["visa"][0] == 15 and "15 epochs: recipe 'vand' sets them for tuning on visa" in ran["visa"][1]
    assert ran["visa explicit"][0] == 2 and "sets them" not in ran["visa explicit"][1]
    assert ran["other"][0] == get_recipe("vand").epochs == 3 and "sets them" not in ran["other"][1]


def test_a_dataset_is_known_by_its_table_name_key_folder_or_alias_in_any_case():
    from anomclip.data.catalogue import DATASETS, named
    from anomclip.engine.runner import tuned_for

    for d in DATASETS:
        for n in (d.name, d.key, d.folder.upper(), *d.aliases):
            assert named(n) is d, n
    assert named("textures") is None
    vand = get_recipe("vand")
    assert [tuned_for(vand, n).epochs for n in ("VisA", "visa", "MVTec AD", "mvtec", "textures")] == [15, 15, 3, 3, 3]
