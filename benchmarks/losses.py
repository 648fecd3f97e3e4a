"""Loss benchmark: NT-Xent forward + backward time and peak memory, side by side.

    python benchmarks/losses.py                          # CPU, N = 256 .. 8192 pairs, D = 128
    python benchmarks/losses.py --device cuda --sizes 4096 16384 65536 262144
    python benchmarks/losses.py --dtype bfloat16 --num-views 4 --impls floor contrastkit_tiled
    bash benchmarks/gpu_check.sh                         # the prepared GPU run (see there)

Rows: the matmul floor (the three [2N, 2N] matmuls of forward + backward), a plain PyTorch
NT-Xent (log-sum-exp over a masked similarity matrix), contrastkit's dense and tiled core,
lightly's NTXentLoss and DCLLoss (loaded from its files, see ``anchors.py``), contrastkit's DCL,
and pytorch-metric-learning's NTXentLoss (pair enumeration; small N only); with
``--num-views V > 2`` the contrastkit rows are the pairwise InfoNCE over V views and the floor
has V·N rows (the anchors take two views only and are skipped). ``--dtype bfloat16`` makes the
embeddings bf16: the floor and the plain version compute in bf16, contrastkit upcasts to fp32
inside the loss. Every measurement
runs in its own subprocess so that peak memory is that run's alone: CUDA peak allocated
memory on a GPU, peak resident set size growth on the CPU. Writes
``benchmarks/results/losses.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from anchors import INSTALL, load_lightly_losses

RESULTS = Path(__file__).parent / "results" / "losses.json"
IMPLS = (
    "floor",
    "plain",
    "contrastkit_dense",
    "contrastkit_tiled",
    "contrastkit_triton",
    "lightly",
    "lightly_dcl",
    "contrastkit_dcl",
    "pml",
)


def _plain_nt_xent(z1, z2, temperature):
    import torch

    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return torch.nn.functional.cross_entropy(sim, targets)


def run_views(n: int, dim: int, views: list[int], repeats: int) -> list[dict]:
    """MV-DHEL and MV-InfoNCE forward + backward time at fixed N for several V (dense path)."""
    import torch

    from contrastkit.core import core_backend
    from contrastkit.losses import mv_dhel, mv_infonce

    records = []
    for v in views:
        for name, fn in (("mv_dhel", mv_dhel), ("mv_infonce", mv_infonce)):
            z = torch.randn(n, v, dim, requires_grad=True)
            with core_backend("dense"):
                fn(z).backward()
                start = time.perf_counter()
                for _ in range(repeats):
                    fn(z).backward()
            seconds = (time.perf_counter() - start) / repeats
            records.append({"loss": name, "pairs": n, "views": v, "seconds": seconds})
            print(json.dumps(records[-1]), flush=True)
    return records


TWO_VIEW_ONLY = ("plain", "lightly", "lightly_dcl", "pml")


def run_one(
    impl: str,
    n: int,
    dim: int,
    device: str,
    repeats: int,
    tile: int,
    warmup: bool = True,
    dtype: str = "float32",
    views: int = 2,
) -> dict:
    import torch

    torch.manual_seed(0)
    dev = torch.device(device)
    z = torch.randn(n, views, dim, device=dev, dtype=getattr(torch, dtype), requires_grad=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step():
        if impl == "floor":
            a = z.reshape(views * n, dim)
            s = a @ a.T
            g = torch.ones_like(s)
            return (g @ a, g.T @ a, s)
        if impl == "plain":
            loss = _plain_nt_xent(z[:, 0], z[:, 1], 0.1)
        elif impl == "contrastkit_dcl":
            from contrastkit.losses import dcl

            loss = dcl(z, temperature=0.1)
        elif impl.startswith("contrastkit"):
            from contrastkit.core import core_backend
            from contrastkit.losses import info_nce

            with core_backend(impl.removeprefix("contrastkit_"), tile_size=tile):
                loss = info_nce(z, temperature=0.1)
        elif impl.startswith("lightly"):
            lightly = load_lightly_losses()
            if lightly is None:
                raise RuntimeError(f"lightly is not installed ({INSTALL})")
            cls = lightly.DCLLoss if impl == "lightly_dcl" else lightly.NTXentLoss
            loss = cls(temperature=0.1)(z[:, 0], z[:, 1])
        else:
            from pytorch_metric_learning.losses import NTXentLoss

            emb = torch.cat([z[:, 0], z[:, 1]])
            labels = torch.arange(n, device=dev).repeat(2)
            loss = NTXentLoss(temperature=0.1)(emb, labels)
        loss.backward()
        z.grad = None
        return loss

    if warmup:
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    if dev.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 2**20
    return {
        "impl": impl,
        "pairs": n,
        "dim": dim,
        "device": device,
        "dtype": dtype,
        "views": views,
        "seconds": seconds,
        "peak_gib": round(peak, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 1024, 4096, 8192])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--pml-max", type=int, default=1024, help="largest N for PML")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--output", default=str(RESULTS), help="results JSON file")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up run")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--num-views", type=int, default=2, help="V of the main table")
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--views",
        nargs="+",
        type=int,
        default=None,
        help="instead: MV-DHEL / MV-InfoNCE time for these V at N = --sizes[0]",
    )
    args = parser.parse_args()
    if args.views:
        records = run_views(args.sizes[0], args.dim, args.views, args.repeats)
        command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
        for r in records:
            r["command"] = command
        path = RESULTS.with_name("losses_views.json")
        path.write_text(json.dumps(records, indent=2) + "\n")
        base = {r["loss"]: r["seconds"] for r in records if r["views"] == args.views[0]}
        print("| loss | " + " | ".join(f"V={v}" for v in args.views) + " |")
        print("|---" * (len(args.views) + 1) + "|")
        for loss in ("mv_dhel", "mv_infonce"):
            cells = [
                f"{r['seconds'] * 1000:.0f} ms (x{r['seconds'] / base[loss]:.1f})"
                for r in records
                if r["loss"] == loss
            ]
            print(f"| {loss} | " + " | ".join(cells) + " |")
        return 0
    if args.one:
        record = run_one(
            args.one[0],
            int(args.one[1]),
            args.dim,
            args.device,
            args.repeats,
            args.tile,
            warmup=not args.no_warmup,
            dtype=args.dtype,
            views=args.num_views,
        )
        print(json.dumps(record))
        return 0
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    records = []
    for n in args.sizes:
        for impl in args.impls:
            if impl == "pml" and n > args.pml_max:
                continue
            if impl in TWO_VIEW_ONLY and args.num_views != 2:
                continue
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    impl,
                    str(n),
                    "--device",
                    args.device,
                    "--dim",
                    str(args.dim),
                    "--repeats",
                    str(args.repeats),
                    "--tile",
                    str(args.tile),
                    "--dtype",
                    args.dtype,
                    "--num-views",
                    str(args.num_views),
                    *(["--no-warmup"] if args.no_warmup else []),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["failed"])[-1]
                record = {
                    "impl": impl,
                    "pairs": n,
                    "dtype": args.dtype,
                    "views": args.num_views,
                    "error": last[:200],
                }
            else:
                record = json.loads(done.stdout.strip().splitlines()[-1])
            record["command"] = command
            record["machine"] = f"{platform.machine()}, {args.device}"
            records.append(record)
            print(json.dumps(record), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(records, indent=2) + "\n")
    print(table(records))
    return 0


def table(records: list[dict]) -> str:
    """One row per (N, V, dtype), one column per implementation present in ``records``."""

    def key(r: dict) -> tuple:
        return (r["pairs"], r.get("views", 2), r.get("dtype", "float32"))

    impls = [impl for impl in IMPLS if any(r["impl"] == impl for r in records)]
    lines = [
        "| pairs N | V | dtype | " + " | ".join(impls) + " |",
        "|---" * (len(impls) + 3) + "|",
    ]
    for n, v, dtype in sorted({key(r) for r in records}):
        cells = []
        for impl in impls:
            r = next((r for r in records if key(r) == (n, v, dtype) and r["impl"] == impl), None)
            if r is None:
                cells.append("—")
            elif "error" in r:
                cells.append("error")
            else:
                cells.append(f"{r['seconds'] * 1000:.0f} ms, {r['peak_gib']:.2f} GiB")
        lines.append(f"| {n:,} | {v} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
