"""Test-session setup: without a GPU, Triton kernels run in Triton's CPU interpreter."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny models: more threads only add contention (on a busy
    2-core machine, tens of times slower). Restores the previous count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
