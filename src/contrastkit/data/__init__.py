"""Reading real data formats, validating them, splitting.

``images``: image datasets. ``sequences``: sequential-recommendation interaction sequences
(S3-Rec/ICLRec text files, MovieLens 100K), k-core filtering, leave-one-out splits. ``graphs``:
user-item interaction graphs (LightGCN format) and Planetoid citation graphs (Cora).
"""

from contrastkit.data.graphs import (
    InteractionGraph,
    NodeDataset,
    load_lightgcn_dataset,
    load_movielens_graph,
    load_planetoid,
    random_split_graph,
    read_lightgcn_interactions,
)
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
from contrastkit.data.sequences import (
    SequenceData,
    SequenceSplit,
    history_mask,
    k_core_filter,
    leave_one_out,
    pad_left,
    read_movielens_100k,
    read_sequence_file,
    training_pairs,
)

__all__ = [
    "DATASET_NAMES",
    "DataFormatError",
    "ImageDataset",
    "InteractionGraph",
    "NodeDataset",
    "SequenceData",
    "SequenceSplit",
    "data_root",
    "history_mask",
    "k_core_filter",
    "leave_one_out",
    "load_cifar",
    "load_digits",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_folder",
    "load_lightgcn_dataset",
    "load_movielens_graph",
    "load_planetoid",
    "pad_left",
    "random_split_graph",
    "read_idx",
    "read_lightgcn_interactions",
    "read_movielens_100k",
    "read_sequence_file",
    "training_pairs",
]
