"""Channels-last tensors through the fast CPU paths: a model (or an image) in ``torch.channels_last`` gives the same
logits and gradients as in the default layout, with the same backends running (numba LIF, Winograd and depth-wise
numba convolutions, 1x1 convolutions as matrix products). The numba kernels read raw buffers, so a path that took a
channels-last tensor for a contiguous one would scramble its values silently; these tests would see it."""

import copy

import pytest
import torch

from spikelib.kernels import backend_calls, reset_backend_calls
from spikelib.layers.multistep import reference_lif
from spikelib.layers.repconv import RepConv
from spikelib.layers.spike_attention import MetaTransformerBlock
from spikelib.models.maxformer import maxformer_tiny_test
from spikelib.models.spikeformer_v2 import MSConvBlock, MetaSpikeFormer

pytest.importorskip("numba")


def _channels_last_sequence(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, C, H, W]`` with each image stored channels-last (the logical shape unchanged)."""
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)


def _forward_backward(module: torch.nn.Module, x: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    (out * torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _close(got: torch.Tensor, expected: torch.Tensor, scale: float, name: str) -> None:
    """Equal up to float64 rounding of sums taken in another order (oneDNN's channels-last kernels), relative to
    ``scale`` (a gradient that is zero in exact arithmetic, e.g. of a bias followed by BatchNorm, is rounding noise)."""
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-11 * scale, msg=name)


def _assert_same(a, b):
    out_a, gx_a, grads_a = a
    out_b, gx_b, grads_b = b
    _close(out_b, out_a, out_a.abs().max().item(), "output")
    _close(gx_b, gx_a, gx_a.abs().max().item(), "input gradient")
    assert grads_a.keys() == grads_b.keys() and grads_a
    scale = max(g.abs().max().item() for g in grads_a.values())
    assert scale > 0
    for name in grads_a:
        _close(grads_b[name], grads_a[name], scale, name)


class _Scaled(torch.nn.Module):
    """``layer(scale x)`` with a learnable ``scale``: a parameter gradient to compare for a layer without one."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x * self.scale)


@pytest.mark.parametrize("build, shape", [
    (lambda: _Scaled(reference_lif()), (3, 2, 16, 8, 8)),
    (lambda: RepConv(32, 48, post_bn=True), (2, 2, 32, 4, 4)),
    (lambda: MetaTransformerBlock(32, 2), (2, 2, 32, 4, 4)),
    (lambda: MSConvBlock(64), (2, 1, 64, 8, 8)),  # 3x3 64 -> 256 on 8 x 8: Winograd; 7x7 depth-wise: numba
])
def test_layers_equal_on_channels_last_sequences(build, shape):
    torch.manual_seed(0)
    layer = build().double().train()
    x = torch.randn(shape, dtype=torch.float64) * 1.5
    twin = copy.deepcopy(layer)  # BatchNorm's running statistics change in each call
    reset_backend_calls()
    dense = _forward_backward(layer, x)
    calls_dense = {op: backend_calls(op) for op in ("conv2d", "lif")}
    reset_backend_calls()
    strided = _forward_backward(twin, _channels_last_sequence(x))
    assert {op: backend_calls(op) for op in ("conv2d", "lif")} == calls_dense  # the same paths ran
    _assert_same(dense, strided)
    if isinstance(layer, MSConvBlock):
        assert calls_dense["conv2d"].get("winograd_numba") and calls_dense["conv2d"].get("depthwise_numba")


@pytest.mark.parametrize("build", [
    lambda: MetaSpikeFormer(embed_dims=(64, 64, 64, 64), num_heads=2, depths=(1, 1), num_classes=10, T=2),
    lambda: maxformer_tiny_test(),
])
def test_models_equal_in_channels_last(build):
    """The whole model with its weights and the image in channels-last: logits and every gradient as in the
    default layout (float64), the same backends."""
    torch.manual_seed(0)
    model = build().double().train()
    twin = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 10
    reset_backend_calls()
    dense = _forward_backward(model, x)
    calls_dense = {op: backend_calls(op) for op in ("conv2d", "lif")}
    reset_backend_calls()
    strided = _forward_backward(twin, x.contiguous(memory_format=torch.channels_last))
    assert {op: backend_calls(op) for op in ("conv2d", "lif")} == calls_dense
    assert calls_dense["conv2d"].get("pointwise_gemm") and calls_dense["conv2d"].get("depthwise_numba")
    assert set(calls_dense["lif"]) == {"numba"}
    _assert_same(dense, strided)
