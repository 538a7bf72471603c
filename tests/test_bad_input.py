"""Bad input raises a clear error that names the argument and what was expected."""

import pytest
import torch

import spikelib
from spikelib.functional import lif

X = torch.rand(5, 2, 3)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(x=torch.rand(5)), ValueError, r"x must have at least 2 dimensions \[T, B, ...\]"),
        (dict(x=torch.ones(5, 2, 3, dtype=torch.int64)), TypeError, "x must have a floating dtype"),
        (dict(x=torch.rand(0, 2, 3)), ValueError, "x must have at least one time step"),
        (dict(x=[[1.0]]), TypeError, "x must be a torch.Tensor"),
        (dict(tau=0.0), ValueError, r"tau must be >= 1 \(the decay per step is 1 - 1/tau\), got 0"),
        (dict(tau=-2.0), ValueError, "tau must be >= 1"),
        (dict(tau=0.5), ValueError, "tau must be >= 1"),
        (dict(tau=float("nan")), ValueError, "tau must be finite"),
        (dict(tau=torch.tensor([2.0, float("nan"), 2.0])), ValueError, "tau contains NaN or inf"),
        (dict(tau=torch.tensor([2.0, 0.5, 2.0])), ValueError, "tau must be >= 1"),
        (dict(tau=torch.full((4,), 2.0)), ValueError, r"tau must be a scalar or per-neuron tensor broadcastable to "
                                                      r"the neuron shape \(3,\)"),
        (dict(tau=torch.full((3,), 2.0, dtype=torch.float64)), TypeError, "tau has dtype torch.float64"),
        (dict(tau=True), TypeError, "tau must be a real number or a tensor"),
        (dict(tau="2"), TypeError, "tau must be a real number or a torch.Tensor"),
        (dict(v_threshold=float("inf")), ValueError, "v_threshold must be finite"),
        (dict(v_threshold=torch.tensor([1.0, float("inf"), 1.0])), ValueError, "v_threshold contains NaN or inf"),
        (dict(v_reset=float("nan")), ValueError, "v_reset must be finite"),
        (dict(reset="zero"), ValueError, r"reset must be one of \['hard', 'soft'\], got 'zero'"),
        (dict(decay_input=1), TypeError, "decay_input must be a bool"),
        (dict(surrogate="erf"), ValueError, "unknown surrogate 'erf'"),
        (dict(backend="fastest"), ValueError, "unknown backend 'fastest'"),
        (dict(state=torch.zeros(2, 4)), ValueError, r"state must have shape \(2, 3\)"),
        (dict(state=torch.zeros(2, 3, dtype=torch.float64)), TypeError, "state has dtype torch.float64"),
        (dict(state="v"), TypeError, "state must be a torch.Tensor"),
        (dict(return_membrane=1), TypeError, "return_membrane must be a bool"),
    ],
)
def test_lif_rejects(kwargs, exc, match):
    args = dict(x=X)
    args.update(kwargs)
    x = args.pop("x")
    state = args.pop("state", None)
    with pytest.raises(exc, match=match):
        lif(x, state, **args)


def test_modules_reject_bad_arguments():
    with pytest.raises(ValueError, match="reset must be one of"):
        spikelib.LIF(reset="Hard")
    with pytest.raises(ValueError, match="unknown surrogate"):
        spikelib.LIF(surrogate="nope")
    with pytest.raises(ValueError, match="init_tau must be a number > 1"):
        spikelib.ParametricLIF(init_tau=1.0)
    with pytest.raises(ValueError, match="tau must be >= 1"):
        spikelib.LIFCell(tau=0.5)
    with pytest.raises(ValueError, match="v_threshold must be a finite number"):
        spikelib.LIFCell(v_threshold=float("nan"))
    with pytest.raises(TypeError, match="stateful must be a bool"):
        spikelib.LIF(stateful="yes")
    with pytest.raises(ValueError, match="tau must be >= 1"):
        spikelib.LIF(tau=0.0)(X)
    with pytest.raises(TypeError, match="x_t must be a floating tensor"):
        spikelib.LIFCell()(torch.ones(2, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match="reset expects an nn.Module"):
        spikelib.reset("model")
