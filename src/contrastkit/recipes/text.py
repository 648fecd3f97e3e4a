"""Sentence embeddings by contrastive fine-tuning (``recipe: text``), evaluated on STS-B.

Methods (``text.method``):

* ``unsup`` — unsupervised SimCSE (Gao et al., EMNLP 2021): each sentence is encoded ``V``
  times (``text.num_views``) in training mode, so the ``V`` dropout masks are the only
  augmentation; ``z [B, V, D]`` goes to any loss of the library: ``simcse`` (SimCSE's own
  one-directional loss, tau 0.05), ``info_nce`` (NT-Xent), ``dcl``, ``mv_infonce`` / ``mv_dhel``
  with ``V > 2``, ``supcon`` (each sentence its own class) ...
* ``sup`` — supervised pairs: the STS-B training pairs with a gold score ``>= text.min_score``
  (paraphrases) are the positives; the other pairs of the batch are the negatives. With
  ``text.hard_negatives`` each pair also gets a hard negative (``z [B, 3, D]``, loss
  ``simcse``, SimCSE's supervised form): there is no NLI data here, so the hard negative of an
  anchor is the sentence most similar to it under the *starting* model among the sentences of
  low-score training pairs (gold score < 2, not the anchor or its positive) — a mined stand-in
  for SimCSE's contradiction sentences.

Evaluation: Spearman correlation (×1, not ×100) between the cosine of the two sentences' mean
pooled embeddings and the gold score on STS-B dev (every ``train.eval_every`` epochs; the best
dev weights are kept, as SimCSE selects its checkpoint on STS-B dev) and test (of the best dev
weights, at the end). The starting model's dev and test scores are measured before the first
step. The best weights are exported as a sentence-transformers folder
(``<run>/sentence_transformer``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from torch import Tensor, nn

from contrastkit import losses as loss_lib
from contrastkit.data.text import (
    StsPairs,
    read_sentences,
    stsb_split,
    wiki_sentences_path,
)
from contrastkit.encoders.text import TextEncoder, minilm_path
from contrastkit.eval.sts import sts_spearman
from contrastkit.losses.registry import positional_inputs
from contrastkit.recipes.reporting import fit_and_summarize
from contrastkit.train.best import BestWeights
from contrastkit.train.config import RunConfig, TextConfig

LOW_SCORE = 2.0  # sup + hard negatives: sentences of training pairs below this gold score


def model_path(cfg: TextConfig) -> Path:
    return minilm_path() if cfg.model == "minilm" else Path(cfg.model)


def load_encoder(cfg: TextConfig) -> TextEncoder:
    return TextEncoder.from_pretrained(
        model_path(cfg),
        pooling=cfg.pooling,
        max_length=cfg.eval_max_length,
        normalize=False,
        dropout=cfg.dropout,
    )


def positive_pairs(pairs: StsPairs, min_score: float) -> tuple[list[str], list[str]]:
    """The (first, second) sentences of the pairs with gold score ``>= min_score``."""
    keep = [i for i, s in enumerate(pairs.scores) if s >= min_score]
    if len(keep) < 2:
        raise ValueError(
            f"text.min_score={min_score}: only {len(keep)} training pairs reach it (need >= 2)"
        )
    return [pairs.first[i] for i in keep], [pairs.second[i] for i in keep]


def mine_hard_negatives(
    encoder: TextEncoder,
    anchors: list[str],
    positives: list[str],
    pool: list[str],
    *,
    batch_size: int = 128,
) -> list[str]:
    """For each anchor the pool sentence most similar to it under ``encoder`` (cosine),
    excluding the anchor and its positive."""
    if not pool:
        raise ValueError("mine_hard_negatives: the pool of candidate sentences is empty")
    a = encoder.encode(anchors, batch_size=batch_size, normalize=True)
    p = encoder.encode(pool, batch_size=batch_size, normalize=True)
    sims = a @ p.T
    index = {s: i for i, s in enumerate(pool)}
    for row, (anchor, positive) in enumerate(zip(anchors, positives, strict=True)):
        for s in (anchor, positive):
            if s in index:
                sims[row, index[s]] = -float("inf")
    choice = sims.argmax(dim=1).tolist()
    return [pool[j] for j in choice]


class TextTask:
    """A :class:`contrastkit.train.engine.Task` for sentence-embedding fine-tuning.

    The training examples are sentences (``unsup``) or pairs / triplets (``sup``), tokenised
    once (padded to ``text.max_length``; each batch is cut to its longest sentence). One step::

        unsup:  z[:, v] = pool(f(x_i; dropout mask v)),  v < V    (one forward of V·B rows)
        sup:    z = [pool(f(anchor)), pool(f(positive)) (, pool(f(hard negative)))]
        loss = criterion(z)      (supcon / soft losses get each example's index as its label)
    """

    def __init__(self, config: RunConfig, run_dir: Path) -> None:
        cfg = config.text
        self.config, self.cfg, self.run_dir = config, cfg, Path(run_dir)
        torch.manual_seed(config.train.seed)
        self.encoder = load_encoder(cfg)
        self.model: nn.Module = self.encoder
        self.criterion = loss_lib.get(
            config.loss.name,
            **({"temperature": config.loss.temperature} if config.loss.temperature else {}),
            **config.loss.params,
        )
        if list(self.criterion.parameters()):
            raise ValueError(
                f"loss.name={config.loss.name!r} has learnable parameters; the text recipe "
                "takes losses without them"
            )
        extras = positional_inputs(type(self.criterion).fn)
        if extras not in ([], ["labels"]):
            raise ValueError(
                f"loss.name={config.loss.name!r} needs inputs {extras}; the text recipe can "
                "give a loss only z (and instance labels)"
            )
        self.needs_labels = extras == ["labels"]
        if cfg.method == "unsup" and config.loss.name == "simcse" and cfg.num_views != 2:
            raise ValueError(
                "loss.name=simcse treats views 2.. as hard negatives: with text.method=unsup "
                f"use text.num_views=2 (got {cfg.num_views}) or a multi-view loss (mv_infonce)"
            )
        if cfg.hard_negatives and config.loss.name != "simcse":
            raise ValueError(
                "text.hard_negatives needs loss.name=simcse (anchor, positive, hard negative); "
                f"got {config.loss.name!r}"
            )
        self.dev = stsb_split("dev", cfg.stsb)
        self.test = stsb_split("test", cfg.stsb)
        self.columns = self._training_columns()
        self.tokens = [self._tokenize(column) for column in self.columns]
        self.tracker = BestWeights(self.run_dir)
        self.start: dict[str, float] = {}
        self.device = torch.device("cpu")
        self.description = f"text {cfg.method} {config.loss.name}"

    # data ----------------------------------------------------------------------------------
    def _training_columns(self) -> list[list[str]]:
        cfg = self.cfg
        if cfg.method == "unsup":
            path = Path(cfg.sentences) if cfg.sentences else wiki_sentences_path()
            sentences = read_sentences(path, limit=cfg.max_sentences)
            if len(sentences) < 2:
                raise ValueError(f"{path}: need at least 2 sentences to contrast")
            return [sentences]
        train = stsb_split("train", cfg.stsb)
        first, second = positive_pairs(train, cfg.min_score)
        if cfg.max_sentences is not None:
            first, second = first[: cfg.max_sentences], second[: cfg.max_sentences]
        columns = [first, second]
        if cfg.hard_negatives:
            low = [i for i, s in enumerate(train.scores) if s < LOW_SCORE]
            pool = list(
                dict.fromkeys([train.first[i] for i in low] + [train.second[i] for i in low])
            )
            columns.append(
                mine_hard_negatives(
                    self.encoder, first, second, pool, batch_size=cfg.eval_batch_size
                )
            )
        return columns

    def _tokenize(self, sentences: list[str]) -> tuple[Tensor, Tensor]:
        batch = self.encoder.tokenizer(
            sentences,
            padding="max_length",
            truncation=True,
            max_length=self.cfg.max_length,
            return_tensors="pt",
        )
        return batch["input_ids"], batch["attention_mask"]

    # engine hooks ----------------------------------------------------------------------------
    def num_train(self) -> int:
        return len(self.columns[0])

    def setup(self, fabric: Fabric) -> None:
        if fabric.world_size > 1:
            raise ValueError("the text recipe trains on one device (train.devices=1)")
        self.device = fabric.device
        self.tracker.load_files()

    def extra_state(self) -> dict[str, Any]:
        return {**self.tracker.state(), "start": dict(self.start)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.tracker.load_state(state)
        self.start = dict(state.get("start", {}))

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        pass

    def _batch(self, column: int, indices: Tensor) -> tuple[Tensor, Tensor]:
        ids, mask = self.tokens[column]
        ids, mask = ids[indices], mask[indices]
        length = int(mask.sum(dim=1).max())
        return ids[:, :length].to(self.device), mask[:, :length].to(self.device)

    def training_step(self, model: nn.Module, indices: Tensor) -> tuple[Tensor, dict[str, float]]:
        if not self.start:  # before the first update; a resumed run has them in its state
            self.start = {
                "start_dev_spearman": self.score(self.dev),
                "start_test_spearman": self.score(self.test),
            }
        b = indices.numel()
        if self.cfg.method == "unsup":
            ids, mask = self._batch(0, indices)
            v = self.cfg.num_views
            pooled = model(ids.repeat(v, 1), mask.repeat(v, 1))  # [V·B, D], V dropout masks
            z = pooled.view(v, b, -1).transpose(0, 1)
        else:
            views = [model(*self._batch(c, indices)) for c in range(len(self.columns))]
            z = torch.stack(views, dim=1)
        inputs = (indices.to(self.device),) if self.needs_labels else ()
        loss = self.criterion(z, *inputs)
        return loss, {}

    # evaluation ------------------------------------------------------------------------------
    def score(self, pairs: StsPairs) -> float:
        return sts_spearman(
            lambda s: self.encoder.encode(s, batch_size=self.cfg.eval_batch_size),
            pairs.first,
            pairs.second,
            pairs.scores,
        )

    def evaluate(self, epoch: int, *, final: bool) -> dict[str, Any]:
        dev = self.score(self.dev)
        self.tracker.update(dev, epoch, self.model)
        out: dict[str, Any] = {"dev_spearman": dev, **self.start}
        out["best_dev_spearman"] = self.tracker.best["score"]
        out["best_epoch"] = self.tracker.epoch
        if self.cfg.patience is not None and self.tracker.since >= self.cfg.patience:
            out["stop"] = True
        if final:
            self.model.load_state_dict(self.tracker.weights())
            out["test_spearman"] = self.score(self.test)
            out["dev_spearman_best"] = self.score(self.dev)
            self.encoder.save_sentence_transformers(self.run_dir / "sentence_transformer")
        return out


def run_text_training(
    config: RunConfig, output: str | Path, *, resume: bool = False, echo: bool = True
) -> dict[str, Any]:
    """Fine-tune a sentence encoder contrastively and evaluate it on STS-B; writes
    ``summary.json``, ``results.md`` and ``sentence_transformer/`` into ``output``."""
    started = time.perf_counter()
    output = Path(output)
    task = TextTask(config, output)
    cfg = config.text
    header = {
        "dataset": "stsb",
        "method": cfg.method + ("+hardneg" if cfg.hard_negatives else ""),
        "loss": config.loss.name,
        "model": cfg.model,
        "views": cfg.num_views if cfg.method == "unsup" else len(task.columns),
        "train_examples": task.num_train(),
    }
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
    """Markdown: STS-B Spearman ×100 of the starting model and of the fine-tuned one."""
    lines = [
        "| method | loss | views | start dev | start test | best dev (epoch) | test "
        "| epochs | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['loss']} | {r.get('views', '—')} | "
            f"{100 * r.get('start_dev_spearman', nan):.2f} | "
            f"{100 * r.get('start_test_spearman', nan):.2f} | "
            f"{100 * r.get('best_dev_spearman', nan):.2f} ({r.get('best_epoch', '—')}) | "
            f"{100 * r.get('test_spearman', nan):.2f} | {r.get('epochs_trained', '—')} | "
            f"{r.get('wall_seconds', nan):.0f} |"
        )
    return "\n".join(lines)
