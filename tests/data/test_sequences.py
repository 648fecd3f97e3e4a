"""Tests for ``contrastkit.data.sequences``: tiny files written to ``tmp_path``, plus the real
shared files (Beauty, Toys, LastFM, MovieLens 100K) when ``$CONTRASTKIT_DATA`` or
``../shared/data`` holds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data.images import DataFormatError, data_root
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

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def _lists(seqs: list[np.ndarray]) -> list[list[int]]:
    return [s.tolist() for s in seqs]


def _data(seqs: list[list[int]], num_items: int | None = None, **kw) -> SequenceData:
    users = kw.pop("user_ids", [str(u + 1) for u in range(len(seqs))])
    num = num_items if num_items is not None else max(max(s) for s in seqs)
    return SequenceData(
        sequences=[np.array(s, dtype=np.int64) for s in seqs],
        num_items=num,
        user_ids=users,
        **kw,
    )


# --------------------------------------------------------------------------------------------
# read_sequence_file
# --------------------------------------------------------------------------------------------


def test_read_sequence_file_parses(tmp_path: Path) -> None:
    path = _write(tmp_path / "Tiny.txt", "1 3 1 2\n2 2 4\r\n7 5\n\n\n")
    data = read_sequence_file(path)
    assert _lists(data.sequences) == [[3, 1, 2], [2, 4], [5]]
    assert all(s.dtype == np.int64 for s in data.sequences)
    assert data.user_ids == ["1", "2", "7"]
    assert data.num_items == 5
    assert (data.num_users, data.num_interactions) == (3, 6)
    assert data.item_titles is None and data.item_attributes is None
    assert data.original_item_ids is None
    assert data.source == str(path)
    assert data.lengths().tolist() == [3, 2, 1]
    summary = data.summary()
    assert "3 users" in summary and "5 items" in summary and "6 interactions" in summary
    assert "avg 2.00 / min 1 / max 3" in summary


def test_read_sequence_file_num_items_is_max_id_even_with_gaps(tmp_path: Path) -> None:
    data = read_sequence_file(_write(tmp_path / "gaps.txt", "u1 9 2\nu2 2\n"))
    assert data.num_items == 9
    assert data.user_ids == ["u1", "u2"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("1 1 2\n2 3 x\n", 2, "item id 'x' is not a plain decimal integer"),
        ("1 1 2\n2 3 1.5\n", 2, "item id '1.5' is not a plain decimal integer"),
        ("1 1 2\n2 3 0\n", 2, "item id 0 < 1"),
        ("1 1 -4\n", 1, "item id -4 < 1"),
        ("1 1 99999999999999999999\n", 1, "does not fit in int64"),
        ("1 1 2\n2\n3 4\n", 2, "user '2' has no items"),
        ("1 1 2\n2 3\n1 4\n", 3, "duplicate user id '1' (first on line 1)"),
        ("1 1 2\n\n2 3\n", 2, "blank line before the end of the file"),
        ("1 1 2\n2 3\n3 4 ５\n", 3, "is not a plain decimal integer"),  # full-width digit
    ],
)
def test_read_sequence_file_malformed(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = _write(tmp_path / "Bad.txt", text)
    with pytest.raises(DataFormatError) as info:
        read_sequence_file(path)
    err = info.value
    assert err.line == line and err.path == path
    assert str(err).startswith(f"{path}: line {line}: ")
    assert reason in str(err)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_read_sequence_file_empty(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "Empty.txt", text)
    with pytest.raises(DataFormatError, match="empty file") as info:
        read_sequence_file(path)
    assert str(path) in str(info.value)


def test_read_sequence_file_bad_utf8_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "Latin.txt", b"1 1 2\n2 3\xff 4\n")
    with pytest.raises(DataFormatError) as info:
        read_sequence_file(path)
    assert info.value.line == 2 and "utf-8" in str(info.value)


def test_read_sequence_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        read_sequence_file(tmp_path / "nope.txt")


def test_attributes_json_good(tmp_path: Path) -> None:
    seq = _write(tmp_path / "T.txt", "1 1 2 3\n2 3 4\n")
    attrs = _write(tmp_path / "T_item2attributes.json", '{"1": [7, 8], "3": [], "04": [1]}')
    data = read_sequence_file(seq, attributes_path=attrs)
    assert data.item_attributes == {1: [7, 8], 3: [], 4: [1]}
    assert "with item attributes" in data.summary()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[1, 2]", "top level must be a JSON object"),
        ('{"a": [1]}', "key 'a': not a decimal integer item id"),
        ('{"-1": [1]}', "key '-1': not a decimal integer item id"),
        ('{"0": [1]}', "key '0': item id out of range 1..4"),
        ('{"5": [1]}', "key '5': item id out of range 1..4"),
        ('{"1": [1.5]}', "key '1': value must be a list of non-negative integer"),
        ('{"1": "x"}', "key '1': value must be a list"),
        ('{"1": [true]}', "key '1': value must be a list"),
        ('{"2": [1], "3": [-1]}', "key '3': value must be a list"),
        ('{"1": [1], "01": [2]}', "key '01': item 1 appears twice"),
        ('{"1": [1], "1": [2]}', "key '1': item 1 appears twice"),
    ],
)
def test_attributes_json_bad(tmp_path: Path, text: str, needle: str) -> None:
    seq = _write(tmp_path / "T.txt", "1 1 2 3\n2 3 4\n")
    attrs = _write(tmp_path / "T_item2attributes.json", text)
    with pytest.raises(DataFormatError) as info:
        read_sequence_file(seq, attributes_path=attrs)
    assert str(info.value).startswith(f"{attrs}: ")
    assert needle in str(info.value)


def test_attributes_json_invalid_syntax_names_line(tmp_path: Path) -> None:
    seq = _write(tmp_path / "T.txt", "1 1 2\n")
    attrs = _write(tmp_path / "a.json", '{"1": [1],\n "2": [2\n')
    with pytest.raises(DataFormatError) as info:
        read_sequence_file(seq, attributes_path=attrs)
    assert str(info.value).startswith(f"{attrs}: line ")
    assert info.value.line in (2, 3) and "invalid JSON" in str(info.value)


# --------------------------------------------------------------------------------------------
# MovieLens 100K
# --------------------------------------------------------------------------------------------

_ITEM_TAIL = "|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0"


def _movielens(tmp_path: Path, rows: list[str], items: dict[int, str] | None) -> Path:
    root = tmp_path / "ml"
    _write(root / "u.data", "".join(r + "\n" for r in rows))
    if items is not None:
        text = "".join(f"{i}|{title}{_ITEM_TAIL}\n" for i, title in items.items())
        _write(root / "u.item", text.encode("latin-1"))
    return root


def test_movielens_orders_by_timestamp_with_stable_ties_and_reindexes(tmp_path: Path) -> None:
    rows = [
        "1\t10\t5\t300",
        "2\t20\t3\t100",
        "1\t20\t4\t100",
        "10\t30\t4\t5",
        "1\t30\t1\t300",  # same timestamp as line 1: file order, so 10 before 30
        "2\t10\t2\t50",
    ]
    titles = {10: "Misérables, Les (1995)", 20: "Toy Story (1995)", 30: "Ça (1990)", 40: "x"}
    data = read_movielens_100k(_movielens(tmp_path, rows, titles))
    # items 10, 20, 30 are not 1..3: re-indexed 10 -> 1, 20 -> 2, 30 -> 3
    assert data.original_item_ids.tolist() == [0, 10, 20, 30]
    assert data.num_items == 3
    assert data.user_ids == ["1", "2", "10"]  # numeric order, not string order
    # user 1: t=100 item 20, t=300 item 10 (line 1), t=300 item 30 (line 5)
    assert _lists(data.sequences) == [[2, 1, 3], [1, 2], [3]]
    assert data.item_titles == {1: "Misérables, Les (1995)", 2: "Toy Story (1995)", 3: "Ça (1990)"}
    assert data.num_interactions == 6


def test_movielens_keeps_contiguous_ids(tmp_path: Path) -> None:
    rows = ["1\t2\t5\t3", "1\t1\t5\t1", "2\t3\t1\t9", "1\t3\t5\t2"]
    root = _movielens(tmp_path, rows, {1: "a", 2: "b", 3: "c"})
    data = read_movielens_100k(root)
    assert data.original_item_ids is None
    assert _lists(data.sequences) == [[1, 3, 2], [3]]
    assert data.item_titles == {1: "a", 2: "b", 3: "c"}
    # without u.item: no titles
    (root / "u.item").unlink()
    assert read_movielens_100k(root).item_titles is None


def test_movielens_min_interactions_is_k_core(tmp_path: Path) -> None:
    rows = [
        f"{u}\t{i}\t3\t{t}" for t, (u, i) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (3, 3)])
    ]
    root = _movielens(tmp_path, rows, {1: "a", 2: "b", 3: "c"})
    data = read_movielens_100k(root, min_interactions=2)
    assert data.user_ids == ["1", "2"]
    assert _lists(data.sequences) == [[1, 2], [1, 2]]
    assert data.num_items == 2 and data.item_titles == {1: "a", 2: "b"}


@pytest.mark.parametrize(
    ("rows", "line", "reason"),
    [
        (["1\t1\t5\t1", "1\t2\t3"], 2, "expected 4 tab-separated fields"),
        (["1\t1\t5\t1", "1 2 3 4"], 2, "got 1"),
        (["1\tx\t5\t1"], 1, "item id 'x' is not a plain decimal integer"),
        (["0\t1\t5\t1"], 1, "user id 0 < 1"),
        (["1\t1\t5\t1", "2\t1\t5\tnoon"], 2, "timestamp 'noon' is not an integer"),
        (["1\t1\tgood\t1"], 1, "rating 'good' is not an integer"),
    ],
)
def test_movielens_malformed_u_data(
    tmp_path: Path, rows: list[str], line: int, reason: str
) -> None:
    root = _movielens(tmp_path, rows, {1: "a", 2: "b"})
    with pytest.raises(DataFormatError) as info:
        read_movielens_100k(root)
    assert str(info.value).startswith(f"{root / 'u.data'}: line {line}: ")
    assert reason in str(info.value)


def test_movielens_malformed_u_item(tmp_path: Path) -> None:
    root = _movielens(tmp_path, ["1\t1\t5\t1", "1\t2\t5\t2"], None)
    item = root / "u.item"
    _write(item, "1|a|x\n1|b|y\n")
    with pytest.raises(DataFormatError, match=r"line 2: duplicate movie id 1 \(first on line 1\)"):
        read_movielens_100k(root)
    _write(item, "1|a|x\nz|b|y\n")
    with pytest.raises(DataFormatError, match="line 2: movie id 'z'"):
        read_movielens_100k(root)
    _write(item, "1|a\n2\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected '\|'-separated"):
        read_movielens_100k(root)
    _write(item, "1|a|x\n")
    with pytest.raises(DataFormatError, match=r"no line for 1 rated item.*item 2") as info:
        read_movielens_100k(root)
    assert str(info.value).startswith(str(item))


def test_movielens_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"u\.data"):
        read_movielens_100k(tmp_path)


# --------------------------------------------------------------------------------------------
# k-core
# --------------------------------------------------------------------------------------------


def test_k_core_iterates_until_stable() -> None:
    titles = {1: "t1", 2: "t2", 3: "t3", 4: "t4", 5: "t5"}
    attrs = {2: [20], 4: [40], 5: [50], 3: [30]}
    data = _data(
        [[2, 4, 5], [5, 2, 4], [1, 3], [1]],
        user_ids=["A", "B", "C", "D"],
        item_titles=titles,
        item_attributes=attrs,
        source="toy",
    )
    # k=2, pass 1: D has 1 interaction -> dropped; item 3 has 1 -> removed (C becomes [1]).
    # Item 1 still had 2 interactions in pass 1 (C and D); only after D is gone does it fall
    # to 1, which then leaves C with one item: pass 2 drops item 1 and user C.
    out = k_core_filter(data, 2)
    assert out.user_ids == ["A", "B"]
    # kept old ids 2, 4, 5 -> 1, 2, 3
    assert _lists(out.sequences) == [[1, 2, 3], [3, 1, 2]]
    assert out.num_items == 3
    assert out.original_item_ids.tolist() == [0, 2, 4, 5]
    assert out.item_titles == {1: "t2", 2: "t4", 3: "t5"}
    assert out.item_attributes == {1: [20], 2: [40], 3: [50]}
    assert out.source == "toy | 2-core"
    # the input is unchanged
    assert _lists(data.sequences) == [[2, 4, 5], [5, 2, 4], [1, 3], [1]]


def test_k_core_composes_original_ids_and_keeps_identity() -> None:
    data = _data([[1, 2, 3], [1, 2, 3], [3, 4, 4, 4]], num_items=6)
    out = k_core_filter(data, 2)  # unused ids 5, 6 go; nothing else does
    assert _lists(out.sequences) == [[1, 2, 3], [1, 2, 3], [3, 4, 4, 4]]
    assert out.num_items == 4 and out.original_item_ids.tolist() == [0, 1, 2, 3, 4]
    # k=3: items 1, 2 (2 interactions each) go -> users 1, 2 keep one item and go -> item 3
    # falls to 1 interaction and goes -> user 3 keeps [4, 4, 4] (repeats count: 3)
    again = k_core_filter(out, 3)
    assert again.user_ids == ["3"]
    assert _lists(again.sequences) == [[1, 1, 1]]
    assert again.original_item_ids.tolist() == [0, 4]  # ids of the *source*, composed
    with pytest.raises(ValueError, match="no user and item"):
        k_core_filter(again, 4)
    full = _data([[1, 2], [2, 1]])
    assert k_core_filter(full, 2).original_item_ids is None  # nothing re-indexed


def test_k_core_bad_arguments() -> None:
    data = _data([[1, 2]])
    with pytest.raises(ValueError, match="k must be >= 1"):
        k_core_filter(data, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        k_core_filter(data, True)
    with pytest.raises(TypeError, match="k must be an int"):
        k_core_filter(data, "5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be a SequenceData"):
        k_core_filter([np.array([1, 2])], 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no user and item has >= 3"):
        k_core_filter(data, 3)


def test_sequence_data_validates() -> None:
    with pytest.raises(ValueError, match=r"item ids must be in 1\.\.num_items=2"):
        _data([[1, 3]], num_items=2)
    with pytest.raises(ValueError, match=r"item ids must be in 1\.\.num_items"):
        _data([[0, 1]], num_items=2)
    with pytest.raises(ValueError, match=r"sequences\[1\] is empty"):
        _data([[1], []], num_items=2)
    with pytest.raises(ValueError, match="user_ids must be distinct"):
        _data([[1], [2]], user_ids=["a", "a"])
    with pytest.raises(ValueError, match="2 user_ids for 1 sequences"):
        _data([[1]], user_ids=["a", "b"])
    with pytest.raises(TypeError, match="integer item ids"):
        SequenceData([np.array([1.0])], 1, ["a"])
    with pytest.raises(ValueError, match="item_titles keys"):
        _data([[1]], item_titles={2: "x"})


# --------------------------------------------------------------------------------------------
# leave-one-out, training pairs, padding, history
# --------------------------------------------------------------------------------------------


def test_leave_one_out_exact() -> None:
    data = _data([[1, 2, 3, 4, 5], [6, 7, 8]], user_ids=["a", "b"])
    split = leave_one_out(data)
    assert isinstance(split, SequenceSplit)
    assert _lists(split.train) == [[1, 2, 3], [6]]
    assert _lists(split.valid_inputs) == [[1, 2, 3], [6]]
    assert split.valid_targets.tolist() == [4, 7]
    assert _lists(split.test_inputs) == [[1, 2, 3, 4], [6, 7]]
    assert split.test_targets.tolist() == [5, 8]
    assert split.valid_targets.dtype == torch.long and split.test_targets.dtype == torch.long
    assert split.num_users == 2 and split.num_items == 8 and split.user_ids == ["a", "b"]
    split.train[0][0] = 99  # own copies: the data is untouched
    assert data.sequences[0][0] == 1 and split.valid_inputs[0][0] == 1


def test_leave_one_out_short_users() -> None:
    data = _data([[1, 2, 3], [4, 5], [6], [1, 2, 3, 4]], user_ids=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="2 of 4 users have fewer than 3 interactions"):
        leave_one_out(data)
    split = leave_one_out(data, drop_short=True)
    assert split.user_ids == ["a", "d"]
    assert _lists(split.train) == [[1], [1, 2]]
    assert split.test_targets.tolist() == [3, 4]
    with pytest.raises(TypeError, match="SequenceData"):
        leave_one_out([np.array([1, 2, 3])])  # type: ignore[arg-type]


def test_training_pairs_exact() -> None:
    train = [np.array([1, 2, 3, 4]), np.array([5]), np.array([6, 7])]
    inputs, targets = training_pairs(train, 2)
    # s = [1,2,3,4]: t=1 -> [0,1]->2, t=2 -> [1,2]->3, t=3 -> [2,3]->4 (truncated to max_len)
    # s = [5]: nothing; s = [6,7]: t=1 -> [0,6]->7
    assert inputs.tolist() == [[0, 1], [1, 2], [2, 3], [0, 6]]
    assert targets.tolist() == [2, 3, 4, 7]
    assert inputs.dtype == torch.long and targets.dtype == torch.long
    inputs, targets = training_pairs(train, 4)
    assert inputs.tolist() == [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [0, 0, 0, 6]]
    assert targets.tolist() == [2, 3, 4, 7]
    split = leave_one_out(_data([[1, 2, 3, 4, 5, 6]]))
    x, y = split.training_pairs(3)
    assert x.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3]] and y.tolist() == [2, 3, 4]
    x, y = training_pairs([np.array([3])], 5)
    assert x.shape == (0, 5) and y.shape == (0,)
    x, y = training_pairs([], 5)
    assert x.shape == (0, 5) and y.shape == (0,)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        training_pairs(train, 0)
    with pytest.raises(TypeError, match="max_len must be an int"):
        training_pairs(train, 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train must be a sequence"):
        training_pairs("1 2 3", 2)  # type: ignore[arg-type]


def test_pad_left() -> None:
    out = pad_left([[1, 2, 3], [], np.array([4])], 2)
    assert out.tolist() == [[2, 3], [0, 0], [0, 4]]
    assert out.dtype == torch.long
    assert pad_left([[1, 2, 3]], 5).tolist() == [[0, 0, 1, 2, 3]]
    with pytest.raises(ValueError, match=r"seqs\[0\] must be 1-D"):
        pad_left([[[1]]], 2)
    with pytest.raises(TypeError, match=r"seqs\[0\] must hold integer"):
        pad_left([[1.5]], 2)


def test_history_mask() -> None:
    mask = history_mask([np.array([1, 3, 3]), np.array([2])], 4)
    assert mask.layout == torch.sparse_coo and mask.dtype == torch.bool
    assert mask.shape == (2, 5)
    assert mask.to_dense().tolist() == [
        [True, True, False, True, False],
        [True, False, True, False, False],
    ]
    no_pad = history_mask([[1, 3, 3], [2]], 4, exclude_padding=False).to_dense()
    assert no_pad[:, 0].tolist() == [False, False] and no_pad.sum().item() == 3
    padded = pad_left([[1, 3, 3], [2]], 4)  # zeros in a padded tensor are ignored
    assert torch.equal(history_mask(padded, 4, exclude_padding=False).to_dense(), no_pad)
    with pytest.raises(ValueError, match=r"item ids must be in 0\.\.num_items=4"):
        history_mask([[5]], 4)


# --------------------------------------------------------------------------------------------
# the real shared files
# --------------------------------------------------------------------------------------------


def _shared(name: str) -> Path:
    try:
        root = data_root()
    except FileNotFoundError:
        root = None
    if root is None or not (root / name).is_dir():
        pytest.skip(
            f"shared {name} not found: set CONTRASTKIT_DATA or run pytest from the repo root "
            f"with ../shared/data/{name} beside it"
        )
    return root / name


def test_real_beauty_matches_readme() -> None:
    root = _shared("amazon_beauty")
    data = read_sequence_file(
        root / "Beauty.txt", attributes_path=root / "Beauty_item2attributes.json"
    )
    assert (data.num_users, data.num_items, data.num_interactions) == (22363, 12101, 198502)
    assert round(data.num_interactions / data.num_users, 2) == 8.88
    assert len(data.item_attributes) == 12101
    assert data.user_ids[0] == "1" and data.sequences[0].tolist() == [1, 2, 3, 4, 5]
    assert data.lengths().min() == 5  # 5-core: leave-one-out needs no dropping
    assert k_core_filter(data, 5).num_interactions == 198502
    split = leave_one_out(data)
    inputs, targets = split.training_pairs(50)
    assert inputs.shape == (198502 - 3 * 22363, 50) and targets.shape == (131413,)
    assert history_mask(split.test_inputs, data.num_items).shape == (22363, 12102)


@pytest.mark.parametrize(
    ("folder", "stem", "counts"),
    [
        ("lastfm_seqrec", "LastFM", (1090, 3646, 52551)),
        ("amazon_toys", "Toys_and_Games", (19412, 11924, 167597)),
    ],
)
def test_real_other_sequence_files(folder: str, stem: str, counts: tuple[int, int, int]) -> None:
    root = _shared(folder)
    data = read_sequence_file(
        root / f"{stem}.txt", attributes_path=root / f"{stem}_item2attributes.json"
    )
    assert (data.num_users, data.num_items, data.num_interactions) == counts
    assert len(data.item_attributes) == counts[1]


def test_real_movielens_100k() -> None:
    data = read_movielens_100k(_shared("movielens_100k"))
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100000)
    assert data.original_item_ids is None
    assert data.item_titles[1] == "Toy Story (1995)"
    assert data.item_titles[543] == "Misérables, Les (1995)"  # latin-1
    assert len(data.item_titles) == 1682
