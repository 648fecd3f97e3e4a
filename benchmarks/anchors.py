"""Load lightly's loss classes without importing its package (which imports torchvision, not
installable beside the CPU torch used here): the two loss files are executed directly, with
the torchvision-dragging packages stubbed. Install lightly with ``pip install --no-deps
lightly==1.6.0``. Used by the parity tests and the loss benchmark."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

INSTALL = "pip install --no-deps lightly==1.6.0"


class StubMemoryBankModule(nn.Module):
    """Stands in for lightly's MemoryBankModule. With ``size=0`` the real one returns
    ``(output, None)`` from forward; nothing else is supported."""

    def __init__(self, size: Any = 0, gather_distributed: bool = False, **kwargs: Any) -> None:
        super().__init__()
        if size not in (0, (0,), [0]):
            raise NotImplementedError("stub memory bank: only memory_bank_size=0")

    def forward(self, output: Any, labels: Any = None, update: bool = False) -> Any:
        return output, None


def _load_module(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_lightly_losses(
    setitem: Callable[[dict, str, Any], None] | None = None,
) -> types.SimpleNamespace | None:
    """``NTXentLoss``, ``DCLLoss``, ``DCLWLoss`` of the installed lightly, or None if it is not
    installed. ``setitem(sys.modules, name, module)`` installs the stubs (pytest's
    ``monkeypatch.setitem`` undoes them after a test)."""
    spec = importlib.util.find_spec("lightly")
    if spec is None or spec.origin is None:
        return None
    put = setitem or (lambda mapping, key, value: mapping.__setitem__(key, value))
    loss_dir = Path(spec.origin).parent / "loss"
    stubs = ["lightly.models", "lightly.models.modules", "lightly.models.modules.memory_bank"]
    for name in stubs:
        stub = types.ModuleType(name)
        stub.__path__ = []  # a package: submodules resolve through sys.modules only
        put(sys.modules, name, stub)
    sys.modules[stubs[-1]].MemoryBankModule = StubMemoryBankModule  # type: ignore[attr-defined]
    ntx = _load_module(loss_dir / "ntx_ent_loss.py", "_contrastkit_anchor_lightly_ntx_ent_loss")
    dcl = _load_module(loss_dir / "dcl_loss.py", "_contrastkit_anchor_lightly_dcl_loss")
    return types.SimpleNamespace(
        NTXentLoss=ntx.NTXentLoss, DCLLoss=dcl.DCLLoss, DCLWLoss=dcl.DCLWLoss
    )
