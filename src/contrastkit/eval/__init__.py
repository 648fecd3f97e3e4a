"""What was learned: probes on frozen features and diagnostics of embeddings.

Probes (``probes.py``): :func:`linear_probe` (multinomial logistic regression, full-batch L-BFGS)
and :func:`knn_classify` (weighted kNN of Wu et al. 2018), both returning a
:class:`ProbeResult`. Diagnostics (``diagnostics.py``): :func:`effective_rank` (RankMe),
:func:`alignment_metric`, :func:`uniformity_metric`, :func:`tolerance`, :func:`score_samples`
and :class:`ScoreHistory` (positive/negative cosine histograms over training), and
:func:`plot_metric_curves`, :func:`plot_overlaid_curves` (matplotlib imported lazily).
Ranking (``ranking.py``):
:func:`full_ranking_metrics` (HR@k, NDCG@k, MRR of one target per user over all items) and
:func:`evaluate_in_chunks`; several held-out items per user: :func:`recall_ndcg_at_k` (Recall@k,
NDCG@k as in LightGCN) and :func:`recall_ndcg_in_chunks`. Retrieval (``retrieval.py``):
:func:`cross_modal_recall` (Recall@k of cross-modal retrieval, pessimistic ties),
:func:`retrieval_ranks`, :func:`zero_shot_accuracy` and :func:`zero_shot_predict`.
Significance (``significance.py``): :func:`paired_bootstrap` (is the difference of two models
on the same test users larger than the test set's sampling noise?).
"""

from contrastkit.eval.diagnostics import (
    ScoreHistory,
    alignment_metric,
    effective_rank,
    plot_metric_curves,
    plot_overlaid_curves,
    score_samples,
    tolerance,
    uniformity_metric,
)
from contrastkit.eval.probes import ProbeResult, knn_classify, linear_probe
from contrastkit.eval.ranking import (
    evaluate_in_chunks,
    full_ranking_metrics,
    metric_names,
    recall_ndcg_at_k,
    recall_ndcg_in_chunks,
)
from contrastkit.eval.retrieval import (
    cross_modal_recall,
    retrieval_ranks,
    zero_shot_accuracy,
    zero_shot_predict,
)
from contrastkit.eval.significance import PairedDifference, paired_bootstrap

__all__ = [
    "PairedDifference",
    "ProbeResult",
    "ScoreHistory",
    "alignment_metric",
    "cross_modal_recall",
    "effective_rank",
    "evaluate_in_chunks",
    "full_ranking_metrics",
    "knn_classify",
    "linear_probe",
    "metric_names",
    "paired_bootstrap",
    "plot_metric_curves",
    "plot_overlaid_curves",
    "recall_ndcg_at_k",
    "recall_ndcg_in_chunks",
    "retrieval_ranks",
    "score_samples",
    "tolerance",
    "uniformity_metric",
    "zero_shot_accuracy",
    "zero_shot_predict",
]
