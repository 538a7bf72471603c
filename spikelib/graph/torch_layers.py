"""Declarations of torch's own layers (registered on first use of :func:`spikelib.graph.declare`)."""

from __future__ import annotations

from typing import Any, Tuple

from torch import nn

from spikelib.graph import nodes
from spikelib.graph.registry import register_declaration

__all__ = ["tuple_of"]


def tuple_of(value: Any, n: int) -> Tuple[int, ...]:
    """``value`` as an ``n``-tuple of ints (torch layers keep scalars or tuples)."""
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _linear(m: nn.Linear) -> nodes.Node:
    return nodes.Affine(m.weight.detach(), None if m.bias is None else m.bias.detach())


def _conv(m: nn.modules.conv._ConvNd) -> nodes.Node:
    nd = len(m.kernel_size)
    padding = m.padding if isinstance(m.padding, str) else tuple_of(m.padding, nd)
    return nodes.Conv(m.weight.detach(), None if m.bias is None else m.bias.detach(), tuple_of(m.stride, nd),
                      padding, tuple_of(m.dilation, nd), int(m.groups), m.padding_mode)


def _batchnorm(m: nn.modules.batchnorm._BatchNorm) -> nodes.Node:
    def get(t):
        return None if t is None else t.detach()

    return nodes.BatchNorm(get(m.running_mean), get(m.running_var), get(m.weight), get(m.bias), float(m.eps),
                           bool(m.training or not m.track_running_stats))


def _ndim(m: nn.Module) -> int:
    name = type(m).__name__
    return 1 if name.endswith("1d") else 2 if name.endswith("2d") else 3


def _pool(m: nn.Module) -> nodes.Node:
    nd = _ndim(m)
    op = "max" if "Max" in type(m).__name__ else "avg"
    if op == "max" and (tuple_of(m.dilation, nd) != (1,) * nd or m.return_indices):
        return nodes.Function(f"{type(m).__name__}(dilation/return_indices)", "")
    stride = m.stride if m.stride is not None else m.kernel_size
    return nodes.Pool(op, tuple_of(m.kernel_size, nd), tuple_of(stride, nd), tuple_of(m.padding, nd),
                      bool(m.ceil_mode), bool(getattr(m, "count_include_pad", True)),
                      getattr(m, "divisor_override", None))


def _adaptive_pool(m: nn.Module) -> nodes.Node:
    nd = _ndim(m)
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * nd
    return nodes.AdaptivePool("max" if "Max" in type(m).__name__ else "avg", tuple(size))


def _flatten(m: nn.Flatten) -> nodes.Node:
    return nodes.Flatten(int(m.start_dim), int(m.end_dim))


def _free(m: nn.Module) -> nodes.Node:
    return nodes.Free(type(m).__name__)


register_declaration(nn.Linear, _linear)
for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_declaration(_cls, _conv)
for _cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
    register_declaration(_cls, _batchnorm)
for _cls in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d):
    register_declaration(_cls, _pool)
for _cls in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d):
    register_declaration(_cls, _adaptive_pool)
register_declaration(nn.Flatten, _flatten)
for _cls in (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Unflatten):
    register_declaration(_cls, _free)
