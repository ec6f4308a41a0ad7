"""Benchmarks: each function measures and returns data (dicts and lists); none prints or asserts a time.

``anomclip bench`` (anomclip/cli.py) runs them, prints a summary and writes JSON. One module per
thing measured:

* :mod:`.model`       one recipe's model: the forward pass, the text side, training, AUPRO (``anomclip bench``)
* :mod:`.forward`     plain open_clip vs the DPAM forward vs a naive second pass for the surrogate path
* :mod:`.text`        the text features: first call vs cached call
* :mod:`.training`    seconds per epoch with the feature cache vs recomputing the features
* :mod:`.metrics`     exact AUPRO and the pixel metrics, beside the implementation they replaced
  (:mod:`.metrics_baseline`) (``anomclip bench aupro``)
* :mod:`.methods`     images/s of each method, and what the shared feature cache saves
  (``anomclip bench methods``)
* :mod:`.workbench`   seconds from a workbench's Run to its new row, per ablation chapter (``anomclip bench workbench``)
* :mod:`.predict`     ``anomclip predict``'s peak memory and speed on folders of N images (``anomclip bench predict``)
* :mod:`.fingerprint` hashing a dataset: first hash, re-check by stat, full verify (``anomclip bench fingerprint``)
* :mod:`.timing`      the timing helpers they share

This package sits above the book: it may import every layer below it, and only the CLI and the
chapters import it.
"""
