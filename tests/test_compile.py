"""torch.compile: spikelib's fast CPU kernels are PyTorch custom operators (``spikelib::lif_numba_forward`` /
``_backward``, ``spikelib::neuron_numba_forward`` / ``_backward``) with their autograd and fake-tensor functions, so
Dynamo keeps them opaque and compiles the rest of the model, also with ``fullgraph=True``; a compiled model equals the
eager one (outputs, gradients, kept state, learnable leak/decay projections). ``torch.library.opcheck`` checks the
operators' registrations."""

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import spikelib
from spikelib.kernels import (BackendUnavailableError, backend_calls, register_backend, reset_backend_calls,
                              select_backend)
from spikelib.kernels.cpu.lif_numba import lif_numba_forward
from spikelib.kernels.cpu.neuron_numba import neuron_numba_forward
from spikelib.kernels.opaque import lif_config_from_key, lif_config_key, spec_from_key, spec_key


def _net(neuron_a, neuron_b):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), neuron_a, nn.Linear(16, 4), neuron_b)
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    return net


NETS = {
    "lif": lambda: _net(spikelib.LIF(), spikelib.LIF(tau=torch.full((4,), 3.0), learn_threshold=True)),
    "iir": lambda: _net(spikelib.neurons.iir_lif(v_threshold=0.5, shape=(16,)),
                        spikelib.LIF(leak=0.9, fire="ratio", reset="soft", surrogate="piecewise_linear")),
    "families": lambda: _net(spikelib.CubaLIF(current_decay=0.3, voltage_decay=0.2, learn=("current_decay",)),
                             spikelib.ALIF(tau_mem=2.0, v_threshold=0.5)),
}


class _Recorder:
    """A torch.compile backend that records the operators of the Dynamo graph and runs it with AOTAutograd."""

    def __init__(self):
        self.targets = []

    def __call__(self, gm, example_inputs):
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        self.targets += [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
        boxed = lambda g, _: make_boxed_func(g.forward)  # noqa: E731
        return aot_autograd(fw_compiler=boxed, bw_compiler=boxed)(gm, example_inputs)


def _grads(net, out):
    net.zero_grad()
    (out * torch.arange(out.numel()).view(out.shape).float().sin()).sum().backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("fullgraph", [True, False])
def test_compiled_equals_eager_and_kernels_stay_opaque(name, fullgraph):
    net = NETS[name]()
    x = torch.rand(6, 3, 8) * 3
    eager = net(x)
    ge = _grads(net, eager)
    rec = _Recorder()
    compiled = torch.compile(net, backend=rec, fullgraph=fullgraph)
    reset_backend_calls()
    out = compiled(x)
    out2 = compiled(x)  # no recompilation (fullgraph would fail on it)
    assert backend_calls() == {}  # not counted under compile: the graph below shows what runs
    assert torch.equal(out2, out)
    gc = _grads(net, out)
    assert torch.equal(out, eager) and 0 < eager.sum() < eager.numel()
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b)
    ops = [t for t in rec.targets if t.startswith("spikelib.")]
    assert ops and all(t in ("spikelib.lif_numba_forward.default", "spikelib.neuron_numba_forward.default")
                       for t in ops), rec.targets
    assert not any("numba" in t and not t.startswith("spikelib.") for t in rec.targets)


def test_projections_and_kept_state_under_compile():
    m = spikelib.CubaLIF(current_decay=0.3, voltage_decay=0.2, learn=("current_decay",), stateful=True)
    compiled = torch.compile(m, backend=_Recorder(), fullgraph=True)
    x = torch.rand(4, 2, 5)
    with torch.no_grad():
        m.current_decay.fill_(1.4)  # an optimiser step past 1 ...
    out = compiled(x)
    assert float(m.current_decay.detach()) == 1.0  # ... projected inside the compiled graph
    ref = spikelib.CubaLIF(current_decay=1.0, voltage_decay=0.2)(x)
    assert torch.equal(out, ref)
    assert m.state is not None and torch.equal(m.state.v, spikelib.CubaLIF(current_decay=1.0, voltage_decay=0.2)(
        x, return_states=True)[1].v[-1])


def test_value_checks_become_graph_assertions():
    compiled = torch.compile(lambda x, tau: spikelib.lif(x, tau=tau).spikes, backend=_Recorder(), fullgraph=True)
    x = torch.rand(3, 2, 4)
    assert torch.equal(compiled(x, torch.full((4,), 2.0)), spikelib.lif(x, tau=torch.full((4,), 2.0)).spikes)
    with pytest.raises(RuntimeError, match=r"tau must be >= 1"):
        compiled(x, torch.full((4,), 0.5))


def test_opcheck_of_the_custom_operators():
    from spikelib.functional.cuba import cuba_lif_spec
    from spikelib.functional.lif import resolve_lif_config

    config = resolve_lif_config("soft", None, False, 0.0, "sigmoid", "leak", "ratio")
    assert lif_config_from_key(lif_config_key(config), 0.0, config.surrogate.alpha) == config
    T, M = 5, 6
    x = torch.rand(T, M, dtype=torch.float64, requires_grad=True)
    args = (x, torch.zeros(M, dtype=torch.float64, requires_grad=True),
            torch.full((M,), 0.9, dtype=torch.float64, requires_grad=True),
            torch.full((M,), 0.5, dtype=torch.float64, requires_grad=True), lif_config_key(config), 0.0,
            config.surrogate.alpha, True, True)
    torch.library.opcheck(lif_numba_forward, args, test_utils=("test_schema", "test_faketensor",
                                                             "test_autograd_registration"))
    spec = cuba_lif_spec("hard", True, "triangle")
    assert spec_from_key(spec_key(spec), spec.surrogate.alpha) == spec
    p = torch.rand(4, M, dtype=torch.float64, requires_grad=True)
    args = (x, torch.zeros(2, M, dtype=torch.float64, requires_grad=True), p, spec_key(spec), spec.surrogate.alpha,
            [0.0], True)
    torch.library.opcheck(neuron_numba_forward, args, test_utils=("test_schema", "test_faketensor",
                                                                "test_autograd_registration"))


@pytest.mark.slow
def test_inductor_compiled_model_equals_eager():
    """The default compiler (inductor) on Linear + LIF and Linear + CUBA-LIF, fullgraph."""
    for name in ("lif", "families"):
        net = NETS[name]()
        x = torch.rand(6, 3, 8) * 3
        eager = net(x)
        ge = _grads(net, eager)
        out = torch.compile(net, fullgraph=True)(x)
        assert torch.equal(out, eager)
        for a, b in zip(_grads(net, out), ge):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ registry and model zoo
@dataclass(frozen=True)
class _Request:
    size: int


def test_backends_torch_compile_cannot_trace_are_skipped_or_refused_while_compiling(monkeypatch):
    """``"auto"`` skips a backend not registered ``compile_safe`` while compiling and takes the next one; asked for
    by name it is refused with the reason; outside compilation nothing changes."""
    register_backend("probe_compile_op", "kernel", check=lambda request: None, priority=10,
                     pure_check=True)(lambda: "kernel")
    register_backend("probe_compile_op", "plain", check=lambda request: None, priority=0, pure_check=True,
                     compile_safe=True)(lambda: "plain")
    assert select_backend("probe_compile_op", "auto", _Request(1)).name == "kernel"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert select_backend("probe_compile_op", "auto", _Request(1)).name == "plain"
    assert select_backend("probe_compile_op", "plain", _Request(1)).name == "plain"
    with pytest.raises(BackendUnavailableError, match="torch.compile cannot trace it"):
        select_backend("probe_compile_op", "kernel", _Request(1))
    monkeypatch.undo()
    assert select_backend("probe_compile_op", "auto", _Request(1)).name == "kernel"


def test_every_operation_has_a_backend_that_compiles():
    """Each operation keeps a ``compile_safe`` backend that accepts any request (its torch reference)."""
    from spikelib.kernels.registry import _REGISTRY

    for op, entries in _REGISTRY.entries.items():
        if op.startswith("probe_"):
            continue
        assert any(e.compile_safe for e in entries.values()), op
    unsafe = sorted(f"{e.op}/{e.name}" for entries in _REGISTRY.entries.values() for e in entries.values()
                    if not e.compile_safe and not e.op.startswith("probe_"))
    assert "conv2d/depthwise_numba" in unsafe and "lif/numba" not in unsafe


#: Image models (input shape) and recurrent models (the graph regression's fixtures); ``True``: one graph. SNN-delays
#: reads its Gaussian's width and ELM its state as numbers, which breaks the graph there (Dynamo runs those lines
#: eagerly).
ZOO = {"meta_spikeformer_tiny_test": ((2, 3, 32, 32), True), "maxformer_tiny_test": ((2, 3, 32, 32), True),
       "sdt_tiny_test": ((2, 3, 32, 32), True), "resnet_tiny_snn": ((2, 1, 8, 8), True),
       "snn_delays": (None, False), "elm_classifier": (None, False)}


def _grads_or_none(net, out):
    """:func:`_grads` where a parameter the output does not depend on has no gradient (None)."""
    net.zero_grad()
    (out * torch.arange(out.numel()).view(out.shape).float().sin()).sum().backward()
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()]


def _zoo_case(name):
    from spikelib.models import get_model

    from test_zoo_models import active

    shape, _ = ZOO[name]
    if shape is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures" / "regression"))
        from generate import build  # noqa: E402

        return build(name)
    torch.manual_seed(0)
    return active(get_model(name)), torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_compile_and_equal_eager(name):
    """Models of the zoo under ``torch.compile`` (AOTAutograd, no code generation; ``fullgraph=True`` where one graph
    is expected), in training mode (batch statistics, kept running statistics; dropout off, since a compiled graph
    draws other random numbers): outputs equal to eager and gradients to float32 rounding, twice. Meta-SpikeFormer's
    7x7 depth-wise convolutions take the numba weight-gradient backend in eager mode, whose backward Dynamo cannot
    trace; compiling, the registry gives them oneDNN's, so the graph does not break."""
    model, x = _zoo_case(name)
    model.train()
    for m in model.modules():
        if "Dropout" in type(m).__name__:
            m.p = 0.0
    eager = copy.deepcopy(model)
    if name == "elm_classifier":
        # Eager "auto" takes the numba memory scan, which Dynamo cannot trace; compiling, the registry gives the
        # layer the torch "fast" backend, so the eager copy runs that one too (numba's sums round differently).
        from spikelib.neurons.elm import ELM

        for m in eager.modules():
            if isinstance(m, ELM):
                m.backend = "fast"
    compiled = torch.compile(model, backend="aot_eager", fullgraph=ZOO[name][1])
    reset_backend_calls()
    for _ in range(2):
        out_e, out_c = eager(x), compiled(x)
        assert out_e.abs().max() > 0 and torch.equal(out_c, out_e)
        g_e, g_c = _grads_or_none(eager, out_e), _grads_or_none(model, out_c)
        assert [g is None for g in g_c] == [g is None for g in g_e]
        scale = max(g.abs().max() for g in g_e if g is not None)
        for a, b in zip(g_c, g_e):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * float(scale))
    for (k, a), b in zip(eager.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=k)
    if name == "meta_spikeformer_tiny_test":
        assert backend_calls("conv2d").get("depthwise_numba", 0) > 0  # the eager model took it (compiled: not)
    if name == "elm_classifier":
        assert set(backend_calls("elm")) == {"fast"}  # compiled "auto" skipped "numba"


# ------------------------------------------------------------------------------------------------ CUDA template
def test_cuda_template_operators_under_compile(tmp_path):
    """The CuPy kernels' operators (``spikelib::cupy_multistep_*``, ``spikelib::cupy_multistate_*``), run here by the
    host emulation of the same .cu source (a launcher found by name): compiled == eager, opaque in the graph."""
    from spikelib.functional.cuba import cuba_lif_spec
    from spikelib.functional.lif import resolve_lif_config
    from spikelib.kernels.cupy.backend import multistep, variant_key
    from spikelib.kernels.cupy.emulation import HostLauncher, find_host_compiler
    from spikelib.kernels.cupy.multistate import multistate_key, run_multistate
    from spikelib.kernels.cupy.neurons import lif_model

    if find_host_compiler() is None:
        pytest.skip("needs a C++ compiler (g++)")
    config = resolve_lif_config("soft", None, False, 0.0, "atan", "leak", "ratio")
    spec = cuba_lif_spec("hard", False)
    host = HostLauncher([variant_key(lif_model("leak", False), config, torch.float32),
                         multistate_key(spec, torch.float32)], tmp_path)

    def model(x, leak, vth, du):
        s, v, _ = multistep(x, torch.zeros_like(x[0]), leak, vth, config, True, launcher=host)
        s2, tr, _ = run_multistate(spec, s + v, (torch.zeros_like(x[0]), torch.zeros_like(x[0])),
                                   (du, torch.tensor(0.25), torch.tensor(0.6), torch.tensor(0.0)), (0.0,), True,
                                   launcher=host)
        return s2, tr[1]

    torch.manual_seed(0)
    x = torch.rand(7, 3, 5) * 1.5
    args = [torch.full((5,), 0.9, requires_grad=True), torch.tensor(0.7, requires_grad=True),
            torch.full((5,), 0.4, requires_grad=True)]
    rec = _Recorder()
    compiled = torch.compile(model, backend=rec, fullgraph=True)
    outs = {}
    for name, fn in (("eager", model), ("compiled", compiled)):
        xg = x.clone().requires_grad_(True)
        s, v = fn(xg, *args)
        loss = (s * torch.arange(7.0)[:, None, None]).sum() + (v ** 2).sum()
        outs[name] = (s.detach(), v.detach(), torch.autograd.grad(loss, [xg, *args]))
    (s_e, v_e, g_e), (s_c, v_c, g_c) = outs["eager"], outs["compiled"]
    assert torch.equal(s_c, s_e) and torch.equal(v_c, v_e) and 0 < s_e.sum() < s_e.numel()
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ops = {t for t in rec.targets if t.startswith("spikelib.")}
    assert ops == {"spikelib.cupy_multistep_forward.default", "spikelib.cupy_multistate_forward.default"}
