"""The catalogue of the paper's 17 datasets: the one list everything else derives from.

One :class:`Dataset` per dataset of Tables 1–3, in the order of the paper's tables (industrial
Table 1, then medical Table 2: image-level first, pixel-level after). Each entry says its name
in the tables, its folder under ``DATA_ROOT``, the layout that reads it
(:mod:`anomclip.data.releases`), which metrics it defines, its test-set size in the paper's
Table 6 and where it is published. The profiles, the layout titles, the mock releases, the book's
order and colours all read this list (docs/datasets.md, docs/anomalyclip.md §7b).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import AnomclipError


@dataclass(frozen=True)
class Dataset:
    """One of the paper's datasets: where it is published and how it is read."""

    key: str  # the layout name (``anomclip prepare --layout KEY``)
    name: str  # as in the paper's tables (book/reference/paper_results.csv)
    folder: str  # folder under DATA_ROOT
    domain: str  # "industrial" or "medical"
    image_metrics: bool  # normal and anomalous test images: image AUROC/AP are defined
    pixel_metrics: bool  # masks: pixel AUROC/AUPRO are defined
    normal: int  # test images in the paper's Table 6 (SDD: halves)
    anomalous: int
    source: str  # where it is published
    aliases: tuple[str, ...] = ()  # folder names that name this dataset when layouts coincide
    counts_note: str = ""  # why a public copy's test counts may differ from Table 6 (``prepare`` says it)

    @property
    def size(self) -> str:
        """Table 6's test-set size as the paper writes it (``"467 + 1258"``)."""
        return f"{self.normal} + {self.anomalous}" + (" halves" if self.key == "sdd" else "")


#: The paper's 17 datasets, in the order of its tables.
DATASETS: tuple[Dataset, ...] = (
    Dataset("mvtec", "MVTec AD", "mvtec", "industrial", True, True, 467, 1258,
            "https://www.mvtec.com/company/research/datasets/mvtec-ad", ("mvtec", "mvtec_ad", "mvtec-ad", "mvtecad")),
    Dataset("visa", "VisA", "visa", "industrial", True, True, 962, 1200,
            "https://github.com/amazon-science/spot-diff", ("visa",)),
    Dataset("mpdd", "MPDD", "mpdd", "industrial", True, True, 176, 282,
            "https://github.com/stepanje/MPDD", ("mpdd",)),
    Dataset("btad", "BTAD", "btad", "industrial", True, True, 451, 290,
            "BTAD (Mishra et al., 2021, VT-ADL): the authors' download page", ("btad",)),
    Dataset("sdd", "SDD", "sdd", "industrial", True, True, 181, 74,
            "https://www.vicos.si/resources/kolektorsdd/", ("sdd", "kolektorsdd", "kolektor")),
    Dataset("dagm", "DAGM", "dagm", "industrial", True, True, 6996, 1054,
            "DAGM 2007 competition (Wieler & Hahn), Heidelberg Collaboratory for Image Processing",
            ("dagm", "dagm2007")),
    Dataset("dtd", "DTD-Synthetic", "dtd", "industrial", True, True, 357, 947,
            "Aota et al., WACV 2023 (released with their paper)", ("dtd", "dtd-synthetic", "dtd_synthetic")),
    Dataset("headct", "HeadCT", "headct", "medical", True, False, 100, 100,
            "https://www.kaggle.com/datasets/felipekitamura/head-ct-hemorrhage", ("headct", "head_ct")),
    Dataset("brainmri", "BrainMRI", "brainmri", "medical", True, False, 98, 155,
            "https://www.kaggle.com/datasets/navoneel/brain-mri-images-for-brain-tumor-detection",
            ("brainmri", "brain_mri", "brain_tumor_dataset")),
    Dataset("br35h", "Br35H", "br35h", "medical", True, False, 1500, 1500,
            "https://www.kaggle.com/datasets/ahmedhamada0/brain-tumor-detection", ("br35h",)),
    Dataset("covid", "COVID-19", "covid", "medical", True, False, 1341, 219,
            "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
            ("covid", "covid-19", "covid19"),
            "Table 6 counts the Normal and COVID images of the database's first release; later releases are larger"),
    Dataset("isic", "ISIC", "isic", "medical", False, True, 0, 379,
            "https://challenge.isic-archive.com/data/#2016 (Part 1 test set)", ("isic", "isic2016")),
    Dataset("colondb", "CVC-ColonDB", "colondb", "medical", False, True, 0, 380,
            "Tajbakhsh et al., 2015; redistributed in PraNet's TestDataset (images/, masks/)",
            ("colondb", "cvc-colondb")),
    Dataset("clinicdb", "CVC-ClinicDB", "clinicdb", "medical", False, True, 0, 612,
            "https://polyp.grand-challenge.org/CVCClinicDB/", ("clinicdb", "cvc-clinicdb"),
            "Table 6 counts the full dataset (612); PraNet's TestDataset copy holds 62 of them"),
    Dataset("kvasir", "Kvasir", "kvasir", "medical", False, True, 0, 1000,
            "https://datasets.simula.no/kvasir-seg/", ("kvasir", "kvasir-seg"),
            "Table 6 counts the full Kvasir-SEG (1000); PraNet's TestDataset copy holds 100 of them"),
    Dataset("endo", "Endo", "endo", "medical", False, True, 0, 200,
            "EndoTect 2020 challenge segmentation set (Hicks et al., 2021, HyperKvasir)", ("endo", "endotect")),
    Dataset("tn3k", "TN3K", "tn3k", "medical", False, True, 0, 614,
            "https://github.com/haifangong/TRFE-Net-for-thyroid-nodule-segmentation", ("tn3k",)),
)

#: Table 3's medical auxiliary set (CVC-ColonDB + the Endo classification test split's normal
#: images), built by hand as a folder layout (docs/datasets.md); tuned on when present.
MEDICAL_AUX = Dataset("folder", "ColonDB+Endo", "medical_aux", "medical", True, True, 163, 380,
                      "built from CVC-ColonDB and the Endo classification test split (paper, App. B)")
#: The datasets Table 3's auxiliary set is built from: prompts tuned on it are not evaluated on
#: them (Table 3 has no CVC-ColonDB column; Endo's segmentation set is another split).
MEDICAL_AUX_SOURCES: tuple[str, ...] = ("colondb",)

#: Dataset names in the order of the paper's tables (the book's tables and colours follow it).
DATASET_ORDER: tuple[str, ...] = tuple(d.name for d in DATASETS)
BY_KEY: dict[str, Dataset] = {d.key: d for d in DATASETS}
BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}


def get_dataset(key: str) -> Dataset:
    """The catalogue entry with layout ``key`` (``mvtec``, ``visa``, …)."""
    if key not in BY_KEY:
        raise AnomclipError(f"unknown paper dataset {key!r} (choose from {', '.join(BY_KEY)})")
    return BY_KEY[key]


def named(name: str) -> Dataset | None:
    """The paper dataset a name stands for (its table name, layout key, folder or an alias, any
    case: ``"VisA"``, ``"visa"``, ``"MVTec AD"``, ``"mvtec"``); None for any other name."""
    want = name.strip().casefold()
    for d in DATASETS:
        if want in {n.casefold() for n in (d.name, d.key, d.folder, *d.aliases)}:
            return d
    return None


def folder_of(key: str) -> str:
    """The DATA_ROOT folder of the paper dataset with layout ``key``."""
    return get_dataset(key).folder
