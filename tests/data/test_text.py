"""Sentence files and the STS Benchmark format: parsing and the errors for malformed files."""

from __future__ import annotations

import pytest

from contrastkit.data.images import DataFormatError
from contrastkit.data.text import read_sentences, read_stsb, stsb_split


def _row(score: str, a: str = "a man plays", b: str = "a man is playing", extra: str = "") -> str:
    return f"main-captions\tMSRvid\t2012test\t0001\t{score}\t{a}\t{b}{extra}"


def test_read_sentences_skips_blank_lines_and_strips(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("  first sentence \n\n second\n\n", encoding="utf-8")
    assert read_sentences(path) == ["first sentence", "second"]
    assert read_sentences(path, limit=1) == ["first sentence"]


def test_read_sentences_errors_name_the_file_and_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(DataFormatError, match=r"empty\.txt: no sentences"):
        read_sentences(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(DataFormatError, match=r"latin\.txt: line 2: not UTF-8"):
        read_sentences(latin)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_sentences(tmp_path / "missing.txt")


def test_read_stsb_takes_score_and_both_sentences_of_7_and_9_column_rows(tmp_path):
    path = tmp_path / "sts-dev.csv"
    rows = [_row("5.000"), _row("0.5", "x y", "z", extra="\tsrc1\tsrc2"), ""]
    path.write_text("\n".join(rows), encoding="utf-8")
    pairs = read_stsb(path)
    assert pairs.scores == [5.0, 0.5]
    assert pairs.first == ["a man plays", "x y"]
    assert pairs.second == ["a man is playing", "z"]
    assert len(pairs) == 2
    assert pairs.sentences() == ["a man plays", "x y", "a man is playing", "z"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a\tb\tc", "line 2: expected 7 \\(or 9\\) tab-separated columns"),
        (_row("high"), "line 2: score \\(column 5\\) is not a number: 'high'"),
        (_row("5.5"), "line 2: score 5.5 is outside \\[0, 5\\]"),
        (_row("3", b=" "), "line 2: an empty sentence"),
    ],
)
def test_read_stsb_reports_the_file_line_and_reason(tmp_path, line, reason):
    path = tmp_path / "sts-train.csv"
    path.write_text(_row("4.0") + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="sts-train.csv: " + reason):
        read_stsb(path)


def test_stsb_split_names_the_split_and_reads_the_folder(tmp_path):
    (tmp_path / "sts-test.csv").write_text(_row("2.5") + "\n")
    assert stsb_split("test", tmp_path).scores == [2.5]
    with pytest.raises(ValueError, match="train, dev or test"):
        stsb_split("valid", tmp_path)


def test_the_shared_stsb_files_have_the_official_sizes():
    from contrastkit.data.images import data_root

    root = data_root()
    if root is None or not (root / "stsb").is_dir():
        pytest.fail("the shared data folder stsb is missing (set CONTRASTKIT_DATA)")
    assert [len(stsb_split(s)) for s in ("train", "dev", "test")] == [5749, 1500, 1379]
