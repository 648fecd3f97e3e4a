"""contrastkit: contrastive representation learning, exact, fast and easy.

Views in, embeddings out, one similarity core. See ``contrastkit.losses`` for the objectives
and ``contrastkit.core`` for the masked log-sum-exp they all share.
"""

__version__ = "0.1.0"
