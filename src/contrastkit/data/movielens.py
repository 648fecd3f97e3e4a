"""MovieLens 100K as an item table: title, genres and the collaborative signal of each movie.

- :func:`read_movielens_items`: ``u.item`` (latin-1, ``|``-separated:
  ``movie id | title | release date | video release date | IMDb URL | 19 genre flags``) and the
  optional ``u.genre`` (``name|index`` lines) into a :class:`MovieLensItems` table.
- :func:`load_movielens_items`: the same plus the item-by-user interaction matrix built from
  ``u.data`` (read by :func:`contrastkit.data.sequences.read_movielens_100k`).

Malformed files raise :class:`~contrastkit.data.images.DataFormatError` (``"PATH: line N:
reason"``); missing files raise :class:`FileNotFoundError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.images import DataFormatError
from contrastkit.data.sequences import read_movielens_100k

__all__ = ["MOVIELENS_GENRES", "MovieLensItems", "load_movielens_items", "read_movielens_items"]

PathLike = str | os.PathLike[str]

#: The 19 genre names of ml-100k's ``u.genre``, in flag order.
MOVIELENS_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_LEADING_FIELDS = 5  # id, title, release date, video release date, URL


@dataclass(frozen=True, eq=False)
class MovieLensItems:
    """One row per movie, in increasing movie id.

    Attributes:
        movie_ids: ``int64 [n]`` the ``u.item`` ids (ml-100k: 1..1682).
        titles: ``n`` titles as written in ``u.item`` (e.g. ``"Toy Story (1995)"``).
        genres: ``float32 [n, G]`` 0/1 genre flags (ml-100k: G = 19).
        genre_names: ``G`` names (``u.genre`` if present, else :data:`MOVIELENS_GENRES`).
        interactions: ``float32 [n, U]`` 1 where user ``u`` rated movie ``i`` (any rating), or
            ``None`` when only ``u.item`` was read.
        user_ids: the ``U`` user ids of the interaction columns (as strings), or ``None``.
    """

    movie_ids: Tensor
    titles: list[str]
    genres: Tensor
    genre_names: tuple[str, ...]
    interactions: Tensor | None = None
    user_ids: list[str] | None = None

    @property
    def num_items(self) -> int:
        return len(self.titles)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    text = raw.decode("latin-1")  # every byte decodes: ml-100k is latin-1
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataFormatError(path, "empty file")
    return lines


def _read_genre_names(path: Path) -> tuple[str, ...]:
    names: dict[int, str] = {}
    for number, line in _read_lines(path):
        fields = line.split("|")
        if len(fields) != 2 or not fields[1].strip().isdigit():
            raise DataFormatError(path, "expected 'name|index'", line=number)
        index = int(fields[1])
        if index in names:
            raise DataFormatError(path, f"duplicate genre index {index}", line=number)
        names[index] = fields[0]
    if sorted(names) != list(range(len(names))):
        raise DataFormatError(path, f"genre indices must be 0..{len(names) - 1}")
    return tuple(names[i] for i in range(len(names)))


def read_movielens_items(directory: PathLike) -> MovieLensItems:
    """Read ``directory/u.item`` (and ``u.genre`` when present) into a :class:`MovieLensItems`
    without interactions.

    Every line must have ``5 + G`` fields (``G`` genres: the ``u.genre`` count, else 19), a
    movie id that is a positive integer seen once, and genre flags that are ``0`` or ``1``.
    Rows are sorted by movie id.
    """
    directory = Path(directory)
    path = directory / "u.item"
    genre_path = directory / "u.genre"
    genre_names = _read_genre_names(genre_path) if genre_path.is_file() else MOVIELENS_GENRES
    expected = _LEADING_FIELDS + len(genre_names)
    ids: list[int] = []
    titles: list[str] = []
    flags: list[list[int]] = []
    first_line: dict[int, int] = {}
    for number, line in _read_lines(path):
        fields = line.split("|")
        if len(fields) != expected:
            raise DataFormatError(
                path,
                f"expected {expected} '|'-separated fields (id|title|release|video release|url"
                f"|{len(genre_names)} genre flags); got {len(fields)}",
                line=number,
            )
        token = fields[0].strip()
        if not (token.isascii() and token.isdigit()) or int(token) < 1:
            raise DataFormatError(path, f"movie id {token!r} is not an integer >= 1", line=number)
        movie = int(token)
        if movie in first_line:
            raise DataFormatError(
                path, f"duplicate movie id {movie} (first on line {first_line[movie]})", line=number
            )
        first_line[movie] = number
        row = []
        for k, flag in enumerate(fields[_LEADING_FIELDS:]):
            if flag.strip() not in ("0", "1"):
                raise DataFormatError(
                    path, f"genre flag {k} ({genre_names[k]}) is {flag!r}, not 0 or 1", line=number
                )
            row.append(int(flag))
        ids.append(movie)
        titles.append(fields[1])
        flags.append(row)
    order = np.argsort(np.asarray(ids), kind="stable")
    return MovieLensItems(
        movie_ids=torch.tensor([ids[i] for i in order], dtype=torch.long),
        titles=[titles[i] for i in order],
        genres=torch.tensor([flags[i] for i in order], dtype=torch.float32),
        genre_names=genre_names,
    )


def load_movielens_items(directory: PathLike) -> MovieLensItems:
    """:func:`read_movielens_items` plus ``interactions``: the item-by-user 0/1 matrix of
    ``u.data`` (every rating is an interaction; users in increasing id).

    Raises :class:`DataFormatError` for a rated movie id without a ``u.item`` line (the check
    of :func:`~contrastkit.data.sequences.read_movielens_100k`, which reads the same ``u.item``).
    """
    directory = Path(directory)
    items = read_movielens_items(directory)
    ratings = read_movielens_100k(directory)
    original = ratings.original_item_ids  # None: item ids are the movie ids 1..n
    row_of = {int(m): k for k, m in enumerate(items.movie_ids.tolist())}
    matrix = torch.zeros(items.num_items, ratings.num_users, dtype=torch.float32)
    for user, sequence in enumerate(ratings.sequences):
        movies = sequence if original is None else original[sequence]
        # every rated movie has a u.item line: read_movielens_100k checks it
        rows = [row_of[movie] for movie in np.unique(movies).tolist()]
        matrix[rows, user] = 1.0
    return MovieLensItems(
        movie_ids=items.movie_ids,
        titles=items.titles,
        genres=items.genres,
        genre_names=items.genre_names,
        interactions=matrix,
        user_ids=list(ratings.user_ids),
    )
