"""CuPy (CUDA) kernels: ``.cu`` templates rendered per variant, compiled lazily, registered as backend ``"cupy"``.

Importing this package never imports CuPy; CuPy is imported on the first CUDA launch (``pip install
'spikelib[cuda12]'`` or ``'spikelib[cuda13]'``). See :mod:`.backend` for the equations and memory use,
:mod:`.neurons` for the neuron models, :mod:`.codegen` for rendering and caching, :mod:`.toolchain` for compiling
without a GPU (nvcc / NVRTC) and :mod:`.emulation` for running the same source on the CPU in tests.
"""

from spikelib.kernels.cupy.backend import check_cupy, lif_cupy, multistep
from spikelib.kernels.cupy.neurons import LIF_DECAY_INPUT, LIF_LEAK, LIF_NO_DECAY_INPUT, QIF, NeuronModel

__all__ = ["check_cupy", "lif_cupy", "multistep", "NeuronModel", "LIF_DECAY_INPUT", "LIF_NO_DECAY_INPUT", "LIF_LEAK",
           "QIF"]
