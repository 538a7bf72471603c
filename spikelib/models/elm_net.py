"""ELM classifier for SHD / SHD-Adding, as in AaronSpieler/elmneuron ``notebooks/train_elm_on_shd.ipynb``.

``x: [T, B, 700]`` (10 ms bins) -> input dropout (training only) -> one ELM neuron (``num_output`` = classes) ->
logits = the readout at the last time step ``y[T-1]`` (the notebook's "last time step prediction").

The notebook's input dropout zeroes every input bin independently with probability ``p`` (0.5), without rescaling,
and applies it at validation and test time too. Here it runs only in training mode (spikelib's rule: numerics do
not depend on evaluation unless documented, and the issue asks for dropout during training only); by default the
kept bins are scaled by ``1 / (1 - p)`` so that the input seen in evaluation has the expected size seen in training
(``rescale=False`` gives the notebook's unscaled mask).
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Optional

import torch
from torch import nn

from spikelib.functional.dropout import input_dropout
from spikelib.graph import nodes
from spikelib.layers.readout import TimeReduce
from spikelib.neurons.elm import ELM, ELMv2

__all__ = ["InputDropout", "ELMClassifier"]


class InputDropout(nn.Module):
    """Zero each element of ``x`` with probability ``p`` in training mode (identity in eval mode), through the
    ``"input_dropout"`` operation (:mod:`spikelib.functional.dropout`: on CPU a draw only where ``x`` is nonzero)."""

    def __init__(self, p: float = 0.5, rescale: bool = True) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p must be a number in [0, 1), got {p!r}")
        if not isinstance(rescale, bool):
            raise TypeError(f"rescale must be a bool, got {type(rescale).__name__}")
        self.p, self.rescale = float(p), rescale

    def graph_node(self) -> nodes.Free:
        return nodes.Free("InputDropout" + (" (training)" if self.training and self.p else ""))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return input_dropout(x, self.p, self.rescale)

    def extra_repr(self) -> str:
        return f"p={self.p:g}, rescale={self.rescale}"


class ELMClassifier(nn.Module):
    """Input dropout + one ELM (v1 or v2); logits ``[B, classes]`` are the readout at the last step.

    Args:
        num_input, num_classes: 700 and 20 (SHD) or 19 (SHD-Adding).
        version: 1 (the notebook) or 2.
        input_dropout, dropout_rescale: see :class:`InputDropout`.
        **elm_args: passed to :class:`spikelib.ELM` / :class:`spikelib.ELMv2` (``num_memory``, ``dt``, ...).
    """

    def __init__(self, num_input: int = 700, num_classes: int = 20, version: int = 1, input_dropout: float = 0.5,
                 dropout_rescale: bool = True, **elm_args: Any) -> None:
        super().__init__()
        if version not in (1, 2) or isinstance(version, bool):
            raise ValueError(f"version must be 1 or 2, got {version!r}")
        self.dropout = InputDropout(input_dropout, dropout_rescale)
        self.elm = (ELM if version == 1 else ELMv2)(num_input, num_classes, **elm_args)
        self.reduce = TimeReduce("last")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> "ELMClassifier":
        """Build from the ``model`` section of ``configs/shd_elm.yaml`` (constructor arguments)."""
        args = {k: v for k, v in dict(config).items()}
        args.update(overrides)
        return cls(**args)

    def forward(self, x: torch.Tensor, state: Optional[Any] = None) -> torch.Tensor:
        return self.reduce(self.elm(self.dropout(x), state))
