import dataclasses

import pytest
import torch

from contrastkit.views.image import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    PRESETS,
    ImageAugmentation,
    ImageViews,
    augmentation_preset,
)

# every random op off, crop covering the whole image: the identity pipeline
IDENTITY = dict(
    crop_scale=(1.0, 1.0),
    flip_p=0.0,
    rotation_p=0.0,
    jitter_p=0.0,
    grayscale_p=0.0,
    blur_p=0.0,
    solarize_p=0.0,
    mean=None,
    std=None,
)


def _images(b, c, side, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, side, side), dtype=torch.uint8, generator=g)


def _identity(size, **changes):
    return ImageAugmentation(size=size, **{**IDENTITY, **changes})


# ------------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_give_float_views_of_the_right_shape_and_range(name, channels):
    torch.manual_seed(0)
    aug = augmentation_preset(name)
    if aug.mean is not None and len(aug.mean) != channels:
        aug = dataclasses.replace(aug, mean=None, std=None)
    views = ImageViews(aug, views=3)
    images = _images(5, channels, aug.size + 3)
    out = views(images)
    assert out.shape == (5, 3, channels, aug.size, aug.size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if aug.mean is None:
        assert out.min() >= 0 and out.max() <= 1
    else:
        mean = torch.tensor(aug.mean).view(-1, 1, 1)
        std = torch.tensor(aug.std).view(-1, 1, 1)
        raw = out * std + mean  # undo the normalisation
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert views.deterministic(images).shape == (5, channels, aug.size, aug.size)


def test_preset_values():
    simclr = augmentation_preset("simclr_cifar")
    assert (simclr.size, simclr.crop_scale, simclr.flip_p, simclr.jitter_p) == (
        32,
        (0.08, 1.0),
        0.5,
        0.8,
    )
    assert (simclr.brightness, simclr.contrast, simclr.saturation, simclr.hue) == (
        0.4,
        0.4,
        0.4,
        0.1,
    )
    assert (simclr.grayscale_p, simclr.blur_p, simclr.solarize_p) == (0.2, 0.0, 0.0)
    assert (simclr.mean, simclr.std) == (CIFAR10_MEAN, CIFAR10_STD)

    # the AdaInf table (symmetric.yaml vs symmetric_adainf.yaml)
    weak, default = augmentation_preset("adainf_weak"), augmentation_preset("adainf_default")
    assert weak.crop_scale[0] == 0.2 and default.crop_scale[0] == 0.08
    assert (weak.jitter_p, default.jitter_p) == (0.4, 0.8)
    assert (weak.brightness, weak.contrast, weak.saturation, weak.hue) == (0.4, 0.4, 0.4, 0.1)
    assert (default.brightness, default.contrast, default.saturation, default.hue) == (
        0.8,
        0.8,
        0.8,
        0.2,
    )
    for a in (weak, default):
        assert (a.grayscale_p, a.blur_p, a.solarize_p, a.flip_p) == (0.2, 0.5, 0.0, 0.5)
        assert a.blur_sigma == (0.1, 2.0) and a.blur_kernel % 2 == 1

    d = augmentation_preset("digits")
    assert (d.size, d.crop_scale, d.flip_p) == (8, (0.5, 1.0), 0.0)
    assert (d.rotation_degrees, d.rotation_p, d.jitter_p) == (15.0, 0.5, 0.8)
    assert (d.saturation, d.hue, d.grayscale_p) == (0.0, 0.0, 0.0)

    f = augmentation_preset("fashion_mnist")
    assert (f.size, f.crop_scale, f.flip_p, f.jitter_p, f.blur_p) == (28, (0.3, 1.0), 0.5, 0.8, 0.3)
    assert f.blur_kernel == 3 and (f.saturation, f.hue) == (0.0, 0.0)


def test_preset_size_and_overrides():
    aug = augmentation_preset("simclr_cifar", size=24, flip_p=0.0, mean=None, std=None)
    assert (aug.size, aug.flip_p, aug.mean) == (24, 0.0, None)
    assert PRESETS["adainf_weak"](16).size == 16
    small = augmentation_preset("adainf_weak", size=4)  # kernel capped by the reflect border
    assert small.blur_kernel <= 2 * 4 - 1


# -------------------------------------------------------------------------------- behaviour


def test_views_differ_from_each_other_and_from_the_input():
    torch.manual_seed(1)
    views = ImageViews(augmentation_preset("simclr_cifar", mean=None, std=None), views=2)
    images = _images(8, 3, 32)
    out = views(images)
    reference = views.deterministic(images)
    for i in range(8):
        assert not torch.allclose(out[i, 0], out[i, 1])
        assert not torch.allclose(out[i, 0], reference[i])


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_pipeline_equals_the_deterministic_transform(channels):
    views = ImageViews(_identity(16), views=3)
    images = _images(4, channels, 16)
    out = views(images)
    expected = views.deterministic(images)
    torch.testing.assert_close(expected, images.float() / 255)
    for v in range(3):
        torch.testing.assert_close(out[:, v], expected)


def test_deterministic_resizes_the_shorter_side_and_centre_crops():
    views = ImageViews(_identity(8))
    images = torch.rand(2, 3, 16, 24)
    out = views.deterministic(images)
    assert out.shape == (2, 3, 8, 8)
    assert views.deterministic(torch.rand(2, 1, 4, 4)).shape == (2, 1, 8, 8)  # upsampling


def test_flip_with_p_one_equals_torch_flip():
    views = ImageViews(_identity(12, flip_p=1.0), views=2)
    images = torch.rand(3, 3, 12, 12)
    out = views(images)
    for v in range(2):
        torch.testing.assert_close(out[:, v], torch.flip(images, dims=[-1]))


def test_solarize_with_p_one():
    views = ImageViews(_identity(10, solarize_p=1.0))
    images = torch.rand(3, 3, 10, 10)
    expected = torch.where(images >= 0.5, 1 - images, images)
    torch.testing.assert_close(views(images)[:, 0], expected)


def test_grayscale_with_p_one_makes_channels_equal():
    views = ImageViews(_identity(10, grayscale_p=1.0))
    out = views(torch.rand(4, 3, 10, 10))
    torch.testing.assert_close(out[:, :, 0], out[:, :, 1])
    torch.testing.assert_close(out[:, :, 0], out[:, :, 2])
    assert out.std() > 0


def test_colour_ops_on_one_channel_images():
    # saturation/hue/grayscale are skipped for C = 1; brightness/contrast still apply
    torch.manual_seed(0)
    aug = _identity(8, jitter_p=1.0, grayscale_p=1.0, saturation=0.4, hue=0.1)
    images = torch.rand(6, 1, 8, 8)
    out = ImageViews(aug)(images)
    assert out.shape == (6, 2, 1, 8, 8)
    assert not torch.allclose(out[:, 0], images)


def test_normalisation_is_applied():
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.5, 0.25)
    views = ImageViews(_identity(8, mean=mean, std=std))
    images = torch.rand(2, 3, 8, 8)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(views(images)[:, 0], (images - m) / s)
    torch.testing.assert_close(views.deterministic(images), (images - m) / s)
    # one entry broadcasts over the channels
    one = ImageViews(_identity(8, mean=(0.5,), std=(0.5,)))
    torch.testing.assert_close(one(images)[:, 1], images * 2 - 1)


def test_uint8_and_float_inputs_agree():
    views = ImageViews(_identity(8))
    images = _images(2, 3, 8)
    torch.testing.assert_close(views(images), views(images.float() / 255))


def test_seeding_makes_outputs_identical():
    views = ImageViews(augmentation_preset("adainf_default"), views=4)
    images = _images(6, 3, 32)
    torch.manual_seed(123)
    a = views(images)
    torch.manual_seed(123)
    b = views(images)
    torch.manual_seed(124)
    c = views(images)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_empty_batch():
    views = ImageViews(_identity(8), views=2)
    assert views(torch.zeros(0, 3, 8, 8)).shape == (0, 2, 3, 8, 8)
    assert views.deterministic(torch.zeros(0, 1, 5, 5)).shape == (0, 1, 8, 8)


# ------------------------------------------------------------------------------- bad inputs


def test_bad_images():
    views = ImageViews(augmentation_preset("simclr_cifar"))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\].*rank 4"):
        views(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        views(torch.rand(2, 2, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        views(torch.rand(2, 3, 32, 32) * 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        views(torch.full((1, 3, 4, 4), float("nan")))
    with pytest.raises(TypeError, match="uint8"):
        views(torch.zeros(2, 3, 32, 32, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        views([[0.0]])
    with pytest.raises(ValueError, match=r"mean/std have 3 entries.*C = 1"):
        views(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\].*rank 4"):
        views.deterministic(torch.rand(32, 32))


def test_bad_views():
    aug = augmentation_preset("digits")
    with pytest.raises(ValueError, match="views must be >= 1"):
        ImageViews(aug, views=0)
    with pytest.raises(TypeError, match="views"):
        ImageViews(aug, views=2.0)
    with pytest.raises(TypeError, match="augmentation must be an ImageAugmentation"):
        ImageViews("digits")


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("flip_p", 1.5, ValueError, "flip_p is a probability"),
        ("jitter_p", -0.1, ValueError, "jitter_p is a probability"),
        ("solarize_p", 2, ValueError, "solarize_p is a probability"),
        ("blur_p", "0.5", TypeError, "blur_p"),
        ("size", 0, ValueError, "size must be >= 1"),
        ("size", 8.0, TypeError, "size must be an int"),
        ("crop_scale", (0.5, 0.2), ValueError, "crop_scale"),
        ("crop_scale", (0.5, 1.5), ValueError, "crop_scale"),
        ("crop_ratio", (0.0, 1.0), ValueError, "crop_ratio"),
        ("blur_kernel", 4, ValueError, "blur_kernel must be an odd"),
        ("blur_sigma", (0.0, 1.0), ValueError, "blur_sigma"),
        ("hue", 0.6, ValueError, "hue"),
        ("brightness", -1.0, ValueError, "brightness must be >= 0"),
        ("mean", (0.5, 0.5, 0.5), ValueError, "mean and std must be given together"),
    ],
)
def test_bad_augmentation_fields(field, value, error, message):
    with pytest.raises(error, match=message):
        ImageAugmentation(**{"size": 8, field: value})


def test_bad_mean_std_and_blur_kernel():
    with pytest.raises(ValueError, match="same length"):
        ImageAugmentation(size=8, mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(ValueError, match="std entries must be > 0"):
        ImageAugmentation(size=8, mean=(0.5,), std=(0.0,))
    with pytest.raises(ValueError, match="reflect border"):
        ImageAugmentation(size=4, blur_p=0.5, blur_kernel=9)


def test_bad_preset_name_and_override():
    with pytest.raises(ValueError, match=r"unknown augmentation preset 'nope'.*simclr_cifar"):
        augmentation_preset("nope")
    with pytest.raises(TypeError, match="flip_probability"):
        augmentation_preset("simclr_cifar", flip_probability=0.3)
    with pytest.raises(TypeError, match="colour"):
        PRESETS["digits"](8, colour=1)
