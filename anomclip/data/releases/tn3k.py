"""TN3K (thyroid nodules): ``test-image/*.jpg`` + ``test-mask/*.jpg``; ``trainval-*`` is ignored.

``tn3k.zip`` unpacks into ``Thyroid Dataset/tn3k/`` (two wrapper folders, looked through).
"""
from __future__ import annotations

from .listing import looks_paired, paired_reader

read_tn3k = paired_reader(("test-image",), ("test-mask",), "thyroid", "TN3K")
looks_tn3k = looks_paired(("test-image",), ("test-mask",))
