"""Sequential recommendation benchmark: train each (dataset, method) with its config in
``configs/seqrec/`` and write the test table next to the published numbers.

    python benchmarks/seqrec.py                                  # Beauty, all five methods
    python benchmarks/seqrec.py --datasets beauty toys lastfm --methods sasrec cl4srec
    python benchmarks/seqrec.py --collect                        # only re-read finished runs
    python benchmarks/seqrec.py --collect --unfinished           # + runs in progress (best so far)
    python benchmarks/seqrec.py --methods sasrec --set train.progress=false
    python benchmarks/seqrec.py --timing 30 --datasets beauty toys lastfm ml100k   # s / epoch
    python benchmarks/seqrec.py --methods sasrec_bce   # configs/seqrec/beauty_sasrec_bce.yaml
    python benchmarks/seqrec.py --paired --datasets beauty   # differences vs test-set noise
    python benchmarks/seqrec.py --methods sasrec cl4srec --seeds 2023 2024 2025   # seed spread

Each run trains into ``runs/seqrec/<dataset>_<method>`` and resumes there when the folder
holds a checkpoint (a killed benchmark continues where it stopped). ``--seeds`` trains one run
per seed: the config's own seed (2023) into that folder, any other into
``runs/seqrec/<dataset>_<method>_s<seed>`` (``train.seed=<seed>``); ``seqrec.md`` then also
gives the mean ± sample std over the seeds of each dataset and method. Writes
``benchmarks/results/seqrec.json`` (one record per run: dataset, method, split, metrics, epochs,
seconds, seconds per epoch, device, command; a run not trained by this invocation keeps its
earlier command), ``benchmarks/results/seqrec.md``, and ``seqrec_curves_<dataset>.png``
(validation NDCG@20 against epochs of every run folder, finished or not; the series in
``seqrec_curves.json``). ``--paired`` instead
compares every two runs of a dataset on the same test users (best-valid weights, every item
ranked): the differences in HR@20 / NDCG@20 with 95 % paired-bootstrap intervals
(``benchmarks/results/seqrec_paired.json`` and ``.md``; each run's per-user top-20 places in
``seqrec_per_user.json``).

``runs/`` is not in git: on a fresh checkout, the records and pairs of runs whose folders are
absent stay in the results files as they were (marked ``folder_absent``; an unfinished one is
"(stopped)" in the tables) until a folder of that name exists again.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from _runs import (
    absent_folder_records,
    accelerator_kind,
    add_set_argument,
    collect_runs,
    command_line,
    device,
    finished_run_record,
    mean_std,
    noted_command,
    prefixed,
    read_metrics,
    synchronize,
    train_in_chain,
    write_merged,
)

if TYPE_CHECKING:
    from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "seqrec"
TIMING_RUNS = ROOT / "runs" / "timing"  # task folders of the timings (nothing trains there)
METHODS = ("sasrec", "cl4srec", "duorec", "mclrec", "sra_cl")
# variants: a label (a ``--methods`` choice, the run folder's suffix) -> its method and the
# seqrec settings that tell it apart; its config is ``configs/seqrec/<dataset>_<label>.yaml`` and
# its rows are compared with the method's published row
VARIANTS: dict[str, tuple[str, dict]] = {
    "sasrec_bce": ("sasrec", {"rec_loss": "bce"}),  # SASRec's one-negative BCE objective
}
UNFILTERED = "unfiltered"  # contrastkit.recipes.seqrec.UNFILTERED (not imported: lazy imports)
# MCLRec README (verified in ../shared/methods/recsys_graph_text.md, section 1(d)): test split,
# full ranking, leave-one-out
PUBLISHED = {
    ("beauty", "sasrec"): {"HR@5": 0.0377, "HR@20": 0.0894, "NDCG@5": 0.0241, "NDCG@20": 0.0386},
    ("beauty", "cl4srec"): {"HR@5": 0.0401, "HR@20": 0.0974, "NDCG@5": 0.0268, "NDCG@20": 0.0428},
    ("beauty", "duorec"): {"HR@5": 0.0559, "HR@20": 0.1193, "NDCG@5": 0.0340, "NDCG@20": 0.0518},
    ("beauty", "mclrec"): {"HR@5": 0.0581, "HR@20": 0.1243, "NDCG@5": 0.0352, "NDCG@20": 0.0539},
}


def config_path(dataset: str, method: str) -> Path:
    """The config of a method or variant label (:data:`VARIANTS`) on ``dataset``."""
    return ROOT / "configs" / "seqrec" / f"{dataset}_{method}.yaml"


def run_label(seqrec_config) -> str:
    """The variant label (:data:`VARIANTS`) of a run's ``seqrec`` config section, else its
    method: from the settings that were trained, whatever the folder is called."""
    for label, (method, settings) in VARIANTS.items():
        if seqrec_config.method == method and all(
            getattr(seqrec_config, key) == value for key, value in settings.items()
        ):
            return label
    return seqrec_config.method


def _saved(run_dir: Path) -> tuple[str, int]:
    """The variant label and ``train.seed`` of a run folder's saved config."""
    from contrastkit.train.config import load_config

    config = load_config(run_dir / "config.yaml")
    return run_label(config.seqrec), config.train.seed


def run_folder(dataset: str, label: str, seed: int | None = None) -> Path:
    """``runs/seqrec/<dataset>_<label>`` (the config's seed), or ``..._s<seed>`` for another."""
    return RUNS / (f"{dataset}_{label}" if seed is None else f"{dataset}_{label}_s{seed}")


def folder_kind(record: dict) -> str | None:
    """``"config"`` for a record of ``<dataset>_<label>`` (the config's seed), ``"seeded"`` for
    ``<dataset>_<label>_s<seed>`` (:func:`run_folder`, its own seed), else ``None`` (a copy or
    another folder)."""
    base = f"{record['dataset']}_{record.get('label', record['method'])}"
    if record.get("run") == base:
        return "config"
    if record.get("run") == f"{base}_s{record.get('seed')}":
        return "seeded"
    return None


def run(dataset: str, method: str, overrides: list[str], seed: int | None = None) -> Path | None:
    """Train (or resume) ``dataset``'s ``method`` (a method or variant label) with its config
    and the ``--set`` ``overrides``; ``seed``: ``train.seed``, into its own folder unless it is
    the config's. ``None`` when another process is training that folder."""
    from contrastkit.recipes.seqrec import run_seqrec_training
    from contrastkit.train.config import load_config

    path = config_path(dataset, method)
    if seed is not None and seed == load_config(path).train.seed:
        seed = None  # the config's own run: no second copy of it
    config = load_config(path, [*overrides, *([] if seed is None else [f"train.seed={seed}"])])
    output = run_folder(dataset, method, seed)
    name = f"{dataset} {method}" + ("" if seed is None else f" seed {seed}")
    return train_in_chain(
        output, name, lambda resume: run_seqrec_training(config, output, resume=resume)
    )


def time_training_steps(task, config, steps: int, accelerator: str = "cpu") -> tuple[float, int]:
    """Seconds per training step of ``task`` (``steps`` steps of the config's batch size after
    two warm-up steps: losses, backward, Adam; MCLRec's inner steps included) and the number
    of steps per epoch, on ``accelerator`` ("cpu" or "cuda")."""
    import time

    import torch
    from lightning_fabric import Fabric

    if accelerator != "cpu":  # the task's data and the model on the device
        fabric = Fabric(accelerator=accelerator, devices=1)
        task.setup(fabric)
        task.model.to(fabric.device)
    task.backward = lambda loss: loss.backward()
    params = [p for p in task.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.optim.lr)
    task.bind_optimizer(optimizer)
    batch = config.train.batch_size
    order = task.epoch_order(torch.Generator().manual_seed(0), batch)
    blocks = order[: order.numel() // batch * batch].reshape(-1, batch)
    task.model.train()
    for k in range(steps + 2):
        if k == 2:
            synchronize(accelerator)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = task.training_step(task.model, blocks[k])
        if loss.requires_grad:
            loss.backward()
        optimizer.step()
    synchronize(accelerator)
    return (time.perf_counter() - start) / steps, int(blocks.shape[0])


def time_epochs(
    datasets: list[str],
    methods: list[str],
    steps: int,
    command: str,
    overrides: list[str],
    accelerator: str = "cpu",
) -> list[dict]:
    """Seconds per training epoch of each method, from ``steps`` timed training steps (after
    two warm-up steps) with the config's batch size and length buckets and the ``--set``
    ``overrides`` (recorded with the timing), on ``accelerator``; no evaluation."""

    from contrastkit.recipes.seqrec import SeqRecTask, load_sequences
    from contrastkit.train.config import load_config

    records = []
    for dataset in datasets:
        for method in methods:
            config = load_config(config_path(dataset, method), overrides)
            timing_dir = TIMING_RUNS / f"{dataset}_{method}"  # SRA-CL keeps its table there
            task = SeqRecTask(config, load_sequences(config.seqrec), timing_dir)
            per_step, steps_per_epoch = time_training_steps(task, config, steps, accelerator)
            records.append(
                {
                    "dataset": dataset,
                    "method": config.seqrec.method,
                    "label": run_label(config.seqrec),
                    "overrides": sorted(overrides),
                    "seconds_per_step": round(per_step, 4),
                    "steps_per_epoch": steps_per_epoch,
                    "seconds_per_epoch": round(per_step * steps_per_epoch, 1),
                    "timed_steps": steps,
                    "device": device(accelerator),
                    "command": command,
                }
            )
            print(json.dumps(records[-1]), flush=True)
    return records


def timing_identity(record: dict) -> tuple:
    """A timing record replaces an older one of the same dataset, method or variant label,
    ``--set`` overrides (none for the older records) and kind of device (CPU or GPU)."""
    overrides = tuple(record.get("overrides", []))
    label = record.get("label", record["method"])
    return record["dataset"], label, overrides, accelerator_kind(record)


def run_record(run_dir: Path, command: str) -> dict:
    """The record of one finished run folder: ``metrics`` (test, history excluded) and
    ``metrics_unfiltered`` (test, every item ranked: the published tables' protocol)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    key = (summary["dataset"], summary["method"])
    label, seed = _saved(run_dir)
    filtered = {k: v for k, v in prefixed(summary, "test_").items() if not k.startswith(UNFILTERED)}
    unfiltered = prefixed(summary, f"test_{UNFILTERED}_") or unfiltered_test_metrics(run_dir)
    return finished_run_record(
        run_dir,
        command,
        lambda summary: {
            "label": label,
            "seed": seed,
            "split": "test",
            "metrics": filtered,
            "metrics_unfiltered": unfiltered,
            "valid": prefixed(summary, "valid_"),
        },
        published=PUBLISHED.get(key),
        config=str(config_path(key[0], label).relative_to(ROOT)),
    )


def _best_weights_metrics(run_dir: Path) -> tuple[dict, dict]:
    """Test metrics of the run's best-valid weights (``best.safetensors``): history excluded,
    and every item ranked (without the ``test_`` / ``test_unfiltered_`` prefixes)."""
    from contrastkit.recipes.seqrec import evaluate_run

    metrics = evaluate_run(run_dir, weights="best")
    test = prefixed(metrics, "test_")
    filtered = {k: v for k, v in test.items() if not k.startswith(UNFILTERED)}
    unfiltered = prefixed(metrics, f"test_{UNFILTERED}_")
    return filtered, unfiltered


def unfiltered_test_metrics(run_dir: Path) -> dict:
    """Unfiltered test metrics of a run finished before the recipe reported them: computed
    once from ``best.safetensors`` and kept in ``unfiltered_test.json`` (keyed by the weights'
    size and time stamp)."""
    best = run_dir / "best.safetensors"
    if not best.is_file():
        return {}
    stamp = [best.stat().st_size, best.stat().st_mtime_ns]
    cache = run_dir / "unfiltered_test.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("weights") == stamp:
            return saved["metrics"]
    _, unfiltered = _best_weights_metrics(run_dir)
    cache.write_text(json.dumps({"weights": stamp, "metrics": unfiltered}, indent=2) + "\n")
    return unfiltered


def plot_curves() -> list[Path]:
    """One PNG per dataset, ``seqrec_curves_<dataset>.png``: validation NDCG@20 against epochs
    (early stopping watches validation MRR), a line per run folder, finished or not. The final
    line of a finished run (the best weights re-evaluated, with the test metrics) is left out.
    The series are also written to ``seqrec_curves.json``; a series there whose run folder is
    not on this machine (a fresh checkout) is kept and drawn, like the tables' records."""
    from contrastkit.eval import plot_overlaid_curves
    from contrastkit.train.config import load_config

    curves = []
    for saved in sorted(RUNS.glob("*/config.yaml")):
        config = load_config(saved)
        if config.recipe != "seqrec":
            continue
        rows = [
            r
            for r in read_metrics(saved.parent / "metrics.jsonl")
            if "valid_NDCG@20" in r and not any(k.startswith("test_") for k in r)
        ]
        if rows:
            curves.append(
                {
                    "run": saved.parent.name,
                    "dataset": config.seqrec.dataset,
                    "epoch": [r["epoch"] for r in rows],
                    "valid_NDCG@20": [r["valid_NDCG@20"] for r in rows],
                }
            )
    saved_curves = RESULTS / "seqrec_curves.json"
    curves += absent_folder_records(saved_curves, RUNS)
    curves.sort(key=lambda c: c["run"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved_curves.write_text(json.dumps(curves) + "\n")
    by_dataset: dict[str, dict[str, tuple[list, list]]] = {}
    for c in curves:
        by_dataset.setdefault(c["dataset"], {})[c["run"]] = (c["epoch"], c["valid_NDCG@20"])
    written = []
    for dataset, series in sorted(by_dataset.items()):
        path = RESULTS / f"seqrec_curves_{dataset}.png"
        plot_overlaid_curves(series, path, xlabel="epoch", ylabel="valid NDCG@20", title=dataset)
        written.append(path)
    return written


def collect_unfinished(command: str) -> list[dict]:
    """Runs still in progress (no ``summary.json``): the test metrics of their best-valid
    weights so far (``best.safetensors``), marked ``"finished": false``. ``command`` is the
    command noted in the run folder (the one training it; ``command`` of this invocation when
    none was noted) and ``evaluated_by`` this invocation, which scored the weights."""
    from contrastkit.train.config import load_config

    records = []
    for best in sorted(RUNS.glob("*/best.safetensors")):
        run_dir = best.parent
        if (run_dir / "summary.json").is_file() or not (run_dir / "config.yaml").is_file():
            continue
        config = load_config(run_dir / "config.yaml")
        dataset, method = config.seqrec.dataset, config.seqrec.method
        label = run_label(config.seqrec)
        metrics, unfiltered = _best_weights_metrics(run_dir)
        epochs = read_metrics(run_dir / "metrics.jsonl")
        best_epoch = epochs[-1].get("best_epoch") if epochs else None
        noted = noted_command(run_dir)
        records.append(
            {
                "run": run_dir.name,
                "dataset": dataset,
                "method": method,
                "label": label,
                "seed": config.train.seed,
                "split": "test",
                "finished": False,
                "metrics": metrics,
                "metrics_unfiltered": unfiltered,
                "best_epoch": best_epoch,
                "epochs": epochs[-1]["epoch"] if epochs else 0,
                "seconds": epochs[-1]["seconds"] if epochs else None,
                "seconds_per_epoch": None,
                "device": f"{platform.machine()} cpu",
                "published": PUBLISHED.get((dataset, method)),
                "command": noted["command"] if noted else command,
                "evaluated_by": command,
                "config": str(config_path(dataset, label).relative_to(ROOT)),
            }
        )
    return records


PAIRED_METRICS = ("HR@20", "NDCG@20")
PER_USER = "seqrec_per_user.json"  # in RESULTS: per scored run, each test user's top-20 place
PLACES = "0123456789abcdefghijk"  # one character per user: 0 a miss, else the 1-based place


def encode_places(per_user: dict[str, Tensor]) -> str:
    """Each test user's 1-based place of the target in the top 20 (``0``: not in it), one
    character of :data:`PLACES` per user, from the per-user ``HR@20`` and ``NDCG@20``
    (``NDCG@20 = 1 / log2(place + 1)``); :func:`decode_places` gives both back. ``ValueError``
    when the two disagree (a hit without a place in 1..20, or the reverse). The values must
    be float64, as the evaluator gives them: the check allows 1e-9."""
    import math

    places = []
    for hit, ndcg in zip(per_user["HR@20"].tolist(), per_user["NDCG@20"].tolist(), strict=True):
        place = round(2 ** (1 / ndcg) - 1) if ndcg > 0 else 0
        if (
            bool(hit) != (place > 0)
            or place > 20
            or (place and abs(1 / math.log2(place + 1) - ndcg) > 1e-9)
        ):
            raise ValueError(f"encode_places: HR@20 {hit} and NDCG@20 {ndcg} disagree")
        places.append(PLACES[place])
    return "".join(places)


def decode_places(places: str) -> dict[str, Tensor]:
    """The float64 per-user ``HR@20`` and ``NDCG@20`` of :func:`encode_places`'s string."""
    import torch

    if unknown := set(places) - set(PLACES):
        raise ValueError(f"decode_places: characters {sorted(unknown)} are not places")
    place = torch.tensor([PLACES.index(c) for c in places], dtype=torch.float64)
    hit = place > 0
    ndcg = torch.where(hit, 1.0 / torch.log2(place.clamp(min=1) + 1), torch.zeros_like(place))
    return {"HR@20": hit.double(), "NDCG@20": ndcg}


def _best_epoch(run_dir: Path) -> int | None:
    """The epoch of the run's ``best.safetensors`` (its ``best.json``, written with it)."""
    try:
        return json.loads((run_dir / "best.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        epochs = read_metrics(run_dir / "metrics.jsonl")
        return epochs[-1].get("best_epoch") if epochs else None


def _test_users(split) -> str:
    """A fingerprint of a split's test users (inputs and targets, in order): two runs are
    compared only on the same ones."""
    import hashlib

    digest = hashlib.sha256()
    for inputs in split.test_inputs:
        digest.update(len(inputs).to_bytes(8, "little") + inputs.astype("<i8").tobytes())
    digest.update(split.test_targets.numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def paired_comparison(datasets: list[str], command: str, samples: int = 10_000) -> list[dict]:
    """For each dataset, every two run folders (finished or running) compared on the same test
    users: per-user HR@20 / NDCG@20 of their best-valid weights with every item ranked (the
    published protocol), and :func:`contrastkit.eval.paired_bootstrap` of the difference
    (``samples`` resamples, 95 %). Rows follow the published order of the methods, then the
    variants; each pair appears once (the later method minus the earlier one). Only the
    config's-seed folder of each method takes part (``_s<seed>`` folders do not).

    Each scored run's per-user values are also kept in ``seqrec_per_user.json``
    (:func:`encode_places`, about one byte per test user), so that a run whose folder is not
    on this machine (a fresh checkout: ``runs/`` is not in git) is still compared, marked in
    the pair's ``"folders_absent"``; a run folder that is here with best weights is scored
    anew, and one here without them (started again) takes no part (:func:`keep_places`).
    The stored places are those of the last ``--paired``: run it before a folder may be lost
    (a run that trained on after that is compared with its older best weights)."""
    from contrastkit.eval import paired_bootstrap
    from contrastkit.recipes.reporting import load_run_task
    from contrastkit.recipes.seqrec import SeqRecTask, load_sequences
    from contrastkit.train.config import load_config

    def build(config, run_dir):
        return SeqRecTask(config, load_sequences(config.seqrec), run_dir)

    records, scored_now = [], []
    for dataset in datasets:
        runs = []
        for best in sorted(RUNS.glob(f"{dataset}_*/best.safetensors")):
            if not (best.parent / "config.yaml").is_file():
                continue  # not a run folder (e.g. a copy of the weights)
            config = load_config(best.parent / "config.yaml")
            if config.recipe != "seqrec":
                continue
            label = run_label(config.seqrec)
            if config.seqrec.dataset != dataset or best.parent.name != f"{dataset}_{label}":
                continue  # validation or other runs that share the prefix
            # before the weights are read: a running job may save newer best weights meanwhile
            finished = (best.parent / "summary.json").is_file()
            best_epoch = _best_epoch(best.parent)
            task, _ = load_run_task(best.parent, "seqrec", build, "best")
            per_user = task.per_user_metrics("test", exclude_history=False)
            scored = {
                "run": best.parent.name,
                "dataset": dataset,
                "label": label,
                "finished": finished,
                "best_epoch": best_epoch,
                "test_users": _test_users(task.split),
                "places": encode_places(per_user),
            }
            scored_now.append(scored)
            runs.append({**scored, "values": {m: per_user[m] for m in PAIRED_METRICS}})
            print(f"scored {best.parent.name}", flush=True)
        for kept in absent_folder_records(RESULTS / PER_USER, RUNS):
            if kept["dataset"] == dataset:  # scored earlier; its folder is not here
                runs.append({**kept, "values": decode_places(kept["places"])})
        runs.sort(key=lambda r: method_rank(r["label"]))
        for i, first in enumerate(runs):
            for second in runs[i + 1 :]:
                if second["test_users"] != first["test_users"]:  # e.g. another k_core
                    print(f"skipped {second['run']} vs {first['run']}: different test users")
                    continue
                record = {
                    "dataset": dataset,
                    "a": second["label"],
                    "b": first["label"],
                    "runs": [second["run"], first["run"]],
                    "finished": [second["finished"], first["finished"]],
                    "folders_absent": [
                        second.get("folder_absent", False),
                        first.get("folder_absent", False),
                    ],
                    "best_epochs": [second["best_epoch"], first["best_epoch"]],
                    "users": int(first["values"]["HR@20"].numel()),
                    "protocol": "test, every item ranked, best-valid weights",
                    "command": command,
                }
                for metric in PAIRED_METRICS:
                    result = paired_bootstrap(
                        second["values"][metric], first["values"][metric], samples=samples
                    )
                    record[metric] = {
                        "a": result.mean_a,
                        "b": result.mean_b,
                        "difference": result.difference,
                        "interval": [result.low, result.high],
                        "relative": result.relative,
                        "relative_interval": [result.relative_low, result.relative_high],
                        "resolved": result.significant,
                        "confidence": result.confidence,
                        "samples": result.samples,
                    }
                records.append(record)
    keep_places(RESULTS / PER_USER, scored_now, datasets)
    return records


def method_rank(label: str) -> int:
    """A method's place in the published order (SASRec, CL4SRec, DuoRec, MCLRec, SRA-CL),
    then the variants, then anything else."""
    order = METHODS + tuple(VARIANTS)
    return order.index(label) if label in order else len(order)


def keep_places(path: Path, scored: list[dict], datasets: list[str]) -> None:
    """Write the per-user places file: the runs ``scored`` now, the earlier entries of runs
    whose folder is not here, and the earlier entries of other datasets. An earlier entry of
    these ``datasets`` whose folder is here but was not scored (a run started again, without
    best weights yet) is dropped: its places belong to weights that no longer exist."""
    earlier = json.loads(path.read_text()) if path.is_file() else []
    now = {r["run"] for r in scored}
    kept = [
        r
        for r in earlier
        if r["run"] not in now and (r["dataset"] not in datasets or not (RUNS / r["run"]).exists())
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sorted(kept + scored, key=lambda r: r["run"]), indent=1) + "\n")


def kept_pairs(path: Path, datasets: list[str]) -> list[dict]:
    """The pairs of ``datasets`` in the earlier ``--paired`` results at ``path`` that cannot be
    scored again here because neither run folder is on this machine (a fresh checkout:
    ``runs/`` is not in git), marked ``"folders_absent": [true, true]``. A pair with a folder
    here is left out: :func:`paired_comparison` scores that folder again (the other run from
    its stored places), or leaves it out if it has no best weights yet."""
    if not path.is_file():
        return []
    return [
        {**record, "folders_absent": [True, True]}
        for record in json.loads(path.read_text())
        if record["dataset"] in datasets and not any((RUNS / n).exists() for n in record["runs"])
    ]


def merged_pairs(scored: list[dict], path: Path, datasets: list[str]) -> list[dict]:
    """The rows of the paired results file to write: the pairs ``scored`` now, the earlier
    pairs of ``datasets`` that could not be scored again (:func:`kept_pairs`), and the earlier
    rows of other datasets unchanged; by dataset (in the earlier file's order, new ones last)
    and the published order of the two methods."""
    earlier = json.loads(path.read_text()) if path.is_file() else []
    now = {tuple(r["runs"]) for r in scored}
    rows = [
        *scored,
        *(r for r in kept_pairs(path, datasets) if tuple(r["runs"]) not in now),
        *(r for r in earlier if r["dataset"] not in datasets),
    ]
    order = list(dict.fromkeys([r["dataset"] for r in earlier] + datasets))
    return sorted(
        rows,
        key=lambda r: (order.index(r["dataset"]), method_rank(r["b"]), method_rank(r["a"])),
    )


def paired_table(records: list[dict]) -> str:
    """Markdown: one row per pair, ``a - b`` in HR@20 and NDCG@20 (relative to ``b``) with the
    95 % paired-bootstrap interval; "yes" where the interval excludes 0."""
    lines = [
        "| dataset | a − b | HR@20 a / b | Δ HR@20 (95 % interval) | relative to b | resolved "
        "| NDCG@20 a / b | Δ NDCG@20 (95 % interval) | relative to b | resolved |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        absent = r.get("folders_absent", [False, False])
        names = [
            label + run_state(done, gone)
            for label, done, gone in zip((r["a"], r["b"]), r["finished"], absent, strict=True)
        ]
        cells = []
        for metric in PAIRED_METRICS:
            m = r[metric]
            low, high = m["interval"]
            rel_low, rel_high = m["relative_interval"]
            cells += [
                f"{m['a']:.4f} / {m['b']:.4f}",
                f"{m['difference']:+.4f} ({low:+.4f}, {high:+.4f})",
                f"{100 * m['relative']:+.1f} % ({100 * rel_low:+.1f}, {100 * rel_high:+.1f})",
                "yes" if m["resolved"] else "no",
            ]
        lines.append(f"| {r['dataset']} | {names[0]} − {names[1]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Test split, every item ranked, best-valid weights (of running runs: the best so far; of "
        "stopped runs: the best they had reached), one "
        "training seed per method. The intervals are the test set's sampling noise only (not the "
        "spread between training seeds), 95 % each, not corrected for the number of pairs.",
    ]
    return "\n".join(lines)


def run_state(finished: bool, folder_absent: bool) -> str:
    """What a table adds to the name of a run: nothing when it finished, ``" (running)"``
    while its folder is here (best-valid weights so far), ``" (stopped)"`` for an unfinished
    run whose folder is not on this machine (its record kept from an earlier results file:
    it cannot resume here)."""
    if finished:
        return ""
    return " (stopped)" if folder_absent else " (running)"


def table(records: list[dict]) -> str:
    """Markdown: test HR@20 / NDCG@20 with each user's history excluded ("filtered") and with
    every item ranked ("all items", the protocol of the published numbers)."""
    lines = [
        "| dataset | method | HR@20 filtered | NDCG@20 filtered | HR@20 all items "
        "| NDCG@20 all items "
        "| published HR@20 / NDCG@20 | best epoch / trained | s per epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in records:
        m, u, p = r["metrics"], r.get("metrics_unfiltered") or {}, r["published"]
        published = f"{p['HR@20']:.4f} / {p['NDCG@20']:.4f}" if p else "—"
        running = run_state(r.get("finished", True), r.get("folder_absent", False))
        seeded = folder_kind(r) == "seeded"
        name = r.get("label", r["method"]) + (f" (seed {r['seed']})" if seeded else "")
        lines.append(
            f"| {r['dataset']} | {name} | {m.get('HR@20', nan):.4f} | "
            f"{m.get('NDCG@20', nan):.4f} | {u.get('HR@20', nan):.4f} | "
            f"{u.get('NDCG@20', nan):.4f} | {published} | "
            f"{r['best_epoch']} / {int(r['epochs'])}{running}"
            f" | {r['seconds_per_epoch'] or '—'} |"
        )
    return "\n".join(lines)


def seed_summary(records: list[dict]) -> str:
    """Markdown: mean ± sample std of the test HR@20 / NDCG@20 (every item ranked, and with
    the history excluded) over the finished runs of each dataset and method (or variant label)
    that has more than one seed: the folders ``<dataset>_<label>`` and
    ``<dataset>_<label>_s<seed>`` only; ``""`` when none has."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r.get("finished", True) and "seed" in r and folder_kind(r):  # not copies
            groups.setdefault((r["dataset"], r.get("label", r["method"])), []).append(r)
    groups = {key: runs for key, runs in groups.items() if len({r["seed"] for r in runs}) > 1}
    if not groups:
        return ""
    lines = [
        "| dataset | method | seeds (n) | HR@20 all items | NDCG@20 all items | HR@20 filtered "
        "| NDCG@20 filtered | best epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, label), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: r["seed"])
        cells = []
        for field, key in (
            ("metrics_unfiltered", "HR@20"),
            ("metrics_unfiltered", "NDCG@20"),
            ("metrics", "HR@20"),
            ("metrics", "NDCG@20"),
        ):
            mean, std = mean_std([r[field][key] for r in runs])
            cells.append(f"{mean:.4f} ± {std:.4f}")
        seeds = " ".join(str(r["seed"]) for r in runs) + f" ({len(runs)})"
        best = ", ".join(str(r["best_epoch"]) for r in runs)
        lines.append(f"| {dataset} | {label} | {seeds} | {' | '.join(cells)} | {best} |")
    return "\n".join(lines)


def results_markdown(records: list[dict]) -> str:
    """``seqrec.md``: the runs' table, then the seed summary when some method has seeds."""
    spread = seed_summary(records)
    if not spread:
        return table(records)
    return table(records) + "\n\nMean ± sample std over seeds:\n\n" + spread


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", default=["beauty"])
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS + tuple(VARIANTS), default=list(METHODS)
    )
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    parser.add_argument(
        "--unfinished",
        action="store_true",
        help="also tabulate runs in progress (test metrics of their best-valid weights so far)",
    )
    parser.add_argument(
        "--timing", type=int, metavar="STEPS", help="instead: time STEPS training steps per method"
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="instead: compare every two runs of each dataset on the same test users "
        "(paired bootstrap of the HR@20 / NDCG@20 differences)",
    )
    parser.add_argument(
        "--device", default="cpu", help="with --timing: cpu (default) or cuda (a GPU's timings)"
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="train one run per seed (default: the config's seed); other seeds than the "
        "config's train into <dataset>_<method>_s<seed>",
    )
    add_set_argument(parser)
    args = parser.parse_args()
    command = command_line()
    if args.seeds and "train.seed" in {item.split("=", 1)[0].strip() for item in args.set}:
        parser.error("--seeds sets train.seed for each run; do not also pass train.seed in --set")
    if args.seeds and min(args.seeds) < 0:
        parser.error(f"--seeds must be non-negative integers; got {min(args.seeds)}")
    missing = [
        str(config_path(d, m))
        for d in args.datasets
        for m in args.methods
        if not config_path(d, m).is_file()
    ]
    if missing:  # before anything trains
        parser.error("no config " + ", ".join(missing))
    if args.paired:
        records = merged_pairs(
            paired_comparison(args.datasets, command),
            RESULTS / "seqrec_paired.json",
            args.datasets,
        )
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "seqrec_paired.json").write_text(json.dumps(records, indent=2) + "\n")
        (RESULTS / "seqrec_paired.md").write_text(paired_table(records) + "\n")
        print(paired_table(records))
        return 0
    if args.timing:
        records = time_epochs(
            args.datasets, args.methods, args.timing, command, args.set, args.device
        )
        write_merged(RESULTS / "seqrec_timing.json", records, timing_identity)
        return 0
    trained: set[Path] = set()
    if not args.collect:
        for dataset in args.datasets:
            for method in args.methods:
                for seed in args.seeds or [None]:
                    if (output := run(dataset, method, args.set, seed)) is not None:
                        trained.add(output)
    records = collect_runs(RUNS, RESULTS / "seqrec.json", run_record, command, trained)
    if args.unfinished:
        records += collect_unfinished(command)
    records.sort(key=lambda r: (not r.get("finished", True), r["run"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "seqrec.json").write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / "seqrec.md").write_text(results_markdown(records) + "\n")
    plot_curves()
    print(results_markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
