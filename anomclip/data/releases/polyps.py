"""The colonoscopy polyp sets: CVC-ClinicDB, CVC-ColonDB, Kvasir-SEG, Endo (EndoTect 2020).

Every image holds a polyp; its mask lies in a folder beside the images, paired by file stem.
CVC-ClinicDB is published as ``Original/`` + ``Ground Truth/``; the others (and the widely
redistributed ClinicDB copy) as ``images/`` + ``masks/``, which the four share: the folder name
tells them apart (:func:`anomclip.data.releases.locate`).
"""
from __future__ import annotations

from .listing import looks_paired, paired_reader

#: The folders of PraNet's ``TestDataset`` copies (and of Kvasir-SEG, Endo).
IMAGES, MASKS = ("images",), ("masks",)

read_clinicdb = paired_reader(("original",) + IMAGES, ("ground truth", "groundtruth") + MASKS, "colon",
                              "CVC-ClinicDB")
read_colondb = paired_reader(IMAGES, MASKS, "colon", "CVC-ColonDB")
read_kvasir = paired_reader(IMAGES, MASKS, "colon", "Kvasir")
read_endo = paired_reader(IMAGES, MASKS, "colon", "Endo")

#: ClinicDB as released (``Original/`` + ``Ground Truth/``); the widely redistributed copy
#: (``images/`` + ``masks/``) counts only in a folder named like it (``Layout.named_only``).
looks_clinicdb = looks_paired(("original",), ("ground truth", "groundtruth"))
looks_polyps = looks_paired(IMAGES, MASKS)
