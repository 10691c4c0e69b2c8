"""The Spleeter U-Net: shapes, TensorFlow 'same' padding, parameter count, masks."""

from __future__ import annotations

import torch

from workbench.tasks.spleeter.model import SameConvTranspose2d, Separator, UNet, _same_pad, count_parameters


def test_same_pad_matches_tensorflow():
    # TensorFlow puts the odd pixel after: even sizes with a 5x5 stride-2 kernel pad (1, 2), odd sizes (2, 2)
    assert _same_pad(512, 5, 2) == (1, 2)
    assert _same_pad(37, 5, 2) == (2, 2)
    assert _same_pad(64, 4, 1, dilation=2) == (3, 3)  # the final 4x4 dilation-2 mask convolution


def test_transposed_conv_doubles_size():
    up = SameConvTranspose2d(3, 2, kernel_size=5, stride=2)
    assert up(torch.zeros(1, 3, 8, 5)).shape == (1, 2, 16, 10)


def test_parameter_count_is_spleeters():
    # 9,823,749 in Spleeter's graph minus the 1,024 of the discarded batch norm after conv6
    assert count_parameters(UNet()) == 9_822_725


@torch.no_grad()
def test_default_shape_and_mask_range():
    net = UNet().eval()
    x = torch.rand(1, 2, 1024, 512)  # default F x T
    mask = net(x)
    assert mask.shape == (1, 2, 1024, 512)
    assert float(mask.min()) > 0.0 and float(mask.max()) < 1.0


@torch.no_grad()
def test_odd_sizes_are_padded_and_cropped():
    sep = Separator(["vocals", "accompaniment"]).eval()
    for f, t in [(100, 37), (65, 64), (1, 1), (130, 129)]:
        mix = torch.rand(3, 2, f, t)
        out = sep(mix)
        assert out.shape == (3, 2, 2, f, t)
        assert bool((out <= mix.unsqueeze(1) + 1e-6).all())  # estimates are mask x mixture with mask < 1


def test_skips_use_raw_conv_and_dropout_only_first_three():
    net = UNet()
    dropouts = [any(isinstance(m, torch.nn.Dropout) for m in block) for block in net.decoder]
    assert dropouts == [True, True, True, False, False, False]
    assert len(net.encoder_post) == 5  # conv6 has no batch norm/activation on the used path


def test_activations_configurable():
    net = UNet(conv_activation="elu", deconv_activation="elu")
    assert isinstance(net.encoder_post[0][1], torch.nn.ELU)
    assert isinstance(net.decoder[0][1], torch.nn.ELU)
    assert isinstance(UNet().encoder_post[0][1], torch.nn.LeakyReLU)
    assert UNet().encoder_post[0][1].negative_slope == 0.2
