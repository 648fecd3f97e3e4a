"""Two gloo processes with gathered negatives train to the same parameters as one process on
the same global batch (info_nce, mv_dhel, supcon; dense and tiled core)."""

import pytest
import torch
import torch.multiprocessing as mp

from contrastkit.core.distributed import gather, gather_with_grad, rank, world_size
from tests.core import dist_worker


@pytest.mark.parametrize("mode", ["local", "global"])
@pytest.mark.parametrize("impl", ["dense", "tiled"])
@pytest.mark.parametrize("loss_name", ["info_nce", "mv_dhel", "supcon"])
def test_two_processes_match_one_process(tmp_path, loss_name, impl, mode):
    """``local``: local_loss (own anchors, gathered candidates); ``global``: every process
    computes the loss of the gathered batch."""
    out = tmp_path / "params.pt"
    mp.spawn(
        dist_worker.worker,
        args=(2, str(tmp_path / "init"), loss_name, impl, str(out), mode),
        nprocs=2,
        join=True,
    )
    distributed = torch.load(out, weights_only=True)
    x, labels = dist_worker.make_data()
    single = dist_worker.train(dist_worker.make_model(), x, labels, loss_name, impl)
    changed = False
    for name, value in single.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-9, atol=1e-11)
        changed |= not torch.allclose(value, dist_worker.make_model().state_dict()[name])
    assert changed  # the parameters did move, so the comparison means something


def test_single_process_is_a_no_op():
    x = torch.randn(3, 2)
    assert world_size() == 1 and rank() == 0
    assert gather_with_grad(x) is x and gather(x) is x


@pytest.mark.parametrize(
    "case, expected",
    [
        ("batch", r"rank 0: torch.float32 \(4, 2, 3\); rank 1: torch.float32 \(5, 2, 3\)"),
        ("dtype", r"rank 0: torch.float32 \(4, 2, 3\); rank 1: torch.float64 \(4, 2, 3\)"),
        ("labels", r"rank 0: torch.int64 \(3,\); rank 1: torch.int64 \(4,\)"),
    ],
)
def test_mismatched_ranks_raise_instead_of_hanging(tmp_path, case, expected):
    import re

    out = tmp_path / "message"
    mp.spawn(
        dist_worker.mismatch_worker,
        args=(2, str(tmp_path / "init"), case, str(out)),
        nprocs=2,
        join=True,
    )
    for r in range(2):
        message = (tmp_path / f"message.{r}").read_text()
        assert "same dtype and shape" in message and re.search(expected, message), message
