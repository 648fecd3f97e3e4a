"""Sequential recommendation data: reading interaction sequences, filtering, leave-one-out.

Everything is held in memory as one chronological item sequence per user:

- item ids are ``int64`` and 1-based (``1..num_items``); id ``0`` is reserved for padding;
- sequences are ``numpy`` arrays (variable length), tensors only appear once padded.

Readers:

- :func:`read_sequence_file`: the S3-Rec / CL4SRec / ICLRec / DuoRec text format
  (``Beauty.txt``, ``Toys_and_Games.txt``, ``LastFM.txt``: one line per user,
  ``user_id item_id item_id ...``), plus the optional ``*_item2attributes.json``.
- :func:`read_movielens_100k`: GroupLens ``ml-100k`` (``u.data`` ratings ordered by timestamp,
  ``u.item`` titles).

Then :func:`k_core_filter` (iterative k-core, items re-indexed to ``1..n'``),
:func:`leave_one_out` (last item = test target, second-to-last = validation target; the
protocol of S3-Rec / ICLRec / RecBole's ``leave_one_num: 2``), :func:`training_pairs`
(prefix augmentation), :func:`pad_left` and :func:`history_mask` (the items to exclude when
ranking, for :func:`contrastkit.eval.ranking.full_ranking_metrics`).

Malformed files raise :class:`~contrastkit.data.images.DataFormatError` with the message
``"PATH: line N: reason"`` (or ``"PATH: reason"`` where there is no line); missing files
raise :class:`FileNotFoundError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.images import DataFormatError

__all__ = [
    "SequenceData",
    "SequenceSplit",
    "history_mask",
    "k_core_filter",
    "leave_one_out",
    "pad_left",
    "read_movielens_100k",
    "read_sequence_file",
    "training_pairs",
]

PathLike = str | os.PathLike[str]

_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SequenceData:
    """One chronological item sequence per user.

    Attributes:
        sequences: one ``int64`` 1-D array per user, oldest interaction first, item ids in
            ``1..num_items`` (never 0: 0 is the padding id). Every sequence is non-empty.
        num_items: the largest possible item id; ids are ``1..num_items`` (an id may be
            unused, e.g. when the file skips one). Score matrices over items usually have
            ``num_items + 1`` columns, column ``c`` = item ``c``, column 0 = padding.
        user_ids: the user identifiers as written in the source (strings), one per sequence,
            all distinct.
        item_titles: ``{item_id: title}`` when the source has titles (MovieLens), else ``None``.
        item_attributes: ``{item_id: [attribute_id, ...]}`` when the source has attributes
            (``*_item2attributes.json``), else ``None``.
        source: where the data came from (a path, plus the filters applied).
        original_item_ids: ``None`` when the ids are those of the source file; otherwise
            ``int64 [num_items + 1]`` with ``original_item_ids[i]`` = the source's id of item
            ``i`` (entry 0 is 0), set when items were re-indexed (MovieLens with gaps,
            :func:`k_core_filter`).

    Inputs are converted to ``int64`` arrays and checked on construction (``ValueError`` /
    ``TypeError`` naming the field).
    """

    sequences: list[np.ndarray]
    num_items: int
    user_ids: list[str]
    item_titles: dict[int, str] | None = None
    item_attributes: dict[int, list[int]] | None = None
    source: str = ""
    original_item_ids: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.num_items, bool) or not isinstance(self.num_items, int | np.integer):
            raise TypeError(f"SequenceData: num_items must be an int; got {self.num_items!r}")
        num_items = int(self.num_items)
        if num_items < 0:
            raise ValueError(f"SequenceData: num_items must be >= 0; got {num_items}")
        object.__setattr__(self, "num_items", num_items)
        seqs = [
            _as_id_array(s, f"sequences[{u}]", "SequenceData") for u, s in enumerate(self.sequences)
        ]
        for u, s in enumerate(seqs):
            if s.size == 0:
                raise ValueError(f"SequenceData: sequences[{u}] is empty")
        if seqs:
            flat = np.concatenate(seqs)
            if flat.min() < 1 or flat.max() > num_items:
                raise ValueError(
                    f"SequenceData: item ids must be in 1..num_items={num_items}; "
                    f"found {int(flat.min())}..{int(flat.max())}"
                )
        object.__setattr__(self, "sequences", seqs)
        users = [str(u) for u in self.user_ids]
        if len(users) != len(seqs):
            raise ValueError(
                f"SequenceData: {len(users)} user_ids for {len(seqs)} sequences; "
                "need one id per sequence"
            )
        if len(set(users)) != len(users):
            raise ValueError("SequenceData: user_ids must be distinct")
        object.__setattr__(self, "user_ids", users)
        for name in ("item_titles", "item_attributes"):
            table = getattr(self, name)
            if table is None:
                continue
            if not isinstance(table, dict):
                raise TypeError(f"SequenceData: {name} must be a dict or None")
            bad = [k for k in table if not (isinstance(k, int) and 1 <= k <= num_items)]
            if bad:
                raise ValueError(
                    f"SequenceData: {name} keys must be item ids in 1..{num_items}; got {bad[0]!r}"
                )
        if self.original_item_ids is not None:
            ids = np.asarray(self.original_item_ids)
            if ids.dtype.kind not in "iu" or ids.shape != (num_items + 1,):
                raise ValueError(
                    "SequenceData: original_item_ids must be an integer array of shape "
                    f"[num_items + 1] = [{num_items + 1}]; got {ids.dtype} {ids.shape}"
                )
            object.__setattr__(self, "original_item_ids", ids.astype(np.int64, copy=False))

    @property
    def num_users(self) -> int:
        """Number of users (= number of sequences)."""
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        """Total number of interactions (sum of the sequence lengths)."""
        return int(sum(s.size for s in self.sequences))

    def lengths(self) -> np.ndarray:
        """``int64 [num_users]``: the length of every sequence."""
        return np.fromiter((s.size for s in self.sequences), dtype=np.int64, count=self.num_users)

    def summary(self) -> str:
        """One line: users, items, interactions, sequence-length statistics, side data."""
        lens = self.lengths()
        text = (
            f"{self.source or 'sequences'}: {self.num_users:,} users, {self.num_items:,} items, "
            f"{self.num_interactions:,} interactions"
        )
        if lens.size:
            text += f", length avg {lens.mean():.2f} / min {lens.min()} / max {lens.max()}"
        extras = [
            n
            for n, v in (("titles", self.item_titles), ("attributes", self.item_attributes))
            if v is not None
        ]
        if extras:
            text += ", with item " + " and ".join(extras)
        return text


@dataclass(frozen=True, eq=False)
class SequenceSplit:
    """Leave-one-out split of :class:`SequenceData` (see :func:`leave_one_out`).

    For a user with sequence ``s`` (length ``n >= 3``):

    - ``train[u] = s[:-2]`` (the model learns from it, e.g. with :func:`training_pairs`);
    - ``valid_inputs[u] = s[:-2]``, ``valid_targets[u] = s[-2]``;
    - ``test_inputs[u] = s[:-1]``, ``test_targets[u] = s[-1]``.

    Attributes:
        train, valid_inputs, test_inputs: lists of ``int64`` 1-D numpy arrays (own copies).
        valid_targets, test_targets: ``int64 [num_users]`` tensors of item ids (= column indices
            of a ``[users, num_items + 1]`` score matrix).
        num_items: as in the source :class:`SequenceData`.
        user_ids: the users kept, in order.
    """

    train: list[np.ndarray]
    valid_inputs: list[np.ndarray]
    valid_targets: Tensor
    test_inputs: list[np.ndarray]
    test_targets: Tensor
    num_items: int
    user_ids: list[str]

    @property
    def num_users(self) -> int:
        """Number of users in the split."""
        return len(self.train)

    def training_pairs(self, max_len: int) -> tuple[Tensor, Tensor]:
        """:func:`training_pairs` of ``self.train``."""
        return training_pairs(self.train, max_len)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _as_id_array(seq: object, name: str, where: str) -> np.ndarray:
    if isinstance(seq, Tensor):
        seq = seq.detach().cpu().numpy()
    arr = np.asarray(seq)
    if arr.ndim != 1:
        raise ValueError(f"{where}: {name} must be 1-D; got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must hold integer item ids; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_positive_int(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{where}: {name} must be an int; got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{where}: {name} must be >= 1; got {value}")
    return int(value)


def _id_list(seqs: object, name: str, where: str) -> list[np.ndarray]:
    if isinstance(seqs, SequenceData):
        return seqs.sequences
    if isinstance(seqs, Tensor) and seqs.dim() == 2:
        return [row for row in seqs.detach().cpu().numpy()]
    if isinstance(seqs, str | bytes) or not isinstance(seqs, Sequence | np.ndarray | Tensor):
        raise TypeError(
            f"{where}: {name} must be a sequence of 1-D integer arrays; got {type(seqs).__name__}"
        )
    return [_as_id_array(s, f"{name}[{i}]", where) for i, s in enumerate(seqs)]


def _read_text(path: Path, encoding: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataFormatError(path, f"not valid {encoding} text ({err.reason})", line=line) from err


def _content_lines(path: Path, text: str) -> list[tuple[int, str]]:
    """``(line_number, line)`` for every non-blank line; blank lines only allowed at the end."""
    out: list[tuple[int, str]] = []
    first_blank: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if first_blank is None:
                first_blank = number
            continue
        if first_blank is not None:
            raise DataFormatError(path, "blank line before the end of the file", line=first_blank)
        out.append((number, line))
    return out


def _bad_int_reason(token: str, what: str) -> str:
    if _INT_RE.fullmatch(token):
        value = int(token)
        if value < 1:
            return f"{what} {token} < 1 (ids are 1-based; 0 is the padding id)"
        if value > _INT64_MAX:
            return f"{what} {token} does not fit in int64"
    return f"{what} {token!r} is not a plain decimal integer"


def _parse_id(token: str, path: Path, line: int, what: str) -> int:
    if token.isascii() and token.isdigit():
        value = int(token)
        if 1 <= value <= _INT64_MAX:
            return value
    raise DataFormatError(path, _bad_int_reason(token, what), line=line)


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def read_sequence_file(path: PathLike, *, attributes_path: PathLike | None = None) -> SequenceData:
    """Read the standard sequential-recommendation text file (S3-Rec / ICLRec format).

    Format (UTF-8): one line per user, ``user_id item_id item_id ...`` separated by
    whitespace (single spaces in the released files), items oldest first. Item ids are
    positive decimal integers (1-based; 0 is padding); ``user_id`` is any token, kept as a
    string. Blank lines are allowed only at the end of the file. ``num_items`` = the largest
    item id in the file.

    ``attributes_path``: optional ``*_item2attributes.json``, a JSON object
    ``{"item_id": [attribute_id, ...]}`` with decimal-integer keys in ``1..num_items`` and
    lists of non-negative integers as values (items may be missing). Stored in
    ``item_attributes``.

    Raises:
        FileNotFoundError: a file does not exist.
        DataFormatError: ``"PATH: line N: reason"`` for a non-integer item, an item id < 1, a
            user with no items, a duplicate user id, a blank line in the middle; ``"PATH:
            reason"`` for an empty file; for the JSON file: invalid JSON (with its line), not
            an object, or a bad key / value (the message names the key).
    """
    path = Path(path)
    text = _read_text(path, "utf-8")
    sequences: list[np.ndarray] = []
    user_ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in _content_lines(path, text):
        tokens = line.split()
        user = tokens[0]
        if user in first_line:
            raise DataFormatError(
                path, f"duplicate user id {user!r} (first on line {first_line[user]})", line=number
            )
        first_line[user] = number
        items = tokens[1:]
        if not items:
            raise DataFormatError(path, f"user {user!r} has no items", line=number)
        if all(t.isascii() and t.isdigit() for t in items):  # fast path: plain digits
            values = [int(t) for t in items]
            if min(values) < 1 or max(values) > _INT64_MAX:
                values = [_parse_id(t, path, number, "item id") for t in items]  # raises
        else:
            values = [_parse_id(t, path, number, "item id") for t in items]  # raises
        sequences.append(np.array(values, dtype=np.int64))
        user_ids.append(user)
    if not sequences:
        raise DataFormatError(path, "empty file: no user line")
    num_items = int(max(int(s.max()) for s in sequences))
    attributes = None
    if attributes_path is not None:
        attributes = _read_attributes(Path(attributes_path), num_items)
    return SequenceData(
        sequences=sequences,
        num_items=num_items,
        user_ids=user_ids,
        item_titles=None,
        item_attributes=attributes,
        source=str(path),
    )


def _read_attributes(path: Path, num_items: int) -> dict[int, list[int]]:
    text = _read_text(path, "utf-8")
    try:
        pairs = json.loads(text, object_pairs_hook=lambda kv: kv)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, f"invalid JSON: {err.msg}", line=err.lineno) from err
    if not isinstance(pairs, list) or (pairs and not isinstance(pairs[0], tuple)):
        raise DataFormatError(
            path, 'top level must be a JSON object {"item_id": [attribute_id, ...]}'
        )
    out: dict[int, list[int]] = {}
    for key, value in pairs:
        if not (key.isascii() and key.isdigit()):
            raise DataFormatError(path, f"key {key!r}: not a decimal integer item id")
        item = int(key)
        if not 1 <= item <= num_items:
            raise DataFormatError(
                path, f"key {key!r}: item id out of range 1..{num_items} (the sequence file's)"
            )
        if item in out:
            raise DataFormatError(path, f"key {key!r}: item {item} appears twice")
        if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
            raise DataFormatError(
                path,
                f"key {key!r}: value must be a list of non-negative integer attribute ids; "
                f"got {json.dumps(value, default=str)[:60]}",
            )
        out[item] = list(value)
    return out


def read_movielens_100k(
    directory: PathLike, *, min_interactions: int | None = None
) -> SequenceData:
    """Read GroupLens MovieLens 100K (``ml-100k``) as one rating sequence per user.

    - ``u.data``: tab-separated ``user_id item_id rating timestamp`` (all integers). Each
      user's items are ordered by timestamp; ties keep the order of the file (stable sort).
      Ratings are ignored (every rating is an interaction). Users are ordered by numeric id,
      ``user_ids`` are the ids as strings.
    - ``u.item`` (latin-1): ``movie_id|title|release date|...``; titles go to ``item_titles``.
      Optional: without it ``item_titles`` is ``None``. Every rated item needs a line.

    Item ids are kept when the rated items are exactly ``1..n`` (true for ml-100k: 1..1682);
    otherwise they are re-indexed to ``1..n`` in increasing original id and
    ``original_item_ids`` maps back.

    ``min_interactions``: when given (``k >= 1``), the result is :func:`k_core_filter` with
    that ``k`` (users *and* items with fewer interactions are dropped, iteratively). ml-100k
    users all have >= 20 ratings; items may have 1.

    Raises:
        FileNotFoundError: ``directory/u.data`` is missing.
        DataFormatError: a malformed line (``"PATH: line N: reason"``: wrong number of fields,
            a non-integer field, an id < 1, a duplicate ``u.item`` id), or a rated item with no
            ``u.item`` line.
    """
    directory = Path(directory)
    data_path = directory / "u.data"
    if not data_path.is_file():
        raise FileNotFoundError(f"{data_path}: no such file (MovieLens 100K ratings)")
    text = _read_text(data_path, "latin-1")
    rows: list[tuple[int, int, int]] = []
    for number, line in _content_lines(data_path, text):
        fields = line.strip().split("\t")
        if len(fields) != 4:
            raise DataFormatError(
                data_path,
                f"expected 4 tab-separated fields (user item rating timestamp); got {len(fields)}",
                line=number,
            )
        user = _parse_id(fields[0].strip(), data_path, number, "user id")
        item = _parse_id(fields[1].strip(), data_path, number, "item id")
        for name, tok in (("rating", fields[2].strip()), ("timestamp", fields[3].strip())):
            if not _INT_RE.fullmatch(tok):
                raise DataFormatError(data_path, f"{name} {tok!r} is not an integer", line=number)
        rows.append((user, item, int(fields[3])))
    if not rows:
        raise DataFormatError(data_path, "empty file: no rating line")
    table = np.array(rows, dtype=np.int64)
    users, items, stamps = table[:, 0], table[:, 1], table[:, 2]
    order = np.argsort(stamps, kind="stable")
    order = order[np.argsort(users[order], kind="stable")]
    users, items = users[order], items[order]

    present = np.unique(items)
    if present[0] == 1 and present[-1] == present.size:
        new_items, original = items, None
    else:
        new_items = np.searchsorted(present, items) + 1
        original = np.concatenate([[0], present]).astype(np.int64)
    num_items = int(present.size)

    uniq_users, starts = np.unique(users, return_index=True)
    sequences = np.split(new_items, starts[1:])
    titles = _read_movielens_titles(directory / "u.item", present, original)
    data = SequenceData(
        sequences=[s.copy() for s in sequences],
        num_items=num_items,
        user_ids=[str(int(u)) for u in uniq_users],
        item_titles=titles,
        item_attributes=None,
        source=str(directory),
        original_item_ids=original,
    )
    if min_interactions is not None:
        data = k_core_filter(data, min_interactions)
    return data


def _read_movielens_titles(
    path: Path, present: np.ndarray, original: np.ndarray | None
) -> dict[int, str] | None:
    if not path.is_file():
        return None
    by_id: dict[int, str] = {}
    first_line: dict[int, int] = {}
    for number, line in _content_lines(path, _read_text(path, "latin-1")):
        fields = line.rstrip("\r\n").split("|")
        if len(fields) < 2:
            raise DataFormatError(
                path, "expected '|'-separated fields movie_id|title|...; got 1 field", line=number
            )
        movie = _parse_id(fields[0].strip(), path, number, "movie id")
        if movie in first_line:
            raise DataFormatError(
                path, f"duplicate movie id {movie} (first on line {first_line[movie]})", line=number
            )
        first_line[movie] = number
        by_id[movie] = fields[1]
    missing = [int(i) for i in present if int(i) not in by_id]
    if missing:
        raise DataFormatError(
            path, f"no line for {len(missing)} rated item(s), e.g. item {missing[0]} of u.data"
        )
    if original is None:
        return {int(i): by_id[int(i)] for i in present}
    return {new: by_id[int(old)] for new, old in enumerate(original[1:], start=1)}


# --------------------------------------------------------------------------------------------
# Filtering and splitting
# --------------------------------------------------------------------------------------------


def k_core_filter(data: SequenceData, k: int = 5) -> SequenceData:
    """Iterative k-core: keep only users and items with at least ``k`` interactions.

    Users with fewer than ``k`` interactions are dropped and items with fewer than ``k``
    interactions are removed from every sequence, repeatedly until nothing changes (dropping a
    user can push an item below ``k`` and vice versa). Repeated interactions count each time
    (as RecBole counts rows). The fixed point is unique (the maximal k-core), so the order of
    the removals does not matter. Kept items are re-indexed to ``1..n'`` in increasing old id;
    titles, attributes and ``original_item_ids`` follow (``original_item_ids`` maps to the
    source file's ids). Users keep their order and ids.

    Raises:
        TypeError / ValueError: ``data`` is not a :class:`SequenceData`, ``k`` not an int >= 1.
        ValueError: nothing survives the filter.
    """
    if not isinstance(data, SequenceData):
        raise TypeError(f"k_core_filter: data must be a SequenceData; got {type(data).__name__}")
    k = _check_positive_int(k, "k", "k_core_filter")
    lens = data.lengths()
    flat = np.concatenate(data.sequences) if data.sequences else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(data.num_users), lens)
    keep = np.ones(flat.size, dtype=bool)
    while True:
        item_count = np.bincount(flat[keep], minlength=data.num_items + 1)
        user_count = np.bincount(owner[keep], minlength=data.num_users)
        new_keep = keep & (item_count[flat] >= k) & (user_count[owner] >= k)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    if not keep.any():
        raise ValueError(
            f"k_core_filter: no user and item has >= {k} interactions in the {k}-core of "
            f"{data.source or 'the data'}"
        )
    kept_items = np.unique(flat[keep])  # old ids, sorted
    remap = np.zeros(data.num_items + 1, dtype=np.int64)
    remap[kept_items] = np.arange(1, kept_items.size + 1)
    kept_users = np.flatnonzero(np.bincount(owner[keep], minlength=data.num_users))
    starts = np.concatenate([[0], np.cumsum(lens)])
    sequences = []
    for u in kept_users:
        lo, hi = starts[u], starts[u + 1]
        sequences.append(remap[flat[lo:hi][keep[lo:hi]]])
    num_items = int(kept_items.size)
    identity = num_items == data.num_items  # every id kept, hence remap is the identity
    if identity and data.original_item_ids is None:
        original = None
    else:
        base = (
            data.original_item_ids
            if data.original_item_ids is not None
            else np.arange(data.num_items + 1)
        )
        original = base[np.concatenate([[0], kept_items])].astype(np.int64)

    def _remap(table: dict[int, Any] | None) -> dict[int, Any] | None:
        if table is None:
            return None
        return {int(remap[i]): v for i, v in table.items() if remap[i] > 0}

    return SequenceData(
        sequences=sequences,
        num_items=num_items,
        user_ids=[data.user_ids[u] for u in kept_users],
        item_titles=_remap(data.item_titles),
        item_attributes=_remap(data.item_attributes),
        source=f"{data.source} | {k}-core" if data.source else f"{k}-core",
        original_item_ids=original,
    )


def leave_one_out(data: SequenceData, *, drop_short: bool = False) -> SequenceSplit:
    """Leave-one-out split: last item = test target, second-to-last = validation target.

    The protocol of S3-Rec / CL4SRec / ICLRec (``get_user_seqs``) and RecBole's
    ``leave_one_num: 2``: validation ranks ``s[-2]`` given ``s[:-2]``, test ranks ``s[-1]``
    given ``s[:-1]``, training sees only ``s[:-2]``. See :class:`SequenceSplit`.

    Every user needs at least 3 interactions (one to train on, one to validate, one to test;
    every user of the 5-core Beauty/Toys/LastFM files has >= 5). With shorter users this
    raises ``ValueError`` saying how many there are, unless ``drop_short=True``, which drops
    them (the split's ``user_ids`` tell which users remain).
    """
    if not isinstance(data, SequenceData):
        raise TypeError(f"leave_one_out: data must be a SequenceData; got {type(data).__name__}")
    lens = data.lengths()
    short = int((lens < 3).sum())
    if short and not drop_short:
        raise ValueError(
            f"leave_one_out: {short} of {data.num_users} users have fewer than 3 interactions "
            "(need train + valid + test items); pass drop_short=True to drop them, or "
            "k_core_filter(data, 3) first (in a seqrec config: seqrec.k_core=3)"
        )
    kept = [u for u in range(data.num_users) if lens[u] >= 3]
    seqs = [data.sequences[u] for u in kept]
    return SequenceSplit(
        train=[s[:-2].copy() for s in seqs],
        valid_inputs=[s[:-2].copy() for s in seqs],
        valid_targets=torch.tensor([int(s[-2]) for s in seqs], dtype=torch.long),
        test_inputs=[s[:-1].copy() for s in seqs],
        test_targets=torch.tensor([int(s[-1]) for s in seqs], dtype=torch.long),
        num_items=data.num_items,
        user_ids=[data.user_ids[u] for u in kept],
    )


# --------------------------------------------------------------------------------------------
# Tensors for models and evaluation
# --------------------------------------------------------------------------------------------


def _gather_left(flat: np.ndarray, start: np.ndarray, end: np.ndarray, max_len: int) -> Tensor:
    """Row ``r`` = ``flat[max(start, end - max_len):end]`` left-padded with 0 to ``max_len``."""
    pos = end[:, None] - max_len + np.arange(max_len)[None, :]  # [rows, max_len]
    valid = pos >= start[:, None]
    out = np.where(valid, flat[np.where(valid, pos, 0)] if flat.size else 0, 0)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.int64))


def _flatten(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = np.fromiter((s.size for s in seqs), dtype=np.int64, count=len(seqs))
    flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if seqs else lens
    return flat.astype(np.int64, copy=False), starts, lens


def pad_left(seqs: Sequence[np.ndarray] | Sequence[Sequence[int]], max_len: int) -> Tensor:
    """Stack variable-length sequences into ``int64 [n, max_len]``, keeping the most recent.

    Row ``r`` holds the last ``min(len, max_len)`` items of ``seqs[r]`` at the right end and 0
    (padding) on the left: ``pad_left([[1, 2, 3]], 5) -> [[0, 0, 1, 2, 3]]``,
    ``pad_left([[1, 2, 3]], 2) -> [[2, 3]]``. An empty sequence gives a row of zeros. This is
    the SASRec / ICLRec / SRA-CL layout (the model reads the last position).
    """
    max_len = _check_positive_int(max_len, "max_len", "pad_left")
    seq_list = _id_list(seqs, "seqs", "pad_left")
    flat, starts, lens = _flatten(seq_list)
    return _gather_left(flat, starts, starts + lens, max_len)


def training_pairs(
    train: Sequence[np.ndarray] | Sequence[Sequence[int]], max_len: int
) -> tuple[Tensor, Tensor]:
    """Prefix augmentation (RecBole / SASRec style): every next item of every train sequence.

    For every sequence ``s`` in ``train`` (in order) and every ``t = 1 .. len(s) - 1`` (in
    order): input = ``s[:t]`` as in :func:`pad_left` (last ``max_len`` items, 0 on the left),
    target = ``s[t]``. Sequences of length < 2 give no pair.

    Returns:
        ``(inputs int64 [M, max_len], targets int64 [M])`` with ``M = sum(max(len(s) - 1, 0))``.
    """
    max_len = _check_positive_int(max_len, "max_len", "training_pairs")
    seq_list = _id_list(train, "train", "training_pairs")
    flat, starts, lens = _flatten(seq_list)
    counts = np.maximum(lens - 1, 0)
    total = int(counts.sum())
    pair_start = np.repeat(starts, counts)
    first_pair = np.cumsum(counts) - counts
    t = np.arange(total, dtype=np.int64) - np.repeat(first_pair, counts) + 1
    inputs = _gather_left(flat, pair_start, pair_start + t, max_len)
    targets = torch.from_numpy(np.ascontiguousarray(flat[pair_start + t], dtype=np.int64))
    return inputs, targets


def history_mask(
    inputs_list: Sequence[np.ndarray] | Sequence[Sequence[int]] | Tensor,
    num_items: int,
    *,
    exclude_padding: bool = True,
) -> Tensor:
    """The items each user has already seen, as a sparse boolean ``[n, num_items + 1]``.

    Entry ``(u, i)`` is ``True`` when item ``i`` occurs in ``inputs_list[u]`` (0s in the
    inputs are padding and ignored); with ``exclude_padding`` (default) column 0, the padding
    id, is ``True`` for every row too, so a score matrix whose column ``c`` is item ``c`` never
    ranks the padding item. Pass it as ``exclude`` to
    :func:`contrastkit.eval.ranking.full_ranking_metrics` (ICLRec / RecBole exclude the history
    in full ranking; a target the user already saw then counts as a miss).

    ``inputs_list``: a list of 1-D integer arrays, or a padded ``[n, L]`` integer tensor.
    Returns a coalesced ``torch.sparse_coo`` bool tensor (about ``n * mean_len`` entries).
    """
    num_items = _check_positive_int(num_items, "num_items", "history_mask")
    seq_list = _id_list(inputs_list, "inputs_list", "history_mask")
    flat, _, lens = _flatten(seq_list)
    if flat.size and (flat.min() < 0 or flat.max() > num_items):
        raise ValueError(
            f"history_mask: item ids must be in 0..num_items={num_items}; "
            f"found {int(flat.min())}..{int(flat.max())}"
        )
    n, width = len(seq_list), num_items + 1
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    keys = rows * width + flat
    keys = keys[flat > 0]
    if exclude_padding:
        keys = np.concatenate([keys, np.arange(n, dtype=np.int64) * width])
    keys = np.unique(keys)
    indices = torch.from_numpy(np.stack([keys // width, keys % width]))
    values = torch.ones(keys.size, dtype=torch.bool)
    return torch.sparse_coo_tensor(
        indices, values, (n, width), is_coalesced=True, check_invariants=False
    )
