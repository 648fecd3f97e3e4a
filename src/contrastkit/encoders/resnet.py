"""ResNet-18 / ResNet-50 backbones without the classifier (He et al., CVPR 2016).

Standard BasicBlock / Bottleneck networks (stride in the 3x3 conv of the bottleneck, "ResNet
v1.5", as torchvision). The ``fc`` layer is removed: the output is the globally pooled feature,
``[B, 512]`` for ResNet-18 and ``[B, 2048]`` for ResNet-50 (attribute ``feature_dim``).

Stems:
* ``cifar_stem=True`` (default, for 32x32 images): 3x3 conv, stride 1, no max-pool
  (SimCLR / MoCo CIFAR variants);
* ``cifar_stem=False``: the ImageNet stem, 7x7 conv stride 2 + 3x3 max-pool stride 2.

With the ImageNet stem and ``in_channels=3`` the parameter counts equal torchvision's minus the
fc layer: 11,176,512 (ResNet-18) and 23,508,032 (ResNet-50).
"""

from __future__ import annotations

from torch import Tensor, nn


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet trunk: stem, four stages, global average pool. Output ``[B, feature_dim]``.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)``.
        in_channels: input channels.
        cifar_stem: 3x3 stride-1 stem without max-pool (True) or the ImageNet stem (False).
        zero_init_residual: set the last BN weight of every block to 0 (Goyal et al. 2017).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        in_channels: int = 3,
        cifar_stem: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.in_planes = 64
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512 * block.expansion
        self.in_channels = in_channels
        self.cifar_stem = cifar_stem

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int = 1,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.in_planes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules = [block(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * block.expansion
        modules += [block(self.in_planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resnet18(
    *, in_channels: int = 3, cifar_stem: bool = True, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18 trunk (BasicBlock, 2-2-2-2), output ``[B, 512]``."""
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        in_channels=in_channels,
        cifar_stem=cifar_stem,
        zero_init_residual=zero_init_residual,
    )


def resnet50(
    *, in_channels: int = 3, cifar_stem: bool = True, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50 trunk (Bottleneck, 3-4-6-3), output ``[B, 2048]``."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        in_channels=in_channels,
        cifar_stem=cifar_stem,
        zero_init_residual=zero_init_residual,
    )
