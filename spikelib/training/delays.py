"""The SNN-delays recipe in the training core (Thvnvtos/SNN-delays: ``model.py`` ``optimizers``, ``schedulers``,
``train_model``, ``eval_model``, ``fine_tune``; ``snn_delays.py`` ``init_model``, ``decrease_sig``, ``round_pos``).

A ``delays`` section of a run configuration gives:

* two optimisers (:mod:`spikelib.training.optim`): Adam over the weights (delay-layer weights with weight decay,
  BatchNorm/neuron parameters without) with the ``schedule`` section (the reference: OneCycleLR, peak 5x, beta1
  cycled 0.95 -> 0.85 -> 0.95, stepped per epoch), and Adam over the positions (``delays.lr``, 100x, no weight decay,
  cosine annealing, stepped like the weights' schedule);
* :class:`DelayCallback`: the Gaussian width of every delay layer from
  :class:`~spikelib.layers.delay_schedule.SigmaSchedule` at the start of every epoch, positions clamped to
  ``[0, max_delay]`` after every optimiser step, evaluation with rounded integer delays (``delays.eval``), and for a
  stage with ``delays: rounded`` (the reference's ``fine_tune``) integer delays for good with frozen positions;
* ``delays.init: reference``: the initial positions drawn as the reference draws them
  (:meth:`spikelib.layers.delay.DelayedLinear.init_delays_`) from a generator of their own, seeded with
  :func:`~spikelib.training.build.stream_seed` of ``train.seed`` (not ``train.seed`` itself: that replays the
  global stream that drew the initial weights, and the first layer's delays came out as a function of its weights).
"""

from __future__ import annotations

from typing import Any, ContextManager, Optional

import torch
from torch import nn

from spikelib.layers.delay_schedule import SigmaSchedule, clamp_delays_, delay_layers, rounded_delays, set_sigma_
from spikelib.training.build import stream_seed
from spikelib.training.callbacks import Callback
from spikelib.training.config import DelaysConfig

__all__ = ["DelayCallback", "init_reference_positions"]


def init_reference_positions(model: nn.Module, seed: int) -> None:
    """Redraw the learnable positions of every delay layer as SNN-delays does (one generator, layers in order).

    Args:
        model: The model whose :class:`~spikelib.layers.delay.DelayedLinear` layers with ``delays="learn"`` get new
            positions.
        seed: The run's seed; the generator is seeded with ``stream_seed(seed, "delay_positions")``, a stream
            independent of the global generator seeded with ``seed`` that drew the weights.
    """
    generator = torch.Generator().manual_seed(stream_seed(int(seed), "delay_positions"))
    for layer in delay_layers(model):
        if layer.delays == "learn":
            layer.init_delays_("reference", generator)


class DelayCallback(Callback):
    """Sigma schedule per epoch, clamping after every step, rounded evaluation (module docstring)."""

    def __init__(self, config: DelaysConfig) -> None:
        self.config = config
        self.schedule: Optional[SigmaSchedule] = None
        self.frozen = False

    def on_stage_start(self, trainer: Any) -> None:
        layers = delay_layers(trainer.model)
        stage = trainer.stage_config
        self.frozen = stage is not None and stage.delays == "rounded"
        if self.frozen:  # fine-tuning: integer delays for good (the reference's round_pos + SIG = 0)
            for layer in layers:
                layer.round_delays()
            self.schedule = None
            return
        d = self.config
        self.schedule = SigmaSchedule(layers[0].max_delay, trainer.stage_epochs, d.sig_init, d.sig_final,
                                      d.final_epoch)

    def on_epoch_start(self, trainer: Any) -> None:
        if self.schedule is not None:
            sigma = self.schedule(trainer.epoch)
            set_sigma_(trainer.model, sigma)
            trainer.log("sigma", sigma)

    def on_step_end(self, trainer: Any) -> None:
        if not self.frozen:
            clamp_delays_(trainer.model)

    def eval_context(self, trainer: Any) -> Optional[ContextManager]:
        return rounded_delays(trainer.model) if self.config.eval == "rounded" else None
