"""Tests of anomclip.data.synth: the two-domain synthetic benchmark.

Properties are checked from the written files with independent code (hashlib, PIL, numpy).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomclip import data
from anomclip.data.synth import make_synthetic
from anomclip.errors import AnomclipError

DEFECTS = {"scratch", "hole", "stain", "crack"}


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root``, keyed by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def odd_pixels(img: np.ndarray) -> np.ndarray:
    """Pixels that are near-black, near-white or strongly saturated (defect-like)."""
    img = img.astype(int)
    hi, lo = img.max(-1), img.min(-1)
    return (hi < 50) | (lo > 220) | (hi - lo > 130)


def test_returns_two_roots_with_meta(synth):
    assert set(synth) == {"textures", "objects"}
    for domain, root in synth.items():
        assert root.name == domain and (root / "meta.json").is_file()
        meta = json.loads((root / "meta.json").read_text())
        assert set(meta) == {"train", "test", "synthetic"} and meta["synthetic"] is True


def test_deterministic(synth, tmp_path):
    again = make_synthetic(tmp_path, seed=0)
    for domain, root in synth.items():
        first, second = file_hashes(root), file_hashes(again[domain])
        assert first == second and len(first) > 100
    small_a = make_synthetic(tmp_path / "a", seed=0, n_normal=1, n_anomalous=4, size=32)
    small_b = make_synthetic(tmp_path / "b", seed=1, n_normal=1, n_anomalous=4, size=32)
    assert file_hashes(small_a["objects"]) != file_hashes(small_b["objects"])


def test_categories_disjoint_and_plenty(synth):
    cats = {d: set(data.load_index(root)) for d, root in synth.items()}
    assert len(cats["textures"]) >= 4 and len(cats["objects"]) >= 4
    assert not cats["textures"] & cats["objects"]


def test_layout_and_counts(synth):
    for root in synth.values():
        test = data.load_index(root, require_masks=True)
        train = data.load_index(root, split="train")
        for cls_name, samples in test.items():
            normal = [s for s in samples if s.anomaly == 0]
            bad = [s for s in samples if s.anomaly == 1]
            assert len(normal) == 8 and len(bad) == 12
            assert all(s.img_path.parent == root / cls_name / "test" / "good" for s in normal)
            for s in bad:
                assert s.img_path.parent.name == s.specie_name in DEFECTS
                assert s.mask_path == (root / cls_name / "ground_truth" / s.specie_name
                                       / f"{s.img_path.stem}_mask.png")
            assert {s.specie_name for s in bad} == DEFECTS
            assert len(train[cls_name]) >= 2 and all(s.anomaly == 0 for s in train[cls_name])


def test_images_and_masks(synth):
    for root in synth.values():
        for samples in data.load_index(root).values():
            for s in samples:
                img = Image.open(s.img_path)
                assert img.mode == "RGB" and img.size == (128, 128)
                if s.anomaly == 0:
                    assert s.mask_path is None
                    continue
                mask = np.asarray(Image.open(s.mask_path))
                assert mask.shape == (128, 128) and set(np.unique(mask)) == {0, 255}
                # defects are sizeable: at least ~0.3 % of the image
                assert (mask == 255).sum() >= 40, s.mask_path


def test_defects_stand_out_and_normals_do_not(synth):
    """Defect pixels are near-black / near-white / saturated; normal pixels never are."""
    for root in synth.values():
        for samples in data.load_index(root).values():
            for s in samples:
                odd = odd_pixels(np.asarray(Image.open(s.img_path)))
                if s.anomaly:
                    m = np.asarray(Image.open(s.mask_path)) > 0
                    assert odd[m].mean() > 0.9, s.img_path
                    assert odd[~m].mean() < 0.01, s.img_path
                else:
                    assert odd.mean() < 0.01, s.img_path


def test_defects_survive_resizing(synth):
    for root in synth.values():
        for samples in data.load_index(root).values():
            for s in samples:
                if s.anomaly:
                    assert data.load_mask(s.mask_path, 96).sum() > 0, s.mask_path


def test_domains_look_different(synth):
    """Objects have a plain background (corners nearly flat); textures do not."""
    def corner_std(root: Path) -> float:
        stds = []
        for samples in data.load_index(root).values():
            for s in samples[:3]:
                corner = np.asarray(Image.open(s.img_path), float)[:16, :16]
                stds.append(corner.std(axis=(0, 1)).mean())  # per channel
        return float(np.median(stds))

    objects, textures = corner_std(synth["objects"]), corner_std(synth["textures"])
    assert objects < 6 and textures > 10, (objects, textures)


def test_size_and_bad_arguments(tmp_path):
    roots = make_synthetic(tmp_path, n_normal=1, n_anomalous=4, size=48)
    first = next(iter(data.load_index(roots["objects"]).values()))[0]
    assert Image.open(first.img_path).size == (48, 48)
    for kwargs in ({"size": 300}, {"seed": -1}, {"n_anomalous": 0}):
        with pytest.raises(AnomclipError) as exc:
            make_synthetic(tmp_path, **kwargs)
        assert "\n" not in str(exc.value)


def test_defect_pairs_differ_by_the_defect_alone():
    from anomclip.data.synth import defect_pairs

    pairs = defect_pairs(n_per_category=4, size=64)
    assert len(pairs) == 8 * 4
    assert {(p["domain"], p["category"]) for p in pairs} == {
        (d, c) for d, cats in (("textures", ("weave", "marble", "grid", "dots")),
                               ("objects", ("disc", "ring", "square", "capsule"))) for c in cats}
    for p in pairs:
        assert p["normal"].shape == p["defective"].shape == (64, 64, 3) and p["normal"].dtype == np.uint8
        changed = np.any(p["normal"] != p["defective"], axis=-1)
        assert p["mask"].any()
        assert not (changed & ~p["mask"]).any()  # outside the defect: identical, noise included
        assert changed[p["mask"]].mean() > 0.5  # inside: (nearly) every pixel is repainted
    assert {p["defect"] for p in pairs} == DEFECTS
    again = defect_pairs(n_per_category=4, size=64)
    assert all(np.array_equal(a["defective"], b["defective"]) for a, b in zip(pairs, again))
