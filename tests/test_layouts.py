"""The release layouts of the paper's 17 datasets: detection, reading, pairing, prepare.

Each stand-in (anomclip.data.standins) records what it wrote — every image with its label and the
mask file it was given, or none — and the readers must find exactly that: the traps of the
real releases (a missing mask, Thumbs.db and a read-me, upper-case extensions, mask stems with
a suffix, class-id masks, lung masks beside COVID images, an unlabelled pred/ folder) are in
the stand-ins. The pairing is also checked on the pixels: a mask's foreground is where its
image was painted with a defect.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from anomclip import data
from anomclip.cli import main
from anomclip.data import layouts, standins
from anomclip.data.catalogue import DATASETS as PAPER_TABLE
from anomclip.errors import AnomclipError

KEYS = tuple(standins.WRITERS)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins")
    return {key: standins.write_standin(key, root / key) for key in KEYS}


def test_every_paper_dataset_has_a_layout_and_a_standin():
    assert {d.key for d in PAPER_TABLE} == set(KEYS) <= set(layouts.LAYOUT_NAMES)
    assert len(PAPER_TABLE) == 17


@pytest.mark.parametrize("key", KEYS)
def test_reader_finds_exactly_what_the_standin_wrote(written, key, tmp_path):
    s = written[key]
    assert layouts.detect(s.root).key == key
    prepared = layouts.prepare_dataset(s.root)
    got = {cls: {it["img_path"]: (it["anomaly"], it["mask_path"]) for it in items}
           for cls, items in prepared.meta["test"].items()}
    assert got == s.expected
    # what was written: counts per category, and no stray file (Thumbs.db, readme) indexed
    for cls, items in s.expected.items():
        summary = next(line for line in prepared.summary() if line.strip().startswith(f"{cls}:"))
        normal = sum(1 for a, _ in items.values() if a == 0)
        masks = sum(1 for _, m in items.values() if m)
        assert summary.strip() == f"{cls}: {normal} normal, {len(items) - normal} anomalous, {masks} masks"
    assert all(not p.endswith((".db", ".txt", ".json")) for c in got.values() for p in c)
    assert json.loads((s.root / "meta.json").read_text())["synthetic"] is True
    assert data.is_synthetic(s.root)


@pytest.mark.parametrize("key", KEYS)
def test_masks_are_paired_with_their_own_image(written, key):
    """Masks pair by stem: a mask's foreground covers the defect painted in its own image, more
    than the other masks of the dataset do."""
    s = written[key]
    if not (s.root / "meta.json").is_file():
        layouts.prepare_dataset(s.root)
    pairs = [(img, m) for items in s.expected.values() for img, (_, m) in items.items() if m]
    images = {img: np.asarray(data.read_image(s.root / img), float) for img, _ in pairs}
    # JPEG masks (Kvasir, TN3K) ring around their edges; > 0 (the authors' rule, kept by
    # read_mask) counts the ringing as anomalous, so this pixel check uses the middle grey
    masks = {img: (np.asarray(Image.open(s.root / m).convert("L")) > 127 if m.lower().endswith(".jpg")
                   else data.read_mask(s.root / m)) for img, m in pairs}

    def gap(img: np.ndarray, mask: np.ndarray) -> float:
        """Distance between the mean colour under ``mask`` and around it: the defects are drawn
        near-black, near-white or saturated on muted images."""
        return float(np.linalg.norm(img[mask].mean(axis=0) - img[~mask].mean(axis=0)))

    for img_rel, img in images.items():
        own = masks[img_rel]
        assert own.shape == img.shape[:2] and own.any(), img_rel
        others = [gap(img, m) for k, m in masks.items()
                  if m.shape == own.shape and m.any() and not np.array_equal(m, own)]
        # its own mask marks its defect; a neighbour's mask (what sort-order pairing gives
        # after a missing file) mostly covers normal pixels
        assert gap(img, own) > 20 and (not others or gap(img, own) > np.median(others)), (
            img_rel, gap(img, own), others)


def test_forced_layout_and_unknown_layout(written, tmp_path):
    s = written["br35h"]
    prepared = layouts.prepare_dataset(s.root, "brainmri")  # same structure, forced title
    assert prepared.layout == "brainmri" and prepared.title == "BrainMRI"
    with pytest.raises(AnomclipError, match="unknown layout 'kitti'"):
        layouts.prepare_dataset(s.root, "kitti")
    with pytest.raises(AnomclipError, match="not an MVTec AD layout"):
        layouts.prepare_dataset(written["isic"].root, "mvtec")
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(AnomclipError, match="matches none of the known layouts"):
        layouts.detect(tmp_path / "empty")


def test_shared_structures_are_told_apart_by_folder_name(written, tmp_path):
    for key in ("colondb", "kvasir", "endo"):
        assert layouts.detect(written[key].root).key == key
    copy = tmp_path / "mpdd"
    standins.write_standin("mvtec", copy)
    assert layouts.detect(copy).key == "mpdd"
    other = tmp_path / "something"
    standins.write_standin("kvasir", other)
    assert layouts.detect(other).key == "colondb"  # first of the polyp sets; read the same way


def test_dagm_labels_txt_is_authoritative(tmp_path):
    """Labels.txt says image 4 of Class1 is defective though its label file is missing: kept
    anomalous without a mask; without Labels.txt the label files decide."""
    s = standins.write_standin("dagm", tmp_path / "dagm")
    meta = layouts.prepare_dataset(s.root, "dagm").meta["test"]["Class1"]
    assert [(it["img_path"].split("/")[-1], it["anomaly"], bool(it["mask_path"])) for it in meta] == [
        ("0000.PNG", 0, False), ("0001.PNG", 0, False), ("0002.PNG", 1, True), ("0003.PNG", 1, True),
        ("0004.PNG", 1, False)]
    (s.root / "Class1" / "Test" / "Label" / "Labels.txt").unlink()
    meta = layouts.read_layout(s.root, "dagm")[1]["test"]["Class1"]
    assert [it["anomaly"] for it in meta] == [0, 0, 1, 1, 0]
    (s.root / "Class2" / "Test" / "Label" / "Labels.txt").write_text("1\n1\tdefect\t0000.PNG\t0\t0\n")
    with pytest.raises(AnomclipError, match="Labels.txt line 2"):
        layouts.read_layout(s.root, "dagm")


def test_sdd_halves_follow_their_label(written):
    """A label with a defect in the top half only: the top half is anomalous, the bottom normal."""
    s = written["sdd"]
    layouts.prepare_dataset(s.root)
    top = s.root / "halves/sdd/test/defect/kos01_Part1_top.png"
    bottom = s.root / "halves/sdd/test/good/kos01_Part1_bottom.png"
    assert top.is_file() and bottom.is_file()
    assert Image.open(top).size == (48, 60)
    mask = data.read_mask(s.root / "halves/sdd/ground_truth/defect/kos01_Part1_top_mask.png")
    expected = np.zeros((60, 48), bool)
    expected[20:34, 10:30] = True
    np.testing.assert_array_equal(mask, expected)


def test_visa_class_id_masks_and_train_rows(written):
    s = written["visa"]
    meta = layouts.prepare_dataset(s.root).meta
    assert [it["img_path"] for it in meta["train"]["candle"]] == ["candle/Data/Images/Normal/0009.JPG"]
    mask_rel = meta["test"]["pcb1"][-1]["mask_path"]
    raw = np.asarray(Image.open(s.root / mask_rel))
    assert set(np.unique(raw)) == {0, 2}  # class id 2, not 255
    assert data.read_mask(s.root / mask_rel).sum() == (raw > 0).sum()


def test_cli_prepare_prints_what_it_found(written, capsys):
    s = written["covid"]
    assert main(["prepare", str(s.root), "--layout", "covid"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("COVID-19 (covid)")
    assert "  chest: 3 normal, 3 anomalous, 0 masks" in out
    assert "  pixel metrics: not defined (no masks)" in out
    assert any("ignored class folder(s): Viral Pneumonia" in line for line in out)
    with pytest.raises(SystemExit) as exc:  # argparse refuses an unknown choice
        main(["prepare", str(s.root), "--layout", "nope"])
    assert exc.value.code == 2


def test_cli_synth_writes_a_standin(tmp_path, capsys):
    assert main(["synth", "--layout", "isic", "--out", str(tmp_path / "isic")]) == 0
    assert (tmp_path / "isic" / "ISBI2016_ISIC_Part1_Test_Data").is_dir()
    assert main(["synth", "--layout", "isic", "--out", str(tmp_path / "isic")]) == 0  # replaces its own
    assert main(["synth", "--layout", "kitti", "--out", str(tmp_path / "k")]) == 2
    assert "unknown --layout 'kitti'" in capsys.readouterr().err
    real = tmp_path / "real"
    (real / "bottle").mkdir(parents=True)
    assert main(["synth", "--layout", "mvtec", "--out", str(real)]) == 2
    assert "not an earlier stand-in" in capsys.readouterr().err and (real / "bottle").is_dir()
