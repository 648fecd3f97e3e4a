"""Command line: ``contrastkit <command>``.

``contrastkit losses`` lists every registered loss with its hyperparameters and, with
``--evaluate``, runs each once (forward + backward) on a random batch ``[N, V, D]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch

from contrastkit import __version__
from contrastkit import losses as loss_lib

# extra inputs and view limits of the losses that need them, for --evaluate
_VIEW_LIMITS = {"dhel": 2, "dcl": 2, "dclw": 2, "kcl": 2, "cwcl": 2, "soft_contrastive": 2}


def _extra_inputs(name: str, z: torch.Tensor, generator: torch.Generator) -> tuple:
    n = z.shape[0]
    if name == "supcon":
        return (torch.randint(0, max(2, n // 4), (n,), generator=generator),)
    if name == "soft_supcon":
        scores = torch.rand(n, n, generator=generator)
        return ((scores + scores.T) / 2,)
    if name == "soft_contrastive":
        return (torch.randn(n, 32, generator=generator),)
    return ()


def _losses_command(args: argparse.Namespace) -> int:
    names = args.names or loss_lib.available()
    unknown = sorted(set(names) - set(loss_lib.available()))
    if unknown:
        available = ", ".join(loss_lib.available())
        print(f"unknown loss(es): {', '.join(unknown)}; available: {available}", file=sys.stderr)
        return 2
    rows = []
    generator = torch.Generator().manual_seed(args.seed)
    for name in names:
        row: dict[str, object] = {
            "loss": name,
            "hyperparameters": {
                k: v
                for k, v in loss_lib.keyword_arguments(getattr(loss_lib, name)).items()
                if k not in ("reduction",)
            },
        }
        if args.evaluate:
            views = min(args.views, _VIEW_LIMITS.get(name, args.views))
            z = torch.randn(args.instances, views, args.dim, generator=generator)
            z.requires_grad_(True)
            extras = _extra_inputs(name, z, generator)
            start = time.perf_counter()
            value = getattr(loss_lib, name)(z, *extras)
            value.backward()
            row["views"] = views
            row["value"] = round(float(value.detach()), 6)
            row["seconds"] = round(time.perf_counter() - start, 6)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ["loss", "hyperparameters"] + (["V", "value", "fwd+bwd s"] if args.evaluate else [])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        hp = ", ".join(f"{k}={v}" for k, v in row["hyperparameters"].items())  # type: ignore[union-attr]
        line = f"| {row['loss']} | {hp} |"
        if args.evaluate:
            line += f" {row['views']} | {row['value']:.4f} | {row['seconds']:.4f} |"
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contrastkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"contrastkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    losses = commands.add_parser("losses", help="list (and optionally evaluate) the losses")
    losses.add_argument("names", nargs="*", help="losses to show (default: all)")
    losses.add_argument("--evaluate", action="store_true", help="run each loss once on random data")
    losses.add_argument("-n", "--instances", type=int, default=256, help="N (default 256)")
    losses.add_argument("-v", "--views", type=int, default=2, help="V (default 2)")
    losses.add_argument("-d", "--dim", type=int, default=128, help="D (default 128)")
    losses.add_argument("--seed", type=int, default=0)
    losses.add_argument("--json", action="store_true", help="print JSON instead of a table")
    losses.set_defaults(run=_losses_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
