import json

from contrastkit.cli import main


def test_losses_lists_every_loss(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    assert "| mv_dhel | temperature=0.1, normalize=True |" in out


def test_losses_evaluate_json(capsys):
    assert main(["losses", "info_nce", "dcl", "--evaluate", "-n", "16", "-v", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["loss"] for r in rows] == ["info_nce", "dcl"]
    assert rows[0]["views"] == 3 and rows[1]["views"] == 2  # dcl is two-view
    assert all(r["value"] == r["value"] for r in rows)  # not NaN


def test_unknown_loss_is_an_error(capsys):
    assert main(["losses", "nope"]) == 2
    assert "unknown loss(es): nope" in capsys.readouterr().err


def test_train_names_the_run_folder_and_the_interrupt_hint_gives_it(tmp_path, capsys, monkeypatch):
    """A Ctrl-C during training prints the resume command with the real run folder."""
    from contrastkit.recipes import images

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "run_image_training", interrupted)
    out = tmp_path / "run"
    assert main(["train", "--output", str(out), "train.epochs=1"]) == 130
    captured = capsys.readouterr()
    assert f"run folder: {out}" in captured.out
    assert f"contrastkit train --resume --output {out}" in captured.err


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    assert main(["train", "--output", str(path)]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err
