"""Loihi deployment: quantisation to Loihi fixed point, a bit-accurate simulator, netx HDF5 export/import, a Lava
runner and a Loihi 2 resource estimate.

- :mod:`~spikelib.hardware.loihi.network`: the integer network (:class:`LoihiNetwork`, :class:`LoihiLayer`,
  :class:`InputNeurons`).
- :mod:`~spikelib.hardware.loihi.simulator`: :func:`simulate`, bit-exact with Lava's ``fixed_pt`` models.
- :mod:`~spikelib.hardware.loihi.netx`: :func:`export_netx` / :func:`load_netx` (lava-dl netx HDF5).
- :mod:`~spikelib.hardware.loihi.lava_runner`: :func:`run_lava` (needs ``scripts/install_lava.sh``).
"""

from spikelib.hardware.loihi.netx import NetxFormatError, export_netx, load_netx
from spikelib.hardware.loihi.network import LIMITS, InputNeurons, LoihiLayer, LoihiNetwork
from spikelib.hardware.loihi.simulator import SimResult, simulate

__all__ = ["LIMITS", "LoihiLayer", "LoihiNetwork", "InputNeurons", "SimResult", "simulate", "export_netx",
           "load_netx", "NetxFormatError"]
