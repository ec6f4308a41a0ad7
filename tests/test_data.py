"""Tests of anomclip.data: the index, the layout readers and the preprocessing.

Expected values are computed independently in the tests (by hand, with numpy or from the
files' names), never taken from the code under test.
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomclip import data
from anomclip.errors import AnomclipError

MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


# --------------------------------------------------------------------------- helpers


def save(path: Path, array, mode: str | None = None) -> Path:
    """Save a numpy array as an image file (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode).save(path)
    return path


def rgb(h: int, w: int, colour=(120, 60, 30)) -> np.ndarray:
    """A constant-colour RGB array."""
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def mask_with_id(h: int, w: int, ident: int) -> np.ndarray:
    """A mask whose number of foreground rows identifies it (1 + ident rows are 255)."""
    m = np.zeros((h, w), np.uint8)
    m[: 1 + ident] = 255
    return m


def assert_one_line_error(exc_info, *needles: str) -> None:
    """The error message is a single line and contains every needle."""
    message = str(exc_info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def make_mvtec(root: Path) -> Path:
    """A tiny MVTec tree (16×16 images) whose mask names sort differently from their images."""
    cls = root / "widget"
    save(cls / "train" / "good" / "000.png", rgb(16, 16))
    save(cls / "train" / "good" / "001.png", rgb(16, 16))
    save(cls / "test" / "good" / "000.png", rgb(16, 16))
    # "1.png" < "10.png" < "2.png" but "10_mask.png" < "1_mask.png" < "2_mask.png":
    # pairing by sorted position would swap 1 and 10.
    for stem in ["1", "2", "10", "000", "001", "010"]:
        save(cls / "test" / "scratch" / f"{stem}.png", rgb(16, 16))
    # written in a scrambled order on purpose; content: 1 + int(stem) foreground rows
    for stem in ["010", "10", "000", "2", "001", "1"]:
        save(cls / "ground_truth" / "scratch" / f"{stem}_mask.png", mask_with_id(16, 16, int(stem)))
    return root


# --------------------------------------------------------------------------- meta.json


def example_meta() -> dict:
    return {
        "train": {"a": [{"img_path": "a/n.png", "mask_path": "", "cls_name": "a",
                         "specie_name": "good", "anomaly": 0}]},
        "test": {
            "a": [
                {"img_path": "a/n.png", "mask_path": "", "cls_name": "a",
                 "specie_name": "good", "anomaly": 0},
                {"img_path": "a/d.png", "mask_path": "a/d_mask.png", "cls_name": "a",
                 "specie_name": "hole", "anomaly": 1},
            ]
        },
    }


def test_meta_round_trip(tmp_path):
    meta = example_meta()
    path = data.write_meta(tmp_path, meta)
    assert path == tmp_path / "meta.json"
    assert json.loads(path.read_text()) == meta
    assert data.read_meta(tmp_path) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]  # no temp file left


def test_write_meta_replaces_existing(tmp_path):
    (tmp_path / "meta.json").write_text("{}")
    data.write_meta(tmp_path, example_meta())
    assert json.loads((tmp_path / "meta.json").read_text()) == example_meta()


@pytest.mark.parametrize("text", ["{not json", "[]", '{"test": []}', '{"test": {"a": [{"x": 1}]}}',
                                  '{"test": {"a": [{"img_path": "x.png", "anomaly": 7}]}}'])
def test_malformed_meta(tmp_path, text):
    (tmp_path / "meta.json").write_text(text)
    with pytest.raises(AnomclipError) as exc:
        data.read_meta(tmp_path)
    assert_one_line_error(exc, "meta.json")


def test_missing_root(tmp_path):
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path / "nowhere")
    assert_one_line_error(exc, "nowhere", "does not exist")


def test_unrecognised_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.txt").write_text("hi")
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path)
    assert_one_line_error(exc, str(tmp_path), "meta.json", "anomclip prepare --layout")


# --------------------------------------------------------------------------- layouts


def test_index_mvtec_pairs_masks_by_stem(tmp_path):
    root = make_mvtec(tmp_path)
    meta = data.index_mvtec(root)
    assert list(meta["test"]) == ["widget"]
    test = meta["test"]["widget"]
    good = [it for it in test if it["specie_name"] == "good"]
    bad = [it for it in test if it["specie_name"] == "scratch"]
    assert [it["img_path"] for it in good] == ["widget/test/good/000.png"]
    assert all(it["anomaly"] == 0 and it["mask_path"] == "" for it in good)
    assert len(bad) == 6 and all(it["anomaly"] == 1 and it["cls_name"] == "widget" for it in bad)
    for it in bad:
        stem = Path(it["img_path"]).stem
        assert it["mask_path"] == f"widget/ground_truth/scratch/{stem}_mask.png"
        # the mask's content identifies it as well: 1 + int(stem) foreground rows
        m = np.asarray(Image.open(root / it["mask_path"]))
        assert (m[:, 0] > 0).sum() == 1 + int(stem)  # 1, 2 or 11 rows
    assert sorted(it["img_path"] for it in meta["train"]["widget"]) == [
        "widget/train/good/000.png", "widget/train/good/001.png"]


def test_index_mvtec_skips_non_category_entries(tmp_path):
    make_mvtec(tmp_path)
    (tmp_path / "license.txt").write_text("x")
    (tmp_path / "docs").mkdir()
    assert list(data.index_mvtec(tmp_path)["test"]) == ["widget"]


def write_visa(root: Path) -> Path:
    """A tiny VisA root with its 1cls.csv."""
    rows = [("candle", "train", "normal", "candle/Data/Images/Normal/0000.JPG", ""),
            ("candle", "test", "normal", "candle/Data/Images/Normal/0001.JPG", ""),
            ("candle", "test", "anomaly", "candle/Data/Images/Anomaly/0002.JPG",
             "candle/Data/Masks/Anomaly/0002.png"),
            ("pcb1", "test", "anomaly", "pcb1/Data/Images/Anomaly/0003.JPG",
             "pcb1/Data/Masks/Anomaly/0003.png")]
    (root / "split_csv").mkdir(parents=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    for _, _, _, img, mask in rows:
        save(root / img, rgb(6, 6))
        if mask:
            m = np.zeros((6, 6), np.uint8)
            m[2:4, 2:4] = 3  # VisA masks hold class ids, not 255
            save(root / mask, m)
    return root


def test_index_visa(tmp_path):
    meta = data.index_visa(write_visa(tmp_path))
    assert sorted(meta["test"]) == ["candle", "pcb1"]
    candle = meta["test"]["candle"]
    assert [(it["img_path"], it["mask_path"], it["anomaly"]) for it in candle] == [
        ("candle/Data/Images/Normal/0001.JPG", "", 0),
        ("candle/Data/Images/Anomaly/0002.JPG", "candle/Data/Masks/Anomaly/0002.png", 1)]
    assert candle[0]["specie_name"] == "good"
    assert [it["img_path"] for it in meta["train"]["candle"]] == ["candle/Data/Images/Normal/0000.JPG"]


def test_visa_bad_csv(tmp_path):
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text("object,split\ncandle,test\n")
    with pytest.raises(AnomclipError) as exc:
        data.index_visa(tmp_path)
    assert_one_line_error(exc, "1cls.csv", "label")


def test_index_folder(tmp_path):
    save(tmp_path / "bolt" / "normal" / "n1.png", rgb(5, 5))
    save(tmp_path / "bolt" / "anomalous" / "a1.png", rgb(5, 5))
    save(tmp_path / "bolt" / "anomalous" / "a11.png", rgb(5, 5))
    save(tmp_path / "bolt" / "masks" / "a11_mask.png", mask_with_id(5, 5, 0))
    save(tmp_path / "bolt" / "masks" / "a1.png", mask_with_id(5, 5, 0))
    save(tmp_path / "nut" / "normal" / "n.png", rgb(5, 5))
    save(tmp_path / "nut" / "abnormal" / "x.png", rgb(5, 5))
    meta = data.index_folder(tmp_path)
    bolt = {Path(it["img_path"]).name: it for it in meta["test"]["bolt"]}
    assert bolt["n1.png"]["anomaly"] == 0 and bolt["n1.png"]["mask_path"] == ""
    assert bolt["a1.png"]["mask_path"] == "bolt/masks/a1.png"
    assert bolt["a11.png"]["mask_path"] == "bolt/masks/a11_mask.png"
    assert bolt["a1.png"]["anomaly"] == bolt["a11.png"]["anomaly"] == 1
    assert [it["img_path"] for it in meta["train"]["bolt"]] == ["bolt/normal/n1.png"]
    nut = meta["test"]["nut"]
    assert [(it["img_path"], it["anomaly"], it["mask_path"]) for it in nut] == [
        ("nut/normal/n.png", 0, ""), ("nut/abnormal/x.png", 1, "")]


def test_detect(tmp_path):
    mvtec, visa, folder, meta = (tmp_path / n for n in ("mvtec", "visa", "folder", "meta"))
    make_mvtec(mvtec)
    write_visa(visa)
    save(folder / "c" / "normal" / "a.png", rgb(4, 4))
    meta.mkdir()
    data.write_meta(meta, example_meta())
    assert data.detect(mvtec).key == "mvtec"
    assert data.detect(visa).key == "visa"
    assert data.detect(folder).key == "folder"
    kept = data.prepare(meta)  # an existing meta.json is kept as it is
    assert kept.layout == "meta" and json.loads((meta / "meta.json").read_text()) == example_meta()
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnomclipError) as exc:
        data.detect(tmp_path / "empty")
    assert_one_line_error(exc, "empty", "no meta.json")


def test_prepare_writes_meta(tmp_path):
    make_mvtec(tmp_path)
    prepared = data.prepare(tmp_path)
    assert prepared.path == tmp_path / "meta.json" and prepared.layout == "mvtec"
    written = json.loads(prepared.path.read_text())
    assert len(written["test"]["widget"]) == 7
    assert data.prepare(tmp_path).layout == "meta"
    with pytest.raises(AnomclipError) as exc:
        data.prepare(tmp_path, layout="kitti")
    assert_one_line_error(exc, "kitti")


# --------------------------------------------------------------------------- load_index


def test_load_index_samples(tmp_path):
    make_mvtec(tmp_path)
    index = data.load_index(tmp_path)
    samples = index["widget"]
    assert len(samples) == 7
    for s in samples:
        assert isinstance(s, data.Sample) and s.img_path.is_absolute() and s.img_path.is_file()
        if s.anomaly:
            assert s.mask_path.name == s.img_path.stem + "_mask.png" and s.mask_path.is_absolute()
        else:
            assert s.mask_path is None and s.specie_name == "good"
    train = data.load_index(tmp_path, split="train")["widget"]
    assert [s.img_path.name for s in train] == ["000.png", "001.png"]


def test_load_index_categories(tmp_path):
    write_visa(tmp_path)
    assert list(data.load_index(tmp_path, categories=["pcb1"])) == ["pcb1"]
    assert list(data.load_index(tmp_path, categories="pcb1,candle")) == ["pcb1", "candle"]
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path, categories=["bottle"])
    assert_one_line_error(exc, "bottle", "candle", "pcb1")


def test_empty_category(tmp_path):
    meta = example_meta()
    meta["test"]["b"] = []
    save(tmp_path / "a" / "n.png", rgb(4, 4))
    data.write_meta(tmp_path, meta)
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path, categories=["b"])
    assert_one_line_error(exc, "'b'", "meta.json")


def test_missing_mask_file_raises(tmp_path):
    save(tmp_path / "a" / "n.png", rgb(4, 4))
    save(tmp_path / "a" / "d.png", rgb(4, 4))
    data.write_meta(tmp_path, example_meta())  # lists a/d_mask.png, which does not exist
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path)
    assert_one_line_error(exc, "d_mask.png")


def test_missing_image_file_raises(tmp_path):
    save(tmp_path / "a" / "d.png", rgb(4, 4))
    save(tmp_path / "a" / "d_mask.png", mask_with_id(4, 4, 0))
    data.write_meta(tmp_path, example_meta())
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path)
    assert_one_line_error(exc, "n.png")


def test_image_level_dataset_without_masks(tmp_path):
    meta = example_meta()
    meta["test"]["a"][1]["mask_path"] = ""
    save(tmp_path / "a" / "n.png", rgb(4, 4))
    save(tmp_path / "a" / "d.png", rgb(4, 4))
    data.write_meta(tmp_path, meta)
    samples = data.load_index(tmp_path)["a"]
    assert [s.mask_path for s in samples] == [None, None]
    assert [s.anomaly for s in samples] == [0, 1]
    assert not data.has_masks(samples)
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path, require_masks=True)
    assert_one_line_error(exc, "d.png")


def test_unknown_split(tmp_path):
    make_mvtec(tmp_path)
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path, split="val")
    assert_one_line_error(exc, "val")


# --------------------------------------------------------------------------- preprocessing


def test_constant_image_normalisation(tmp_path):
    colour = (200, 100, 50)
    path = save(tmp_path / "c.png", rgb(13, 7, colour))  # not square: aspect is squashed
    x = data.load_image(path, 5)
    assert x.shape == (3, 5, 5) and x.dtype == torch.float32
    expected = (np.array(colour) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(expected[:, None, None], (3, 5, 5)),
                               atol=1e-5)


def test_resize_is_bicubic_squash(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (9, 14, 3), dtype=np.uint8)
    path = save(tmp_path / "r.png", arr)
    expected = np.asarray(Image.fromarray(arr).resize((6, 6), Image.BICUBIC)) / 255.0
    expected = (expected - MEAN) / STD
    np.testing.assert_allclose(data.load_image(path, 6).permute(1, 2, 0).numpy(), expected,
                               atol=1e-5)


def test_other_modes_load_as_rgb(tmp_path):
    grey = save(tmp_path / "g.png", np.full((6, 9), 77, np.uint8), "L")
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba_path = save(tmp_path / "a.png", rgba, "RGBA")
    pal = Image.fromarray(np.zeros((6, 6), np.uint8), "P")
    pal.putpalette([40, 90, 160] + [0, 0, 0] * 255)  # index 0 → (40, 90, 160)
    pal.save(tmp_path / "p.png")
    sixteen = save(tmp_path / "s.png", np.full((6, 6), 1000, np.uint16))

    def expected(colour):
        return (np.array(colour) / 255.0 - MEAN) / STD

    for path, colour in [(grey, (77, 77, 77)), (rgba_path, (10, 20, 30)),
                         (tmp_path / "p.png", (40, 90, 160)), (sixteen, (4, 4, 4))]:
        x = data.load_image(path, 4)
        assert x.shape == (3, 4, 4), path
        # 16-bit 1000 → round(1000 * 255 / 65535) = 4 (clipping to 8 bit would give 255)
        np.testing.assert_allclose(x[:, 0, 0].numpy(), expected(colour), atol=1e-5, err_msg=str(path))


def test_sixteen_bit_full_scale_equals_eight_bit_white(tmp_path):
    p16 = save(tmp_path / "w16.png", np.full((5, 5), 65535, np.uint16))
    assert Image.open(p16).mode in ("I;16", "I")
    p8 = save(tmp_path / "w8.png", np.full((5, 5), 255, np.uint8), "L")
    torch.testing.assert_close(data.load_image(p16, 3), data.load_image(p8, 3))
    gradient = np.arange(0, 65536, 257, dtype=np.uint16)[None, :].repeat(2, 0)  # 8-bit k ↔ 257k
    g16 = save(tmp_path / "g16.png", gradient)
    g8 = save(tmp_path / "g8.png", (gradient // 257).astype(np.uint8), "L")
    np.testing.assert_array_equal(np.asarray(data.read_image(g16)), np.asarray(data.read_image(g8)))


def test_denormalize_inverts_load(tmp_path):
    colour = (31, 250, 128)
    path = save(tmp_path / "c.png", rgb(4, 4, colour))
    out = data.denormalize(data.load_image(path, 4))
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    assert (out == np.array(colour, np.uint8)).all()


def test_mask_class_ids_are_anomalous(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    m[1, 2] = 3
    m[3, 0] = 1
    t = data.load_mask(save(tmp_path / "m.png", m, "L"), 4)
    assert t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), (m > 0).astype(np.float32))


def bilinear_half_pixel(src: np.ndarray, out: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners=False), written from the formula."""
    n = src.shape[0]
    scale = n / out
    coords = np.clip((np.arange(out) + 0.5) * scale - 0.5, 0, None)
    lo = np.minimum(np.floor(coords).astype(int), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = coords - lo
    rows = src[lo] * (1 - frac)[:, None] + src[hi] * frac[:, None]
    return rows[:, lo] * (1 - frac)[None, :] + rows[:, hi] * frac[None, :]


def triangle_weights(n: int, out: int) -> np.ndarray:
    """[out, n] weights of an antialiased bilinear (triangle) filter: when shrinking by
    s = n / out the triangle is widened to half-width s, centred at (i + 0.5) s, normalised."""
    s = n / out
    support = max(s, 1.0)
    centres = (np.arange(out) + 0.5) * s
    x = np.arange(n) + 0.5
    w = np.clip(1 - np.abs(x[None, :] - centres[:, None]) / support, 0, None)
    return w / w.sum(axis=1, keepdims=True)


def authors_mask_steps(mask: np.ndarray, size: int) -> np.ndarray:
    """The authors' steps: bool → uint8 0/255 'L' image, torchvision Resize (= PIL bilinear on a
    PIL image), ToTensor (/ 255), then gt > 0.5."""
    img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    return np.asarray(img.resize((size, size), Image.BILINEAR), np.float32) / 255 > 0.5


def test_mask_resize_and_threshold(tmp_path):
    """Upsampling: PIL bilinear equals the half-pixel formula (no antialias to do)."""
    m = np.zeros((4, 4), np.uint8)
    m[1:3, 1:3] = 255
    t = data.load_mask(save(tmp_path / "m.png", m, "L"), 8).numpy()
    # 1-D profile of the 2-pixel block: [0, .25, .75, 1, 1, .75, .25, 0]; the 2-D value is the
    # product, > 0.5 exactly where both factors are ≥ .75: rows and columns 2…5.
    expected = np.zeros((8, 8), np.float32)
    expected[2:6, 2:6] = 1
    np.testing.assert_array_equal(t, expected)
    np.testing.assert_array_equal(t, (bilinear_half_pixel((m > 0).astype(float), 8) > 0.5))


def test_mask_shrink_matches_the_authors_pil_steps(tmp_path):
    """Shrinking 27 → 20 px (the 700 → 518 ratio, in small): PIL's bilinear antialiases (its
    triangle filter widens with the shrink factor), unlike plain bilinear sampling."""
    rng = np.random.default_rng(3)
    r = rng.random((27, 27)) > 0.55
    r[:, 13] = True  # a thin vertical scratch
    got = data.load_mask(save(tmp_path / "r.png", r.astype(np.uint8) * 255, "L"), 20).numpy()
    np.testing.assert_array_equal(got, authors_mask_steps(r, 20))
    # the same from the triangle-filter formula (PIL works in 8-bit fixed point: values within
    # one grey level of the threshold may round either way)
    w = triangle_weights(27, 20)
    value = w @ r.astype(float) @ w.T
    sure = np.abs(value - 0.5) > 1.5 / 255
    np.testing.assert_array_equal(got[sure], (value > 0.5)[sure])
    # and it is not what bilinear sampling without antialias gives (32 of 400 pixels differ)
    assert (got != (bilinear_half_pixel(r.astype(float), 20) > 0.5)).sum() > 10


def test_corrupt_and_non_image_files(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    for path in (bad, text):
        with pytest.raises(AnomclipError) as exc:
            data.load_image(path, 4)
        assert_one_line_error(exc, path.name)
    with pytest.raises(AnomclipError) as exc:
        data.load_mask(text, 4)
    assert_one_line_error(exc, "notes.jpg")


# --------------------------------------------------------------------------- dataset


def test_dataset_items(tmp_path):
    make_mvtec(tmp_path)
    samples = data.load_index(tmp_path)["widget"]
    ds = data.AnomalyDataset(samples, 32)
    assert len(ds) == 7
    for i, s in enumerate(samples):
        item = ds[i]
        assert set(item) == {"image", "mask", "label", "cls_name", "specie_name", "path"}
        assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (32, 32)
        assert item["mask"].dtype == torch.float32
        assert item["label"] == s.anomaly and item["path"] == str(s.img_path)
        assert item["cls_name"] == "widget" and item["specie_name"] == s.specie_name
        expected = np.zeros((32, 32), np.float32)
        if s.anomaly:
            # a 16×16 mask with its top r = 1 + k rows set, upsampled ×2 (bilinear, > .5):
            # output row 2r-1 samples r-0.75 (value .75), row 2r samples r-0.25 (.25) → 2r rows
            expected[: 2 * (1 + int(s.img_path.stem))] = 1
        np.testing.assert_array_equal(item["mask"].numpy(), expected)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 32, 32) and len(batch["path"]) == 3


def test_mask_size_mismatch(tmp_path):
    img = save(tmp_path / "x.png", rgb(10, 12))
    mask = save(tmp_path / "x_mask.png", np.zeros((10, 10), np.uint8), "L")
    ds = data.AnomalyDataset([data.Sample(img, mask, "c", "hole", 1)], 8)
    with pytest.raises(AnomclipError) as exc:
        ds[0]
    assert_one_line_error(exc, "x_mask.png", "10x10", "12x10")


def test_skip_unreadable(tmp_path):
    good = save(tmp_path / "good.png", rgb(6, 6))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    samples = [data.Sample(good, None, "c", "good", 0), data.Sample(bad, None, "c", "good", 0)]
    with pytest.raises(AnomclipError) as exc:
        data.AnomalyDataset(samples, 4)[1]
    assert_one_line_error(exc, "bad.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.AnomalyDataset(samples, 4, skip_unreadable=True)
    assert len(ds) == 1 and ds[0]["path"] == str(good)
    assert [p for p, _ in ds.skipped] == [str(bad)] and "bad.png" in ds.skipped[0][1]
    assert any("skipped 1" in str(w.message) for w in caught)


# --------------------------------------------------------------------------- SDD


def test_split_sdd(tmp_path):
    src = tmp_path / "KolektorSDD"
    rng = np.random.default_rng(0)
    img0 = rng.integers(0, 256, (50, 20), dtype=np.uint8)  # height 50, width 20
    mask0 = np.zeros((50, 20), np.uint8)
    mask0[30:40, 5:9] = 255  # defect in the bottom half only
    save(src / "kos01" / "Part0.png", img0, "L")
    save(src / "kos01" / "Part0_label.bmp", mask0, "L")
    img1 = rng.integers(0, 256, (51, 20), dtype=np.uint8)
    save(src / "kos02" / "Part3.png", img1, "L")
    save(src / "kos02" / "Part3_label.bmp", np.zeros((51, 20), np.uint8), "L")
    meta_path = data.split_sdd(src, tmp_path / "out")
    out = tmp_path / "out" / "sdd"
    assert meta_path == tmp_path / "out" / "meta.json"

    def grey(name):
        found = [p for p in out.glob(f"*/*/{name}")]
        assert len(found) == 1, (name, found)
        return np.asarray(Image.open(found[0]).convert("L"))

    np.testing.assert_array_equal(grey("kos01_Part0_top.png"), img0[:25])
    np.testing.assert_array_equal(grey("kos01_Part0_bottom.png"), img0[25:])
    assert (out / "test/defect/kos01_Part0_bottom.png").is_file()
    np.testing.assert_array_equal(np.asarray(Image.open(out / "ground_truth/defect/kos01_Part0_bottom_mask.png")),
                                  mask0[25:])
    np.testing.assert_array_equal(grey("kos02_Part3_top.png"), img1[:25])
    np.testing.assert_array_equal(grey("kos02_Part3_bottom.png"), img1[25:])
    # Table 6's split: the anomalous half in test; a quarter of the 3 normal halves, rounded up
    # (1), drawn by seed 0 from their sorted names; the other 2 in train
    normal = ["kos01_Part0_top", "kos02_Part3_bottom", "kos02_Part3_top"]
    picked = normal[int(np.random.default_rng(0).permutation(3)[0])]
    samples = data.load_index(tmp_path / "out", require_masks=True)["sdd"]
    assert sorted((s.img_path.name, s.anomaly) for s in samples) == sorted(
        [("kos01_Part0_bottom.png", 1), (f"{picked}.png", 0)])
    train = data.load_index(tmp_path / "out", split="train")["sdd"]
    assert sorted(s.img_path.stem for s in train) == sorted(set(normal) - {picked})
    # an output folder inside the source is not read back as input, even on a second run
    for _ in range(2):
        data.split_sdd(src, src / "halves")
    assert len(data.load_index(src / "halves")["sdd"]) == 2
    assert len(data.load_index(src / "halves", split="train")["sdd"]) == 2


def _kolektor(root, n_normal_images, n_half_defects, n_full_defects):
    """A tiny KolektorSDD: images 2 px wide, 4 high; defects in the top half, or in both."""
    n = 0
    for kind, count in (("none", n_normal_images), ("top", n_half_defects), ("both", n_full_defects)):
        for _ in range(count):
            kos, part = f"kos{n // 8 + 1:02d}", f"Part{n % 8}"
            label = np.zeros((4, 2), np.uint8)
            if kind != "none":
                label[0, 0] = 255
            if kind == "both":
                label[3, 1] = 255
            save(root / kos / f"{part}.png", np.full((4, 2), n % 256, np.uint8), "L")
            save(root / kos / f"{part}_label.bmp", label, "L")
            n += 1


def test_sdd_split_reproduces_table6_counts_and_follows_its_seed(tmp_path, monkeypatch):
    """KolektorSDD's 399 images, 52 of them defective (22 with a defect in both halves, 30 in
    one): 798 halves, 74 anomalous, 724 normal → Table 6's test split 181 + 74, the other 543
    normal halves in train. The seed fixes which normal halves are tested."""
    import os

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 2,600 tiny files: the disk's flushes only cost time
    src = tmp_path / "KolektorSDD"
    _kolektor(src, 347, 30, 22)
    splits = {}
    for seed in (0, 1):  # each choice is the one its seed gives (so a seed fixes it), and they differ
        out = tmp_path / f"out{seed}"
        data.split_sdd(src, out, seed=seed)
        test = data.load_index(out)["sdd"]
        train = data.load_index(out, split="train")["sdd"]
        assert (sum(s.anomaly == 0 for s in test), sum(s.anomaly for s in test)) == (181, 74)
        assert len(train) == 543 and not any(s.anomaly for s in train)
        # the expected choice, derived here from the rule docs/datasets.md states
        names = sorted(f"kos{i // 8 + 1:02d}_Part{i % 8}_{half}" for i in range(399) for half in ("top", "bottom")
                       if not (i >= 347 and (half == "top" or i >= 377)))
        assert len(names) == 724
        chosen = {names[j] for j in np.random.default_rng(seed).permutation(724)[:181]}
        assert {s.img_path.stem for s in test if s.anomaly == 0} == chosen
        splits[seed] = chosen
    assert splits[0] != splits[1]


def test_sdd_normal_test_count():
    from anomclip.data.releases.kolektorsdd import normal_test_count

    assert [normal_test_count(n) for n in (724, 10, 3, 1, 0)] == [181, 3, 1, 1, 0]
    assert normal_test_count(9, 1.0) == 9 and normal_test_count(9, 0.0) == 0
    with pytest.raises(AnomclipError, match="fraction"):
        normal_test_count(9, 1.5)


def test_split_sdd_missing_label(tmp_path):
    save(tmp_path / "kos01" / "Part0.png", np.zeros((10, 4), np.uint8), "L")
    with pytest.raises(AnomclipError) as exc:
        data.split_sdd(tmp_path, tmp_path / "out")
    assert_one_line_error(exc, "Part0.png")


# --------------------------------------------------------------------------- meta.json mistakes


def write_meta_text(root: Path, meta: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def one_item(img="a/0.png", mask="", cls="a", anomaly=0, **extra) -> dict:
    return dict({"img_path": img, "mask_path": mask, "cls_name": cls, "specie_name": "x", "anomaly": anomaly},
                **extra)


def test_meta_duplicate_entry_is_refused(tmp_path):
    root = write_meta_text(tmp_path, {"test": {"a": [one_item(), one_item("a/1.png")],
                                               "b": [one_item("./a/0.png", cls="b")]}})
    with pytest.raises(AnomclipError) as exc:
        data.read_meta(root)
    assert_one_line_error(exc, "'./a/0.png'", "listed twice", "'a' and 'b'")


def test_meta_mask_on_a_normal_image_is_refused(tmp_path):
    root = write_meta_text(tmp_path, {"test": {"a": [one_item(mask="a/m.png", anomaly=0)]}})
    with pytest.raises(AnomclipError) as exc:
        data.read_meta(root)
    assert_one_line_error(exc, "'a/0.png'", "labelled normal", "'a/m.png'")


@pytest.mark.parametrize("anomaly", [2, -1, True, 1.0, "1", None])
def test_meta_anomaly_must_be_zero_or_one(tmp_path, anomaly):
    root = write_meta_text(tmp_path, {"test": {"a": [one_item(anomaly=anomaly)]}})
    with pytest.raises(AnomclipError) as exc:
        data.read_meta(root)
    assert_one_line_error(exc, "a/0.png", "expected 0 or 1")


@pytest.mark.parametrize("cls_name", [3, None, ["a"], ""])
def test_meta_cls_name_must_be_a_string(tmp_path, cls_name):
    root = write_meta_text(tmp_path, {"test": {"a": [one_item(cls=cls_name)]}})
    with pytest.raises(AnomclipError) as exc:
        data.read_meta(root)
    assert_one_line_error(exc, "a/0.png", "'cls_name'")


def test_split_without_any_category_is_refused(tmp_path):
    root = write_meta_text(tmp_path, {"train": {"a": [one_item()]}, "test": {}})
    with pytest.raises(AnomclipError) as exc:
        data.load_index(root)
    assert_one_line_error(exc, "meta.json", "no category", "'test'")


@pytest.mark.parametrize("categories", [",", [], " , "])
def test_empty_category_selection_is_refused(tmp_path, categories):
    make_mvtec(tmp_path)
    with pytest.raises(AnomclipError) as exc:
        data.load_index(tmp_path, categories=categories)
    assert_one_line_error(exc, "empty category selection", "widget")


@pytest.mark.parametrize("path, why", [("../outside.png", "leaves the dataset root"),
                                       ("a/../../outside.png", "leaves the dataset root"),
                                       ("/etc/passwd", "is absolute")])
def test_paths_leaving_the_root_are_refused(tmp_path, path, why):
    save(tmp_path / "outside.png", rgb(4, 4))
    root = write_meta_text(tmp_path / "ds", {"test": {"a": [one_item(img=path)]}})
    with pytest.raises(AnomclipError) as exc:
        data.load_index(root)
    assert_one_line_error(exc, repr(path), why)
    root = write_meta_text(tmp_path / "ds2", {"test": {"a": [one_item(img="a/0.png", mask=path, anomaly=1)]}})
    with pytest.raises(AnomclipError) as exc:
        data.read_meta(root)
    assert_one_line_error(exc, repr(path), why)


def test_directory_named_like_an_image(tmp_path):
    (tmp_path / "a" / "0.png").mkdir(parents=True)
    root = write_meta_text(tmp_path, {"test": {"a": [one_item()]}})
    with pytest.raises(AnomclipError) as exc:
        data.load_index(root)
    assert_one_line_error(exc, "'a/0.png'", "is a directory")


def test_dangling_symlink_is_named_as_listed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.png").symlink_to(tmp_path / "gone" / "target.png")
    root = write_meta_text(tmp_path, {"test": {"a": [one_item()]}})
    with pytest.raises(AnomclipError) as exc:
        data.load_index(root)
    assert_one_line_error(exc, "'a/0.png'", "dangling symlink")


def test_synthetic_marker_is_kept(tmp_path):
    root = write_meta_text(tmp_path, {"synthetic": True, "test": {"a": [one_item()]}})
    assert data.read_meta(root)["synthetic"] is True and data.is_synthetic(root)
    data.write_meta(root, data.read_meta(root))
    assert json.loads((root / "meta.json").read_text())["synthetic"] is True
    plain = write_meta_text(tmp_path / "p", {"test": {"a": [one_item()]}})
    assert not data.is_synthetic(plain)
    data.mark_synthetic(plain)
    assert data.is_synthetic(plain)


# --------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied_to_image_and_mask(tmp_path, suffix):
    """Stored pixels 2 rows × 3 columns with orientation 6 ("rotate 90° clockwise to view"):
    the upright image is 3 rows × 2 columns, the stored top-left pixel at the top right."""
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = (255, 255, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    img_path = tmp_path / f"img{suffix}"
    Image.fromarray(np.kron(stored, np.ones((8, 8, 1), np.uint8))).save(img_path, exif=exif.tobytes(), quality=100)
    upright = np.asarray(data.read_image(img_path))
    assert upright.shape == (24, 16, 3)
    assert upright[:8, 8:].mean() > 200 and upright[8:].mean() < 30 and upright[:8, :8].mean() < 30
    mask_path = tmp_path / f"mask{suffix}"
    Image.fromarray(np.kron(stored[..., 0], np.ones((8, 8), np.uint8))).save(mask_path, exif=exif.tobytes(),
                                                                           quality=100)
    mask = data.read_mask(mask_path) if suffix == ".png" else data.read_mask(mask_path) & (upright[..., 0] > 128)
    assert mask.shape == (24, 16)
    assert mask[:8, 8:].all() and not mask[8:].any()
