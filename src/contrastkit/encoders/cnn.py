"""A compact convolutional encoder for small grey-scale images (8x8 digits, 28x28 Fashion-MNIST).

Layout (``w = width``)::

    conv3x3(in, w)            BN ReLU          stride 1
    conv3x3(w, 2w)            BN ReLU          stride 2      \
    conv3x3(2w, 4w)           BN ReLU          stride 2       }  ``num_downsamples`` blocks,
    ...                                                      /   widths 2w, 4w, 4w, ...
    conv3x3(c, c)             BN ReLU          stride 1      (one block at the last width)
    global average pool  ->  [B, c]  ->  Linear(c, out_dim)  ->  [B, out_dim]

With ``input_size=None`` two stride-2 blocks are used (8x8 -> 2x2, 28x28 -> 7x7 before the
pool); works for any input size because of the global pooling. Given ``input_size``, the number
of stride-2 blocks is the number of halvings that bring the map to at most 4x4
(8 -> 1 block, 28 or 32 -> 3 blocks) and ``forward`` checks the input's spatial size.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks, global average pooling, a linear layer to ``out_dim``.

    Args:
        in_channels: input channels (1 for digits / Fashion-MNIST).
        width: channels of the first block; later blocks use ``2 * width`` and ``4 * width``.
        out_dim: size of the output representation; ``None`` drops the linear layer (the
            output is then the pooled feature, ``pooled_dim`` channels).
        input_size: expected square input side; selects the number of stride-2 blocks (see the
            module docstring) and is checked in ``forward``. ``None``: two stride-2 blocks, any
            size accepted.

    ``feature_dim`` is the size of the output of ``forward`` (``out_dim``, or the pooled width).
    Input ``[B, in_channels, H, W]``, output ``[B, feature_dim]``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        out_dim: int | None = 128,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1; got {in_channels}, {width}")
        if out_dim is not None and out_dim < 1:
            raise ValueError(f"out_dim must be >= 1 or None; got {out_dim}")
        if input_size is None:
            num_downsamples = 2
        else:
            if input_size < 1:
                raise ValueError(f"input_size must be >= 1 or None; got {input_size}")
            num_downsamples = max(1, math.ceil(math.log2(input_size / 4))) if input_size > 4 else 0
        self.in_channels = in_channels
        self.input_size = input_size
        self.num_downsamples = num_downsamples

        blocks = [_conv_bn_relu(in_channels, width, 1)]
        channels = width
        for i in range(num_downsamples):
            next_channels = width * 2 ** min(i + 1, 2)
            blocks.append(_conv_bn_relu(channels, next_channels, 2))
            channels = next_channels
        blocks.append(_conv_bn_relu(channels, channels, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, out_dim) if out_dim is not None else nn.Identity()
        self.pooled_dim = channels
        self.feature_dim = out_dim if out_dim is not None else channels

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SmallCNN expects [B, {self.in_channels}, H, W]; got {tuple(x.shape)}"
            )
        if self.input_size is not None and tuple(x.shape[-2:]) != (
            self.input_size,
            self.input_size,
        ):
            raise ValueError(
                f"SmallCNN was built for {self.input_size}x{self.input_size} inputs; "
                f"got {tuple(x.shape[-2:])}"
            )
        return self.fc(self.pool(self.features(x)).flatten(1))
