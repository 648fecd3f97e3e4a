"""Image self-supervised training: data + views + encoder + loss + evaluation, wired for the
engine. ``run_image_training(config, output)`` is what ``contrastkit train`` runs.

The recipe never re-implements a loss (it asks ``contrastkit.losses.get``), and the engine never
sees images: the recipe hands it an :class:`ImageContrastiveTask`.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from torch import Tensor, nn

from contrastkit import losses as loss_lib
from contrastkit.core.distributed import gather, local_loss
from contrastkit.data.images import ImageDataset, load_image_dataset
from contrastkit.encoders import (
    Encoder,
    FeatureQueue,
    MomentumEncoder,
    ProjectionHead,
    SmallCNN,
    moco_loss,
    resnet18,
    resnet50,
)
from contrastkit.eval.diagnostics import (
    ScoreHistory,
    alignment_metric,
    effective_rank,
    plot_metric_curves,
    tolerance,
    uniformity_metric,
)
from contrastkit.eval.probes import knn_classify, linear_probe
from contrastkit.recipes.reporting import load_into, run_config, run_weights
from contrastkit.train.checkpoint import atomic_write_text
from contrastkit.train.config import ConfigError, RunConfig
from contrastkit.train.engine import Engine
from contrastkit.train.gradcache import grad_cache_step
from contrastkit.views.image import ImageViews, augmentation_preset

# the augmentation preset used when views.preset is not set
DEFAULT_PRESETS = {
    "digits": "digits",
    "fashion_mnist": "fashion_mnist",
    "cifar10": "simclr_cifar",
    "cifar100": "simclr_cifar",
}
EVAL_BATCH = 1024
# the metrics of a trained encoder that summary.json reports (and the benchmarks tabulate)
SUMMARY_METRICS = (
    "linear_acc",
    "knn_acc",
    "effective_rank",
    "alignment",
    "uniformity",
    "tolerance",
)


def load_dataset(config: RunConfig) -> ImageDataset:
    """The configured dataset, limited to ``train_limit`` / ``test_limit`` images."""
    # without a root, Fashion-MNIST is searched in $CONTRASTKIT_DATA, ../shared/data and the
    # Debian package's folder
    dataset = load_image_dataset(config.data.name, config.data.root)
    if config.data.train_limit is not None or config.data.test_limit is not None:
        dataset = dataset.subset(
            train_limit=config.data.train_limit,
            test_limit=config.data.test_limit,
            seed=config.train.seed,
        )
    return dataset


def build_views(config: RunConfig, dataset: ImageDataset) -> ImageViews:
    preset = config.views.preset or DEFAULT_PRESETS.get(dataset.name)
    if preset is None:
        raise ConfigError(
            f"views.preset must be set for dataset {dataset.name!r} (no default preset)"
        )
    size = config.views.size or dataset.size[0]
    augmentation = augmentation_preset(preset, size=size)
    if augmentation.mean is not None and len(augmentation.mean) not in (1, dataset.channels):
        augmentation = augmentation_preset(preset, size=size, mean=None, std=None)
    return ImageViews(augmentation, views=config.views.views)


def build_encoder(config: RunConfig, channels: int, image_size: int) -> Encoder:
    m = config.model
    if m.backbone == "small_cnn":
        backbone: nn.Module = SmallCNN(
            in_channels=channels, width=m.width, out_dim=None, input_size=image_size
        )
    elif m.backbone == "resnet18":
        backbone = resnet18(in_channels=channels, cifar_stem=m.cifar_stem)
    elif m.backbone == "resnet50":
        backbone = resnet50(in_channels=channels, cifar_stem=m.cifar_stem)
    else:
        raise ConfigError(
            f"model.backbone must be small_cnn, resnet18 or resnet50; got {m.backbone!r}"
        )
    head = ProjectionHead(
        backbone.feature_dim,
        hidden_dim=m.head_hidden,
        out_dim=m.head_out,
        num_layers=m.head_layers,
    )
    return Encoder(backbone, head)


def build_loss(config: RunConfig) -> loss_lib.LossModule:
    name = config.loss.name
    if name not in loss_lib.available():
        raise ConfigError(
            f"loss.name {name!r} is not a loss; available: {', '.join(loss_lib.available())}"
        )
    params = dict(config.loss.params)
    accepted = loss_lib.keyword_arguments(getattr(loss_lib, name))
    if config.loss.temperature is not None and "temperature" in accepted:
        if "temperature" in params:
            raise ConfigError(
                "set the temperature once: loss.temperature or loss.params.temperature"
            )
        params["temperature"] = config.loss.temperature
    try:
        criterion = loss_lib.get(name, **params)
    except TypeError as error:
        raise ConfigError(f"loss.params: {error}") from None
    if any(True for _ in criterion.parameters()):
        raise ConfigError(
            f"loss {name!r} has learnable parameters, which the image recipe does not train "
            "yet; fix them (e.g. siglip: loss.params.learnable=false)"
        )
    needs = [
        p.name
        for p in list(inspect.signature(type(criterion).fn).parameters.values())[1:]
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    if needs:
        raise ConfigError(
            f"loss {name!r} needs extra inputs ({', '.join(needs)}) that self-supervised image "
            "training does not have; choose a loss that takes only z"
        )
    return criterion


def _check_views(config: RunConfig, criterion: loss_lib.LossModule) -> None:
    """Fail before training when the loss cannot take V views (e.g. dcl with views=4)."""
    probe = torch.randn(4, config.views.views, 8)
    try:
        criterion(probe)
    except ValueError as error:
        raise ConfigError(
            f"loss {config.loss.name!r} with views.views={config.views.views}: {error}"
        ) from None


class MocoModel(nn.Module):
    """MoCo v2: online encoder (queries), momentum encoder (keys), queue of past keys.

    ``forward(views [B, 2, C, H, W])`` returns the InfoNCE loss of the queries of view 0 against
    the keys of view 1 and the queue, plus the score statistics; the keys of the step are kept
    in ``last_keys`` for :meth:`update`, which runs after the optimizer step (EMA, enqueue the
    original keys).
    """

    def __init__(self, encoder: Encoder, config: RunConfig) -> None:
        super().__init__()
        self.online = encoder
        self.momentum = MomentumEncoder(encoder, momentum=config.moco.momentum)
        self.queue = FeatureQueue(config.model.head_out, size=config.moco.queue_size)
        self.temperature = config.loss.temperature if config.loss.temperature is not None else 0.2
        self.pos_extrapolation = config.moco.pos_extrapolation
        self.neg_interpolation = config.moco.neg_interpolation
        self.last_keys: Tensor | None = None

    def represent(self, x: Tensor) -> Tensor:
        return self.online.represent(x)

    def forward(self, views: Tensor) -> tuple[Tensor, Tensor]:
        """Queries of view 0 (online encoder) and keys of view 1 (momentum encoder)."""
        _, q = self.online(views[:, 0])
        _, k = self.momentum(views[:, 1])
        self.last_keys = k.detach()
        return q, k

    def loss(self, q: Tensor, k: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """MoCo InfoNCE, called outside the precision wrapper so that it runs in float32."""
        return moco_loss(
            q.float(),
            k.float(),
            self.queue.features.float(),
            temperature=self.temperature,
            pos_extrapolation=self.pos_extrapolation,
            neg_interpolation=self.neg_interpolation,
            return_stats=True,
        )

    @torch.no_grad()
    def update(self) -> None:
        self.momentum.update(self.online)
        if self.last_keys is not None:
            self.queue.enqueue(self.last_keys)
            self.last_keys = None


class ImageContrastiveTask:
    """SimCLR-style multi-view training: V views of each image, one encoder, one loss on
    ``z [B, V, D]``; evaluation on the frozen backbone representation."""

    def __init__(self, config: RunConfig, dataset: ImageDataset) -> None:
        self.config = config
        self.dataset = dataset
        self.views = build_views(config, dataset)
        size = self.views.augmentation.size
        torch.manual_seed(config.train.seed)
        encoder = build_encoder(config, dataset.channels, size)
        self.criterion = build_loss(config)
        _check_views(config, self.criterion)
        self.model: nn.Module = encoder
        if config.moco.enabled and config.train.grad_cache_chunk is not None:
            raise ConfigError("train.grad_cache_chunk does not apply to MoCo (moco.enabled)")
        if config.moco.enabled:
            if config.views.views != 2 or config.loss.name != "info_nce":
                raise ConfigError(
                    "moco.enabled needs views.views=2 and loss.name=info_nce (MoCo's InfoNCE "
                    f"against the queue); got views.views={config.views.views}, "
                    f"loss.name={config.loss.name!r}"
                )
            self.model = MocoModel(encoder, config)
        self.scores = ScoreHistory(max_negatives=config.eval.score_samples, seed=config.train.seed)
        self.backward: Any = None
        self.scores_path: Path | None = None  # where the score samples are kept, if anywhere
        self.device = torch.device("cpu")
        self.train_images = dataset.train_images
        self.test_images = dataset.test_images

    # -- engine protocol -------------------------------------------------------------------
    def num_train(self) -> int:
        return int(self.dataset.train_images.shape[0])

    def setup(self, fabric: Any) -> None:
        self.device = fabric.device
        self.backward = fabric.backward  # the precision plugin's backward (gradient cache)
        self.train_images = self.dataset.train_images.to(self.device)
        self.test_images = self.dataset.test_images.to(self.device)
        self.views = self.views.to(self.device)

    def training_step(self, model: nn.Module, indices: Tensor) -> tuple[Tensor, dict[str, float]]:
        images = self.train_images[indices.to(self.device)]
        views = self.views(images)  # [B, V, C, H, W]
        if isinstance(self.model, MocoModel):
            q, k = model(views)  # local queries against local keys and the shared queue
            self.model.last_keys = gather(k.detach())  # every process enqueues the global keys
            loss, stats = self.model.loss(q, k)
            return loss, {f"scores/{key}": float(v.mean()) for key, v in stats.items()}
        b, v = views.shape[:2]

        def loss_of(z: Tensor) -> Tensor:
            # with several processes: own instances as anchors against the gathered batch
            # (exact gradients after data-parallel averaging; see contrastkit.core.distributed)
            return local_loss(self.criterion, z.reshape(b, v, -1))

        chunk = self.config.train.grad_cache_chunk
        if chunk is not None:  # back-propagates here; the engine sees a detached loss
            loss = grad_cache_step(
                lambda x: model(x)[1],
                views.flatten(0, 1),
                loss_of,
                chunk_size=chunk,
                backward=self.backward,
            )
            return loss, {}
        _, z = model(views.flatten(0, 1))
        return loss_of(z), {}

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        if isinstance(self.model, MocoModel):
            self.model.update()

    def _encoder(self) -> Encoder:
        return self.model.online if isinstance(self.model, MocoModel) else self.model

    @torch.no_grad()
    def _in_eval_mode(self, fn: Any, images: Tensor) -> Tensor:
        """``cat(fn(chunk))`` over chunks of ``images``, with the model in eval mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            out = [
                fn(images[i : i + EVAL_BATCH].to(self.device))
                for i in range(0, images.shape[0], EVAL_BATCH)
            ]
        finally:
            self.model.train(was_training)
        return torch.cat(out).float()

    def represent(self, images: Tensor) -> Tensor:
        """Frozen backbone representations ``[N, F]`` of the deterministic view of ``images``."""
        encoder = self._encoder()
        return self._in_eval_mode(lambda x: encoder.represent(self.views.deterministic(x)), images)

    def projected_views(self, images: Tensor) -> Tensor:
        """``z [N, V, D]`` (normalised) of fresh augmented views, for the view diagnostics."""
        encoder = self._encoder()

        def project(x: Tensor) -> Tensor:
            views = self.views(x)
            b, v = views.shape[:2]
            return encoder(views.flatten(0, 1))[1].reshape(b, v, -1)

        return torch.nn.functional.normalize(self._in_eval_mode(project, images), dim=-1)

    def diagnostic_views(self) -> Tensor:
        """``z [n, V, D]`` of up to 1000 test images, the same augmentations every call."""
        generator_state = torch.get_rng_state()
        torch.manual_seed(self.config.train.seed + 7)
        subset = self.test_images[: min(1000, self.test_images.shape[0])]
        z = self.projected_views(subset)
        torch.set_rng_state(generator_state)
        return z

    def record_scores(self, epoch: int, z: Tensor) -> None:
        self.scores.record(epoch, z)
        if self.scores_path is not None:
            self.scores.save(self.scores_path)

    def evaluate(self, epoch: int, *, final: bool) -> dict[str, Any]:
        metrics = evaluate_representations(self, self.config)
        z = self.diagnostic_views()
        metrics["alignment"] = alignment_metric(z)
        metrics["uniformity"] = uniformity_metric(z)
        self.record_scores(epoch, z)
        return metrics


def _probes(
    train_x: Tensor, test_x: Tensor, task: ImageContrastiveTask, config: RunConfig
) -> tuple[float, float]:
    """(kNN accuracy, linear-probe accuracy): train split -> test split."""
    train_y = task.dataset.train_labels.to(train_x.device)
    test_y = task.dataset.test_labels.to(test_x.device)
    knn = knn_classify(
        train_x,
        train_y,
        test_x,
        test_y,
        k=config.eval.knn_k,
        temperature=config.eval.knn_temperature,
    )
    linear = linear_probe(
        train_x, train_y, test_x, test_y, epochs=config.eval.linear_epochs, seed=config.train.seed
    )
    return knn.accuracy, linear.accuracy


def evaluate_representations(task: ImageContrastiveTask, config: RunConfig) -> dict[str, Any]:
    """kNN and linear probe (train -> test), effective rank and tolerance of the test
    representations of the task's current encoder."""
    train_h = task.represent(task.train_images)
    test_h = task.represent(task.test_images)
    knn_acc, linear_acc = _probes(train_h, test_h, task, config)
    test_y = task.dataset.test_labels.to(test_h.device)
    return {
        "knn_acc": knn_acc,
        "linear_acc": linear_acc,
        "effective_rank": effective_rank(test_h),
        "tolerance": tolerance(torch.nn.functional.normalize(test_h, dim=-1), test_y),
    }


def raw_baseline(task: ImageContrastiveTask, config: RunConfig) -> dict[str, float]:
    """kNN and linear probe on raw pixels scaled to [0, 1]."""
    knn_acc, linear_acc = _probes(
        task.train_images.flatten(1).float() / 255,
        task.test_images.flatten(1).float() / 255,
        task,
        config,
    )
    return {"raw_knn_acc": knn_acc, "raw_linear_acc": linear_acc}


def run_image_training(
    config: RunConfig, output: str | Path, *, resume: bool = False, echo: bool = True
) -> dict[str, Any]:
    """Train, evaluate and write the run folder; returns (and writes) ``summary.json``.

    Everything that can fail on bad input (config, dataset, loss/view compatibility) is
    checked before the run folder is touched.
    """
    output = Path(output)
    dataset = load_dataset(config)
    task = ImageContrastiveTask(config, dataset)
    engine = Engine(config, output, task, resume=resume, echo=echo)
    with engine:  # holds the run folder's lock until the summary and plots are written
        return _train_and_report(config, output, dataset, task, engine, echo=echo)


def _train_and_report(
    config: RunConfig,
    output: Path,
    dataset: ImageDataset,
    task: ImageContrastiveTask,
    engine: Engine,
    *,
    echo: bool,
) -> dict[str, Any]:
    """The body of :func:`run_image_training` inside the engine's lock."""
    engine.prepare()  # every check that can refuse the run; the task is now on its device
    started = time.perf_counter()

    baselines: dict[str, float] = {}
    if config.eval.baselines:  # the untrained encoder is the same seeded init on resume
        untrained = evaluate_representations(task, config)
        baselines = {
            "untrained_knn_acc": untrained["knn_acc"],
            "untrained_linear_acc": untrained["linear_acc"],
            "untrained_effective_rank": untrained["effective_rank"],
            **raw_baseline(task, config),
        }
    scores_path = output / "plots" / "score_samples.safetensors"
    if engine.restored is not None and scores_path.is_file():
        task.scores.load(scores_path)
        task.scores.truncate(engine.start_epoch)
    else:  # weights are loaded in fit(): the model is still the seeded, untrained one
        task.scores.record(0, task.diagnostic_views())
    if engine.is_main:  # only rank 0 writes the run folder
        task.scores_path = scores_path
        task.scores.save(scores_path)
    result = engine.fit()

    summary = {
        "dataset": dataset.name,
        "loss": config.loss.name,
        "views": config.views.views,
        **{k: result[k] for k in SUMMARY_METRICS if k in result},
        "epochs": result["epochs"],
        "epochs_trained": result["epochs_trained"],
        "steps": result["steps"],
        "train_seconds": result["wall_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 3),
        "baselines": baselines,
        "score_history": task.scores.to_dict()["records"],
    }
    if not engine.is_main:
        return summary
    plots = output / "plots"
    if len(task.scores):
        task.scores.plot(
            plots / "score_histograms.png",
            title=f"{config.loss.name}, V={config.views.views}: cosine scores",
        )
    records = [
        json.loads(line)
        for line in (output / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    plot_metric_curves(records, ["loss"], plots / "loss.png", title="training loss")
    if any("knn_acc" in r for r in records):
        plot_metric_curves(
            records, ["knn_acc", "linear_acc"], plots / "accuracy.png", title="online evaluation"
        )
    atomic_write_text(output / "summary.json", json.dumps(summary, indent=2) + "\n")
    if echo:
        print(result_table(summary))
        print(f"\nrun folder: {output}")
    return summary


def result_table(summary: dict[str, Any]) -> str:
    """Markdown table of the trained encoder against the baselines."""
    b = summary.get("baselines", {})
    rows = [
        (
            "linear probe acc",
            summary.get("linear_acc"),
            b.get("untrained_linear_acc"),
            b.get("raw_linear_acc"),
        ),
        ("kNN acc", summary.get("knn_acc"), b.get("untrained_knn_acc"), b.get("raw_knn_acc")),
        ("effective rank", summary.get("effective_rank"), b.get("untrained_effective_rank"), None),
        ("alignment", summary.get("alignment"), None, None),
        ("uniformity", summary.get("uniformity"), None, None),
        ("tolerance", summary.get("tolerance"), None, None),
    ]

    def fmt(value: Any) -> str:
        return "—" if value is None else f"{value:.4f}"

    lines = [
        f"{summary['dataset']}, {summary['loss']}, V={summary['views']}, "
        f"{summary['epochs']} epochs, {summary['wall_seconds']:.1f} s",
        "",
        "| metric | trained | untrained encoder | raw pixels |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {fmt(t)} | {fmt(u)} | {fmt(r)} |" for name, t, u, r in rows]
    return "\n".join(lines)


def evaluate_run(run_dir: str | Path, *, echo: bool = True) -> dict[str, Any]:
    """Re-evaluate the latest checkpoint of a run folder (``contrastkit eval RUN_DIR``)."""
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    if config.recipe != "images":
        raise ValueError(f"{run_dir} holds a {config.recipe!r} run, not an image run")
    weights, source = run_weights(run_dir, "latest")
    dataset = load_dataset(config)
    task = ImageContrastiveTask(config, dataset)
    load_into(task.model, weights, f"checkpoint {run_dir / 'checkpoints' / source}")
    task.setup(Fabric(accelerator="auto", devices=1))  # a GPU when there is one
    metrics = evaluate_representations(task, config)
    metrics["checkpoint"] = source
    if echo:
        print(json.dumps(metrics, indent=2))
    return metrics
