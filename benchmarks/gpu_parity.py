"""Dense vs tiled vs Triton on a GPU: values and gradients of the softmax-type losses, fp32 and
bf16 inputs, D up to 1024 (the CPU tests run the same kernels in Triton's interpreter at small
sizes; this runs the compiled kernels). Prints one JSON line per case, writes
``benchmarks/results/gpu_parity.json`` (or ``--output``) and exits 1 on a mismatch.

    python benchmarks/gpu_parity.py            # needs CUDA and triton
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import contrastkit.losses as L
from contrastkit.core import core_backend

LOSSES = {
    "info_nce": lambda z, y: L.info_nce(z),
    "mv_infonce": lambda z, y: L.mv_infonce(z),
    "mv_dhel": lambda z, y: L.mv_dhel(z),
    "dcl": lambda z, y: L.dcl(z[:, :2]),
    "supcon": lambda z, y: L.supcon(z, y),
    "hard_info_nce": lambda z, y: L.hard_info_nce(z, top_k=64),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "gpu_parity.json")
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_parity: no CUDA device", file=sys.stderr)
        return 2
    records, failed = [], False
    for n, v, d in ((512, 2, 128), (300, 4, 1024), (2048, 2, 64)):
        for dtype in (torch.float32, torch.bfloat16):
            g = torch.Generator(device="cuda").manual_seed(n + d)
            z = torch.randn(n, v, d, device="cuda", dtype=dtype, generator=g)
            labels = torch.randint(0, 16, (n,), device="cuda", generator=g)
            for name, fn in LOSSES.items():
                out = {}
                for impl in ("dense", "tiled", "triton"):
                    leaf = z.clone().requires_grad_(True)
                    with core_backend(impl, tile_size=256):
                        value = fn(leaf, labels)
                    (grad,) = torch.autograd.grad(value, leaf)
                    out[impl] = (value.double(), grad.double())
                ref_value, ref_grad = out["dense"]
                scale = ref_grad.abs().max().item()
                for impl in ("tiled", "triton"):
                    value_err = abs(out[impl][0] - ref_value).item() / max(
                        1.0, abs(ref_value.item())
                    )
                    grad_err = (out[impl][1] - ref_grad).abs().max().item() / max(scale, 1e-12)
                    # triton's tl.dot on fp32 uses TF32 (10-bit mantissa): looser for it
                    tol = (1e-5, 1e-4) if impl == "tiled" else (2e-3, 2e-2)
                    if dtype == torch.bfloat16:
                        tol = (max(tol[0], 1e-5), max(tol[1], 1e-2))
                    ok = value_err <= tol[0] and grad_err <= tol[1]
                    failed |= not ok
                    record = {
                        "loss": name,
                        "impl": impl,
                        "N": n,
                        "V": v,
                        "D": d,
                        "dtype": str(dtype).removeprefix("torch."),
                        "value_rel_err": value_err,
                        "grad_rel_err": grad_err,
                        "ok": ok,
                    }
                    records.append(record)
                    print(json.dumps(record), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(records, indent=2) + "\n")
    print(f"{sum(r['ok'] for r in records)}/{len(records)} cases within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
