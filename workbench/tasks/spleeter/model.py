"""The Spleeter U-Net (deezer/spleeter `model/functions/unet.py`), one per stem, in PyTorch.

Layout is PyTorch's [B, C, F, T] (Spleeter's TensorFlow code uses [B, T, F, C]; the network is symmetric in the two
spatial axes, so only the names change). Things a port gets wrong, and what this file does about them:
- TensorFlow `padding='same'` with stride 2 pads asymmetrically (1 before, 2 after, for even sizes); PyTorch's
  symmetric padding shifts every feature map by half a pixel (tuan3w/spleeter-pytorch#4). `_same_pad` computes
  TensorFlow's split; transposed convolutions crop [1:-2], which is the exact adjoint of that padding.
- Skip connections take the *raw* convolution outputs (before batch norm and activation), and the decoder starts
  from raw conv6; the activated conv6 is computed in TensorFlow but never used, so it is skipped here.
- Decoder order is transposed conv -> activation -> batch norm -> dropout (first three layers only).
- Keras BatchNorm defaults are momentum 0.99 (PyTorch momentum 0.01; configurable, short runs need ~0.1) and
  epsilon 1e-3; he_uniform initialisation.
- Inputs whose F or T is not a multiple of 64 are zero-padded up to one and the mask cropped back, so every
  encoder level has even sizes and the skips line up (Spleeter itself requires multiples of 64).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F_
from torch import nn

ENCODER_FILTERS = (16, 32, 64, 128, 256, 512)
DOWNSAMPLING = 2 ** len(ENCODER_FILTERS)  # 64: F and T are padded to multiples of this

ConvActivation = Literal["leaky_relu", "elu"]
DeconvActivation = Literal["relu", "elu"]


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'same' padding for one axis: (before, after); the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'same' padding (asymmetric when the total padding is odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        return super().forward(F_.pad(x, (left, right, top, bottom)))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d (5x5, stride 2) whose output is exactly 2x the input, cropped like TensorFlow 'same'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # [B, C, 2H+3, 2W+3] for a 5x5 kernel, stride 2, no padding
        h, w = 2 * x.shape[-2], 2 * x.shape[-1]
        top, left = 1, 1  # TensorFlow drops 1 pixel before and the rest (2) after
        return y[..., top : top + h, left : left + w]


def _activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "elu":
        return nn.ELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}")


def _batch_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=momentum, eps=1e-3)  # Keras eps; Keras momentum 0.99 = ours 0.01


class UNet(nn.Module):
    """One stem's U-Net: magnitude [B, C, F, T] -> sigmoid mask [B, C, F, T] in (0, 1).

    9,822,725 trainable parameters for C=2; Spleeter's TensorFlow graph has 1,024 more in a batch norm after conv6
    whose output it discards.
    """

    def __init__(
        self,
        in_channels: int = 2,
        conv_activation: ConvActivation = "leaky_relu",
        deconv_activation: DeconvActivation = "relu",
        dropout: float = 0.5,
        bn_momentum: float = 0.01,
    ):
        super().__init__()
        f = ENCODER_FILTERS
        self.encoder = nn.ModuleList()
        self.encoder_post = nn.ModuleList()  # BN + activation after conv1..conv5 (conv6's output is used raw)
        prev = in_channels
        for i, width in enumerate(f):
            self.encoder.append(SameConv2d(prev, width, kernel_size=5, stride=2))
            if i < len(f) - 1:
                self.encoder_post.append(nn.Sequential(_batch_norm(width, bn_momentum), _activation(conv_activation)))
            prev = width
        # Decoder: up1..up5 concatenate with conv5..conv1; up6 goes to one channel before the mask convolution.
        out_widths = (256, 128, 64, 32, 16, 1)
        self.decoder = nn.ModuleList()
        prev = f[-1]
        for i, width in enumerate(out_widths):
            layers: list[nn.Module] = [
                SameConvTranspose2d(prev, width, kernel_size=5, stride=2),
                _activation(deconv_activation),
                _batch_norm(width, bn_momentum),
            ]
            if i < 3:
                layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))
            skip = f[-2 - i] if i < len(f) - 1 else 0
            prev = width + skip
        self.mask = SameConv2d(1, in_channels, kernel_size=4, dilation=2)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                # Keras he_uniform: U(+-sqrt(6 / fan_in)); PyTorch's fan_in for ConvTranspose2d (out*k*k) is the
                # same quantity Keras uses for Conv2DTranspose, so one call covers both.
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_in, t_in = x.shape[-2], x.shape[-1]
        x = _pad_to_multiple(x, DOWNSAMPLING)  # [B, C, F', T'] with F', T' multiples of 64
        skips: list[torch.Tensor] = []
        h = x
        for i, conv in enumerate(self.encoder):
            raw = conv(h)  # [B, 16..512, F'/2^(i+1), T'/2^(i+1)]
            skips.append(raw)
            if i < len(self.encoder_post):
                h = self.encoder_post[i](raw)
        h = skips[-1]  # raw conv6, as in Spleeter
        for i, block in enumerate(self.decoder):
            h = block(h)
            if i < len(self.decoder) - 1:
                h = torch.cat([skips[-2 - i], h], dim=1)  # Spleeter concatenates [conv, up]
        mask = torch.sigmoid(self.mask(h))  # [B, C, F', T']
        return mask[..., :f_in, :t_in]


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad_f = (-x.shape[-2]) % multiple
    pad_t = (-x.shape[-1]) % multiple
    if pad_f == 0 and pad_t == 0:
        return x
    return F_.pad(x, (0, pad_t, 0, pad_f))


class Separator(nn.Module):
    """One U-Net per stem. forward(mix) -> estimated magnitudes [B, S, C, F, T] (mask * mixture)."""

    def __init__(
        self,
        stems: list[str],
        in_channels: int = 2,
        conv_activation: ConvActivation = "leaky_relu",
        deconv_activation: DeconvActivation = "relu",
        bn_momentum: float = 0.01,
    ):
        super().__init__()
        self.stems = list(stems)
        self.nets = nn.ModuleDict(
            {s: UNet(in_channels, conv_activation, deconv_activation, bn_momentum=bn_momentum) for s in self.stems}
        )

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        # mix: [B, C, F, T] magnitude -> [B, S, C, F, T]
        return torch.stack([self.nets[s](mix) * mix for s in self.stems], dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
