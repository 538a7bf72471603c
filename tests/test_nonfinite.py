"""Non-finite inputs have one semantics in every backend: IEEE arithmetic of the documented equations, with the torch
reference as the ground truth. For integer delays a NaN or inf at ``x[s, b, i]`` reaches exactly
``y[s + D[j, i], b, j]`` (the torch fallback used to spread it through ``0 * NaN`` to every step of every delay)."""

import pytest
import torch

from spikelib.functional.delay import delayed_linear_int
from spikelib.kernels import available_backends, backend_calls, reset_backend_calls
from spikelib.kernels.cpu import delay_numba


def _brute_force_delays(x, w, d):
    T, B, _ = x.shape
    y = torch.zeros(T, B, w.shape[0], dtype=torch.float64)
    for t in range(T):
        for j in range(w.shape[0]):
            for i in range(w.shape[1]):
                s = t - int(d[j, i])
                if s >= 0:
                    y[t, :, j] += float(w[j, i]) * x[s, :, i].double()
    return y


@pytest.mark.parametrize("backend", available_backends("delay_linear_int"))
@pytest.mark.parametrize("events", [False, True])
def test_integer_delays_nonfinite_inputs_reach_only_their_synapses(backend, events, monkeypatch):
    if events:
        monkeypatch.setattr(delay_numba, "INT_EVENT_DENSITY_MAX", 1.0)
    T, B, c_in, c_out = 9, 2, 4, 5
    x = (torch.rand(T, B, c_in) < 0.3).float() * torch.rand(T, B, c_in)
    x[2, 0, 1] = float("nan")
    x[5, 1, 3] = float("inf")
    x[7, 1, 0] = -float("inf")
    w = torch.randn(c_out, c_in)
    w[0, 3] = 0.0  # 0 * inf is NaN by the equation, in every backend
    d = torch.randint(0, 4, (c_out, c_in))
    d[:, 1] = torch.tensor([0, 1, 2, 3, 8])  # the NaN reaches steps 2, 3, 4, 5 and never step 10 (past the end)
    reset_backend_calls()
    y = delayed_linear_int(x, w, d, backend=backend)
    assert backend_calls("delay_linear_int") == {backend: 1}
    ref = _brute_force_delays(x, w, d)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(torch.isinf(y) & (y > 0), torch.isinf(ref) & (ref > 0))
    assert torch.equal(torch.isinf(y) & (y < 0), torch.isinf(ref) & (ref < 0))
    finite = torch.isfinite(ref)
    assert 0 < int((~finite).sum()) < finite.numel() // 3
    torch.testing.assert_close(y[finite].double(), ref[finite], rtol=1e-5, atol=1e-5)


def test_integer_delays_nonfinite_gradients_agree():
    T, B, c_in, c_out = 6, 2, 3, 4
    base = torch.rand(T, B, c_in)
    base[1, 0, 2] = float("nan")
    base[3, 1, 0] = float("inf")
    w0 = torch.randn(c_out, c_in)
    d = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 1, 1], [3, 0, 0]])
    g = torch.randn(T, B, c_out)
    grads = {}
    for backend in available_backends("delay_linear_int"):
        x = base.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        (delayed_linear_int(x, w, d, backend=backend) * g).sum().backward()
        grads[backend] = (x.grad, w.grad)
    gx, gw = grads["torch"]
    assert torch.isfinite(gx).all()  # dy/dx is w: finite wherever the input is
    assert torch.isnan(gw[:, 2]).all() and torch.isfinite(gw[:, 1]).all()  # g * NaN, summed over the outputs
    for backend, (bx, bw) in grads.items():
        torch.testing.assert_close(bx, gx, equal_nan=True)
        torch.testing.assert_close(bw, gw, equal_nan=True)


# ------------------------------------------------------------------------------------------------ neurons
from spikelib.functional import lif  # noqa: E402
from spikelib.functional.dynamics import run_neuron  # noqa: E402
from spikelib.kernels.cupy.backend import multistep  # noqa: E402
from spikelib.kernels.cupy.emulation import HostLauncher, find_host_compiler  # noqa: E402
from spikelib.kernels.cupy.multistate import multistate_key, run_multistate  # noqa: E402
from spikelib.kernels.cupy.backend import variant_key  # noqa: E402
from spikelib.functional.lif import resolve_lif_config  # noqa: E402
from spikelib.functional.cuba import cuba_lif_spec  # noqa: E402
from spikelib.functional.alif import alif_spec  # noqa: E402
from spikelib.kernels.cupy.neurons import lif_model  # noqa: E402

_CONFIGS = [resolve_lif_config(r, None, d, -0.1, "atan", decay, fire) for r in ("hard", "soft") for d in (False, True)
            for decay, fire in (("tau", "difference"), ("leak", "ratio"))]
_FAMILY_SPECS = [cuba_lif_spec("hard"), cuba_lif_spec("soft"), alif_spec("hard"), alif_spec("soft")]


def _nonfinite_input():
    x = torch.rand(6, 2, 5) * 0.5
    x[1, 0, 0] = float("inf")
    x[2, 1, 1] = -float("inf")
    x[0, 0, 2] = float("nan")
    x[3, 1, 3] = float("inf")
    return x


def test_lif_inf_input_documented_case():
    """An infinite input fires; a hard reset then gives inf * 0 + v_reset = NaN, which never fires again."""
    x = torch.tensor([float("inf"), 0.0, 0.0]).view(3, 1, 1)
    for backend in ("torch", "numba"):
        out = lif(x, return_membrane=True, backend=backend)
        assert out.spikes.flatten().tolist() == [1.0, 0.0, 0.0]
        assert torch.isnan(out.membrane).all()


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    if find_host_compiler() is None:
        pytest.skip("needs a C++ compiler (g++)")
    keys = [variant_key(lif_model(c.decay, c.decay_input), c, torch.float32) for c in _CONFIGS]
    keys += [multistate_key(s, torch.float32) for s in _FAMILY_SPECS]
    return HostLauncher(keys, tmp_path_factory.mktemp("slk_nonfinite"))


def _same(a, b):
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    ok = ~torch.isnan(b)
    assert torch.equal(a[ok], b[ok])


@pytest.mark.parametrize("config", _CONFIGS, ids=lambda c: f"{c.reset}-{c.detach_reset}-{c.decay}")
def test_lif_nonfinite_inputs_same_in_every_backend(config, launcher):
    x = _nonfinite_input().requires_grad_(True)
    decay = 0.8 if config.decay == "leak" else 2.0
    kw = dict(v_threshold=0.6, v_reset=config.v_reset, reset=config.reset, detach_reset=config.detach_reset,
              decay_input=config.decay_input, fire=config.fire, return_membrane=True,
              **({"leak": decay} if config.decay == "leak" else {"tau": decay}))
    ref = lif(x, backend="torch", **kw)
    (gr,) = torch.autograd.grad(ref.spikes.sum() + ref.membrane.nan_to_num().sum(), x)
    assert torch.isnan(ref.membrane).any() and torch.isfinite(ref.membrane).any()
    outs = [lif(x, backend="numba", **kw)]
    outs.append(type(ref)(*multistep(x, torch.full_like(x[0], config.v_reset), decay, 0.6, config, True,
                                     launcher=launcher)))
    for out in outs:
        _same(out.spikes, ref.spikes)
        _same(out.membrane, ref.membrane)
        (g,) = torch.autograd.grad(out.spikes.sum() + out.membrane.nan_to_num().sum(), x)
        assert torch.equal(torch.isnan(g), torch.isnan(gr))
        torch.testing.assert_close(g, gr, equal_nan=True, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", _FAMILY_SPECS, ids=lambda s: s.key[:30])
def test_families_nonfinite_inputs_same_in_every_backend(spec, launcher):
    x = _nonfinite_input()
    params = ({"current_decay": 0.3, "voltage_decay": 0.2, "v_threshold": 0.6, "bias": 0.0}
              if spec.family.name == "cuba_lif" else
              {"tau_mem": 2.0, "v_threshold": 0.4, "beta": 0.2, "tau_adapt": 4.0})
    ref = run_neuron(spec, x, None, params, {"v_reset": 0.0}, True, "torch")
    assert any(torch.isnan(t).any() for t in ref.states)
    num = run_neuron(spec, x, None, params, {"v_reset": 0.0}, True, "numba")
    st0 = [torch.zeros_like(x[0]) for _ in spec.family.states]
    ps = tuple(torch.tensor(params[n]) for n in spec.family.params)
    emu = run_multistate(spec, x, tuple(st0), ps, (0.0,), True, launcher=launcher)
    for s, tr in ((num.spikes, tuple(num.states)), (emu[0], emu[1])):
        _same(s, ref.spikes)
        for a, b in zip(tr, ref.states):
            _same(a, b)
