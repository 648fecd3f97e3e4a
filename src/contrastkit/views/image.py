"""Image views: batched random augmentation on the training device (kornia).

:class:`ImageViews` turns a batch of images ``[B, C, H, W]`` into ``V`` independently augmented
views ``[B, V, C, size, size]`` in one call: the batch is repeated to ``[B*V, C, H, W]`` and
every kornia op draws its random parameters per sample, so each view of each image gets its own
crop, flip, jitter, ... There is no Python loop over views.

One :class:`ImageAugmentation` holds the parameters of one view pipeline. The ops run in the
order of solo-learn's ``CifarTransform`` (the code AdaInf builds on), with the optional rotation
right after the crop::

    RandomResizedCrop -> RandomRotation -> ColorJitter (p) -> RandomGrayscale -> GaussianBlur (p)
    -> Solarize (p) -> HorizontalFlip -> normalise (if mean/std)

An op whose probability is 0 (or whose strength is 0) is left out of the pipeline, so it costs
nothing and draws no random numbers.

Semantics of the ops (kornia 0.9):

- colour jitter uses ``kornia.augmentation.ColorJitter``, which implements torchvision's
  formulas (brightness multiplies, contrast and saturation blend with the grayscale mean /
  grayscale image, hue shifts in turns; factors drawn from ``[max(0, 1 - b), 1 + b]`` and
  ``[-hue, hue]``). ``ColorJiggle`` does not: its brightness is additive and its contrast and
  saturation scale the raw values / HSV saturation. One kornia difference remains: the random
  order of the four steps is drawn once per call and shared by the whole ``[B*V]`` batch
  (torchvision draws it per image); the factors and the apply/skip coin are per sample.
- solarize is torchvision's: ``x >= 0.5 -> 1 - x`` (kornia's ``RandomSolarize`` is given a fixed
  threshold of 0.5 and no addition; its own defaults randomise both).
- blur is a Gaussian with ``sigma ~ U(blur_sigma)`` per sample, ``blur_kernel`` wide, reflect
  border.
- single-channel images (``C = 1``): colour ops that need three channels are skipped, i.e. the
  jitter applies only brightness and contrast (saturation and hue are ignored) and grayscale is
  left out (it is the identity on one channel).

Randomness follows torch's global RNG: ``torch.manual_seed(s)`` before a call makes the output
identical. Float inputs are checked to lie in ``[0, 1]``, which costs one device sync per call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kornia.augmentation as K
import torch
from kornia.geometry.transform import resize
from torch import Tensor, nn

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "PRESETS",
    "ImageAugmentation",
    "ImageViews",
    "augmentation_preset",
]

# solo-learn ``CifarTransform`` (cifar10) statistics, used by the AdaInf code.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

_PROBABILITIES = (
    "flip_p",
    "rotation_p",
    "jitter_p",
    "grayscale_p",
    "blur_p",
    "solarize_p",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range_pair(name: str, value: Any, low: float, high: float | None) -> None:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(_is_number(v) for v in value)
    ):
        raise TypeError(f"{name} must be a pair of numbers (low, high); got {value!r}")
    a, b = value
    if not (a > low and a <= b and (high is None or b <= high)):
        upper = "" if high is None else f" <= {high}"
        raise ValueError(f"{name} must satisfy {low} < low <= high{upper}; got {tuple(value)}")


@dataclass(frozen=True)
class ImageAugmentation:
    """The parameters of one view pipeline (see the module docstring for the op order).

    Attributes:
        size: output side; views are ``size x size`` (square).
        crop_scale, crop_ratio: ``RandomResizedCrop`` area fraction and aspect-ratio ranges.
        flip_p: horizontal flip probability.
        rotation_degrees, rotation_p: rotation by ``U(-deg, deg)`` with probability
            ``rotation_p`` (zero fill); ``0`` for either disables it.
        jitter_p, brightness, contrast, saturation, hue: torchvision-style colour jitter applied
            with probability ``jitter_p``. For ``C = 1`` only brightness and contrast are used.
        grayscale_p: probability of converting to grayscale (kept three-channel); ``C = 3`` only.
        blur_p, blur_kernel, blur_sigma: Gaussian blur probability, odd kernel side and sigma
            range.
        solarize_p: probability of solarizing (``x >= 0.5 -> 1 - x``).
        mean, std: per-channel normalisation after augmentation (``None``: none). Length 1 or
            the channel count of the images.
    """

    size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    rotation_degrees: float = 0.0
    rotation_p: float = 0.0
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise TypeError(f"size must be an int; got {self.size!r}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1; got {self.size}")
        _check_range_pair("crop_scale", self.crop_scale, 0.0, 1.0)
        _check_range_pair("crop_ratio", self.crop_ratio, 0.0, None)
        _check_range_pair("blur_sigma", self.blur_sigma, 0.0, None)
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not _is_number(value):
                raise TypeError(f"{name} must be a number in [0, 1]; got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability and must lie in [0, 1]; got {value}")
        for name in ("rotation_degrees", "brightness", "contrast", "saturation", "hue"):
            value = getattr(self, name)
            if not _is_number(value):
                raise TypeError(f"{name} must be a number; got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0; got {value}")
        if self.rotation_degrees > 180:
            raise ValueError(f"rotation_degrees must be <= 180; got {self.rotation_degrees}")
        if self.hue > 0.5:
            raise ValueError(f"hue must lie in [0, 0.5] (turns of the hue circle); got {self.hue}")
        if not isinstance(self.blur_kernel, int) or isinstance(self.blur_kernel, bool):
            raise TypeError(f"blur_kernel must be an odd int; got {self.blur_kernel!r}")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be an odd int >= 1; got {self.blur_kernel}")
        if self.blur_p > 0 and self.blur_kernel > 2 * self.size - 1:
            raise ValueError(
                f"blur_kernel must be <= 2 * size - 1 = {2 * self.size - 1} (reflect border); "
                f"got {self.blur_kernel}"
            )
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together (or both None)")
        if self.mean is not None:
            for name in ("mean", "std"):
                value = getattr(self, name)
                if not isinstance(value, (tuple, list)) or not all(_is_number(v) for v in value):
                    raise TypeError(f"{name} must be a tuple of numbers; got {value!r}")
            if len(self.mean) not in (1, 3) or len(self.mean) != len(self.std):
                raise ValueError(
                    "mean and std must have the same length, 1 or 3; "
                    f"got {len(self.mean)} and {len(self.std)}"
                )
            if any(s <= 0 for s in self.std):
                raise ValueError(f"std entries must be > 0; got {tuple(self.std)}")


# ----------------------------------------------------------------------------------- presets


def _blur_kernel_for(sigma_max: float, size: int) -> int:
    """An odd kernel covering +-3 sigma_max (PIL's GaussianBlur, used by solo-learn, is
    unbounded), capped at the largest kernel a reflect border allows for ``size``."""
    kernel = 2 * math.ceil(3 * sigma_max) + 1
    return max(1, min(kernel, 2 * size - 1))


def _build(defaults: dict[str, Any], overrides: dict[str, Any]) -> ImageAugmentation:
    names = {f.name for f in dataclasses.fields(ImageAugmentation)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"unknown augmentation override(s): {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    return ImageAugmentation(**{**defaults, **overrides})


def simclr_cifar(size: int = 32, **overrides: Any) -> ImageAugmentation:
    """SimCLR CIFAR-10 (colour strength 0.5, no blur at 32 px), CIFAR-10 normalisation."""
    return _build(
        dict(
            size=size,
            crop_scale=(0.08, 1.0),
            flip_p=0.5,
            jitter_p=0.8,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.1,
            grayscale_p=0.2,
            blur_p=0.0,
            solarize_p=0.0,
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
        ),
        overrides,
    )


def _adainf(size: int, overrides: dict[str, Any], **table: Any) -> ImageAugmentation:
    sigma = overrides.get("blur_sigma", (0.1, 2.0))
    try:
        kernel = _blur_kernel_for(float(max(sigma)), int(size))
    except (TypeError, ValueError):
        kernel = 3  # malformed blur_sigma / size: ImageAugmentation's validation reports it
    defaults = dict(
        size=size,
        crop_ratio=(3 / 4, 4 / 3),
        flip_p=0.5,
        grayscale_p=0.2,
        blur_p=0.5,
        blur_sigma=(0.1, 2.0),
        blur_kernel=kernel,
        solarize_p=0.0,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )
    defaults.update(table)
    return _build(defaults, overrides)


def adainf_weak(size: int = 32, **overrides: Any) -> ImageAugmentation:
    """AdaInf ``symmetric_adainf.yaml`` (weaker augmentation for inflated data)."""
    return _adainf(
        size,
        overrides,
        crop_scale=(0.2, 1.0),
        jitter_p=0.4,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
    )


def adainf_default(size: int = 32, **overrides: Any) -> ImageAugmentation:
    """solo-learn ``symmetric.yaml``, the baseline of the AdaInf table."""
    return _adainf(
        size,
        overrides,
        crop_scale=(0.08, 1.0),
        jitter_p=0.8,
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
    )


def digits(size: int = 8, **overrides: Any) -> ImageAugmentation:
    """Small grayscale digits (e.g. 8x8, scaled to [0, 1]): no flip (digits are not symmetric),
    small rotations, brightness/contrast only, no normalisation."""
    return _build(
        dict(
            size=size,
            crop_scale=(0.5, 1.0),
            flip_p=0.0,
            rotation_degrees=15.0,
            rotation_p=0.5,
            jitter_p=0.8,
            brightness=0.4,
            contrast=0.4,
            saturation=0.0,
            hue=0.0,
            grayscale_p=0.0,
            blur_p=0.0,
            solarize_p=0.0,
        ),
        overrides,
    )


def fashion_mnist(size: int = 28, **overrides: Any) -> ImageAugmentation:
    """Fashion-MNIST (28x28 grayscale): crop, flip, brightness/contrast, light small blur."""
    return _build(
        dict(
            size=size,
            crop_scale=(0.3, 1.0),
            flip_p=0.5,
            jitter_p=0.8,
            brightness=0.4,
            contrast=0.4,
            saturation=0.0,
            hue=0.0,
            grayscale_p=0.0,
            blur_p=0.3,
            blur_kernel=3,
            blur_sigma=(0.1, 1.0),
            solarize_p=0.0,
            mean=FASHION_MNIST_MEAN,
            std=FASHION_MNIST_STD,
        ),
        overrides,
    )


PRESETS: dict[str, Callable[..., ImageAugmentation]] = {
    "simclr_cifar": simclr_cifar,
    "adainf_weak": adainf_weak,
    "adainf_default": adainf_default,
    "digits": digits,
    "fashion_mnist": fashion_mnist,
}


def augmentation_preset(
    name: str, *, size: int | None = None, **overrides: Any
) -> ImageAugmentation:
    """The preset ``name`` (see :data:`PRESETS`) at ``size`` (default: the preset's own), with
    fields replaced by ``overrides``. Unknown name -> ``ValueError``; unknown field ->
    ``TypeError``."""
    if name not in PRESETS:
        raise ValueError(
            f"unknown augmentation preset {name!r}; available: {', '.join(sorted(PRESETS))}"
        )
    preset = PRESETS[name]
    return preset(**overrides) if size is None else preset(size, **overrides)


# ------------------------------------------------------------------------------------ module


def _pipeline(aug: ImageAugmentation, channels: int) -> nn.Sequential:
    ops: list[nn.Module] = [
        K.RandomResizedCrop((aug.size, aug.size), scale=aug.crop_scale, ratio=aug.crop_ratio)
    ]
    if aug.rotation_p > 0 and aug.rotation_degrees > 0:
        ops.append(K.RandomRotation(aug.rotation_degrees, p=aug.rotation_p))
    colour = channels == 3
    jitter = (
        aug.brightness,
        aug.contrast,
        aug.saturation if colour else 0.0,
        aug.hue if colour else 0.0,
    )
    if aug.jitter_p > 0 and any(j > 0 for j in jitter):
        ops.append(K.ColorJitter(*jitter, p=aug.jitter_p))
    if colour and aug.grayscale_p > 0:
        ops.append(K.RandomGrayscale(p=aug.grayscale_p))
    if aug.blur_p > 0:
        ops.append(K.RandomGaussianBlur(aug.blur_kernel, aug.blur_sigma, p=aug.blur_p))
    if aug.solarize_p > 0:
        ops.append(K.RandomSolarize(thresholds=(0.5, 0.5), additions=(0.0, 0.0), p=aug.solarize_p))
    if aug.flip_p > 0:
        ops.append(K.RandomHorizontalFlip(p=aug.flip_p))
    return nn.Sequential(*ops)


class ImageViews(nn.Module):
    """``V`` random views of each image, made in one batched call on the images' device.

    Args:
        augmentation: the view pipeline's parameters (e.g. ``augmentation_preset("simclr_cifar")``).
        views: number of views ``V`` per image (>= 1).

    ``forward(images)``: ``images`` uint8 ``[B, C, H, W]`` (0..255) or floating in ``[0, 1]``,
    ``C`` in {1, 3} -> float32 ``[B, V, C, size, size]``; each view an independent draw of the
    pipeline, normalised when ``mean``/``std`` are set.
    ``deterministic(images)``: the eval transform, float32 ``[B, C, size, size]``: resize the
    shorter side to ``size`` (bilinear, antialiased), centre crop, normalise.
    """

    def __init__(self, augmentation: ImageAugmentation, *, views: int = 2) -> None:
        super().__init__()
        if not isinstance(augmentation, ImageAugmentation):
            raise TypeError(
                "augmentation must be an ImageAugmentation (see augmentation_preset); "
                f"got {type(augmentation).__name__}"
            )
        if not isinstance(views, int) or isinstance(views, bool):
            raise TypeError(f"views must be an int >= 1; got {views!r}")
        if views < 1:
            raise ValueError(f"views must be >= 1; got {views}")
        self.augmentation = augmentation
        self.views = views
        self.pipelines = nn.ModuleDict({str(c): _pipeline(augmentation, c) for c in (1, 3)})

    def extra_repr(self) -> str:
        return f"views={self.views}, augmentation={self.augmentation}"

    def _prepare(self, images: Tensor) -> Tensor:
        """Validate and convert to float32 in [0, 1]."""
        if not isinstance(images, Tensor):
            raise TypeError(
                f"images must be a torch.Tensor [B, C, H, W]; got {type(images).__name__}"
            )
        if images.dim() != 4:
            raise ValueError(
                f"images must have shape [B, C, H, W] (rank 4); got shape {tuple(images.shape)}"
            )
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"images must have C = 1 or 3 channels in [B, C, H, W]; "
                f"got C = {images.shape[1]} (shape {tuple(images.shape)})"
            )
        if images.shape[2] < 1 or images.shape[3] < 1:
            raise ValueError(f"images must have H, W >= 1; got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.to(torch.float32) / 255.0
        if not images.is_floating_point():
            raise TypeError(
                f"images must be uint8 (0..255) or floating point in [0, 1]; got {images.dtype}"
            )
        if images.numel() and not bool(((images >= 0) & (images <= 1)).all()):
            raise ValueError(
                "floating images must lie in [0, 1] (pass uint8 for 0..255); got values in "
                f"[{images.min().item():.4g}, {images.max().item():.4g}]"
            )
        return images.to(torch.float32)

    def _normalise(self, x: Tensor) -> Tensor:
        aug = self.augmentation
        if aug.mean is None or aug.std is None:
            return x
        channels = x.shape[-3]
        if len(aug.mean) not in (1, channels):
            raise ValueError(
                f"mean/std have {len(aug.mean)} entries but the images have C = {channels} "
                "channels; give 1 or C entries (or mean=None, std=None)"
            )
        shape = (len(aug.mean), 1, 1)
        mean = torch.tensor(aug.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(aug.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def forward(self, images: Tensor) -> Tensor:
        x = self._prepare(images)
        B, C = x.shape[:2]
        size, V = self.augmentation.size, self.views
        if B == 0:
            return x.new_empty((0, V, C, size, size))
        # one call over [B*V]: row b*V + v is view v of image b; parameters are drawn per row
        repeated = x.repeat_interleave(V, dim=0)
        out = self.pipelines[str(C)](repeated).clamp_(0.0, 1.0)
        out = self._normalise(out)
        return out.reshape(B, V, C, size, size)

    def deterministic(self, images: Tensor) -> Tensor:
        x = self._prepare(images)
        size = self.augmentation.size
        B, C, H, W = x.shape
        if B == 0:
            return x.new_empty((0, C, size, size))
        if min(H, W) != size:
            x = resize(x, size, interpolation="bilinear", side="short", antialias=True)
        H, W = x.shape[-2:]
        top, left = (H - size) // 2, (W - size) // 2
        x = x[..., top : top + size, left : left + size].clamp(0.0, 1.0)
        return self._normalise(x).contiguous()
