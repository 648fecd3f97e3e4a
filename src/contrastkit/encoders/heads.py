"""Projection heads and the ``Encoder`` = backbone + head pair.

``ProjectionHead`` is the SimCLR / MoCo v2 MLP: ``num_layers`` linear layers with
``BatchNorm1d`` (optional) and ReLU between them and a plain linear output layer::

    Linear(in, hidden) - BN - ReLU - ... - Linear(hidden, hidden) - BN - ReLU - Linear(hidden, out)

``num_layers=1`` is a single linear projection. Hidden linear layers have no bias when
followed by BN (the BN shift makes it redundant). MoCo v2's own head has no BN
(``batch_norm=False``); SimCLR's has.
"""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """MLP projection head ``[B, in_dim] -> [B, out_dim]``.

    Args:
        in_dim: input size (the backbone's ``feature_dim``).
        hidden_dim: width of the hidden layers (default 2048).
        out_dim: output size (default 128).
        num_layers: number of linear layers, >= 1 (default 2).
        batch_norm: ``BatchNorm1d`` after each hidden linear layer (default True).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(
                f"dimensions must be >= 1; got in={in_dim}, hidden={hidden_dim}, out={out_dim}"
            )
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.num_layers = num_layers

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """A backbone and a projection head.

    ``forward(x)`` returns ``(h, z)``: the representation ``h = backbone(x)`` (what is probed
    and evaluated) and the projection ``z = head(h)`` (what the loss sees; not normalised here,
    the losses do that). ``represent(x)`` returns ``h`` only. ``head=None`` means identity.
    ``feature_dim`` is copied from the backbone when it has one.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()
        feature_dim = getattr(backbone, "feature_dim", None)
        if feature_dim is not None:
            self.feature_dim = feature_dim

    def represent(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)
        return h, self.head(h)
