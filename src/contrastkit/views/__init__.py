"""Making views: per modality, batched, on the device (``feature``: views in embedding space;
``sequence``: item-sequence operators for sequential recommendation)."""

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
    "mask",
    "nearest_neighbours",
    "reorder",
    "substitute",
]
