"""Reading real data formats, validating them, splitting (``images``: image datasets)."""

from contrastkit.data.images import (
    DATASET_NAMES,
    DataFormatError,
    ImageDataset,
    data_root,
    load_cifar,
    load_digits,
    load_fashion_mnist,
    load_image_dataset,
    load_image_folder,
    read_idx,
)

__all__ = [
    "DATASET_NAMES",
    "DataFormatError",
    "ImageDataset",
    "data_root",
    "load_cifar",
    "load_digits",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_folder",
    "read_idx",
]
