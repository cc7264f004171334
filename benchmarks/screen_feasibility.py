"""Could a cheaper screen make exact both-direction mining beat faiss-cpu by 2.5x on this CPU?

    python benchmarks/screen_feasibility.py            # about a minute on 2 cores
    python benchmarks/screen_feasibility.py --m 20000  # more keys: smaller top-k gaps

Any exact fp32 method does the fp32 GEMM once, and faiss-cpu's two IndexFlatIP searches cost about
two GEMMs (benchmarks/RESULTS.md), so exact fp32 tops out near 2x faiss. Going further needs a
screen in a cheaper arithmetic that still *proves* the fp32 top-k (xlrepro.ops.screen): the screen
must be fast (its GEMM rate) and tight (its error bound must be smaller than the gaps between the
k-th and the (k + extra + 1)-th best scores, or the row falls back to exact scoring).

Part 1, rate: one (S x d) x (d x S) product in fp32, bf16 and int8, timed in the same run (minimum of
``--repeats``). int8 is torch's dynamically quantized Linear (per-row int8 keys, the queries quantized
per call, fp32 out) on each quantized engine this torch has: the fastest int8 path torch offers on
a CPU, and what an int8 screen would call.

Part 2, tightness: on N random unit queries against M random unit keys (the benchmark's data), the
share of rows a screen certifies with k = 4 and ``--extra`` candidates beyond k, by the rule of
xlrepro.ops.screen (step 3): certified when the k-th best exact score among the candidates is
strictly above v + (output rounding of v) + B_i, v the best screened score outside the candidates,
B_i the rigorous bound on |screen - fp32 reference| over the row. bf16 uses xlrepro.ops.screen's
own norms and bound. int8 (symmetric, one scale per row, nearest) uses the same bound form with
the int8-rounded vectors; its integer accumulation is exact, so it has no output-rounding term.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
import warnings

import torch

from xlrepro.ops import screen as scr


def best_time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def int8_linear(keys: torch.Tensor):
    """torch's dynamic int8 Linear with the keys as its weight (per-row scales)."""
    n, d = keys.shape
    scale = (keys.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized tensors; the kernels are what we time
        w = torch.quantize_per_channel(keys, scale, torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        lin = torch.ao.nn.quantized.dynamic.Linear(d, n, bias_=False, dtype=torch.qint8)
        lin.set_weight_bias(w, None)
    return lin


def rates(size: int, d: int, repeats: int) -> list[tuple[str, float, float]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(size, d, generator=g)
    y = torch.randn(size, d, generator=g)
    out = [("fp32 (torch.mm)", best_time(lambda: x @ y.T, repeats))]
    xb, yb = x.bfloat16(), y.bfloat16()
    out.append(("bf16 (torch.mm)", best_time(lambda: xb @ yb.T, repeats)))
    engines = [e for e in torch.backends.quantized.supported_engines if e not in ("none", "qnnpack")]
    before = torch.backends.quantized.engine
    try:
        for eng in engines:
            torch.backends.quantized.engine = eng
            lin = int8_linear(y)
            out.append((f"int8 (dynamic Linear, {eng})", best_time(lambda: lin(x), repeats)))  # noqa: B023  (called at once)
    finally:
        torch.backends.quantized.engine = before
    flops = 2 * size * size * d
    return [(name, t, flops / t / 1e9) for name, t in out]


def _int8_norms(t: torch.Tensor):
    """(||t||, ||t~||, ||t - t~||) in float64 and max|t~|, t~ = per-row symmetric int8 of t."""
    s = (t.abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-30)
    q = (t / s).round().clamp(-127, 127) * s
    t64, q64 = t.double(), q.double()
    nrm = lambda v: torch.linalg.vector_norm(v, dim=1) * (1 + 1e-12)  # noqa: E731
    return nrm(t64), nrm(q64), nrm(t64 - q64), float(q.abs().max()), q


def certified(n: int, m: int, d: int, k: int, extra: int) -> list[tuple[str, float, float, float]]:
    g = torch.Generator().manual_seed(1)
    X = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    Y = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    exact = X @ Y.T  # the fp32 reference's scores
    c = k + extra
    rows = []
    for name in ("bf16", "int8"):
        if name == "bf16":
            nx, nxs, ex, ax, xs = scr._norms(X, d)
            ny, nys, ey, ay, ys = scr._norms(Y, d)
            screened = (xs.float() @ ys.float().T).bfloat16()  # fp32 accumulation, bf16 output
        else:
            nx, nxs, ex, ax, xs = _int8_norms(X)
            ny, nys, ey, ay, ys = _int8_norms(Y)
            screened = xs.double() @ ys.double().T  # the integer sums are exact; scaled once
        B = scr._bounds(nx, nxs, ex, ny, nys, ey, d, ax + ay)
        top = screened.float().topk(c + 1, dim=1)
        v = top.values[:, c]
        upper = scr._upper(v, B) if name == "bf16" else v.double() * (1 + 2.0**-23) + B
        kth = exact.gather(1, top.indices[:, :c]).topk(k, dim=1).values[:, k - 1].double()
        ok = kth > upper
        rows.append((name, ok.double().mean().item(), B.median().item(), (kth - v.double()).median().item()))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=4096, help="rows of each side of the timed product")
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=2000, help="queries in the certification part")
    p.add_argument("--m", type=int, default=10000, help="keys in the certification part")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--extra", type=int, default=None, help="candidates beyond k (default: the screen's)")
    args = p.parse_args()
    extra = scr.default_extra(args.k, max(args.n, args.m)) if args.extra is None else args.extra
    av = scr.availability()
    print(
        f"# screen feasibility  {datetime.date.today()}  {platform.machine()}  threads={torch.get_num_threads()}"
        f"  torch {torch.__version__}  cpu capability {av['cpu_capability']}"
        f"  native bf16: {av['native_bf16'] or 'none'}"
    )
    print(f"\n## rate: ({args.size} x {args.d}) x ({args.d} x {args.size}), minimum of {args.repeats}\n")
    print("| arithmetic | time s | GFLOP/s | x fp32 rate |")
    print("|---|---|---|---|")
    r = rates(args.size, args.d, args.repeats)
    for name, t, gf in r:
        print(f"| {name} | {t:.3f} | {gf:.0f} | {r[0][1] / t:.2f} |")
    print(
        f"\n## certified rows: {args.n} random unit queries x {args.m} keys, d = {args.d}, "
        f"k = {args.k}, {extra} extra candidates\n"
    )
    print("| screen | certified rows | median bound B_i | median gap (k-th exact - v) |")
    print("|---|---|---|---|")
    for name, share, b, gap in certified(args.n, args.m, args.d, args.k, extra):
        print(f"| {name} | {share:.1%} | {b:.2e} | {gap:.2e} |")
    print(
        "\nA row that is not certified is recomputed exactly over all M keys, so a screen saves time only"
        " when nearly every row is certified and its GEMM is much faster than fp32."
    )


if __name__ == "__main__":
    main()
