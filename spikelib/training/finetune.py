"""Quantisation-aware fine-tuning for Loihi: train with fake-quantised synapse weights
(:func:`spikelib.hardware.loihi.quantize.fake_quantized`, straight-through estimator), then leave the weights on the
quantisation grid."""

from __future__ import annotations

from typing import Dict, Iterable, List, Union

import torch
from torch import nn

from spikelib.hardware.loihi.quantize import fake_quantized
from spikelib.training.loop import train_classifier

__all__ = ["finetune_quantized"]


def finetune_quantized(model: nn.Module, train_loader: Iterable, *, epochs: int = 1, lr: float = 1e-4,
                       weight_bits: int = 8, device: Union[str, torch.device] = "cpu",
                       progress: bool = False) -> List[Dict[str, float]]:
    """Fine-tune ``model`` in place (Adam, cross-entropy, :func:`spikelib.training.loop.train_classifier`) with every
    synapse weight fake-quantised to ``weight_bits``; returns the per-epoch metrics. The model is left in eval mode
    with its weights on the grid that :func:`spikelib.hardware.loihi.quantize.quantize` uses."""
    with fake_quantized(model, weight_bits):
        history = train_classifier(model, train_loader, train_loader, epochs, lr, device, progress=progress)
    model.eval()
    return history
