import gc
import os
import tempfile

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# the feature cache of every test (profiles default to .cache/features in the checkout): a
# temporary folder, so that a test run writes into the checkout only what `make html` reads
os.environ.setdefault("ANOMCLIP_CACHE", os.path.join(tempfile.mkdtemp(prefix="anomclip-tests-"), "features"))
# torch's threads: the cores this process has to itself. Under pytest-xdist (`make test` runs
# `-n 2`) the workers share the machine, so each takes its share, and so do the processes it
# starts (a chapter's kernel, a CLI run): OpenMP threads spin, and two processes that both ask
# for every core slow each other down many times over
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_threads = max(1, min(2, (os.cpu_count() or 1) // _workers))
if _workers > 1:
    os.environ["OMP_NUM_THREADS"] = str(_threads)
torch.set_num_threads(_threads)
# the objects torch and the other libraries made at import stay out of the cyclic garbage
# collector's scans from here on (they live as long as the process): every later allocation-heavy
# step (collecting the test modules, a grammar built at import) no longer re-traverses them
gc.freeze()


@pytest.fixture(scope="session")
def tiny_clip():
    """The embedded tiny random CLIP at 96 px (grid 12×12, 8 visual blocks, 12 text blocks)."""
    from anomclip.model.backbone import load_clip

    return load_clip("tiny-random", None, image_size=96)


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """The synthetic two-domain benchmark at its defaults (seed 0), generated once per test process
    and shared: a test that changes data copies it first."""
    from anomclip.data.synth import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synth"))


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 96, 96, generator=g)


@pytest.fixture
def toy_chapter():
    """A fresh :class:`toy_chapter.ToyChapter` (runs computed from the recipe, no training)."""
    from toy_chapter import ToyChapter

    return ToyChapter()
