"""Mock releases: generated copies of every release layout, a dry run of the paper profile without the data.

:func:`write_mock_release` writes a tiny copy of how one of the 17 datasets is *published* — the
same folder names, file names, extensions and mask conventions (VisA class-id masks,
KolektorSDD ``PartN_label.bmp``, ISIC ``*_Segmentation.png``, DAGM ``Label/Labels.txt``, JPEG
masks of Kvasir…) — filled with synthetic images drawn by :mod:`anomclip.data.synth` (64 px by
default, a few per category), plus the traps of the real releases: an anomalous image whose
mask is missing, a ``Thumbs.db`` and a read-me, upper-case extensions, masks whose stem carries
a suffix. Each is written the way its archive unpacks, wrapper folders included
(``BTech_Dataset_transformed/``, ``DAGM_KaggleUpload/``, ``Thyroid Dataset/tn3k/``,
``DTD-Synthetic/``, ``KolektorSDD/``, ISIC's doubly nested ``…Test_Data/…Test_Data/``, PraNet's
``TestDataset/CVC-ColonDB/``…), so the readers of :mod:`anomclip.data.releases` meet what users
meet. A hidden ``.anomclip-synthetic`` file marks the root as generated; ``prepare`` turns it
into ``"synthetic": true`` in ``meta.json``.

Every writer returns a :class:`MockRelease` whose ``expected`` lists what it wrote, per
category: ``{img_path: (anomaly, mask_path or "")}`` relative to the root (as ``meta.json`` must
say) — the tests compare the release readers against it. Numbers computed on mock releases are
synthetic.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AnomclipError
from .index import SYNTHETIC_MARKER
from .synth import DEFECTS, GENERATORS, draw_defective, finish, mute


@dataclass
class MockRelease:
    """A written mock release: its root, layout key and what a correct reader must find."""

    key: str
    root: Path
    expected: dict = field(default_factory=dict)  # {cls: {img_rel: (anomaly, mask_rel)}}

    def add(self, cls_name: str, img: str, anomaly: int, mask: str = "") -> None:
        self.expected.setdefault(cls_name, {})[img] = (int(anomaly), mask)


class _Painter:
    """Draws numbered normal / defective images of a synthetic category (deterministic)."""

    def __init__(self, seed: int, size: int | tuple[int, int]):
        self.seed = seed
        self.w, self.h = (size, size) if isinstance(size, int) else size
        self.n = 0

    def _rng(self) -> np.random.Generator:
        self.n += 1
        return np.random.default_rng([self.seed, self.n])

    def _fit(self, a: np.ndarray, nearest: bool = False) -> np.ndarray:
        if a.shape[:2] == (self.h, self.w):
            return a
        mode = Image.NEAREST if nearest else Image.BICUBIC
        return np.array(Image.fromarray(a).resize((self.w, self.h), mode))

    def normal(self, name: str) -> np.ndarray:
        rng = self._rng()
        rgb, _ = GENERATORS[name](rng, max(self.w, self.h))
        return self._fit(finish(mute(rgb), rng))

    def defective(self, name: str, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 [H, W, 3], bool mask [H, W])."""
        rng = self._rng()
        _, bad, mask = draw_defective(name, DEFECTS[i % len(DEFECTS)], rng, max(self.w, self.h))
        rgb = self._fit(finish(bad, rng))
        mask = self._fit(mask.astype(np.uint8) * 255, nearest=True) > 0
        if not mask.any():
            mask[self.h // 3: self.h // 2, self.w // 3: self.w // 2] = True
        return rgb, mask


def _save(path: Path, array: np.ndarray, grey: bool = False) -> None:
    """Save ``array`` in the format its (possibly upper-case) extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF"}[path.suffix.lower()]
    img = Image.fromarray(array)
    if grey and img.mode != "L":
        img = img.convert("L")
    img.save(path, format=fmt)


def _mask_u8(mask: np.ndarray, value: int = 255) -> np.ndarray:
    return mask.astype(np.uint8) * value


def _junk(folder: Path) -> None:
    """The extra files real releases ship: Windows thumbnails, a read-me."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Thumbs.db").write_bytes(b"\x00" * 16)
    (folder / "readme.txt").write_text("mock release: synthetic images in the release layout\n")


# --------------------------------------------------------------------------- writers


def _mvtec_like(s: MockRelease, p: _Painter, cats: tuple[str, ...], normal: str = "good", img_ext: str = ".png",
                mask_ext: str | tuple[str, ...] = ".png", mask_suffix: str = "_mask", defect: str = "broken",
                wrapper: str = "") -> None:
    """``[<wrapper>/]<cls>/{train,test}/…`` + ``<cls>/ground_truth/<defect>/<stem><suffix><ext>``
    (``mask_ext`` one per category, or one for all); the second anomalous image of the first
    category has no mask (trap)."""
    bad_dir = "ko" if normal == "ok" else defect
    top = f"{wrapper}/" if wrapper else ""
    for c, cls_name in enumerate(cats):
        drawing = list(GENERATORS)[c % len(GENERATORS)]
        m_ext = mask_ext if isinstance(mask_ext, str) else mask_ext[c]
        root = s.root / f"{top}{cls_name}"
        _save(root / "train" / normal / f"000{img_ext}", p.normal(drawing))
        for i in range(2):
            rel = f"{top}{cls_name}/test/{normal}/{i:03d}{img_ext}"
            _save(s.root / rel, p.normal(drawing))
            s.add(cls_name, rel, 0)
        for i in range(3):
            rgb, mask = p.defective(drawing, i)
            rel = f"{top}{cls_name}/test/{bad_dir}/{i:03d}{img_ext}"
            _save(s.root / rel, rgb)
            mrel = f"{top}{cls_name}/ground_truth/{bad_dir}/{i:03d}{mask_suffix}{m_ext}"
            if c == 0 and i == 1:
                mrel = ""  # trap: a missing mask in the middle (sort-order pairing would shift the next)
            else:
                _save(s.root / mrel, _mask_u8(mask), grey=True)
            s.add(cls_name, rel, 1, mrel)
        _junk(root / "test" / bad_dir)


def _w_mvtec(s, p):
    _mvtec_like(s, p, ("bottle", "wood"))


def _w_mpdd(s, p):
    _mvtec_like(s, p, ("bracket_black", "tubes"))


def _w_dtd(s, p):
    # the archive unpacks into DTD-Synthetic/<Class>/…
    _mvtec_like(s, p, ("Woven_001", "Blotchy_099"), defect="bad", wrapper="DTD-Synthetic")


def _w_btad(s, p):
    # btad.zip unpacks into BTech_Dataset_transformed/{01,02,03}/…; product 03's masks are BMP
    _mvtec_like(s, p, ("01", "03"), normal="ok", img_ext=".bmp", mask_ext=(".png", ".bmp"), mask_suffix="",
                wrapper="BTech_Dataset_transformed")


def _w_visa(s, p):
    rows = ["object,split,label,image,mask"]
    for c, cls_name in enumerate(("candle", "pcb1")):
        drawing = list(GENERATORS)[c]
        base = f"{cls_name}/Data"
        for i in range(2):
            rel = f"{base}/Images/Normal/{i:04d}.JPG"
            _save(s.root / rel, p.normal(drawing))
            rows.append(f"{cls_name},test,normal,{rel},")
            s.add(cls_name, rel, 0)
        _save(s.root / f"{base}/Images/Normal/0009.JPG", p.normal(drawing))
        rows.append(f"{cls_name},train,normal,{base}/Images/Normal/0009.JPG,")
        for i in range(3):
            rgb, mask = p.defective(drawing, i)
            rel, mrel = f"{base}/Images/Anomaly/{i:03d}.JPG", f"{base}/Masks/Anomaly/{i:03d}.png"
            _save(s.root / rel, rgb)
            _save(s.root / mrel, _mask_u8(mask, value=c + 1), grey=True)  # class ids, not 255
            rows.append(f"{cls_name},test,anomaly,{rel},{mrel}")
            s.add(cls_name, rel, 1, mrel)
        _junk(s.root / base / "Images" / "Anomaly")
    csv = s.root / "split_csv" / "1cls.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text("\n".join(rows) + "\n")


#: The SDD mock release's wrapper (the archive unpacks into KolektorSDD/kos01…).
SDD_WRAPPER = "KolektorSDD"


def _w_sdd(s, p):
    p.w, p.h = 48, 120  # tall like KolektorSDD (500 × ~1250)
    top = f"{SDD_WRAPPER}/"
    normal = []
    for k, kos in enumerate(("kos01", "kos02")):
        for part in range(3):
            rgb = p.normal("marble")
            label = np.zeros((p.h, p.w), bool)
            if part == 1:  # a defect in the top half only
                label[20:34, 10:30] = True
                rgb[label] = 20
            _save(s.root / top / kos / f"Part{part}.jpg", rgb)
            _save(s.root / top / kos / f"Part{part}_label.bmp", _mask_u8(label), grey=True)
            for half, sl in (("top", slice(0, p.h // 2)), ("bottom", slice(p.h // 2, p.h))):
                stem = f"{kos}_Part{part}_{half}"
                if label[sl].any():
                    s.add("sdd", f"{top}halves/sdd/test/defect/{stem}.png", 1,
                          f"{top}halves/sdd/ground_truth/defect/{stem}_mask.png")
                else:
                    normal.append(stem)
        _junk(s.root / top / kos)
    # Table 6's split as docs/datasets.md states it, derived here on its own: a quarter of the
    # normal halves (rounded up), drawn by a permutation of their sorted names with seed 0
    normal.sort()
    k = -(-len(normal) // 4)
    for j in np.random.default_rng(0).permutation(len(normal))[:k]:
        s.add("sdd", f"{top}halves/sdd/test/good/{normal[j]}.png", 0)


#: The Kaggle upload of DAGM 2007 unpacks into this folder.
DAGM_WRAPPER = "DAGM_KaggleUpload"


def _w_dagm(s, p):
    top = f"{DAGM_WRAPPER}/"
    for c, cls_name in enumerate(("Class1", "Class2")):
        drawing = ("weave", "dots")[c]
        train = s.root / top / cls_name / "Train"
        _save(train / "0000.PNG", p.normal(drawing)[..., 0])  # train split: not counted in test
        (train / "Label").mkdir(parents=True, exist_ok=True)
        (train / "Label" / "Labels.txt").write_text("1\n1\t0\t0000.PNG\t0\t0\n")
        test = s.root / top / cls_name / "Test"
        lines = ["1"]
        for i in range(5):
            name = f"{i:04d}.PNG"
            if i < 2:
                _save(test / name, p.normal(drawing)[..., 0])
                lines.append(f"{i + 1}\t0\t{name}\t0\t0")
                s.add(cls_name, f"{top}{cls_name}/Test/{name}", 0)
                continue
            rgb, mask = p.defective(drawing, i)
            _save(test / name, rgb[..., 0])
            label = f"{i:04d}_label.PNG"
            lines.append(f"{i + 1}\t1\t{name}\t0\t{label}")
            if c == 0 and i == 4:  # trap: listed as defective, label file missing
                s.add(cls_name, f"{top}{cls_name}/Test/{name}", 1, "")
                continue
            _save(test / "Label" / label, _mask_u8(mask), grey=True)
            s.add(cls_name, f"{top}{cls_name}/Test/{name}", 1, f"{top}{cls_name}/Test/Label/{label}")
        (test / "Label").mkdir(parents=True, exist_ok=True)
        (test / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
        _junk(test)


def _pixel_only(s, p, img_dir: str, mask_dir: str, cls_name: str, img_ext: str, mask_ext: str,
                mask_suffix: str = "", n: int = 4, stem=lambda i: f"{i + 1}") -> None:
    """A pixel-level medical set: anomalous images + masks; the second mask is missing (trap)."""
    for i in range(n):
        rgb, mask = p.defective(("disc", "ring", "capsule")[i % 3], i)
        rel = f"{img_dir}/{stem(i)}{img_ext}"
        _save(s.root / rel, rgb)
        mrel = f"{mask_dir}/{stem(i)}{mask_suffix}{mask_ext}"
        if i == 1:
            mrel = ""
        else:
            _save(s.root / mrel, _mask_u8(mask), grey=True)
        s.add(cls_name, rel, 1, mrel)
    _junk(s.root / img_dir)


def _w_isic(s, p):
    p.w, p.h = 80, 64  # not square: resized with the aspect squashed
    # each zip unzipped into a folder named after it: X/X/ (both forms are met; this is the harder)
    data, truth = "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"
    _pixel_only(s, p, f"{data}/{data}", f"{truth}/{truth}", "skin",
                ".jpg", ".png", "_Segmentation", stem=lambda i: f"ISIC_{i:07d}")


def _w_clinicdb(s, p):
    _pixel_only(s, p, "Original", "Ground Truth", "colon", ".tif", ".tif")


#: Where the mock releases put their data below the folder the user names (the wrappers of the
#: published archives; SDD, DAGM, BTAD and DTD-Synthetic are in their writers).
COLONDB_WRAPPER = "TestDataset/CVC-ColonDB"  # PraNet's TestDataset, the one subset copied with its path
KVASIR_WRAPPER = "Kvasir-SEG"
ENDO_WRAPPER = "EndoTect_2020_Segmentation_Test_Dataset"
TN3K_WRAPPER = "Thyroid Dataset/tn3k"
BRAINMRI_WRAPPER = "brain_tumor_dataset"


def _w_colondb(s, p):
    w = COLONDB_WRAPPER
    _pixel_only(s, p, f"{w}/images", f"{w}/masks", "colon", ".png", ".png")


def _w_kvasir(s, p):
    w = KVASIR_WRAPPER
    _pixel_only(s, p, f"{w}/images", f"{w}/masks", "colon", ".jpg", ".jpg", stem=lambda i: f"cju{i:04d}x")
    (s.root / w / "kavsir_bboxes.json").write_text("{}\n")


def _w_endo(s, p):
    w = ENDO_WRAPPER
    _pixel_only(s, p, f"{w}/images", f"{w}/masks", "colon", ".jpg", ".png")


def _w_tn3k(s, p):
    w = TN3K_WRAPPER  # tn3k.zip: "Thyroid Dataset/tn3k/{trainval,test}-{image,mask}/"
    _pixel_only(s, p, f"{w}/test-image", f"{w}/test-mask", "thyroid", ".jpg", ".jpg", stem=lambda i: f"{i:04d}")
    _save(s.root / w / "trainval-image" / "0000.jpg", p.normal("disc"))  # ignored: not the test split
    _save(s.root / w / "trainval-mask" / "0000.jpg", np.zeros((p.h, p.w), np.uint8), grey=True)


def _w_headct(s, p):
    lines = ["id, hemorrhage"]  # the Kaggle file has a space after the comma
    for i in range(6):
        bad = i >= 3
        rgb = p.defective("disc", i)[0] if bad else p.normal("disc")
        rel = f"head_ct/head_ct/{i:03d}.png"
        _save(s.root / rel, rgb)
        lines.append(f"{i},{int(bad)}")
        s.add("brain", rel, int(bad))
    (s.root / "labels.csv").write_text("\n".join(lines) + "\n")
    _junk(s.root / "head_ct" / "head_ct")


def _no_yes(s, p, names: list[str], extra: str | None = None, wrapper: str = "") -> None:
    top = f"{wrapper}/" if wrapper else ""
    for i, name in enumerate(names):
        bad = name.startswith("Y") or name.startswith("y")
        folder = f"{top}{'yes' if bad else 'no'}"
        rgb = p.defective("ring", i)[0] if bad else p.normal("ring")
        rel = f"{folder}/{name}"
        _save(s.root / rel, rgb)
        s.add("brain", rel, int(bad))
    if extra:
        _save(s.root / extra / "y999.jpg", p.normal("ring"))  # unlabeled: ignored
    _junk(s.root / top / "yes")


def _w_brainmri(s, p):
    _no_yes(s, p, ["1 no.jpeg", "N2.JPG", "no 3.png", "Y1.jpg", "Y2.JPG", "Y 3.png"], wrapper=BRAINMRI_WRAPPER)


def _w_br35h(s, p):
    _no_yes(s, p, ["no0.jpg", "no1.jpg", "no2.jpg", "y0.jpg", "y1.jpg", "y2.jpg"], extra="pred")


def _w_covid(s, p):
    for i in range(3):
        rel = f"COVID-19_Radiography_Dataset/Normal/images/Normal-{i + 1}.png"
        _save(s.root / rel, p.normal("disc")[..., 0])
        s.add("chest", rel, 0)
        # lung masks shipped beside the images are not anomaly masks: ignored
        _save(s.root / f"COVID-19_Radiography_Dataset/Normal/masks/Normal-{i + 1}.png",
              np.full((p.h, p.w), 255, np.uint8))
    for i in range(3):
        rel = f"COVID-19_Radiography_Dataset/COVID/images/COVID-{i + 1}.png"
        _save(s.root / rel, p.defective("disc", i)[0][..., 0])
        s.add("chest", rel, 1)
    _save(s.root / "COVID-19_Radiography_Dataset/Viral Pneumonia/images/Viral Pneumonia-1.png",
          p.normal("disc")[..., 0])
    _junk(s.root / "COVID-19_Radiography_Dataset")


WRITERS = {
    "mvtec": _w_mvtec, "visa": _w_visa, "mpdd": _w_mpdd, "btad": _w_btad, "sdd": _w_sdd, "dagm": _w_dagm,
    "dtd": _w_dtd, "isic": _w_isic, "clinicdb": _w_clinicdb, "colondb": _w_colondb, "kvasir": _w_kvasir,
    "endo": _w_endo, "tn3k": _w_tn3k, "headct": _w_headct, "brainmri": _w_brainmri, "br35h": _w_br35h,
    "covid": _w_covid,
}


def write_mock_release(key: str, out: str | Path, seed: int = 0, size: int = 64) -> MockRelease:
    """Write the mock release of dataset ``key`` to ``out``; an earlier mock release there is
    replaced, any other non-empty folder is refused (a real dataset is never overwritten)."""
    if key not in WRITERS:
        raise AnomclipError(f"unknown mock release layout {key!r} (choose from all, {', '.join(WRITERS)})")
    if not 16 <= int(size) <= 256:
        raise AnomclipError(f"mock release image size must be between 16 and 256 px, got {size}")
    out = Path(out)
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / SYNTHETIC_MARKER).is_file()):
            raise AnomclipError(f"{out} exists and is not an earlier mock release: not overwriting it "
                                "(choose an empty or new folder)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    s = MockRelease(key, out)
    WRITERS[key](s, _Painter(seed * 1000 + list(WRITERS).index(key), int(size)))
    (out / SYNTHETIC_MARKER).write_text("generated by anomclip.data.mock_releases: synthetic, not the real dataset\n")
    return s


def write_all(out: str | Path, seed: int = 0, size: int = 64, folders: dict | None = None) -> dict[str, MockRelease]:
    """Every mock release under ``out/<folder>`` (folder names of the paper profile by default)."""
    from .catalogue import folder_of

    out = Path(out)
    return {key: write_mock_release(key, out / (folders or {}).get(key, folder_of(key)), seed, size) for key in WRITERS}
