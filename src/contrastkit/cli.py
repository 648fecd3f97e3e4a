"""Command line: ``contrastkit <command>``.

* ``contrastkit train`` trains on the embedded default (digits, MV-DHEL with 4 views, about a
  minute on 2 CPU cores) and prints the result table; ``--config FILE``, overrides such as
  ``--loss dcl --views 2 --epochs 50`` or ``--train.batch_size 128``, ``--output DIR``,
  ``--resume``.
* ``contrastkit eval RUN_DIR`` re-evaluates a run folder (images: its latest checkpoint; seqrec and
  graphrec: its best weights, ``--weights latest`` for the checkpoint).
* ``contrastkit compare`` trains a grid (losses x views x seeds) and prints mean ± std.
* ``contrastkit losses`` lists every loss (``--evaluate``: runs each once on random data).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from contrastkit import __version__
from contrastkit import losses as loss_lib
from contrastkit.data.images import DataFormatError
from contrastkit.train.config import ConfigError, RunConfig, config_from_dict, load_config
from contrastkit.train.run_lock import RunFolderBusyError

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


def _overrides(extra: list[str]) -> list[str]:
    """``--key value`` / ``--key=value`` / ``key=value`` words to ``key=value`` overrides."""
    out, i = [], 0
    while i < len(extra):
        word = extra[i]
        if word.startswith("--"):
            key, has_value, value = word[2:].partition("=")
            key = key.replace("-", "_") if "." not in key else key
            if has_value:
                out.append(f"{key}={value}")
            elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                out.append(f"{key}={extra[i + 1]}")
                i += 1
            else:
                raise ConfigError(f"option --{key} needs a value")
        elif "=" in word:
            out.append(word)
        else:
            raise ConfigError(f"unexpected argument {word!r} (overrides look like --key value)")
        i += 1
    return out


def _default_output(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if config.recipe == "seqrec":
        return Path("runs") / f"{config.seqrec.dataset}-{config.seqrec.method}-{stamp}"
    if config.recipe == "graphrec":
        return Path("runs") / f"{config.graphrec.dataset}-{config.graphrec.method}-{stamp}"
    if config.recipe == "graphnode":
        graph = config.graphnode
        dataset = graph.name if graph.dataset == "file" else graph.dataset
        return Path("runs") / f"{dataset}-{graph.method}-{stamp}"
    if config.recipe == "multimodal":
        mm = config.multimodal
        return Path("runs") / f"{mm.dataset}-{mm.objective}-{stamp}"
    if config.recipe == "text":
        return Path("runs") / f"stsb-{config.text.method}-{config.loss.name}-{stamp}"
    return Path("runs") / f"{config.data.name}-{config.loss.name}-v{config.views.views}-{stamp}"


def _train_command(args: argparse.Namespace) -> int:
    from contrastkit.recipes.images import run_image_training

    if args.resume and args.output is None:
        raise ConfigError("--resume needs --output DIR (the run folder to continue)")
    config_path = args.config
    if args.resume and config_path is None:
        config_path = Path(args.output) / "config.yaml"  # continue with the run's own config
        if not config_path.is_file():
            raise FileNotFoundError(f"--resume: {config_path} does not exist")
    config = load_config(config_path, _overrides(args.overrides))
    output = Path(args.output) if args.output else _default_output(config)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} is a file, not a run folder")
    args.run_folder = output  # named by the interrupt hint
    print(f"run folder: {output}", flush=True)
    if config.recipe == "seqrec":
        from contrastkit.recipes.seqrec import run_seqrec_training

        run_seqrec_training(config, output, resume=args.resume)
    elif config.recipe == "graphrec":
        from contrastkit.recipes.graphrec import run_graphrec_training

        run_graphrec_training(config, output, resume=args.resume)
    elif config.recipe == "graphnode":
        from contrastkit.recipes.graph_nodes import run_graph_node_training

        run_graph_node_training(config, output, resume=args.resume)
    elif config.recipe == "multimodal":
        from contrastkit.recipes.multimodal import run_multimodal_training

        run_multimodal_training(config, output, resume=args.resume)
    elif config.recipe == "text":
        from contrastkit.recipes.text import run_text_training

        run_text_training(config, output, resume=args.resume)
    else:
        run_image_training(config, output, resume=args.resume)
    return 0


def _eval_command(args: argparse.Namespace) -> int:
    from contrastkit.recipes.reporting import run_config

    recipe = run_config(Path(args.run_dir)).recipe
    weights = args.weights or ("latest" if recipe == "images" else "best")
    if recipe in ("seqrec", "graphrec"):
        if recipe == "seqrec":
            from contrastkit.recipes.seqrec import evaluate_run
        else:
            from contrastkit.recipes.graphrec import evaluate_run
        print(json.dumps(evaluate_run(args.run_dir, weights=weights), indent=2))
        return 0
    if recipe != "images":
        raise ValueError(
            f"contrastkit eval re-evaluates images, seqrec and graphrec runs; {args.run_dir} "
            f"holds a {recipe!r} run, whose final metrics are in its summary.json"
        )
    if weights != "latest":
        raise ValueError("image runs keep no best weights: use --weights latest (the default)")
    from contrastkit.recipes.images import evaluate_run

    evaluate_run(args.run_dir)
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    from contrastkit.recipes.images import run_image_training

    base = load_config(args.config, _overrides(args.overrides))
    output = (
        Path(args.output)
        if args.output
        else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    rows = []
    for loss_name in args.losses:
        for views in args.views:
            results = []
            for seed in args.seeds:
                config = _with(base, loss=loss_name, views=views, seed=seed)
                run_dir = output / f"{loss_name}-v{views}-s{seed}"
                done = run_dir / "summary.json"
                if done.is_file():  # a finished cell of an interrupted grid
                    results.append(json.loads(done.read_text()))
                    continue
                resume = (run_dir / "checkpoints").is_dir()
                results.append(run_image_training(config, run_dir, resume=resume, echo=False))
            rows.append(_aggregate(loss_name, views, results))
    table = _compare_table(rows)
    print(table)
    (output / "compare.md").write_text(table + "\n")
    (output / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _with(base: RunConfig, *, loss: str, views: int, seed: int) -> RunConfig:
    values = base.to_dict()
    values["loss"]["name"] = loss
    values["views"]["views"] = views
    values["train"]["seed"] = seed
    return config_from_dict(values)


def _aggregate(loss_name: str, views: int, results: list[dict]) -> dict:
    row: dict = {"loss": loss_name, "views": views, "seeds": len(results)}
    for key in ("linear_acc", "knn_acc", "effective_rank", "wall_seconds"):
        values = torch.tensor([float(r[key]) for r in results], dtype=torch.float64)
        row[key] = float(values.mean())
        row[f"{key}_std"] = float(values.std(unbiased=True)) if len(results) > 1 else 0.0
    return row


def _compare_table(rows: list[dict]) -> str:
    lines = [
        "| loss | V | linear acc | kNN acc | effective rank | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r[k]:.4f} ± {r[k + '_std']:.4f}" for k in ("linear_acc", "knn_acc")]
        cells.append(f"{r['effective_rank']:.1f} ± {r['effective_rank_std']:.1f}")
        cells.append(f"{r['wall_seconds']:.0f}")
        lines.append(f"| {r['loss']} | {r['views']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contrastkit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"contrastkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a contrastive encoder (default: digits, about a minute on a CPU)",
        description="Overrides: --loss NAME --views V --epochs E --temperature T --lr LR "
        "--dataset NAME, or any dotted key (--train.batch_size 128, loss.params.sigma=0.5).",
    )
    train.add_argument("--config", help="YAML config file (default: the embedded digits run)")
    train.add_argument("--output", help="run folder (default: runs/<dataset>-<loss>-v<V>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output")
    train.set_defaults(run=_train_command, overrides=[])
    evaluate = commands.add_parser(
        "eval",
        help="re-evaluate a run folder (images: latest checkpoint; seqrec / graphrec: best "
        "weights, both ranking protocols for seqrec)",
    )
    evaluate.add_argument("run_dir")
    evaluate.add_argument(
        "--weights",
        choices=("best", "latest"),
        default=None,
        help="best.safetensors (default for seqrec / graphrec) or the latest checkpoint "
        "(default and only choice for image runs)",
    )
    evaluate.set_defaults(run=_eval_command)
    compare = commands.add_parser("compare", help="train a grid and print mean ± std")
    compare.add_argument("--config")
    compare.add_argument("--output")
    compare.add_argument("--losses", nargs="+", default=["info_nce", "mv_dhel"])
    compare.add_argument("--views", nargs="+", type=int, default=[2, 4])
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    compare.set_defaults(run=_compare_command, overrides=[])
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
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("train", "compare"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = extra
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        folder = getattr(args, "run_folder", None) or "RUN_DIR"
        print(
            f"\ninterrupted; continue with: contrastkit train --resume --output {folder}",
            file=sys.stderr,
        )
        return 130
    except (
        ConfigError,
        DataFormatError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
        FloatingPointError,
        RunFolderBusyError,
    ) as error:
        print(f"contrastkit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
