"""Blocked low-precision k-NN search with float64 re-ranking and certification.

Internal module of :func:`geometry.neighbors.knn` (see its docstring
for the method). One :class:`_Searcher` holds the centred float64 data and
its augmented low-precision copies; :func:`knn_blocks` runs it over row
blocks on worker threads.
"""

from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

from ._utils import cpu_has_fast_bf16

# torch warns (once) that sparse CSR support is in beta; ``sampled_addmm`` on the
# CPU is stable for this use. A targeted filter: ``catch_warnings`` is not
# thread-safe and the re-ranking runs on worker threads.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)
with warnings.catch_warnings():  # torch warns once per process: use that up here, at import
    warnings.simplefilter("ignore")
    torch.sparse_csr_tensor(torch.zeros(2, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                            torch.zeros(0, dtype=torch.float64), size=(1, 1), check_invariants=False)

_LEVELS = ("bf16", "float32", "float64")
_TILE_BYTES = 1 << 23  # column tile of the float64 re-ranking (stays in cache)
_UNIT = {"bf16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}
_DTYPE = {"bf16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def _auto_level(device: torch.device, dim: int) -> str:
    """bf16 only where the product dominates: CPUs with native bf16 and D >= 512.

    Below that (and on GPUs, where float32 products are cheap) selection and
    re-ranking dominate, and float32's smaller candidate margin wins.
    """
    if device.type == "cuda":
        return "float32"
    return "bf16" if (cpu_has_fast_bf16() and dim >= 512) else "float32"


def _default_chunk(n_cols: int, device: torch.device | None = None) -> int:
    # ~64 MB of float32 scores per block on the CPU (512 MB on a GPU): buffers
    # are allocated once and reused.
    budget = (1 << 27) if (device is not None and device.type == "cuda") else (1 << 24)
    rows = max(16, min(8192, budget // max(n_cols, 1)))
    return 1 << int(math.log2(rows))


def _smallest(scores: torch.Tensor, m: int) -> torch.Tensor:
    """Column indices of the ``m`` smallest entries of each row (unsorted).

    Two-level selection: split the columns into G groups of g (group j =
    columns j, j + G, j + 2G, ...), take each group's minimum, keep the m
    groups with the smallest minima (they contain the m smallest entries),
    then the m smallest among those m * g entries. ~3x less top-k work than
    a top-k over all N columns when g ~ sqrt(N / m).
    """
    b, n = scores.shape
    g = int(math.sqrt(n / max(m, 1)))
    if g < 4 or n % g or m * g >= n:
        return torch.topk(scores, m, dim=1, largest=False, sorted=False).indices
    G = n // g
    mins = scores.view(b, g, G).amin(dim=1)
    top = torch.topk(mins, m, dim=1, largest=False, sorted=False).indices
    cols = (top.unsqueeze(2) + G * torch.arange(g, device=scores.device)).view(b, m * g)
    pick = torch.topk(torch.gather(scores, 1, cols), m, dim=1, largest=False, sorted=False).indices
    return torch.gather(cols, 1, pick)


class _Searcher:
    """State for one knn call: centred float64 data plus low-precision copies.

    The low-precision product returns squared distances directly: with
    a_i = [x_i, 1, n_i] and b_j = [-2 x_j, n_j, 1] (n = |x|^2 split into
    pieces exact in the low precision), a_i . b_j = |x_i - x_j|^2, so the
    rounding of the product's output is relative to the distance itself.
    """

    def __init__(self, X: torch.Tensor, k: int, margin: int | None, chunk: int, threads: int = 1):
        self.threads = threads
        self.X = X - X.mean(dim=0, keepdim=True)
        self.N, self.D = X.shape
        self.k = k
        self.chunk = chunk
        self.sq = (self.X * self.X).sum(dim=1)
        self.norm = self.sq.sqrt()
        self.sq_max = float(self.sq.max())
        self.l4 = (self.X**4).sum(dim=1) ** 0.25
        self.l4_max = float(self.l4.max())
        self.margin = margin
        self._low: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per-worker output buffers

    def n_candidates(self, level: str) -> int:
        k1 = self.k + 1
        if self.margin is not None:
            extra = self.margin
        else:
            extra = {"bf16": max(24, k1 // 2), "float32": max(4, k1 // 32), "float64": 4}[level]
        return min(self.N, k1 + extra)

    def _padded_cols(self, level: str) -> int:
        m = self.n_candidates(level)
        g = int(math.sqrt(self.N / m))
        if g < 4 or m * g >= self.N:
            return self.N
        return -(-self.N // g) * g

    def _split(self, v: torch.Tensor, dt: torch.dtype, pieces: int) -> list[torch.Tensor]:
        out, rest = [], v.clone()
        for _ in range(pieces):
            p = rest.to(dt)
            out.append(p)
            rest = rest - p.to(torch.float64)
        return out

    def low(self, level: str):
        """Augmented low-precision query (A) and key (B) matrices, keys padded."""
        with self._lock:
            if level not in self._low:
                self._low[level] = self._build_low(level)
        return self._low[level]

    def _build_low(self, level: str):
        if True:
            dt = _DTYPE[level]
            pieces = {"bf16": 3, "float32": 2, "float64": 1}[level]
            n_pad = self._padded_cols(level)
            dev = self.X.device
            Dp = self.D + 2 * pieces
            A = torch.zeros(self.N, Dp, dtype=dt, device=dev)
            B = torch.zeros(n_pad, Dp, dtype=dt, device=dev)
            A[:, : self.D].copy_(self.X)  # converts in place, no float64 temporaries
            B[: self.N, : self.D].copy_(self.X).mul_(-2.0)  # exact: power-of-two scaling
            for t, piece in enumerate(self._split(self.sq, dt, pieces)):
                A[:, self.D + t] = 1.0
                A[:, self.D + pieces + t] = piece
                B[: self.N, self.D + t] = piece
                B[: self.N, self.D + pieces + t] = 1.0
            B[self.N :, self.D] = 1e30  # padding columns: huge distance
            return A, B

    def bound(self, level: str, rows: torch.Tensor, worst: torch.Tensor) -> torch.Tensor:
        """Lower bound on the true squared distance of every non-candidate point.

        Non-candidates have a low-precision value >= ``worst``. Terms: rounding of
        the output (relative u, rigorous); rounding of the inputs,
        sum_k x_k y_k (d_k + e_k) with independent |d_k|, |e_k| <= u: 10 times
        its standard deviation u sqrt(2/3) sqrt(sum x_k^2 y_k^2) <= ... |x|_4 |y|_4
        (Hoeffding: exceeded with probability < 1e-13 per pair); and the
        float32 accumulation of D + 6 products (8 sigma).
        """
        return worst * (1.0 - _UNIT[level]) - self.error(level, rows)

    def error(self, level: str, rows: torch.Tensor) -> torch.Tensor:
        """Absolute error bound of the low-precision squared distances (besides the
        relative output rounding): input rounding + accumulation, see :meth:`bound`."""
        u = _UNIT[level]
        acc = 2.0**-24 if level != "float64" else 2.0**-53
        inp = 2.0 * 10.0 * 0.82 * u * self.l4[rows] * self.l4_max
        accum = 8.0 * acc * math.sqrt(self.D + 6) * (self.sq[rows] + self.sq_max)
        return inp + accum

    def scores(self, level: str, rows: torch.Tensor) -> torch.Tensor:
        """Approximate squared distances of ``rows`` to all points (padded), float32/64."""
        A, B = self.low(level)
        b = len(rows)
        bufs = self._local.__dict__
        if level not in bufs:
            bufs[level] = torch.empty(self.chunk, B.shape[0], dtype=A.dtype, device=A.device)
            if level == "bf16":
                bufs["bf16->f32"] = torch.empty(self.chunk, B.shape[0], dtype=torch.float32, device=A.device)
        out = bufs[level][:b]
        torch.mm(A[rows], B.T, out=out)
        if level == "bf16":
            out = bufs["bf16->f32"][:b].copy_(out)
        out[torch.arange(b, device=out.device), rows] = -float("inf")
        return out

    def exact(self, rows: torch.Tensor, cand: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """float64 squared distances between ``rows`` and their candidates.

        Only the first ``lengths[i]`` candidates of row i are evaluated (the
        rest get +inf). CPU: exact dot products at those positions only
        (``torch.sparse.sampled_addmm``); CUDA: gather + batched matvec.
        """
        b, m = cand.shape
        dev = self.X.device
        if dev.type == "cpu":
            if lengths is None:
                lengths = torch.full((b,), m, dtype=torch.int64)
            keep = torch.arange(m).unsqueeze(0) < lengths.unsqueeze(1)
            pos = torch.nonzero(keep.reshape(-1)).squeeze(1)  # flat positions in (b, m)
            rr = torch.div(pos, m, rounding_mode="floor")
            cc = cand.reshape(-1)[pos]
            # column tiles that stay in cache: the data are streamed once per
            # block instead of gathered once per pair (~3x less memory traffic)
            tile = max(256, _TILE_BYTES // (self.D * 8))
            t_of = torch.div(cc, tile, rounding_mode="floor")
            order = torch.argsort(t_of * b + rr, stable=True)
            rr, cc, pos, t_of = rr[order], cc[order], pos[order], t_of[order]
            bounds = torch.searchsorted(t_of, torch.arange(0, -(-self.N // tile) + 1)).tolist()
            Xq = self.X[rows]
            dots = torch.empty(len(pos), dtype=torch.float64)
            for t in range(len(bounds) - 1):
                s0, s1 = bounds[t], bounds[t + 1]
                if s0 == s1:
                    continue
                c0 = t * tile
                c1 = min(self.N, c0 + tile)
                crow = torch.zeros(b + 1, dtype=torch.int64)
                torch.cumsum(torch.bincount(rr[s0:s1], minlength=b), 0, out=crow[1:])
                S = torch.sparse_csr_tensor(crow, cc[s0:s1] - c0, torch.zeros(s1 - s0, dtype=torch.float64),
                                            size=(b, c1 - c0), check_invariants=False)
                dots[s0:s1] = torch.sparse.sampled_addmm(S, Xq, self.X[c0:c1].T, beta=0.0).values()
            vals = self.sq[rows][rr] + self.sq[cc] - 2.0 * dots
            out = torch.full((b * m,), float("inf"), dtype=torch.float64)
            out[pos] = vals.clamp_(min=0.0)
            return out.view(b, m)
        out = torch.empty(b, m, dtype=torch.float64, device=dev)
        sub = max(1, min(b, (64 << 20) // max(m * self.D * 8, 1)))
        buf = torch.empty(sub * m, self.D, dtype=torch.float64, device=dev)
        for s in range(0, b, sub):
            e = min(b, s + sub)
            g = buf[: (e - s) * m]
            torch.index_select(self.X, 0, cand[s:e].reshape(-1), out=g)
            torch.bmm(g.view(e - s, m, self.D), self.X[rows[s:e]].unsqueeze(2), out=out[s:e].unsqueeze(2))
        out.mul_(-2.0).add_(self.sq[cand]).add_(self.sq[rows].unsqueeze(1))
        return out.clamp_(min=0.0)

    def search(self, rows: torch.Tensor, level: str):
        """Neighbours of ``rows`` at one precision level; returns (d2, idx, certified).

        Candidates are re-ranked in float64 only as far as needed: with
        lower/upper bounds L_j <= d2_j <= U_j from the low-precision values,
        a candidate whose L_j exceeds the (k+1)-th smallest U cannot be among
        the k + 1 nearest and is not evaluated.
        """
        m = self.n_candidates(level)
        k1 = self.k + 1
        S = self.scores(level, rows)
        cand = _smallest(S, m)
        approx = torch.gather(S, 1, cand).to(torch.float64)
        worst = approx.amax(dim=1)
        order = torch.argsort(approx, dim=1)  # ascending approximate distance (self first: -inf)
        cand, approx = torch.gather(cand, 1, order), torch.gather(approx, 1, order)
        lengths = None
        if m > k1:
            u = _UNIT[level]
            err = self.error(level, rows).unsqueeze(1)
            upper = approx * (1.0 + u) + err
            lower = approx * (1.0 - u) - err
            U = upper[:, k1 - 1 : k1]  # approx is sorted, so upper is too
            lengths = (lower <= U).sum(dim=1).clamp_(min=k1)
        d2 = self.exact(rows, cand, lengths)
        is_self = cand == rows.unsqueeze(1)
        d2 = torch.where(is_self, torch.full_like(d2, -1.0), d2)
        # deterministic order: by distance, ties by index
        order = torch.argsort(cand, dim=1)
        cand, d2 = torch.gather(cand, 1, order), torch.gather(d2, 1, order)
        order = torch.argsort(d2, dim=1, stable=True)
        cand, d2 = torch.gather(cand, 1, order), torch.gather(d2, 1, order)
        cand, d2 = cand[:, :k1], d2[:, :k1].clamp(min=0.0)
        if m >= self.N:
            ok = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
        else:
            ok = d2[:, -1] <= self.bound(level, rows, worst)
        return d2, cand, ok


def knn_blocks(Xt, k, levels, chunk, margin, threads):
    """Row blocks processed by ``threads`` worker threads (CPU), each running
    single-threaded kernels: parallel without an OpenMP barrier per small op."""
    N = Xt.shape[0]
    dev = Xt.device
    s = _Searcher(Xt, k, margin, chunk, threads)
    dist2 = torch.empty(N, k + 1, dtype=torch.float64, device=dev)
    idx = torch.empty(N, k + 1, dtype=torch.int64, device=dev)
    state = {"start_level": 0}

    def block(c0: int) -> dict:
        stats = {lv: 0 for lv in levels}
        pending = torch.arange(c0, min(N, c0 + chunk), device=dev)
        n_block = len(pending)
        first = state["start_level"]
        for li in range(first, len(levels)):
            lv = levels[li]
            d2, nb, ok = s.search(pending, lv)
            if li == len(levels) - 1:
                ok = torch.ones_like(ok)
            dist2[pending[ok]] = d2[ok]
            idx[pending[ok]] = nb[ok]
            stats[lv] += int(ok.sum())
            # adaptive: when a level certifies less than half of a block, start
            # the next blocks one level up (cheaper than doing both).
            if li == first and li < len(levels) - 1 and int(ok.sum()) < 0.5 * n_block:
                state["start_level"] = max(state["start_level"], li + 1)
            pending = pending[~ok]
            if len(pending) == 0:
                break
        return stats

    starts = list(range(0, N, chunk))
    workers = min(threads, len(starts)) if dev.type == "cpu" else 1
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            per_block = list(ex.map(block, starts))
    else:
        per_block = [block(c0) for c0 in starts]
    stats = {lv: sum(b[lv] for b in per_block) for lv in levels}
    dist2[:, 0] = 0.0
    return dist2, idx, stats




def dense_blocks(Xt: torch.Tensor, k: int, rows_per_block: int):
    """Exact float64 neighbours the plain way: blocks of ``rows_per_block`` rows times all points
    as one float64 matrix product on centred data, then ``topk``; ties ordered by index.

    ``knn(method="blocked")``: at large k (say k >= 256) the candidate re-ranking of
    :func:`knn_blocks` gathers ~1.5 k coordinates per row and dominates (Doimo et al.'s
    landscape, maxk = 1000: 22 s against 1.9 s here, bench/RESULTS_landscape.md). Memory: one
    (rows_per_block, N) float64 block plus the (N, k + 1) result. Returns ``(dist2, idx)``.
    """
    N = Xt.shape[0]
    Xc = Xt - Xt.mean(dim=0, keepdim=True)  # centring: smaller norms, smaller cancellation error
    sq = (Xc * Xc).sum(dim=1)
    dist2 = torch.empty(N, k + 1, dtype=torch.float64, device=Xt.device)
    idx = torch.empty(N, k + 1, dtype=torch.int64, device=Xt.device)
    for s in range(0, N, rows_per_block):
        e = min(N, s + rows_per_block)
        d2 = torch.mm(Xc[s:e], Xc.T).mul_(-2.0).add_(sq[s:e, None]).add_(sq[None, :]).clamp_(min=0.0)
        r = torch.arange(e - s, device=Xt.device)
        d2[r, r + s] = -1.0  # self first
        vals, cols = torch.topk(d2, k + 1, dim=1, largest=False, sorted=False)
        order = torch.argsort(cols, dim=1)  # deterministic: by distance, ties by index
        vals, cols = torch.gather(vals, 1, order), torch.gather(cols, 1, order)
        order = torch.argsort(vals, dim=1, stable=True)
        dist2[s:e], idx[s:e] = torch.gather(vals, 1, order), torch.gather(cols, 1, order)
    dist2[:, 0] = 0.0
    return dist2, idx
