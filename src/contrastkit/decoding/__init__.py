"""Contrastive text generation: the SimCTG training objective and contrastive search decoding
(Su et al., "A Contrastive Framework for Neural Text Generation", NeurIPS 2022; Su & Collier,
"Contrastive Search Is What You Need For Neural Text Generation", TMLR 2023), with greedy and
top-p baselines and the paper's evaluation metrics (``contrastkit.decoding.metrics``).

Works with any Hugging Face style causal LM (``transformers`` is only needed for the models
themselves; this package imports nothing from it).
"""

from contrastkit.decoding.metrics import (
    coherence,
    diversity,
    isotropy,
    isotropy_from_hidden,
    rep_n,
    repetition_and_diversity,
)
from contrastkit.decoding.search import (
    contrastive_search,
    contrastive_search_reference,
    greedy_search,
    top_p_sampling,
)
from contrastkit.decoding.simctg import simctg_lm_loss, simctg_loss

__all__ = [
    "coherence",
    "contrastive_search",
    "contrastive_search_reference",
    "diversity",
    "greedy_search",
    "isotropy",
    "isotropy_from_hidden",
    "rep_n",
    "repetition_and_diversity",
    "simctg_lm_loss",
    "simctg_loss",
    "top_p_sampling",
]
