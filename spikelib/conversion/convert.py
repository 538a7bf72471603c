"""``convert``: a trained ANN -> a spiking network ready to run or to retrain (IIR-SNN's first step).

::

    from spikelib.conversion import convert
    snn = convert(ann.eval(), x_train_batch, timesteps=5)      # fold BN, build the SNN, balance thresholds
    logits = snn(images)                                        # [B, C, H, W] presented for 5 steps
    snn.set_timesteps(100); logits = snn(images)                # more steps: closer to the ANN

The structure (:mod:`spikelib.conversion.structure`) and the thresholds
(:mod:`spikelib.conversion.thresholds`) are two steps that can also be called alone.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from spikelib.conversion.structure import convert_structure, default_neuron
from spikelib.conversion.thresholds import balance_thresholds
from spikelib.models.iir_blocks import DirectInputSNN

__all__ = ["convert"]


def convert(ann: nn.Module, calibration: torch.Tensor, *, timesteps: int = 5, percentile: float = 90.0,
            method: str = "percentile", steps: int = 500, scale: float = 1.0, per_neuron: bool = False,
            leak: float = 1.0, learn: bool = True, chunk: Optional[int] = None,
            normalize_bias: bool = False) -> DirectInputSNN:
    """The spiking network of ``ann`` with balanced thresholds.

    Args:
        ann: the trained ANN in eval mode (Conv/Linear, BatchNorm, ReLU, Dropout, average pooling, Flatten,
            ``nn.Sequential`` and :class:`~spikelib.models.iir_blocks.ResidualBlock`).
        calibration: one training batch ``[B, ...]`` (the reference: 512 samples) for threshold balancing.
        timesteps: ``T`` of the result for static inputs.
        percentile, method, steps, scale, chunk, normalize_bias: threshold balancing
            (:func:`~spikelib.conversion.thresholds.balance_thresholds`).
        per_neuron: one leak and threshold per neuron (all neurons of a layer start from the layer's value).
        leak: initial leak of every neuron (the reference: 1, i.e. integrate-and-fire).
        learn: make leak and threshold trainable (IIR-SNN trains both).
    """
    if not isinstance(calibration, torch.Tensor):
        raise TypeError(f"calibration must be a tensor batch [B, ...], got {type(calibration).__name__}")
    if not isinstance(per_neuron, bool):
        raise TypeError(f"per_neuron must be a bool, got {type(per_neuron).__name__}")
    param = next(ann.parameters(), None)
    if param is not None and (calibration.device != param.device or calibration.dtype != param.dtype):
        raise ValueError(f"calibration is on {calibration.device} ({calibration.dtype}) but the ANN on "
                         f"{param.device} ({param.dtype}); move one of them")
    snn = convert_structure(ann, timesteps=timesteps, neuron=default_neuron(leak, learn),
                            per_neuron_example=calibration[:1] if per_neuron else None)
    if param is not None:
        snn = snn.to(device=param.device, dtype=param.dtype)
    balance_thresholds(snn, calibration, percentile=percentile, method=method, steps=steps, scale=scale,
                       chunk=chunk, normalize_bias=normalize_bias)
    return snn
