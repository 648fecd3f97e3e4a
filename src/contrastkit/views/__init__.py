"""Making views: per modality, batched, on the device (``feature``: views in embedding space;
``sequence``: item-sequence operators for sequential recommendation; ``graph``: GRACE's edge
dropping and feature-column masking)."""

from contrastkit.views.graph import drop_edges, mask_features
from contrastkit.views.sequence import (
    SequenceAugmenter,
    crop,
    mask,
    nearest_neighbours,
    reorder,
    substitute,
)

__all__ = [
    "SequenceAugmenter",
    "crop",
    "drop_edges",
    "mask",
    "mask_features",
    "nearest_neighbours",
    "reorder",
    "substitute",
]
