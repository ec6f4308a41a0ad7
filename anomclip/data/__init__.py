"""The data: the ``meta.json`` index, the catalogue of the paper's 17 datasets, a reader per
release layout, the exact preprocessing, and generated (synthetic) data.

Imports only the foundation (:mod:`anomclip.errors`, :mod:`anomclip.io`); beside the model,
below the engine. The modules, lowest first: ``index`` (the ``meta.json`` schema), ``scan``
(listing a release folder), ``readers`` (MVTec-style, VisA CSV, user folders), ``sdd``
(KolektorSDD halves), ``catalogue`` (the 17 datasets), ``layouts`` (a reader per dataset,
detection, ``prepare``), ``preprocess`` (images and masks to tensors), ``dataset`` (samples
of a split, the torch ``Dataset``), ``fingerprint`` (content digests), ``synth`` and
``standins`` (generated data).
"""
from .catalogue import DATASETS, MEDICAL_AUX, Dataset, get_dataset
from .dataset import AnomalyDataset, detect_layout, has_masks, load_index, prepare
from .index import META_NAME, SPLITS, Sample, is_synthetic, mark_synthetic, read_meta, write_meta
from .layouts import LAYOUT_NAMES, LAYOUTS, Prepared, detect, locate, prepare_dataset, read_layout, table6_check
from .preprocess import (CLIP_MEAN, CLIP_STD, denormalize, image_to_tensor, load_image, load_mask, mask_to_tensor,
                         read_image, read_mask)
from .readers import index_folder, index_mvtec, index_visa, mvtec_category
from .sdd import split_sdd

__all__ = ["AnomalyDataset", "CLIP_MEAN", "CLIP_STD", "DATASETS", "Dataset", "LAYOUTS", "LAYOUT_NAMES",
           "MEDICAL_AUX", "META_NAME", "Prepared", "SPLITS", "Sample", "denormalize", "detect", "detect_layout",
           "get_dataset", "has_masks", "image_to_tensor", "index_folder", "index_mvtec", "index_visa",
           "is_synthetic", "load_image", "locate", "load_index", "load_mask", "mark_synthetic", "mask_to_tensor",
           "mvtec_category", "prepare", "prepare_dataset", "read_image", "read_layout", "read_mask", "read_meta",
           "split_sdd", "table6_check", "write_meta"]
