"""spikelib: spiking neural networks from surrogate-gradient training to Loihi deployment and energy reports.

Tensors are time first, ``[T, B, ...]``. Sequence modules (``LIF``) take a whole sequence, ``*Cell`` modules one step;
``spikelib.reset(model)`` clears every kept state. See README.md for a tour.
"""

# kernels/ first: it registers every built-in backend, and the functional core it imports needs only its registry.
from spikelib import kernels  # noqa: I001
from spikelib import functional, surrogate
from spikelib.functional.lif import LIFOutput, LIFState, lif
from spikelib.kernels import available_backends, backend_calls
from spikelib.layers import DelayedLinear
from spikelib.neurons import (
    ALIF,
    IF,
    LIF,
    ALIFCell,
    CubaLIF,
    CubaLIFCell,
    IFCell,
    Izhikevich,
    IzhikevichCell,
    LIFCell,
    ParametricLIF,
    ParametricLIFCell,
    Recurrent,
    reset,
)
from spikelib.neurons.elm import ELM, ELMCell, ELMv2

__version__ = "0.1.0"

__all__ = [
    "ALIF",
    "ALIFCell",
    "CubaLIF",
    "CubaLIFCell",
    "IF",
    "IFCell",
    "Izhikevich",
    "IzhikevichCell",
    "ParametricLIFCell",
    "Recurrent",
    "DelayedLinear",
    "ELM",
    "ELMCell",
    "ELMv2",
    "LIF",
    "LIFCell",
    "LIFOutput",
    "LIFState",
    "ParametricLIF",
    "available_backends",
    "backend_calls",
    "functional",
    "lif",
    "reset",
    "surrogate",
    "__version__",
]
