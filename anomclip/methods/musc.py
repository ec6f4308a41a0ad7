"""MuSc (Li et al., ICLR 2024): training-free, text-free, *transductive* mutual scoring.

Written from the equations of the authors' code (xrli-U/MuSc at ``b76b93d``; docs/after-anomalyclip.md,
MuSc): nothing is copied. Every image of a category is scored against the **other unlabelled
test images of that category**, so a score depends on the set it is scored with.

* Features: the raw residual stream (no ``ln_post``, no ``proj``) after blocks 6, 12, 18, 24
  (¼, ½, ¾, 1 of the depth; their 0-based ``feature_layers`` 5/11/17/23), class token dropped;
  the global feature is CLIP's image embedding ``ln_post(x[CLS]) @ proj``, normalised (RsCIN).
* **LNAMD** (:func:`aggregate`), per layer m and degree r ∈ {1, 3, 5}: standardise each image
  jointly over all C·H·W values (a LayerNorm over ``[C, H, W]``, weight 1, bias 0, eps 1e-5),
  average every channel over the r × r neighbourhood of each patch (zero padding, divided by r²),
  L2-normalise each patch.
* **MSM** (:func:`mutual_scores`): for patch p of image i and every other image j,
  ``d_j(p) = min_q ‖f_i(p) − f_j(q)‖₂``; the patch's score is the mean of the sorted d_j(p) at
  positions ``[⌊lo·(N−1)⌋, ⌊hi·(N−1)⌋)`` (the interval [0, 0.3): the 30 % nearest images).
  The comparisons run in blocks of images (:attr:`MuSc.block`) so memory stays bounded.
* Map: the mean over layers, then over r, on the patch grid, upsampled bilinearly
  (``align_corners=True``) to the input size; no smoothing. Initial image score: the map's maximum.
* **RsCIN** (:func:`rscin`): min–max normalise the category's scores, ``W = G Gᵀ`` of the unit
  global features; for each k keep each row's k largest entries, ``s_k = D⁻¹ W_k ĉ``; the score is
  the mean over k (k ∈ {1, 2, 3}; VisA {1, 8, 9}: :attr:`Recipe.rscin_k`).

The engine calls :meth:`MuSc.score_category` once per category with all its images
(:attr:`MuSc.transductive`); :meth:`MuSc.score_features` scores a batch *as* a category.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import AnomclipError
from ..model.anomalyclip import AnomalyOutput
from .frozen import FrozenClipMethod
from .vand import RAW, VAND

#: the default number of images per comparison block (see :func:`block_bytes`)
DEFAULT_BLOCK = 8


def aggregate(tokens: torch.Tensor, r: int, eps: float = 1e-5) -> torch.Tensor:
    """LNAMD of one layer: ``[B, P, C]`` patch tokens (no class token) → ``[B, P, C]`` unit vectors."""
    b, p, c = tokens.shape
    g = int(round(math.sqrt(p)))
    x = tokens.transpose(1, 2).reshape(b, c, g, g)
    x = F.layer_norm(x, x.shape[1:], eps=eps)  # each image standardised over all of C·H·W
    if r > 1:
        x = F.avg_pool2d(x, r, stride=1, padding=r // 2, count_include_pad=True)
    z = x.reshape(b, c, p).transpose(1, 2)
    return z / z.norm(dim=-1, keepdim=True)


def interval_positions(n: int, interval: tuple[float, float]) -> tuple[int, int]:
    """The sorted positions ``[k_lo, k_hi)`` averaged among ``n − 1`` other images.

    ``k = ⌊fraction·(n − 1)⌋`` as the authors' code; where that leaves no image (n ≤ 4 with
    [0, 0.3): their code returns NaN) the nearest image is used, ``[0, 1)``.
    """
    if n < 2:
        raise AnomclipError(f"MuSc scores each image against the other images of its category: {n} image "
                            "is not enough (give at least 2, ideally dozens)")
    lo, hi = (int(f * (n - 1)) for f in interval)
    lo, hi = min(lo, hi), max(lo, hi)
    if hi <= lo:
        lo, hi = 0, 1
    return lo, hi


def block_bytes(patches: int, block: int, n: int, itemsize: int = 4) -> int:
    """Bytes of the comparison buffers of :func:`mutual_scores` at once: one query image's squared
    distances to a block of ``block`` images (``P × block·P``), its row minima and its table of
    minima against all ``n`` images (``P × n``)."""
    return itemsize * (patches * block * patches + 2 * patches * n)


def mutual_scores(z: torch.Tensor, interval: tuple[float, float] = (0.0, 0.3), block: int = DEFAULT_BLOCK
                  ) -> torch.Tensor:
    """MSM of one layer and degree: ``[N, P, C]`` unit features → ``[N, P]`` patch scores.

    Image i's patches are compared with ``block`` other images at a time: the squared distances
    ``‖x‖² + ‖y‖² − 2 x·y`` of a ``P × block·P`` block, their minimum over each image's patches;
    the square root is taken of the minima (it is monotone). Memory: :func:`block_bytes` beside z.
    """
    n, p, c = z.shape
    lo, hi = interval_positions(n, interval)
    block = max(1, int(block))
    sq = (z * z).sum(-1)  # [N, P]
    out = torch.empty(n, p, dtype=z.dtype, device=z.device)
    for i in range(n):
        table = torch.empty(p, n, dtype=z.dtype, device=z.device)  # min over j's patches, per j
        for j0 in range(0, n, block):
            j1 = min(n, j0 + block)
            d2 = z[i] @ z[j0:j1].reshape(-1, c).T  # [P, (j1−j0)·P]
            d2.mul_(-2).add_(sq[i][:, None]).add_(sq[j0:j1].reshape(1, -1))
            table[:, j0:j1] = d2.reshape(p, j1 - j0, p).amin(-1)
            del d2
        table[:, i] = math.inf  # not against itself
        nearest = table.topk(hi, dim=-1, largest=False, sorted=True).values[:, lo:]
        out[i] = nearest.clamp_min(0).sqrt().mean(-1)
    return out


def parse_k(entries, dataset: str | None) -> tuple[int, ...]:
    """RsCIN's k list for ``dataset`` from :attr:`Recipe.rscin_k` (``"1:2:3"``, ``"VisA=1:8:9"``)."""
    default, named = (), {}
    for e in entries:
        name, sep, ks = e.rpartition("=")
        try:
            ks = tuple(int(k) for k in ks.replace(":", ",").split(",") if k.strip())
        except ValueError:
            ks = ()
        if not ks or min(ks) < 1:
            raise AnomclipError(f"rscin_k entry {e!r} must read K:K:… or DATASET=K:K:… with whole numbers ≥ 1")
        if sep:
            named[name.strip()] = ks
        else:
            default = ks
    if dataset is not None:
        from ..data.catalogue import named as catalogue_name

        known = catalogue_name(dataset)
        for key in ((known.name if known is not None else None), dataset):
            if key in named:
                return named[key]
    return default


def rscin(scores: torch.Tensor, cls: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """RsCIN: ``[N]`` scores, ``[N, D]`` unit class features → ``[N]`` re-scored (mean over k).

    An empty ``ks`` returns the scores unchanged. k is at most N (a set smaller than k keeps all).
    """
    if not ks:
        return scores
    span = scores.max() - scores.min()
    c = (scores - scores.min()) / span if span > 0 else torch.zeros_like(scores)
    w = cls @ cls.T
    n = len(scores)
    out = torch.zeros_like(c)
    for k in ks:
        k = min(k, n)
        top = w.topk(k, dim=-1).indices
        wk = torch.zeros_like(w).scatter_(1, top, w.gather(1, top))
        out = out + (wk @ c) / wk.sum(-1)
    return out / len(ks)


def score_set(load, n: int, layers, r_list, grid: int, size: int, interval=(0.0, 0.3), ks=(1, 2, 3),
              sigma: float = 0.0, block: int = DEFAULT_BLOCK, chunk: int = 16, device="cpu", with_map: bool = True):
    """MuSc on one set of ``n`` images: ``(scores [n] float32, maps [n, size, size] float32 or None,
    patch-grid map [n, grid·grid] float64)``.

    ``load(rows, layer)``: raw patch tokens ``[len(rows), P, W]`` of block ``layer`` (``None``: the
    global features ``[len(rows), D]``). Held at once: one (layer, r)'s ``[n, P, C]`` features, a
    chunk of ``chunk`` images being aggregated or upsampled, one comparison block
    (:func:`block_bytes`) and the maps; :func:`peak_bytes` adds them up.
    """
    chunks = [list(range(i, min(n, i + chunk))) for i in range(0, n, chunk)]
    per_r = []
    z = None
    for r in r_list:
        per_layer = []
        for layer in layers:
            for c in chunks:  # LNAMD a few images at a time, into one [n, P, C] tensor
                zc = aggregate(load(c, layer).to(device).float(), r)
                if z is None:
                    z = torch.empty(n, *zc.shape[1:], dtype=zc.dtype, device=zc.device)
                z[c[0]:c[-1] + 1] = zc
                del zc
            per_layer.append(mutual_scores(z, interval, block).double())
        per_r.append(torch.stack(per_layer).mean(0))  # the mean over layers, then over r (their order)
    del z
    patch = torch.stack(per_r).mean(0)  # [n, P]
    amap = torch.empty(n, size, size, device=patch.device) if with_map else None
    first = torch.empty(n, dtype=torch.float64, device=patch.device)
    for c in chunks:  # upsampled (in float64, as theirs) a few images at a time
        up = F.interpolate(patch[c[0]:c[-1] + 1].reshape(len(c), 1, grid, grid), size=(size, size),
                           mode="bilinear", align_corners=True)[:, 0]
        if sigma and sigma > 0:
            from ..model.scoring import gaussian_blur

            up = gaussian_blur(up, sigma)
        first[c[0]:c[-1] + 1] = up.flatten(1).amax(1)
        if amap is not None:
            amap[c[0]:c[-1] + 1] = up
        del up
    g = torch.cat([load(c, None).to(device).float() for c in chunks])
    scores = rscin(first, F.normalize(g.double(), dim=-1), tuple(ks))
    return scores.float(), amap, patch


def peak_bytes(n: int, patches: int, width: int, size: int, block: int = DEFAULT_BLOCK, chunk: int = 16,
               layers: int = 4, degrees: int = 3, with_map: bool = True) -> dict:
    """What :func:`score_set` holds at its peak, in bytes, by part (fp32 features, float64 scores).

    ``features``: one (layer, r)'s aggregated ``[n, P, C]``; ``aggregation``: a chunk's tokens and
    the LayerNorm, pooling and normalisation outputs (4 copies); ``comparison``: one block's
    squared distances and minima, the table of minima, the top-k (:func:`mutual_scores`);
    ``scores``: the per-layer and per-r patch scores (float64); ``maps``: the float32 maps and a
    chunk's float64 upsampling (2 copies). Not counted: the cached features themselves (read
    from the cache's memory maps a chunk at a time) and the backbone.
    """
    c = min(chunk, n)
    hi = max(1, int(0.3 * (n - 1)))
    parts = {
        "features": 4 * n * patches * width,
        "aggregation": 4 * 4 * c * patches * width,
        "comparison": 4 * (patches * block * patches + patches * block + 3 * patches * n) + 12 * patches * hi,
        "scores": 8 * (layers + degrees + 1) * n * patches,
        "maps": (4 * n * size * size if with_map else 0) + 2 * 8 * c * size * size,
    }
    parts["total"] = sum(parts.values())
    return parts


class MuSc(FrozenClipMethod):
    """MuSc's zero-shot scoring: each category's test images score each other (no text, no training)."""

    #: scored per category with all its images (engine: :meth:`score_category`)
    transductive = True

    def __init__(self, clip_model, tokenizer, info, recipe):
        super().__init__(clip_model, tokenizer, info, recipe)
        self.modes = (RAW,)
        self.r_list = tuple(int(r) for r in (recipe.musc_r or (1,)))
        for r in self.r_list:
            if r < 1 or r % 2 == 0:
                raise AnomclipError(f"recipe {recipe.name!r}: musc_r {r} must be an odd whole number ≥ 1")
        self.interval = tuple(float(x) for x in recipe.musc_interval)
        if len(self.interval) != 2 or not all(0.0 <= x <= 1.0 for x in self.interval):
            raise AnomclipError(f"recipe {recipe.name!r}: musc_interval must be two fractions in [0, 1]")
        parse_k(recipe.rscin_k, None)  # checked now, chosen per dataset when scoring
        #: images per comparison block (memory: :func:`block_bytes`); results do not depend on it
        self.block = DEFAULT_BLOCK
        #: images aggregated (LNAMD) and upsampled at a time
        self.chunk = 16

    # the features are VAND's: raw tokens of the recipe's blocks and CLIP's image embedding
    feature_spec = VAND.feature_spec
    _encode = VAND._encode

    def sentences(self, cls_name: str):  # pragma: no cover - MuSc has no text
        return [], []

    def text_for(self, cls_names=None):
        """MuSc uses no text (an empty tensor, so the engine's batch loop runs unchanged)."""
        return torch.empty(0, device=self.device)

    def score_category(self, load, n: int, dataset: str | None = None, with_map: bool = True,
                       sigma: float | None = None) -> AnomalyOutput:
        """Scores ``[n]`` and maps ``[n, S, S]`` of one category's ``n`` images, scored jointly.

        ``load(rows, layer)`` returns the features of the images ``rows`` (indices in 0..n−1):
        the raw patch tokens ``[len(rows), P, W]`` of block ``layer``, or with ``layer=None`` the
        global features ``[len(rows), D]``. One (layer, r) at a time is held for all n images.
        """
        grid, size = self.info.grid, self.image_size
        sigma = self.recipe.sigma if sigma is None else sigma
        scores, amap, patch = score_set(load, n, self.layers, self.r_list, grid, size, self.interval,
                                        parse_k(self.recipe.rscin_k, dataset), sigma, self.block, self.chunk,
                                        self.device, with_map)
        self.last_grid = patch.reshape(n, grid, grid).cpu()  # the last category's patch-grid map (inspection)
        return AnomalyOutput(scores, amap, torch.empty(0), {})

    def score_features(self, g: torch.Tensor, feats: dict, text=None, with_map: bool = True,
                       sigma: float | None = None, dataset: str | None = None) -> AnomalyOutput:
        """The batch's images scored *as one category* (transductive: a batch of one is refused)."""
        if g.shape[0] < 2:
            raise AnomclipError("MuSc scores each image against the other images of its category: give a folder "
                                "of images of one category (at least 2), not a single image")

        def load(rows, layer):
            return g[rows] if layer is None else feats[RAW][layer][rows]

        return self.score_category(load, g.shape[0], dataset=dataset, with_map=with_map, sigma=sigma)
