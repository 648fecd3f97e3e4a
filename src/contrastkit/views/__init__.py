"""Making views: per modality, batched, on the device (``feature``: views in embedding space)."""
