"""Text files: one sentence per line (SimCSE's ``wiki1m_for_simcse.txt`` format) and the STS
Benchmark (``sts-{train,dev,test}.csv``: tab-separated ``genre file year id score s1 s2``, a few
rows with two extra trailing source columns, no quoting). Malformed files raise
:class:`DataFormatError` naming the file, the line and the reason."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contrastkit.data.images import DataFormatError, data_root

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class StsPairs:
    """Sentence pairs with gold similarity scores (STS-B: 0-5)."""

    first: list[str]
    second: list[str]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.scores)

    def sentences(self) -> list[str]:
        """The distinct sentences of both columns, in order of first appearance."""
        return list(dict.fromkeys(self.first + self.second))


def _read_utf8(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataFormatError(path, f"not UTF-8 ({err.reason})", line=line) from err


def read_sentences(path: PathLike, *, limit: int | None = None) -> list[str]:
    """Non-empty lines of a UTF-8 text file (stripped), the first ``limit`` if given.
    A file without any sentence raises :class:`DataFormatError`."""
    path = Path(path)
    lines = [line.strip() for line in _read_utf8(path).splitlines()]
    sentences = [line for line in lines if line]
    if not sentences:
        raise DataFormatError(path, "no sentences (every line is empty)")
    return sentences[:limit] if limit is not None else sentences


def read_stsb(path: PathLike) -> StsPairs:
    """One STS Benchmark split file: columns 5-7 (score, sentence 1, sentence 2) of each
    tab-separated line with 7 or 9 columns; the score must be a number in [0, 5]."""
    path = Path(path)
    first, second, scores = [], [], []
    for number, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) not in (7, 9):
            raise DataFormatError(
                path,
                "expected 7 (or 9) tab-separated columns (genre file year id score sentence1 "
                f"sentence2); got {len(columns)}",
                line=number,
            )
        try:
            score = float(columns[4])
        except ValueError:
            raise DataFormatError(
                path, f"score (column 5) is not a number: {columns[4]!r}", line=number
            ) from None
        if not 0.0 <= score <= 5.0:
            raise DataFormatError(path, f"score {score} is outside [0, 5]", line=number)
        if not columns[5].strip() or not columns[6].strip():
            raise DataFormatError(path, "an empty sentence", line=number)
        first.append(columns[5].strip())
        second.append(columns[6].strip())
        scores.append(score)
    if not scores:
        raise DataFormatError(path, "no sentence pairs")
    return StsPairs(first, second, scores)


def _shared_folder(name: str) -> Path:
    root = data_root()
    if root is None or not (root / name).is_dir():
        raise FileNotFoundError(
            f"the shared data folder {name!r} was not found: set CONTRASTKIT_DATA to the folder "
            "holding it (default ../shared/data)"
        )
    return root / name


def stsb_split(split: str, folder: PathLike | None = None) -> StsPairs:
    """``train`` / ``dev`` / ``test`` of STS-B from ``folder`` (default: the shared data)."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"split must be train, dev or test; got {split!r}")
    base = Path(folder) if folder is not None else _shared_folder("stsb")
    return read_stsb(base / f"sts-{split}.csv")


def wiki_sentences_path() -> Path:
    """The shared Wikipedia sentences (a prefix of SimCSE's wiki1m file)."""
    return _shared_folder("wiki_sentences_simcse_subset") / "wiki_sentences_11913.txt"
