"""The MovieLens-100k item table (``u.item`` titles and genre flags, ``u.genre``) and the
item-by-user interaction matrix from ``u.data``: values on a tiny hand-written copy, file/line
errors, and the shared ml-100k folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contrastkit.data.images import DataFormatError, data_root
from contrastkit.data.movielens import (
    MOVIELENS_GENRES,
    load_movielens_items,
    read_movielens_items,
)

pytestmark = pytest.mark.usefixtures("one_thread")

GENRES = "unknown|0\nAction|1\nComedy|2\n\n"
ITEMS = (
    "3|Heat (1995)|01-Jan-1995||http://x|0|1|0\n"
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
    "2|Caf\xe9 Society (1995)|||http://x|1|0|0\n"
)
RATINGS = "2\t1\t5\t100\n1\t3\t4\t90\n2\t3\t1\t80\n1\t1\t2\t70\n"


def _write(folder: Path, item: str = ITEMS, genre: str | None = GENRES, data: str = RATINGS):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.item").write_bytes(item.encode("latin-1"))
    if genre is not None:
        (folder / "u.genre").write_text(genre)
    (folder / "u.data").write_text(data)
    return folder


def test_item_table_and_interactions_by_hand(tmp_path):
    items = load_movielens_items(_write(tmp_path))
    assert items.movie_ids.tolist() == [1, 2, 3]  # sorted by id
    assert items.titles == ["Toy Story (1995)", "Café Society (1995)", "Heat (1995)"]
    assert items.genre_names == ("unknown", "Action", "Comedy")
    assert items.genres.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert items.user_ids == ["1", "2"]
    # movie 1: users 1, 2; movie 2: nobody; movie 3: users 1, 2
    assert items.interactions.tolist() == [[1, 1], [0, 0], [1, 1]]
    assert items.num_items == 3


def test_without_u_genre_the_19_standard_names_are_used(tmp_path):
    flags = "|".join(["0"] * 18 + ["1"])
    folder = _write(tmp_path, item=f"1|Toy Story (1995)|||x|{flags}\n", genre=None)
    items = read_movielens_items(folder)
    assert items.genre_names == MOVIELENS_GENRES and items.genres.shape == (1, 19)
    assert items.interactions is None


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("1|A|||x|0|1\n", "line 1: expected 8 '|'-separated fields"),
        ("1|A|||x|0|1|0\nx|B|||x|0|0|0\n", "line 2: movie id 'x'"),
        ("1|A|||x|0|1|0\n0|B|||x|0|0|0\n", "line 2: movie id '0'"),
        ("1|A|||x|0|1|0\n1|B|||x|0|0|0\n", "line 2: duplicate movie id 1 \\(first on line 1\\)"),
        ("1|A|||x|0|2|0\n", "line 1: genre flag 1 \\(Action\\) is '2'"),
        ("\n", "empty file"),
    ],
)
def test_malformed_u_item_names_file_and_line(tmp_path, item, match):
    folder = _write(tmp_path, item=item)
    with pytest.raises(DataFormatError, match=match) as info:
        read_movielens_items(folder)
    assert str(folder / "u.item") in str(info.value)


def test_malformed_u_genre_and_missing_files(tmp_path):
    with pytest.raises(DataFormatError, match="name\\|index"):
        read_movielens_items(_write(tmp_path / "a", genre="Action\n"))
    with pytest.raises(DataFormatError, match=r"indices must be 0\.\.1"):
        read_movielens_items(_write(tmp_path / "b", genre="a|0\nb|2\n"))
    with pytest.raises(FileNotFoundError, match=r"u\.item"):
        read_movielens_items(tmp_path / "nowhere")


def test_a_rated_movie_without_a_u_item_line_is_an_error(tmp_path):
    # raised by read_movielens_100k (load_movielens_items has no check of its own: both read
    # the same u.item), naming u.data and the line of the rating
    folder = _write(tmp_path, data=RATINGS + "1\t7\t3\t60\n")
    with pytest.raises(DataFormatError, match="item 7") as info:
        load_movielens_items(folder)
    assert "u.data" in str(info.value)


def test_the_shared_ml_100k_items():
    root = data_root()
    if root is None or not (root / "movielens_100k" / "u.item").is_file():
        pytest.fail("the shared data folder with movielens_100k is expected here")
    items = load_movielens_items(root / "movielens_100k")
    assert items.num_items == 1682 and items.interactions.shape == (1682, 943)
    assert items.titles[0] == "Toy Story (1995)"
    assert items.genres[0].nonzero().flatten().tolist() == [
        3,
        4,
        5,
    ]  # Animation, Children's, Comedy
    assert float(items.interactions.sum()) == 100_000
    assert bool((items.interactions.sum(1) >= 1).all())
    assert items.genre_names == MOVIELENS_GENRES
    assert torch.equal(items.movie_ids, torch.arange(1, 1683))
