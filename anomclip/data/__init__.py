"""The data: the ``meta.json`` index, the catalogue of the paper's 17 datasets, a reader per
dataset release, the exact preprocessing, and generated (synthetic) data.

Imports only the foundation (:mod:`anomclip.errors`, :mod:`anomclip.io`); beside the model,
below the engine. The modules, lowest first: ``index`` (the ``meta.json`` schema), ``catalogue``
(the 17 datasets), ``preprocess`` (images and masks to tensors), ``releases`` (a package: one
module per release family, the registry of layouts, ``detect`` and ``prepare``), ``dataset``
(samples of a split, the torch ``Dataset``), ``fingerprint`` (content digests), ``synth`` (the
synthetic two-domain benchmark) and ``mock_releases`` (generated copies of every release layout).
"""
from .catalogue import DATASETS, MEDICAL_AUX, Dataset, get_dataset
from .dataset import AnomalyDataset, has_masks, load_index
from .index import META_NAME, SPLITS, Sample, is_synthetic, mark_synthetic, read_meta, write_meta
from .preprocess import (CLIP_MEAN, CLIP_STD, denormalize, image_to_tensor, load_image, load_mask, mask_to_tensor,
                         read_image, read_mask)
from .releases import (LAYOUT_NAMES, LAYOUTS, Prepared, detect, index_folder, index_mvtec, index_visa, locate,
                       mvtec_category, prepare, read_layout, split_sdd, table6_check)

__all__ = ["AnomalyDataset", "CLIP_MEAN", "CLIP_STD", "DATASETS", "Dataset", "LAYOUTS", "LAYOUT_NAMES",
           "MEDICAL_AUX", "META_NAME", "Prepared", "SPLITS", "Sample", "denormalize", "detect",
           "get_dataset", "has_masks", "image_to_tensor", "index_folder", "index_mvtec", "index_visa",
           "is_synthetic", "load_image", "locate", "load_index", "load_mask", "mark_synthetic", "mask_to_tensor",
           "mvtec_category", "prepare", "read_image", "read_layout", "read_mask", "read_meta",
           "split_sdd", "table6_check", "write_meta"]
