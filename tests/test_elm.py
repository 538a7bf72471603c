"""ELM neuron v1/v2: hand-worked cases from the published equations, gradcheck, fast path == reference loop, errors."""

import math

import pytest
import torch

from spikelib.functional.elm import (
    ELMConfig,
    ELMParams,
    ELMState,
    elm,
    elm_step,
    neuronio_routing,
)
from spikelib.kernels import BackendUnavailableError, backend_calls, reset_backend_calls
from spikelib.neurons.elm import ELM, ELMv2

D = torch.float64

try:
    import numba  # noqa: F401

    #: The multi-step backends checked against the per-step loop: "numba" steps the memory in fused kernels.
    FAST_BACKENDS = ("fast", "numba")
except ImportError:
    FAST_BACKENDS = ("fast",)


def t(v):
    return torch.tensor(v, dtype=D)


def phi(z):
    return 1.7159 * math.tanh(2.0 * z / 3.0)


# A tiny layer: 2 inputs, MLP [branches + 1 memory] -> 2 hidden (relu) -> 1, readout 1 -> 1.
W1 = [[1.0, -1.0, 0.5], [0.5, 0.5, -1.0]]
B1 = [0.0, 0.1]
W2 = [[1.0, -2.0]]
B2 = [0.05]
WY, BY = 2.0, -1.0
X = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0]]  # T = 4, B = 1, C = 2


def mlp_by_hand(i, mem):
    h = [max(0.0, sum(w * v for w, v in zip(row, i + [mem])) + b) for row, b in zip(W1, B1)]
    return sum(w * v for w, v in zip(W2[0], h)) + B2[0]


def tiny_params(w_syn, tau_syn, tau_mem):
    return ELMParams(t(w_syn), t(tau_syn), t([tau_mem]), ((t(W1), t(B1)), (t(W2), t(B2))), t([[WY]]), t([BY]))


def test_hand_worked_v1():
    # v1, two branches of one synapse; tau_s = 2, tau_m = 4, lambda = 5, dt = 1.
    w, k_s, k_m, lam = [0.5, 0.25], math.exp(-0.5), math.exp(-0.25), 5.0
    s, m, ys, ms = [0.0, 0.0], 0.0, [], []
    for x in X:
        s = [k_s * s[c] + w[c] * x[c] for c in range(2)]
        dm = phi(mlp_by_hand(s, k_m * m))
        m = k_m * m + lam * (1 - k_m) * dm
        ys.append(WY * m + BY)
        ms.append(m)
    for backend in ("torch_loop", "fast"):
        out = elm(t(X).unsqueeze(1), tiny_params(w, [2.0, 2.0], 4.0), ELMConfig(version=1, num_branch=2),
                  return_memory=True, backend=backend)
        assert out.y.flatten().tolist() == pytest.approx(ys, abs=1e-12)
        assert out.memory.flatten().tolist() == pytest.approx(ms, abs=1e-12)
        assert out.state.trace.flatten().tolist() == pytest.approx(s, abs=1e-12)
    print("v1 hand-worked y:", [round(v, 6) for v in ys])
    # The values themselves (first step: s = [0.5, 0]; MLP pre-activations [0.5, 0.35]; z = 0.5 - 0.7 + 0.05).
    assert ys[0] == pytest.approx(2 * 5 * (1 - math.exp(-0.25)) * phi(-0.15) - 1, abs=1e-12)


def test_hand_worked_v2():
    # v2, one branch of two synapses: b = k_b b + (0.5 x0 + 0.25 x1); tau_b = 3, tau_m = 4; gain 1 - exp(-lambda/tau_m).
    w, k_b, k_m, lam = [0.5, 0.25], math.exp(-1 / 3), math.exp(-0.25), 5.0
    gain = 1 - math.exp(-lam / 4.0)
    w1 = [row[:1] + row[2:] for row in W1]  # one branch input + memory
    b, m, ys = 0.0, 0.0, []
    for x in X:
        b = k_b * b + (w[0] * x[0] + w[1] * x[1])
        h = [max(0.0, r[0] * b + r[1] * k_m * m + bb) for r, bb in zip(w1, B1)]
        m = k_m * m + gain * phi(W2[0][0] * h[0] + W2[0][1] * h[1] + B2[0])
        ys.append(WY * m + BY)
    params = ELMParams(t(w), t([3.0]), t([4.0]), ((t(w1), t(B1)), (t(W2), t(B2))), t([[WY]]), t([BY]))
    for backend in ("torch_loop", "fast"):
        out = elm(t(X).unsqueeze(1), params, ELMConfig(version=2, num_branch=1), backend=backend)
        assert out.y.flatten().tolist() == pytest.approx(ys, abs=1e-12)
        assert float(out.state.trace) == pytest.approx(b, abs=1e-12)
        assert float(out.state.memory) == pytest.approx(m, abs=1e-12)
    print("v2 hand-worked y:", [round(v, 6) for v in ys])


def test_reference_defaults_and_initialisation():
    layer = ELM(700, 20)
    assert layer.num_memory == 100 and layer.config.lambda_value == 5.0 and layer.config.dt == 1.0
    assert [tuple(lin.weight.shape) for lin in layer.mlp] == [(200, 800), (100, 200)]
    assert torch.allclose(layer.w_syn, torch.full((700,), 0.5)) and torch.all(layer.tau_syn == 5.0)
    tau = layer.tau_mem
    assert float(tau[0]) == pytest.approx(1.0, abs=1e-3) and float(tau[-1]) == pytest.approx(1000.0, rel=1e-3)
    ratios = tau[1:-1] / tau[:-2]  # log-spaced (the endpoints are clamped by 1e-6)
    assert torch.allclose(ratios, ratios.mean().expand_as(ratios), rtol=1e-3)
    assert not layer.proto_tau_mem.requires_grad and ELM(4, 2, learn_tau_mem=True).proto_tau_mem.requires_grad
    assert ELMv2(4, 2).tau_syn.shape == (4,)


def test_neuronio_routing_by_hand():
    # 6 inputs interleaved as [0, 3, 1, 4, 2, 5]; 2 branches, stride ceil(6/2) = 3, 4 synapses each (overlapping).
    index, mask = neuronio_routing(6, 2, 4)
    assert index.tolist() == [0, 3, 1, 4, 4, 2, 5, 5]
    assert mask.tolist() == [True] * 7 + [False]


def _rand_params(version, nb, spb, d_m, hidden, n_out, routing_c=None, dtype=D, grad=True):
    S = nb * spb
    g = dict(dtype=dtype, requires_grad=grad)
    sizes = [nb + d_m] + hidden + [d_m]
    mlp = tuple((torch.randn(b, a, **g), torch.randn(b, **g)) for a, b in zip(sizes[:-1], sizes[1:]))
    n_trace = S if version == 1 else nb
    index = mask = None
    if routing_c is not None:
        index = torch.randint(routing_c, (S,))
        mask = (torch.rand(S) > 0.2).to(dtype)
    return ELMParams(torch.rand(S, **g), (1.5 + 5 * torch.rand(n_trace, dtype=dtype)).requires_grad_(grad),
                     (1.2 + 30 * torch.rand(d_m, dtype=dtype)).requires_grad_(grad), mlp,
                     torch.randn(n_out, d_m, **g), torch.randn(n_out, **g), index, mask)


def _tensors(params, state):
    return [params.w_syn, params.tau_syn, params.tau_mem, params.readout_weight, params.readout_bias,
            *[x for layer in params.mlp for x in layer], state.trace, state.memory]


@pytest.mark.parametrize("version", [1, 2])
def test_gradcheck_step_and_fast_path(version):
    nb, spb, d_m = 2, 2, 3
    params = _rand_params(version, nb, spb, d_m, [4], 2)
    config = ELMConfig(version=version, num_branch=nb, activation="silu")
    n_trace = nb * spb if version == 1 else nb
    s0 = torch.randn(2, n_trace, dtype=D, requires_grad=True)
    m0 = torch.randn(2, d_m, dtype=D, requires_grad=True)
    x = torch.rand(3, 2, nb * spb, dtype=D, requires_grad=True)

    def step(x_t, s, m, *flat):
        p = ELMParams(flat[0], flat[1], flat[2], ((flat[5], flat[6]), (flat[7], flat[8])), flat[3], flat[4])
        y, st = elm_step(x_t, ELMState(s, m), p, config)
        return y, st.trace, st.memory

    flat = _tensors(params, ELMState(s0, m0))[:-2]
    assert torch.autograd.gradcheck(step, (x[0], s0, m0, *flat))

    def seq(x, s, m, *flat, backend):
        p = ELMParams(flat[0], flat[1], flat[2], ((flat[5], flat[6]), (flat[7], flat[8])), flat[3], flat[4])
        out = elm(x, p, config, ELMState(s, m), return_memory=True, backend=backend)
        return out.y, out.memory, out.state.trace

    for backend in FAST_BACKENDS + ("torch_loop",):
        reset_backend_calls()
        assert torch.autograd.gradcheck(lambda *a: seq(*a, backend=backend), (x, s0, m0, *flat))
        assert set(backend_calls("elm")) == {backend}


CONFIGS = [
    # version, nb, spb, d_m, hidden, out, activation, routing inputs, T, B
    (1, 5, 1, 7, [9], 3, "relu", None, 17, 3),
    (2, 5, 1, 7, [9], 3, "relu", None, 17, 3),
    (1, 3, 3, 5, [11, 6], 2, "silu", 7, 13, 5),
    (2, 4, 2, 1, [], 1, "relu", 9, 9, 1),
    (2, 3, 5, 6, [7], 4, "silu", 11, 31, 2),
    (1, 1, 4, 3, [5, 5, 5], 3, "relu", None, 1, 4),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fast_backend", FAST_BACKENDS)
def test_fast_equals_reference_loop(cfg, dtype, fast_backend):
    version, nb, spb, d_m, hidden, n_out, act, routing_c, T, B = cfg
    if fast_backend == "numba" and len(hidden) != 1:
        params = _rand_params(version, nb, spb, d_m, hidden, n_out, routing_c, dtype=dtype)
        x = torch.rand(T, B, routing_c if routing_c is not None else nb * spb, dtype=dtype)
        with pytest.raises(BackendUnavailableError, match="one hidden layer.*" + str(len(hidden) + 1)):
            elm(x, params, ELMConfig(version=version, num_branch=nb, activation=act), backend="numba")
        return
    params = _rand_params(version, nb, spb, d_m, hidden, n_out, routing_c, dtype=dtype)
    config = ELMConfig(version=version, num_branch=nb, activation=act, lambda_value=3.0, dt=0.7)
    C = routing_c if routing_c is not None else nb * spb
    x = torch.rand(T, B, C, dtype=dtype, requires_grad=True)
    n_trace = nb * spb if version == 1 else nb
    state = ELMState(torch.randn(B, n_trace, dtype=dtype, requires_grad=True),
                     torch.randn(B, d_m, dtype=dtype, requires_grad=True))
    leaves = [x] + _tensors(params, state)
    results = {}
    reset_backend_calls()
    for backend in ("torch_loop", fast_backend):
        out = elm(x, params, config, state, return_memory=True, backend=backend)
        loss = (out.y * torch.linspace(-1, 1, T, dtype=dtype)[:, None, None]).sum() + out.state.trace.pow(2).sum() \
            + out.state.memory.sum()
        results[backend] = (out.y, out.memory, out.state.trace, out.state.memory,
                            torch.autograd.grad(loss, leaves))
    assert backend_calls("elm") == {"torch_loop": 1, fast_backend: 1}
    assert backend_calls("elm.fast") == {"traced": 1}  # per-trace decays that require grad: no projection shortcut
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    ref, fast = results["torch_loop"], results[fast_backend]
    for a, b in zip(ref[:4], fast[:4]):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
    for ga, gb in zip(ref[4], fast[4]):
        assert torch.allclose(ga, gb, atol=tol * 10, rtol=tol * 10), float((ga - gb).abs().max())


def test_module_fast_equals_loop_and_reports_errors():
    torch.manual_seed(1)
    errs = {}
    for cls, kw in ((ELM, dict(num_branch=4, synapses_per_branch=3, routing="neuronio", learn_tau_mem=True)),
                    (ELMv2, dict(num_branch=5, synapses_per_branch=2, routing="random", mlp_num_layers=2))):
        layer = cls(11, 3, num_memory=6, **kw)
        x = (torch.rand(40, 3, 11) < 0.3).float()
        out = {}
        for backend in ("torch_loop", "auto", "fast"):
            layer.backend = backend
            layer.zero_grad()
            y = layer(x)
            y[-1].pow(2).sum().backward()
            out[backend] = (y.detach(), [p.grad.clone() for p in layer.parameters() if p.requires_grad])
        for backend in ("auto", "fast"):
            e_y = float((out[backend][0] - out["torch_loop"][0]).abs().max())
            e_g = max(float((a - b).abs().max()) for a, b in zip(out[backend][1], out["torch_loop"][1]))
            errs[cls.__name__, backend] = (e_y, e_g)
            assert e_y < 1e-5 and e_g < 1e-4
    print("float32 fast vs loop max |diff| (y, grads):", errs)


def test_stateful_module_continues():
    layer = ELM(4, 2, num_memory=3, stateful=True)
    x = torch.rand(10, 2, 4)
    y_full = layer(x)
    layer.reset_state()
    y1 = layer(x[:6])
    y2 = layer(x[6:])
    assert torch.allclose(torch.cat([y1, y2]), y_full, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="num_branch"):
        ELM(7, 2, num_branch=3, synapses_per_branch=2)
    with pytest.raises(ValueError, match="synapses_per_branch"):
        ELM(10, 2, num_branch=2, synapses_per_branch=4, routing="neuronio")
    with pytest.raises(ValueError, match="tau_syn"):
        ELM(4, 2, tau_syn=0.0)
    with pytest.raises(ValueError, match="tau_branch"):
        ELMv2(4, 2, tau_branch=-1.0)
    with pytest.raises(ValueError, match="tau_mem_min"):
        ELM(4, 2, tau_mem_min=0.0)
    with pytest.raises(ValueError, match="tau_mem_max"):
        ELM(4, 2, tau_mem_min=10.0, tau_mem_max=5.0)
    with pytest.raises(ValueError, match="routing"):
        ELM(4, 2, routing="dendritic")
    with pytest.raises(ValueError, match="version"):
        ELMConfig(version=3)
    with pytest.raises(ValueError, match="activation"):
        ELM(4, 2, mlp_activation="gelu")
    layer = ELM(7, 2, num_memory=3)
    with pytest.raises(ValueError, match="input width"):
        layer(torch.rand(5, 2, 6))
    with pytest.raises(ValueError, match="time first"):
        layer(torch.rand(5, 7))
    routed = ELM(9, 2, num_memory=3, num_branch=3, synapses_per_branch=3, routing="neuronio")
    with pytest.raises(ValueError, match="input width"):
        routed(torch.rand(5, 2, 4))
    params = _rand_params(1, 2, 2, 3, [4], 2, grad=False)
    with pytest.raises(ValueError, match="multiple of num_branch"):
        elm(torch.rand(3, 1, 4, dtype=D), params, ELMConfig(num_branch=3))
    with pytest.raises(ValueError, match="tau_mem must be > 0"):
        elm(torch.rand(3, 1, 4, dtype=D), params._replace(tau_mem=torch.zeros(3, dtype=D)), ELMConfig(num_branch=2))
    with pytest.raises(ValueError, match="tau_syn must be > 0"):
        elm(torch.rand(3, 1, 4, dtype=D), params._replace(tau_syn=-torch.ones(4, dtype=D)), ELMConfig(num_branch=2))
    with pytest.raises(ValueError, match="tau_syn"):  # v2 traces are per branch
        elm(torch.rand(3, 1, 4, dtype=D), params, ELMConfig(version=2, num_branch=2))
    with pytest.raises(ValueError, match="state.memory"):
        elm(torch.rand(3, 1, 4, dtype=D), params, ELMConfig(num_branch=2),
            ELMState(torch.zeros(1, 4, dtype=D), torch.zeros(2, 3, dtype=D)))


@pytest.mark.parametrize("version", [1, 2])
def test_fast_projection_of_spikes_is_event_driven_and_equals_loop(version):
    # SHD-like: a wide first MLP layer (>= EVENT_MIN_OUTPUTS outputs) and 0/1 inputs at 5%: the projection and its
    # weight gradient run on the "linear" operation's event path, and still equal the per-step loop.
    pytest.importorskip("numba")
    from spikelib.kernels.cpu.linear_numba import EVENT_MIN_OUTPUTS

    nb, spb = (40, 1) if version == 1 else (10, 4)
    params = _rand_params(version, nb, spb, 5, [EVENT_MIN_OUTPUTS], 3)
    params = params._replace(tau_syn=torch.full_like(params.tau_syn, 2.5).detach())
    config = ELMConfig(version=version, num_branch=nb, dt=1.3)
    T, B, C = 17, 6, nb * spb
    x = (torch.rand(T, B, C, dtype=D) < 0.05).to(D)
    leaves = [t for t in _tensors(params, ELMState(None, None)) if isinstance(t, torch.Tensor) and t.requires_grad]
    res = {}
    for backend in ("torch_loop",) + FAST_BACKENDS:
        reset_backend_calls()
        out = elm(x, params, config, return_memory=True, backend=backend)
        loss = out.y.pow(2).sum() + out.state.trace.sum() + out.state.memory.sum()
        res[backend] = [out.y, out.memory, out.state.trace, *torch.autograd.grad(loss, leaves)]
        if backend != "torch_loop":
            assert backend_calls("elm") == {backend: 1}
            assert backend_calls("elm.fast") == {"projected": 1}
            assert backend_calls("linear.numba") == {"events": 1, "grad_weight_events": 1}
    for backend in FAST_BACKENDS:
        for a, b in zip(res["torch_loop"], res[backend]):
            assert torch.allclose(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("version,nb,spb,routing_c", [(1, 4, 1, None), (1, 3, 3, 7), (2, 5, 2, None), (2, 2, 1, 5)])
def test_fast_uniform_decay_path_equals_loop(version, nb, spb, routing_c):
    # One fixed trace decay (the reference default): the fast path projects first and traces the projection.
    params = _rand_params(version, nb, spb, 4, [6], 3, routing_c)
    params = params._replace(tau_syn=torch.full_like(params.tau_syn, 2.5).detach())
    config = ELMConfig(version=version, num_branch=nb, dt=1.3)
    C = routing_c if routing_c is not None else nb * spb
    T, B = 23, 3
    n_trace = nb * spb if version == 1 else nb
    state = ELMState(torch.randn(B, n_trace, dtype=D, requires_grad=True),
                     torch.randn(B, 4, dtype=D, requires_grad=True))
    reset_backend_calls()
    for x_grad in (False, True):
        x = (torch.rand(T, B, C, dtype=D) < 0.3).to(D).requires_grad_(x_grad)
        leaves = ([x] if x_grad else []) + [t for t in _tensors(params, state) if t.requires_grad]
        res = {}
        for backend in ("torch_loop",) + FAST_BACKENDS:
            out = elm(x, params, config, state, return_memory=True, backend=backend)
            loss = (out.y.pow(2).sum() + (out.state.trace * torch.arange(n_trace, dtype=D)).sum()
                    + out.state.memory.sum())
            res[backend] = [out.y, out.memory, out.state.trace, out.state.memory, *torch.autograd.grad(loss, leaves)]
        for backend in FAST_BACKENDS:
            for a, b in zip(res["torch_loop"], res[backend]):
                assert torch.allclose(a, b, atol=1e-10, rtol=1e-10)
    assert backend_calls("elm.fast") == {"projected": 2 * len(FAST_BACKENDS)}


# --- the "numba" backend: fused memory recurrence ------------------------------------------------------------------

def _shd_like(dtype, activation="relu", B=9, T=12, d_m=6, H=10, nb=5):
    params = _rand_params(1, nb, 1, d_m, [H], 3, dtype=dtype)
    params = params._replace(tau_syn=torch.full_like(params.tau_syn, 2.5).detach())
    config = ELMConfig(version=1, num_branch=nb, activation=activation, dt=1.3)
    x = (torch.rand(T, B, nb, dtype=dtype) < 0.3).to(dtype)
    state = ELMState(torch.randn(B, nb, dtype=dtype, requires_grad=True), torch.randn(B, d_m, dtype=dtype,
                                                                                      requires_grad=True))
    return params, config, x, state


def _run(params, config, x, state, backend):
    leaves = [t for t in _tensors(params, state) if t.requires_grad]
    out = elm(x, params, config, state, return_memory=True, backend=backend)
    loss = (out.y * torch.arange(out.y.shape[0], dtype=x.dtype)[:, None, None]).sum() + out.state.memory.pow(2).sum()
    return [out.y, out.memory, out.state.trace, out.state.memory, *torch.autograd.grad(loss, leaves)]


def test_auto_picks_numba_for_one_hidden_layer_on_cpu_and_fast_otherwise():
    pytest.importorskip("numba")
    from spikelib.kernels import select_backend
    from spikelib.functional.elm import ELMRequest

    cpu = torch.device("cpu")
    assert select_backend("elm", "auto", ELMRequest(cpu, torch.float32, ELMConfig(), True, 2)).name == "numba"
    assert select_backend("elm", "auto", ELMRequest(cpu, torch.float32, ELMConfig(), True, 3)).name == "fast"
    assert select_backend("elm", "auto", ELMRequest(cpu, torch.float16, ELMConfig(), True, 2)).name == "fast"
    with pytest.raises(BackendUnavailableError, match="float32 and float64"):
        select_backend("elm", "numba", ELMRequest(cpu, torch.bfloat16, ELMConfig(), True, 2))
    layer = ELM(7, 2, num_memory=3)  # mlp_num_layers=1, the reference default
    reset_backend_calls()
    layer((torch.rand(5, 2, 7) < 0.5).float())
    assert backend_calls("elm") == {"numba": 1}


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_numba_rows_split_across_threads_equal_one_thread_bit_for_bit(activation, monkeypatch):
    # Each batch row's recurrence runs on one thread: the split cannot change a single bit.
    pytest.importorskip("numba")
    params, config, x, state = _shd_like(torch.float32, activation, B=13)
    res = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("SPIKELIB_NUM_THREADS", threads)
        res[threads] = _run(params, config, x, state, "numba")
    for threads in ("2", "3"):
        for a, b in zip(res["1"], res[threads]):
            assert torch.equal(a, b)


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_numba_float32_as_accurate_as_the_torch_fast_path(activation):
    # float32 kernels (vectorised tanh and sigmoid) against the float64 reference loop on the same values: errors no
    # larger than those of the "fast" backend's float32 torch operations (float32 sums over T B rows dominate both).
    pytest.importorskip("numba")
    params, config, x, state = _shd_like(torch.float64, activation, T=40)
    ref = _run(params, config, x, state, "torch_loop")

    def as_float32(v):
        return v.detach().float().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v

    p32 = ELMParams(*[as_float32(v) for v in params[:3]], tuple((as_float32(w), as_float32(b)) for w, b in params.mlp),
                    *[as_float32(v) for v in params[4:6]], params.routing_index, params.routing_mask)
    s32 = ELMState(as_float32(state.trace), as_float32(state.memory))
    err = {}
    for backend in ("fast", "numba"):
        got = _run(p32, config, x.float(), s32, backend)
        err[backend] = [float((a.detach() - b.detach().double()).abs().max()) / (float(a.detach().abs().max()) + 1)
                        for a, b in zip(ref, got)]
    for e_numba, e_fast in zip(err["numba"], err["fast"]):
        assert e_numba <= 4 * e_fast + 1e-6, err


def test_numba_non_finite_values_propagate_as_in_the_loop():
    pytest.importorskip("numba")
    params, config, x, state = _shd_like(torch.float64)
    w2 = params.mlp[1][0].detach().clone()
    w2[1, 3] = float("nan")
    params = params._replace(mlp=(params.mlp[0], (w2.requires_grad_(), params.mlp[1][1])))
    with torch.no_grad():
        ref = elm(x, params, config, state, backend="torch_loop", return_memory=True).memory
        got = elm(x, params, config, state, backend="numba", return_memory=True).memory
    assert torch.isnan(ref).any()
    assert torch.equal(torch.isnan(ref), torch.isnan(got))
    assert torch.allclose(ref.nan_to_num(), got.nan_to_num(), atol=1e-10, rtol=1e-10)


def test_numba_without_gradients_and_with_a_single_row():
    pytest.importorskip("numba")
    params, config, x, state = _shd_like(torch.float64, B=1, T=1)
    with torch.no_grad():
        ref = elm(x, params, config, state, backend="torch_loop", return_memory=True)
        got = elm(x, params, config, state, backend="numba", return_memory=True)
    for a, b in zip((ref.y, ref.memory, *ref.state), (got.y, got.memory, *got.state)):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-12)
