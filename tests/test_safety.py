"""Safety of common mistakes (#21): a one-step ``[B, N]`` input to a sequence module warns (it is read as
``[T, B]``) and per-neuron parameters that cannot fit say how the input was read; a custom Surrogate subclass runs on
the fast kernels when it gives ``kernel_source()``, and otherwise says once that it runs on the torch loop; a plain
callable as surrogate is a clear error saying what to do."""

import math
import warnings

import pytest
import torch

import spikelib
from spikelib.functional import lif
from spikelib.functional._checks import LayoutWarning
from spikelib.functional.cuba import cuba_lif
from spikelib.kernels import backend_calls, reset_backend_calls
from spikelib.surrogate import SlowPathWarning, Surrogate


@pytest.mark.parametrize("module", [spikelib.LIF(), spikelib.ParametricLIF(), spikelib.IF(),
                                    spikelib.CubaLIF(current_decay=0.5, voltage_decay=0.5), spikelib.ALIF(),
                                    spikelib.Izhikevich()])
def test_one_step_input_to_a_sequence_module_warns(module):
    name = type(module).__name__
    with pytest.warns(LayoutWarning, match=rf"{name} got a 2-D input of shape \(4, 8\), read as \[T=4, B=8\].*"
                                           rf"{name}Cell"):
        module(torch.rand(4, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module(torch.rand(4, 2, 8))  # [T, B, N]: no warning


def test_cells_take_one_step_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spikelib.LIFCell()(torch.rand(2, 8))
        spikelib.CubaLIFCell(current_decay=0.5, voltage_decay=0.5)(torch.rand(2, 8))


def test_per_neuron_parameters_name_the_layout():
    with pytest.raises(ValueError, match=r"read time first as \[T, B, \.\.\.\], so its neurons are \(\)"):
        lif(torch.rand(4, 8), tau=torch.full((8,), 2.0))
    with pytest.raises(ValueError, match=r"was one step \[B, N\] or \[B, T, N\] given"):
        cuba_lif(torch.rand(4, 8), current_decay=torch.full((8,), 0.5), voltage_decay=0.5)


class _Cubic(Surrogate):
    """A custom surrogate with a kernel expression: g(x) = alpha / (1 + |alpha x|^3)."""

    name = ""

    def primitive(self, x):
        raise NotImplementedError

    def grad(self, x):
        return self.alpha / (1 + (self.alpha * x).abs() ** 3)

    def kernel_source(self, x, out, alpha, F):
        return f"_u = abs({alpha} * {x})\n{out} = {alpha} / ({F}(1.0) + _u * _u * _u)"


class _NoKernel(Surrogate):
    """A custom surrogate without a kernel expression."""

    def grad(self, x):
        return self.alpha * torch.exp(-x.abs())


def test_custom_surrogate_with_kernel_source_runs_on_the_fast_path():
    x = (torch.rand(12, 3, 5) * 1.5).requires_grad_(True)
    outs = {}
    for backend in ("torch", "auto"):
        reset_backend_calls()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s = lif(x, surrogate=_Cubic(1.5), backend=backend).spikes
        assert backend_calls("lif") == {"torch" if backend == "torch" else "numba": 1}
        outs[backend] = (s, torch.autograd.grad((s * torch.arange(12.0)[:, None, None]).sum(), x)[0])
    assert torch.equal(outs["auto"][0], outs["torch"][0])
    torch.testing.assert_close(outs["auto"][1], outs["torch"][1], rtol=1e-5, atol=1e-6)
    reset_backend_calls()
    cuba_lif(x, current_decay=0.5, voltage_decay=0.5, surrogate=_Cubic(1.5))
    assert backend_calls("neuron") == {"numba": 1}


def test_custom_surrogate_without_kernel_source_says_once_it_runs_the_loop():
    x = (torch.rand(6, 2, 3) * 2).requires_grad_(True)
    reset_backend_calls()
    with pytest.warns(SlowPathWarning, match="_NoKernel defines no kernel_source.*torch reference loop"):
        s = lif(x, surrogate=_NoKernel(1.0)).spikes
    assert backend_calls("lif") == {"torch": 1}
    (g,) = torch.autograd.grad(s.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lif(x, surrogate=_NoKernel(2.0))  # said once per class
        lif(x, surrogate=_NoKernel(1.0), backend="torch")  # chosen explicitly: nothing to say


def test_plain_callable_surrogate_is_a_clear_error():
    with pytest.raises(TypeError, match=r"got the callable '<lambda>'.*subclass Surrogate and define grad\(\)"):
        spikelib.LIF(surrogate=lambda x: 1 / (1 + x.abs()))
    with pytest.raises(TypeError, match="got the callable 'atan'"):
        lif(torch.rand(3, 2, 2), surrogate=math.atan)
