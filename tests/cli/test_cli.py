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
