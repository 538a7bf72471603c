"""Synapse counts that depend on which weights are zero and which inputs are nonzero (pruned weights, NeuroBench's
rule).

NeuroBench's ``SynapticOperations`` (neurobench/metrics/utils/layers/macs.py) counts, per ``Linear``/``Conv`` call,
``sum(layer_bin(x_bin))`` with the bias zeroed: ``x_bin = (x != 0)`` and ``W_bin = (W != 0)``, i.e. every (nonzero
input, nonzero weight) pair a convolution or product actually forms (zero padding taps read zeros and count
nothing). With ``R_i`` the nonzero weights input ``i`` reaches:

``Linear``   ``R_i = #{o : W[o, i] != 0}``, the column counts of ``W``;
``ConvNd``   ``R[c, p] = sum_{o in group(c)} sum_k [W[o, c, k] != 0] [tap k of some output reads p]``: the gradient
             of ``sum(conv(ones, W_bin))`` with respect to the input (exact for any stride, padding, padding mode,
             dilation and groups), computed once per input size and weight version.

so a call counts ``sum_i a_i R_i`` with ``a_i`` the input's values (spike counts) or its nonzero indicator. When no
weight is zero ``R`` is the plain fan-out and nothing here runs.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch

__all__ = ["WeightInfo", "weight_info", "conv_reach_map", "weighted_total"]


class WeightInfo(NamedTuple):
    """``zeros``: whether any weight is zero; ``reach``: nonzero weights per input (float64), flattened over what
    one input position is (a ``Linear``'s input features, a conv's ``[C_in, *spatial]`` when computed);
    ``nonzero``: number of nonzero weights."""

    zeros: bool
    reach: Optional[torch.Tensor]
    nonzero: int


def _version_key(w: torch.Tensor) -> Tuple[Any, ...]:
    return (w.data_ptr(), w._version, tuple(w.shape), w.dtype, w.device)


def weight_info(weight: torch.Tensor, cache: Dict[Any, Any]) -> WeightInfo:
    """Whether ``weight`` ``[C_out, C_in, ...]`` holds zeros, and (``Linear``) the nonzero weights per input feature;
    cached per weight version (``cache``: the layer's own cache)."""
    key = ("weights", _version_key(weight))
    info = cache.get(key)
    if info is None:
        for k in [k for k in cache if isinstance(k, tuple) and k and k[0] in ("weights", "reach")]:
            del cache[k]  # an older version of the weights
        nz = weight != 0
        nonzero = int(nz.sum())
        zeros = nonzero < weight.numel()
        reach = nz.sum(dim=0).to(torch.float64) if (zeros and weight.dim() == 2) else None
        info = cache[key] = WeightInfo(zeros, reach, nonzero)
    return info


def conv_reach_map(weight: torch.Tensor, stride: Tuple[int, ...], padding: Any, dilation: Tuple[int, ...],
                   groups: int, padding_mode: str, spatial: Tuple[int, ...], cache: Dict[Any, Any]) -> torch.Tensor:
    """``R[c, p]`` (float64 ``[C_in, *spatial]``): the nonzero weights input channel ``c`` at position ``p`` reaches
    (see the module docstring); cached per input size and weight version."""
    key = ("reach", _version_key(weight), tuple(spatial))
    reach = cache.get(key)
    if reach is None:
        nd = weight.dim() - 2
        c_in = int(weight.shape[1]) * groups
        x1 = torch.ones((1, c_in) + tuple(spatial), dtype=torch.float64, device=weight.device, requires_grad=True)
        w1 = (weight != 0).to(torch.float64)
        conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[nd - 1]
        with torch.enable_grad():
            if padding_mode != "zeros":
                if isinstance(padding, str):
                    raise ValueError("padding_mode other than 'zeros' needs numeric padding")
                pad = [p for p in reversed(padding) for _ in range(2)]
                y = conv(torch.nn.functional.pad(x1, pad, mode=padding_mode), w1, None, stride, 0, dilation, groups)
            else:
                y = conv(x1, w1, None, stride, padding, dilation, groups)
            (grad,) = torch.autograd.grad(y.sum(), x1)
        reach = cache[key] = grad[0].detach()
    return reach


def weighted_total(values: torch.Tensor, reach: torch.Tensor) -> int:
    """``sum_{n, i} values[n, i] reach[i]`` over every leading index ``n`` (``values``' trailing dimensions are those
    of ``reach``), exact for integer values (per-input sums in float64)."""
    flat = values.reshape(-1, reach.numel())
    return int(round(float((flat.sum(dim=0, dtype=torch.float64) * reach.reshape(-1)).sum())))
