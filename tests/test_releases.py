"""The releases of the paper's 17 datasets (anomclip.data.releases): detection, reading, pairing, prepare.

Each mock release (anomclip.data.mock_releases) records what it wrote — every image with its label
and the mask file it was given, or none — and the readers must find exactly that: the traps of
the real releases (a missing mask, Thumbs.db and a read-me, upper-case extensions, mask stems
with a suffix, class-id masks, lung masks beside COVID images, an unlabelled pred/ folder) are
in the mock releases. The pairing is also checked on the pixels: a mask's foreground is where
its image was painted with a defect.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from anomclip import data
from anomclip.cli import main
from anomclip.data import mock_releases, releases
from anomclip.data.catalogue import DATASETS as PAPER_TABLE
from anomclip.errors import AnomclipError

KEYS = tuple(mock_releases.WRITERS)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("mock_releases")
    return {key: mock_releases.write_mock_release(key, root / key) for key in KEYS}


def test_every_paper_dataset_has_a_layout_and_a_mock_release():
    assert {d.key for d in PAPER_TABLE} == set(KEYS) <= set(releases.LAYOUT_NAMES)
    assert len(PAPER_TABLE) == 17


@pytest.mark.parametrize("key", KEYS)
def test_reader_finds_exactly_what_the_mock_release_wrote(written, key, tmp_path):
    s = written[key]
    assert releases.detect(s.root).key == key
    prepared = releases.prepare(s.root)
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
        releases.prepare(s.root)
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
    prepared = releases.prepare(s.root, "brainmri")  # same structure, forced title
    assert prepared.layout == "brainmri" and prepared.title == "BrainMRI"
    with pytest.raises(AnomclipError, match="unknown layout 'kitti'"):
        releases.prepare(s.root, "kitti")
    with pytest.raises(AnomclipError, match="not an MVTec AD layout"):
        releases.prepare(written["isic"].root, "mvtec")
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(AnomclipError, match="matches none of the known layouts"):
        releases.detect(tmp_path / "empty")


def test_shared_structures_are_told_apart_by_folder_name(written, tmp_path):
    for key in ("colondb", "kvasir", "endo"):
        assert releases.detect(written[key].root).key == key
    copy = tmp_path / "mpdd"
    mock_releases.write_mock_release("mvtec", copy)
    assert releases.detect(copy).key == "mpdd"
    other = tmp_path / "something"
    mock_releases.write_mock_release("kvasir", other)
    assert releases.detect(other).key == "kvasir"  # named by its wrapper folder, Kvasir-SEG
    (other / "Kvasir-SEG").rename(other / "data")
    assert releases.detect(other).key == "colondb"  # no name on the way: first of the polyp sets


def test_dagm_labels_txt_is_authoritative(tmp_path):
    """Labels.txt says image 4 of Class1 is defective though its label file is missing: kept
    anomalous without a mask; without Labels.txt the label files decide."""
    s = mock_releases.write_mock_release("dagm", tmp_path / "dagm")
    meta = releases.prepare(s.root, "dagm").meta["test"]["Class1"]
    assert [(it["img_path"].split("/")[-1], it["anomaly"], bool(it["mask_path"])) for it in meta] == [
        ("0000.PNG", 0, False), ("0001.PNG", 0, False), ("0002.PNG", 1, True), ("0003.PNG", 1, True),
        ("0004.PNG", 1, False)]
    (s.root / mock_releases.DAGM_WRAPPER / "Class1" / "Test" / "Label" / "Labels.txt").unlink()
    meta = releases.read_layout(s.root, "dagm")[1]["test"]["Class1"]
    assert [it["anomaly"] for it in meta] == [0, 0, 1, 1, 0]
    labels = s.root / mock_releases.DAGM_WRAPPER / "Class2" / "Test" / "Label" / "Labels.txt"
    labels.write_text("1\n1\tdefect\t0000.PNG\t0\t0\n")
    with pytest.raises(AnomclipError, match="Labels.txt line 2"):
        releases.read_layout(s.root, "dagm")


def test_sdd_halves_follow_their_label(written):
    """A label with a defect in the top half only: the top half is anomalous, the bottom normal."""
    s = written["sdd"]
    releases.prepare(s.root)
    halves = s.root / "KolektorSDD/halves/sdd"
    top = halves / "test/defect/kos01_Part1_top.png"
    bottom = [halves / f"{split}/good/kos01_Part1_bottom.png" for split in ("train", "test")]
    assert top.is_file() and sum(p.is_file() for p in bottom) == 1
    assert Image.open(top).size == (48, 60)
    mask = data.read_mask(halves / "ground_truth/defect/kos01_Part1_top_mask.png")
    expected = np.zeros((60, 48), bool)
    expected[20:34, 10:30] = True
    np.testing.assert_array_equal(mask, expected)


def test_visa_class_id_masks_and_train_rows(written):
    s = written["visa"]
    meta = releases.prepare(s.root).meta
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
    assert any("ignored class folder: Viral Pneumonia" in line for line in out)
    assert any(line.startswith("  note: read COVID-19 in the wrapper folder COVID-19_Radiography_Dataset/")
               for line in out)
    assert ("  Table 6: COVID-19's test split has 3 normal + 3 anomalous, the paper's Table 6 has 1341 + 219 "
            "(a synthetic mock release, small on purpose)") in out
    with pytest.raises(SystemExit) as exc:  # argparse refuses an unknown choice
        main(["prepare", str(s.root), "--layout", "nope"])
    assert exc.value.code == 2


def test_cli_synth_writes_a_mock_release(tmp_path, capsys):
    assert main(["synth", "--layout", "isic", "--out", str(tmp_path / "isic")]) == 0
    assert (tmp_path / "isic" / "ISBI2016_ISIC_Part1_Test_Data").is_dir()
    assert main(["synth", "--layout", "isic", "--out", str(tmp_path / "isic")]) == 0  # replaces its own
    assert main(["synth", "--layout", "kitti", "--out", str(tmp_path / "k")]) == 2
    assert "unknown --layout 'kitti'" in capsys.readouterr().err
    real = tmp_path / "real"
    (real / "bottle").mkdir(parents=True)
    assert main(["synth", "--layout", "mvtec", "--out", str(real)]) == 2
    assert "not an earlier mock release" in capsys.readouterr().err and (real / "bottle").is_dir()


# --------------------------------------------------------------------------- wrapper folders

#: How each archive unpacks below the folder the user names (docs/datasets.md).
WRAPPERS = {
    "btad": "BTech_Dataset_transformed",
    "dagm": "DAGM_KaggleUpload",
    "tn3k": "Thyroid Dataset/tn3k",
    "dtd": "DTD-Synthetic",
    "colondb": "TestDataset/CVC-ColonDB",
    "sdd": "KolektorSDD",
    "kvasir": "Kvasir-SEG",
    "endo": "EndoTect_2020_Segmentation_Test_Dataset",
    "brainmri": "brain_tumor_dataset",
    "covid": "COVID-19_Radiography_Dataset",
}


def _samples(root):
    return {cls: [(s.img_path, s.mask_path, s.anomaly) for s in samples]
            for cls, samples in data.load_index(root).items()}


@pytest.mark.parametrize("key", sorted(WRAPPERS))
def test_a_mock_release_is_written_with_its_wrapper_and_read_through_it(key, tmp_path):
    """The mock release holds only its wrapper folder(s), as the archive unpacks; detection goes
    through them, says which folder it used, and meta.json at the root lists paths under it."""
    s = mock_releases.write_mock_release(key, tmp_path / key)
    wrapper = WRAPPERS[key]
    first = wrapper.split("/")[0]
    assert sorted(p.name for p in s.root.iterdir() if not p.name.startswith(".")) == [first]
    assert all(img.startswith(wrapper + "/") for items in s.expected.values() for img in items)
    without_meta = _samples(s.root)  # read on the fly (no meta.json yet), paths from the root
    prepared = releases.prepare(s.root)
    assert prepared.layout == key and prepared.data_dir == s.root / wrapper
    assert prepared.path == s.root / "meta.json"
    assert f"  note: read {prepared.title} in the wrapper folder {wrapper}/ (meta.json paths start with it)" \
        in prepared.summary()
    got = {cls: {it["img_path"]: (it["anomaly"], it["mask_path"]) for it in items}
           for cls, items in prepared.meta["test"].items()}
    assert got == s.expected
    assert _samples(s.root) == without_meta
    assert {cls: {p.relative_to(s.root.resolve()).as_posix() for p, _, _ in v}
            for cls, v in without_meta.items()} == {cls: set(items) for cls, items in s.expected.items()}
    forced = releases.prepare(s.root, key)  # a forced layout goes through the wrappers too
    assert forced.data_dir == s.root / wrapper and forced.meta["test"] == prepared.meta["test"]


@pytest.mark.parametrize("key", KEYS)
def test_every_reader_looks_through_one_more_wrapper(key, tmp_path):
    """Any mock release unpacked one folder deeper ("download/") reads the same, every path
    prefixed with the extra folder; the folder used is named."""
    root = tmp_path / key
    s = mock_releases.write_mock_release(key, root / "download")
    (root / "download" / mock_releases.SYNTHETIC_MARKER).rename(root / mock_releases.SYNTHETIC_MARKER)
    prepared = releases.prepare(root)
    assert prepared.layout == key
    assert prepared.data_dir == root / "download" / WRAPPERS.get(key, "")
    got = {cls: {it["img_path"]: (it["anomaly"], it["mask_path"]) for it in items}
           for cls, items in prepared.meta["test"].items()}
    assert got == {cls: {f"download/{img}": (a, f"download/{m}" if m else "") for img, (a, m) in items.items()}
                   for cls, items in s.expected.items()}
    wrapper = ("download/" + WRAPPERS[key]) if key in WRAPPERS else "download"
    assert any(n.startswith(f"read {prepared.title} in the wrapper folder {wrapper}/") for n in prepared.notes)
    assert json.loads((root / "meta.json").read_text())["synthetic"] is True


def test_wrappers_are_looked_through_three_deep_and_no_deeper(tmp_path):
    s = mock_releases.write_mock_release("mvtec", tmp_path / "w" / "a" / "b" / "c")
    assert releases.locate(tmp_path / "w") == (releases.LAYOUTS["mvtec"], s.root)
    mock_releases.write_mock_release("mvtec", tmp_path / "deep" / "a" / "b" / "c" / "d")
    with pytest.raises(AnomclipError, match=r"matches none of the known layouts \(looked through a/b/c/\)"):
        releases.detect(tmp_path / "deep")
    # a folder beside the wrapped one makes it no wrapper; macOS's __MACOSX/ does not count
    (tmp_path / "w" / "a" / "__MACOSX").mkdir()
    assert releases.locate(tmp_path / "w")[1] == s.root
    (tmp_path / "w" / "a" / "other").mkdir()
    with pytest.raises(AnomclipError, match="matches none of the known layouts"):
        releases.detect(tmp_path / "w")


def test_isic_doubly_nested_and_flat(tmp_path):
    """ISIC's zips unzipped into folders named after them (X/X/): the reader goes down and says
    so; the flat form reads the same images."""
    s = mock_releases.write_mock_release("isic", tmp_path / "isic")
    data_dir = "ISBI2016_ISIC_Part1_Test_Data"
    assert all(img.startswith(f"{data_dir}/{data_dir}/") for img in s.expected["skin"])
    prepared = releases.prepare(s.root)
    assert f"{data_dir}/ is a wrapper folder: read {data_dir}/{data_dir}/" in prepared.notes
    assert {it["img_path"] for it in prepared.meta["test"]["skin"]} == set(s.expected["skin"])
    for name in (data_dir, "ISBI2016_ISIC_Part1_Test_GroundTruth"):  # flatten X/X/ to X/
        (s.root / name).rename(s.root / "tmp")
        (s.root / "tmp" / name).rename(s.root / name)
        (s.root / "tmp").rmdir()
    flat = releases.prepare(s.root, "isic")
    assert {it["img_path"] for it in flat.meta["test"]["skin"]} == {
        img.replace(f"{data_dir}/{data_dir}/", f"{data_dir}/") for img in s.expected["skin"]}
    assert sum(bool(it["mask_path"]) for it in flat.meta["test"]["skin"]) == sum(
        bool(m) for _, m in s.expected["skin"].values())
    assert not any("wrapper" in n for n in flat.notes)


# --------------------------------------------------------------------------- Table 6 counts


@pytest.mark.parametrize("key", KEYS)
def test_counts_that_differ_from_table6_are_said_in_one_line(written, key):
    """A mock release is small: its counts differ from Table 6 and prepare says so, with both
    figures, as a line of the summary (never an error)."""
    s = written[key]
    prepared = releases.prepare(s.root, key)
    d = next(d for d in PAPER_TABLE if d.key == key)
    normal = sum(1 for items in s.expected.values() for a, _ in items.values() if a == 0)
    bad = sum(1 for items in s.expected.values() for a, _ in items.values() if a == 1)
    unit = " halves" if key == "sdd" else ""
    line = (f"{d.name}'s test split has {normal} normal + {bad} anomalous{unit}, the paper's Table 6 has "
            f"{d.normal} + {d.anomalous} (a synthetic mock release, small on purpose)")
    assert prepared.table6 == line and f"  Table 6: {line}" in prepared.summary()


def test_covid_release_counts_are_compared_with_the_first_release(tmp_path):
    """A real (non-synthetic) copy whose counts differ: the line gives both figures and why."""
    s = mock_releases.write_mock_release("covid", tmp_path / "covid")
    (s.root / mock_releases.SYNTHETIC_MARKER).unlink()
    prepared = releases.prepare(s.root)
    assert prepared.table6.startswith(
        "COVID-19's test split has 3 normal + 3 anomalous, the paper's Table 6 has 1341 + 219: Table 6 counts")
    assert "first release" in prepared.table6 and "\n" not in prepared.table6
    kept = releases.prepare(s.root)  # an existing meta.json, in a folder named covid
    assert kept.layout == "meta" and kept.table6 == prepared.table6
    elsewhere = tmp_path / "chest"
    s.root.rename(elsewhere)
    assert releases.prepare(elsewhere).table6 == ""  # no catalogue dataset named like it


def test_counts_equal_to_table6_say_nothing(tmp_path):
    """HeadCT with exactly Table 6's 100 + 100 test images: no Table 6 line."""
    root = tmp_path / "headct"
    (root / "head_ct" / "head_ct").mkdir(parents=True)
    rows = ["id, hemorrhage"]
    for i in range(200):
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(root / "head_ct" / "head_ct" / f"{i:03d}.png")
        rows.append(f"{i},{int(i % 2)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    prepared = releases.prepare(root)
    assert prepared.layout == "headct" and prepared.table6 == ""
    assert not any(line.startswith("  Table 6") for line in prepared.summary())
    (root / "head_ct" / "head_ct" / "199.png").unlink()
    (root / "meta.json").unlink()
    assert releases.prepare(root).table6.startswith(
        "HeadCT's test split has 100 normal + 99 anomalous, the paper's Table 6 has 100 + 100")
