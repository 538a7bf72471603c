"""Backends: the registry and the built-in implementations (imported here so that they register themselves).

``import spikelib`` imports this package, so every built-in backend is registered before any operation runs; the
functional core (:mod:`spikelib.functional`) imports only :mod:`.registry`.

``available_backends("lif")`` lists them; ``backend_calls("lif")`` counts which ones ran.
"""

from spikelib.kernels.registry import (
    BackendUnavailableError,
    available_backends,
    backend_calls,
    forget_backend_choices,
    register_backend,
    reset_backend_calls,
    select_backend,
)
from spikelib.kernels import torch_reference as _torch_reference  # noqa: F401  (registers "torch")
from spikelib.kernels import delay_torch as _delay_torch  # noqa: F401  (registers the delay operations' "torch")
from spikelib.kernels import delay_spectral as _delay_spectral  # noqa: F401  (registers "spectral")
from spikelib.kernels import elm_torch as _elm_torch  # noqa: F401  (registers the "elm" backends)
from spikelib.kernels import conv_torch as _conv_torch  # noqa: F401  (registers the "conv2d" backends)
from spikelib.kernels import pool_torch as _pool_torch  # noqa: F401  (registers the "max_pool2d" backends)
from spikelib.kernels import linear_torch as _linear_torch  # noqa: F401  (registers the "linear" reference)
from spikelib.kernels import rows_torch as _rows_torch  # noqa: F401  (registers the "index_add_rows" reference)
from spikelib.kernels import dropout_torch as _dropout_torch  # noqa: F401  (registers the "input_dropout" reference)
from spikelib.kernels.cpu import delay_numba as _delay_numba  # noqa: F401  (registers the delay operations' "numba")
from spikelib.kernels.cpu import linear_numba as _linear_numba  # noqa: F401  (registers "linear"'s "numba")
from spikelib.kernels.cpu import rows_numba as _rows_numba  # noqa: F401  (registers "index_add_rows"' "numba")
from spikelib.kernels.cpu import dropout_numba as _dropout_numba  # noqa: F401  (registers "input_dropout"'s "numba")
from spikelib.kernels.cpu import elm_numba as _elm_numba  # noqa: F401  (registers "elm"'s "numba")
from spikelib.kernels.cpu import depthwise_numba as _depthwise_numba  # noqa: F401  (registers "depthwise_numba")
from spikelib.kernels.cpu import winograd_numba as _winograd_numba  # noqa: F401  (registers "winograd_numba")
from spikelib.kernels.cpu import lif_numba as _lif_numba  # noqa: F401  (registers "numba"; numba imported lazily)
from spikelib.kernels.cpu import neuron_numba as _neuron_numba  # noqa: F401  (registers the families' "numba")
from spikelib.kernels.cupy import backend as _cupy_backend  # noqa: F401  (registers "cupy"; CuPy imported lazily)
from spikelib.kernels.cupy import multistate as _cupy_multistate  # noqa: F401  (registers the families' "cupy")

__all__ = [
    "BackendUnavailableError",
    "available_backends",
    "backend_calls",
    "forget_backend_choices",
    "register_backend",
    "reset_backend_calls",
    "select_backend",
]
