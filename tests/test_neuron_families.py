"""Neuron families (IF, CUBA-LIF, ALIF, Izhikevich), each written once as a step function: every backend (the numba
kernels and the CUDA template compiled as host C++) equals the torch reference on spikes, state traces and final
state exactly and on every gradient (input, initial state, each parameter, per layer and per neuron) to rounding,
over all options; float64 gradcheck of the true derivative; the modules, cells and the recurrent wrapper."""

import itertools
import pickle

import pytest
import torch
from torch import nn

import spikelib
from spikelib.functional.alif import alif, alif_spec
from spikelib.functional.cuba import cuba_lif, cuba_lif_spec
from spikelib.functional.dynamics import run_neuron, trace
from spikelib.functional.if_neuron import if_neuron, if_spec
from spikelib.functional.izhikevich import izhikevich, izhikevich_spec
from spikelib.kernels import backend_calls, reset_backend_calls
from spikelib.kernels.cupy.emulation import HostLauncher, find_host_compiler
from spikelib.kernels.cupy.multistate import multistate_key, run_multistate

HAVE_CXX = find_host_compiler() is not None
OPTIONS = list(itertools.product(["hard", "soft"], [False, True]))


def _params(name, shape, dtype):
    """Parameters that make every family fire at a moderate rate for inputs in [0, 1)."""
    r = lambda lo, hi: torch.rand(shape, dtype=dtype) * (hi - lo) + lo  # noqa: E731
    return {
        "if": {"v_threshold": r(1.0, 2.0)},
        "cuba_lif": {"current_decay": r(0.2, 0.7), "voltage_decay": r(0.1, 0.4), "v_threshold": r(0.8, 1.4),
                     "bias": r(-0.05, 0.05)},
        "alif": {"tau_mem": r(1.2, 2.5), "v_threshold": r(0.3, 0.5), "beta": r(0.05, 0.3), "tau_adapt": r(2.0, 8.0)},
        "izhikevich": {"tau": r(1.5, 3.0), "v_threshold": r(0.6, 1.0), "a0": r(0.5, 1.0), "v_rest": r(-0.2, 0.0),
                       "v_c": r(0.5, 0.9), "tau_w": r(1.5, 3.0), "a": r(0.0, 0.2), "b": r(0.0, 0.3)},
    }[name]


def _spec(name, reset, detach, surrogate="atan", decay_input=True):
    if name == "alif":
        return alif_spec(reset, detach, surrogate, decay_input)
    return {"if": if_spec, "cuba_lif": cuba_lif_spec, "izhikevich": izhikevich_spec}[name](reset, detach, surrogate)


SPECS = [(n, r, d, di) for n in ("if", "cuba_lif", "alif", "izhikevich") for r, d in OPTIONS
         for di in ((True, False) if n == "alif" else (True,))]


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    if not HAVE_CXX:
        pytest.skip("needs a C++ compiler (g++)")
    keys = [multistate_key(_spec(n, r, d, decay_input=di), torch.float32) for n, r, d, di in SPECS]
    keys += [multistate_key(_spec("alif", "soft", False, s), torch.float32) for s in ("sigmoid", "triangle")]
    return HostLauncher(keys, tmp_path_factory.mktemp("slk_families"), blocks=3, threads=5)


def _run(backend, spec, x, states, params, v_reset, launcher):
    scalars = {"v_reset": v_reset}
    if backend == "cupy-emulated":
        reset_backend_calls()
        fam = spec.family
        s, tr, fin = run_multistate(spec, x, tuple(states), tuple(params[n] for n in fam.params), (v_reset,), True,
                                    launcher=launcher)
        assert backend_calls()["cupy_kernels/host/multistate_forward"] == 1
        return s, tr, fin
    reset_backend_calls()
    out = run_neuron(spec, x, states, params, scalars, True, backend)
    assert backend_calls("neuron") == {backend: 1}, "the intended backend did not run"
    return out.spikes, tuple(out.states), tuple(out.state)


def _compare(backend, spec, dtype, per_neuron, launcher=None, shape=(17, 3, 11), tol=None):
    torch.manual_seed(3)
    name = spec.family.name
    T, B, N = shape[0], shape[1], shape[2:]
    x = (torch.rand(shape, dtype=dtype)).requires_grad_(True)
    states = [(torch.rand((B, *N), dtype=dtype) * 0.3).requires_grad_(True) for _ in spec.family.states]
    params = {k: v.requires_grad_(True) for k, v in _params(name, N if per_neuron else (), dtype).items()}
    weights = [torch.randn(shape, dtype=dtype) for _ in range(1 + len(states))]
    fw = [torch.randn((B, *N), dtype=dtype) for _ in states]
    results = {}
    for b in ("torch", backend):
        s, tr, fin = _run(b, spec, x, states, params, -0.05, launcher)
        loss = (s * weights[0]).sum() + sum((t * w).sum() for t, w in zip(tr, weights[1:]))
        loss = loss + sum((f * w).sum() for f, w in zip(fin, fw))
        grads = torch.autograd.grad(loss, [x, *states, *params.values()])
        results[b] = (s, tr, fin, grads)
    rs, rtr, rfin, rg = results["torch"]
    s, tr, fin, g = results[backend]
    assert torch.equal(s, rs), "spikes differ"
    rate = float(rs.detach().mean())
    assert rs.numel() < 100 or 0.02 < rate < 0.9, f"degenerate case: spike rate {rate:.3f}"
    for a, b_ in zip(tr + fin, rtr + rfin):
        assert torch.equal(a, b_), "states differ"
    tol = tol or {torch.float32: 5e-5, torch.float64: 1e-10}[dtype]
    names = ["x", *spec.family.states, *params]
    for n, a, b_ in zip(names, g, rg):
        torch.testing.assert_close(a, b_, rtol=tol, atol=tol * max(1.0, float(b_.abs().max())), msg=n)


@pytest.mark.parametrize("name,reset,detach,decay_input", SPECS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_neuron", [False, True])
def test_numba_equals_reference(name, reset, detach, decay_input, dtype, per_neuron):
    _compare("numba", _spec(name, reset, detach, decay_input=decay_input), dtype, per_neuron)


@pytest.mark.parametrize("name,reset,detach,decay_input", SPECS)
def test_cuda_template_equals_reference(launcher, name, reset, detach, decay_input):
    _compare("cupy-emulated", _spec(name, reset, detach, decay_input=decay_input), torch.float32, True, launcher)


@pytest.mark.parametrize("surrogate", ["sigmoid", "triangle"])
def test_other_surrogates(launcher, surrogate):
    spec = _spec("alif", "soft", False, surrogate)
    _compare("numba", spec, torch.float64, True)
    _compare("cupy-emulated", spec, torch.float32, True, launcher)


@pytest.mark.parametrize("backend", ["numba", "cupy-emulated"])
def test_odd_sizes(launcher, backend):
    for shape in [(1, 1, 1), (5, 2, 3, 4), (4, 3, 1100)]:
        _compare(backend, _spec("cuba_lif", "hard", False), torch.float32, True, launcher, shape=shape)


@pytest.mark.parametrize("name,reset,detach,decay_input", SPECS)
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_gradcheck_true_derivative(name, reset, detach, decay_input, backend):
    """A very narrow rectangular surrogate is zero unless H is within 5e-5 of the threshold, which no value here is
    (checked): every gradient, through every state and reset, is then the true derivative of the piecewise-smooth
    step, which finite differences give (float64)."""
    spec = _spec(name, reset, detach, spikelib.surrogate.Rectangular(1e4), decay_input)
    torch.manual_seed(5)
    x = torch.rand(9, 2, 3, dtype=torch.float64, requires_grad=True)
    st = [(torch.rand(2, 3, dtype=torch.float64) * 0.3).requires_grad_(True) for _ in spec.family.states]
    params = {k: v.requires_grad_(True) for k, v in _params(name, (3,), torch.float64).items()}
    keys = list(params)

    def fn(x_, *rest):
        out = run_neuron(spec, x_, rest[:len(st)], dict(zip(keys, rest[len(st):])), {"v_reset": -0.05}, True,
                         backend)
        return (*out.states, *out.state)

    # no charge within the surrogate's support, and spikes happen
    prog_spec = _spec(name, reset, detach, decay_input=decay_input)
    out = run_neuron(prog_spec, x.detach(), [s.detach() for s in st], {k: v.detach() for k, v in params.items()},
                     {"v_reset": -0.05}, True, "torch")
    assert 0 < out.spikes.sum() < out.spikes.numel()
    assert torch.autograd.gradcheck(fn, (x, *st, *params.values()), eps=1e-7, atol=1e-6)


def test_narrow_surrogate_sees_no_charge_near_threshold():
    """The premise of the gradcheck: with Rectangular(1e4) every surrogate gradient above is exactly 0."""
    for name, reset, detach, di in SPECS:
        spec = _spec(name, reset, detach, spikelib.surrogate.Rectangular(1e4), di)
        torch.manual_seed(5)
        x = torch.rand(9, 2, 3, dtype=torch.float64, requires_grad=True)
        st = [torch.rand(2, 3, dtype=torch.float64) * 0.3 for _ in spec.family.states]
        params = _params(name, (3,), torch.float64)
        out = run_neuron(spec, x, st, params, {"v_reset": -0.05}, False, "torch")
        (g,) = torch.autograd.grad(out.spikes.sum(), x)
        assert torch.count_nonzero(g) == 0, name


def test_traced_program_is_branch_free_and_checked():
    from spikelib.functional.dynamics import NeuronFamily, NeuronSpec

    bad = NeuronFamily("bad", ("v",), (), (), type(if_spec().options), lambda ops, x, st, p, o: (
        ops.spike(x), (x if x > 0 else st[0],)), spikelib.functional.if_neuron.IFState)
    with pytest.raises(TypeError, match="branch-free"):
        trace(NeuronSpec(bad, if_spec().options))
    prog = trace(cuba_lif_spec())
    assert [n.op for n in prog.nodes].count("spike") == 1 and prog.nodes[prog.spike].strict


# ------------------------------------------------------------------------------------------------ modules
MODULES = [
    (spikelib.IF, spikelib.IFCell, dict(v_threshold=0.8)),
    (spikelib.CubaLIF, spikelib.CubaLIFCell, dict(current_decay=0.5, voltage_decay=0.25, v_threshold=0.8)),
    (spikelib.ALIF, spikelib.ALIFCell, dict(tau_mem=2.0, v_threshold=0.4, beta=0.2, tau_adapt=5.0)),
    (spikelib.Izhikevich, spikelib.IzhikevichCell, dict(tau=2.0, v_threshold=0.8)),
    (spikelib.LIF, spikelib.LIFCell, dict(tau=2.0, v_threshold=0.4)),
]


@pytest.mark.parametrize("seq,cell,kw", MODULES)
def test_cell_steps_equal_the_sequence_module(seq, cell, kw):
    x = (torch.rand(8, 3, 5)).requires_grad_(True)
    m, c = seq(**kw), cell(**kw)
    s_seq, tr = m(x, return_states=True)
    steps = []
    for x_t in x.unbind(0):
        steps.append(c(x_t))
    s_cell = torch.stack(steps)
    assert torch.equal(s_cell, s_seq) and 0 < s_seq.sum() < s_seq.numel()
    last = c.state if isinstance(c.state, tuple) else (c.state,)
    for k, t in enumerate(tr):
        assert torch.equal(last[k], t[-1])
    (g1,) = torch.autograd.grad((s_seq * torch.arange(8.0)[:, None, None]).sum(), x)
    (g2,) = torch.autograd.grad((s_cell * torch.arange(8.0)[:, None, None]).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)
    spikelib.reset(c)
    assert c.state is None
    assert pickle.loads(pickle.dumps(m)).extra_repr() == m.extra_repr()


@pytest.mark.parametrize("seq,cell,kw", MODULES[:4])
def test_per_neuron_and_learnable_parameters(seq, cell, kw):
    name = next(iter(kw))
    per_neuron = {k: torch.full((5,), float(v)) for k, v in kw.items()}
    learned = nn.Parameter(torch.full((5,), float(kw[name])))
    for factory in (seq, cell):
        m = factory(**{**per_neuron, name: learned}, learn=("v_threshold",) if name != "v_threshold" else ())
        assert m.get_parameter(name) is learned  # registered as given: an optimiser holding it trains it
        assert isinstance(m.v_threshold, nn.Parameter)
        x = torch.rand(6, 2, 5) * 2
        out = m(x) if factory is seq else torch.stack([m(x_t) for x_t in x])
        (out * torch.randn_like(out)).sum().backward()
        assert learned.grad is not None and m.v_threshold.grad is not None
    with pytest.raises(TypeError, match="requires grad but is not an nn.Parameter"):
        seq(**{**kw, name: torch.full((5,), float(kw[name]), requires_grad=True)})
    with pytest.raises(ValueError, match="learn names unknown parameters"):
        seq(**kw, learn=("tau_nope",))


def test_cuba_decays_tau_form_and_projection():
    m = spikelib.CubaLIF(tau_syn=4.0, tau_mem=torch.tensor([2.0, 8.0]), learn=("current_decay",))
    assert float(m.current_decay.detach()) == 0.25 and torch.equal(m.voltage_decay, torch.tensor([0.5, 0.125]))
    assert float(m.tau_syn) == 4.0
    with torch.no_grad():
        m.current_decay.fill_(1.3)  # an optimiser step past 1 ...
    m(torch.rand(3, 1, 2))
    assert float(m.current_decay.detach()) == 1.0  # ... is projected back onto [0, 1] before the pass
    with pytest.raises(ValueError, match="exactly one of current_decay"):
        spikelib.CubaLIF(current_decay=0.5, tau_syn=2.0, voltage_decay=0.1)
    with pytest.raises(ValueError, match=r"current_decay must be <= 1"):
        spikelib.CubaLIF(current_decay=1.5, voltage_decay=0.1)
    with pytest.raises(ValueError, match=r"current_decay must be <= 1"):
        cuba_lif(torch.rand(2, 1, 1), current_decay=1.5, voltage_decay=0.1)


def test_stateful_continuation_and_reset():
    x = torch.rand(10, 2, 4)
    for m in (spikelib.CubaLIF(current_decay=0.5, voltage_decay=0.2, v_threshold=0.5, stateful=True),
              spikelib.ALIF(stateful=True, v_threshold=0.3)):
        whole = type(m)(**{k: getattr(m, k) for k in m.family.params}, stateful=False)(x)
        first, second = m(x[:4]), m(x[4:])
        assert torch.equal(torch.cat([first, second]), whole)
        spikelib.reset(m)
        assert m.state is None


def test_sequence_modules_return_states():
    x = torch.rand(5, 2, 3)
    s, v = spikelib.LIF()(x, return_membrane=True)
    assert s.shape == v.shape == x.shape
    s2, st = spikelib.LIF()(x, return_states=True)
    assert torch.equal(s2, s) and torch.equal(st.v, v)
    s, st = spikelib.CubaLIF(current_decay=0.5, voltage_decay=0.5)(x, return_states=True)
    assert st._fields == ("i", "v") and st.i.shape == x.shape
    s, st = spikelib.ParametricLIF()(x, return_states=True)
    assert st.v.shape == x.shape


# ------------------------------------------------------------------------------------------------ recurrent
def _recurrent_reference(x, w, step, state):
    s = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        s, state = step(x_t + s @ w.t(), state)
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_recurrent_lif_and_cuba_equal_a_plain_loop(backend):
    torch.manual_seed(2)
    x = torch.rand(9, 3, 6).requires_grad_(True)
    for neuron, step in (
        (spikelib.LIF(tau=2.0, v_threshold=0.6, backend=backend),
         lambda i, v: (lambda o: (o.spikes[0], o.state.v))(spikelib.lif(i[None], v, tau=2.0, v_threshold=0.6,
                                                                         backend="torch"))),
        (spikelib.CubaLIF(current_decay=0.4, voltage_decay=0.3, v_threshold=0.9, backend=backend),
         lambda i, st: (lambda o: (o.spikes[0], o.state))(cuba_lif(i[None], st, current_decay=0.4,
                                                                    voltage_decay=0.3, v_threshold=0.9,
                                                                    backend="torch"))),
    ):
        layer = spikelib.Recurrent(neuron, 6)
        with torch.no_grad():
            layer.recurrent.weight.mul_(2.0)
        s = layer(x)
        ref = _recurrent_reference(x, layer.recurrent.weight, step, None)
        assert torch.equal(s, ref) and 0 < s.sum() < s.numel()
        g = torch.autograd.grad(s.sum(), (x, layer.recurrent.weight))
        gr = torch.autograd.grad(ref.sum(), (x, layer.recurrent.weight))
        for a, b in zip(g, gr):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        _, st = layer(x, return_states=True)
        assert st.v.shape == x.shape
    with pytest.raises(ValueError, match=r"x must be \[T, B, 6\]"):
        layer(torch.rand(9, 3, 5))
    with pytest.raises(TypeError, match="sequence neuron module"):
        spikelib.Recurrent(nn.ReLU(), 6)


@pytest.mark.parametrize("version", [1, 2])
def test_elm_cell_steps_equal_the_sequence_module(version):
    torch.manual_seed(0)
    m = spikelib.ELM(5, 3, num_memory=8, version=version, backend="torch_loop")
    c = spikelib.ELMCell(5, 3, num_memory=8, version=version, backend="torch_loop")
    c.load_state_dict(m.state_dict())
    x = torch.rand(6, 2, 5, requires_grad=True)
    y, mem = m(x, return_memory=True)
    steps = [c(x_t, return_memory=True) for x_t in x.unbind(0)]
    assert torch.equal(torch.stack([s[0] for s in steps]), y) and torch.equal(torch.stack([s[1] for s in steps]), mem)
    (g1,) = torch.autograd.grad(y.sum(), x)
    (g2,) = torch.autograd.grad(torch.stack([s[0] for s in steps]).sum(), x)
    torch.testing.assert_close(g1, g2)
    spikelib.reset(c)
    assert c.state is None
    with pytest.raises(TypeError, match="stateful by construction"):
        spikelib.ELMCell(5, 3, stateful=False)
