"""The neuron families against the peers that have the same neuron, with every documented difference named.

* spikingjelly 2.0 ``IFNode`` (``H = V + X``) and ``IzhikevichNode`` run the same equations in the same order:
  spikes and membranes equal bitwise, input gradients to rounding.
* spikingjelly ``cuba_lif_step`` (``CUBALIFNode``): ``c_decay = 1 - du`` and ``v_decay = 1 - dv`` (exact for the decays
  used here): equal bitwise. Difference: it spikes on ``V == v_threshold`` (spikelib's CUBA-LIF, like Loihi, does not).
* norse 1.1 ``LIF`` is current-based: ``i += x``, ``v += dt/tau_mem ((v_leak - v) + i)``, ``i -= dt/tau_syn i``. With
  ``dt = 1`` this is spikelib's CUBA-LIF with ``du = 1/tau_syn``, ``dv = 1/tau_mem``, input ``dv x`` and ``bias = dv
  v_leak`` (norse scales the current into the membrane by ``dv``; spikelib, like Loihi, adds it unscaled): equal to
  rounding. norse's SuperSpike is spikelib's ``fast_sigmoid(1)`` (norse 1.1 ignores alpha).
* norse ``LSNN`` (adaptive threshold ``b``, decaying to ``v_th``, ``+ beta`` per spike) is spikelib's ALIF with
  ``b = v_threshold + beta a``, on a current-based membrane whose input arrives one step later (norse adds the input
  to ``i`` after the membrane update): with ``tau_syn_inv = 1`` it equals spikelib's ALIF (``decay_input=True``) on
  the input delayed by one step, to rounding.
* snnTorch 1.0 ``Synaptic`` (``syn = alpha syn + x``, ``mem = beta mem + syn``) is the CUBA-LIF's subthreshold
  dynamics bitwise (``alpha = 1 - du``, ``beta = 1 - dv``); its resets differ (``"zero"`` also clears ``syn`` and,
  by default, acts one step late), so it is compared below threshold.
* snnTorch ``RLeaky`` (``all_to_all``, ``reset_mechanism="zero"``, ``reset_delay=False``) is ``Recurrent(LIF(tau =
  1/(1 - beta), decay_input=False, hard reset))`` with the same feedback ``nn.Linear``: equal to rounding (it adds
  input and feedback in another order).
* Lava's own float CUBA LIF model (lava/proc/lif/models.py ``AbstractPyLifModelFloat``/``PyLifModelFloat``, its
  methods run on plain arrays) equals the CUBA-LIF bitwise in float64.
"""

import numpy as np
import pytest
import torch

import spikelib
from spikelib.functional.alif import alif
from spikelib.functional.cuba import cuba_lif
from spikelib.functional.if_neuron import if_neuron
from spikelib.functional.izhikevich import izhikevich
from spikelib.surrogate import FastSigmoid

pytestmark = pytest.mark.peers

T, B, N = 40, 3, 7
BACKENDS = ["torch", "numba"]


def _sj():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    from spikingjelly.activation_based import functional, surrogate

    return neuron, functional, surrogate


def _close(a, b, dtype, scale=1.0):
    rtol = 2e-5 if dtype == torch.float32 else 1e-11
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale * max(1.0, float(b.detach().abs().max())))


def _fires(s):
    rate = float(s.detach().float().mean())
    assert 0.05 < rate < 0.8, f"degenerate spike rate {rate:.3f}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spikingjelly_if_node(backend, reset, dtype):
    neuron, _, surrogate = _sj()
    x = torch.rand(T, B, N, dtype=dtype) * 0.8
    vr = -0.1 if reset == "hard" else 0.0
    node = neuron.IFNode(v_threshold=1.0, v_reset=vr if reset == "hard" else None, surrogate_function=surrogate.ATan(),
                         step_mode="m", store_v_seq=True)
    xs = x.clone().requires_grad_(True)
    s_sj = node(xs)
    (g_sj,) = torch.autograd.grad((s_sj * torch.arange(T, dtype=dtype)[:, None, None]).sum(), xs)
    xo = x.clone().requires_grad_(True)
    out = if_neuron(xo, v_threshold=1.0, v_reset=vr, reset=reset, return_states=True, backend=backend)
    (g,) = torch.autograd.grad((out.spikes * torch.arange(T, dtype=dtype)[:, None, None]).sum(), xo)
    _fires(out.spikes)
    assert torch.equal(out.spikes, s_sj) and torch.equal(out.states.v, node.v_seq)
    _close(g, g_sj, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset,detach", [("hard", False), ("hard", True), ("soft", False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spikingjelly_cuba_lif(backend, reset, detach, dtype):
    _, functional, surrogate = _sj()
    x = torch.rand(T, B, N, dtype=dtype) * 0.3
    du, dv, th = 0.25, 0.5, 1.0  # 1 - du, 1 - dv exact
    xs = x.clone().requires_grad_(True)
    c = torch.zeros(B, N, dtype=dtype)
    v = torch.zeros(B, N, dtype=dtype)
    spikes, vs, cs = [], [], []
    for x_t in xs.unbind(0):
        s, c, v = functional.cuba_lif_step(x_t, c, v, 1 - du, 1 - dv, th, 0.0 if reset == "hard" else None,
                                           surrogate.ATan(), detach)
        spikes.append(s), vs.append(v), cs.append(c)
    s_sj, v_sj, c_sj = torch.stack(spikes), torch.stack(vs), torch.stack(cs)
    (g_sj,) = torch.autograd.grad((s_sj * torch.arange(T, dtype=dtype)[:, None, None]).sum() + v_sj.sum(), xs)
    xo = x.clone().requires_grad_(True)
    out = cuba_lif(xo, current_decay=du, voltage_decay=dv, v_threshold=th, reset=reset, detach_reset=detach,
                   return_states=True, backend=backend)
    (g,) = torch.autograd.grad((out.spikes * torch.arange(T, dtype=dtype)[:, None, None]).sum()
                               + out.states.v.sum(), xo)
    _fires(out.spikes)
    assert torch.equal(out.spikes, s_sj) and torch.equal(out.states.v, v_sj) and torch.equal(out.states.i, c_sj)
    _close(g, g_sj, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset,detach", [("hard", False), ("soft", True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spikingjelly_izhikevich(backend, reset, detach, dtype):
    neuron, _, surrogate = _sj()
    p = dict(tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_rest=-0.1, tau_w=3.0, a=0.2, b=0.3)
    vr = -0.1 if reset == "hard" else None
    node = neuron.IzhikevichNode(**p, v_reset=vr, w_rest=0.0, surrogate_function=surrogate.ATan(),
                                 detach_reset=detach, step_mode="m", store_v_seq=True)
    x = torch.rand(T, B, N, dtype=dtype) * 1.2
    xs = x.clone().requires_grad_(True)
    s_sj = node(xs)
    (g_sj,) = torch.autograd.grad((s_sj * torch.arange(T, dtype=dtype)[:, None, None]).sum(), xs)
    xo = x.clone().requires_grad_(True)
    state0 = spikelib.functional.izhikevich.IzhikevichState(torch.full((B, N), 0.0 if vr is None else vr, dtype=dtype),
                                                            torch.zeros(B, N, dtype=dtype))
    out = izhikevich(xo, state0, v_reset=0.0 if vr is None else vr, reset=reset, detach_reset=detach,
                     return_states=True, backend=backend, **p)
    (g,) = torch.autograd.grad((out.spikes * torch.arange(T, dtype=dtype)[:, None, None]).sum(), xo)
    _fires(out.spikes)
    assert torch.equal(out.spikes, s_sj.to(dtype)) and torch.equal(out.states.v, node.v_seq.to(dtype))
    _close(g, g_sj.to(dtype), dtype)


def _norse():
    return pytest.importorskip("norse.torch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_norse_lif_is_a_cuba_lif(backend):
    norse = _norse()
    dtype = torch.float64
    tau_syn, tau_mem, th, vl, vr = 4.0, 2.0, 0.9, 0.05, -0.1
    du, dv = 1 / tau_syn, 1 / tau_mem

    def c(v):
        return torch.tensor(v, dtype=dtype)

    p = norse.LIFParameters(tau_syn_inv=c(du), tau_mem_inv=c(dv), v_leak=c(vl), v_th=c(th), v_reset=c(vr),
                            method="super", alpha=c(100.0))
    x = torch.rand(T, B, N, dtype=dtype) * 0.5
    xn = x.clone().requires_grad_(True)
    state0 = norse.LIFFeedForwardState(v=torch.full((B, N), vr, dtype=dtype), i=torch.zeros(B, N, dtype=dtype))
    z, states = norse.LIF(p, dt=1.0, record_states=True)(xn, state0)
    (g_n,) = torch.autograd.grad((z * torch.arange(T, dtype=dtype)[:, None, None]).sum() + states.v.sum(), xn)
    xo = x.clone().requires_grad_(True)
    out = cuba_lif(xo * dv, (torch.zeros(B, N, dtype=dtype), torch.full((B, N), vr, dtype=dtype)),
                   current_decay=du, voltage_decay=dv, v_threshold=th, bias=dv * vl, v_reset=vr,
                   surrogate=FastSigmoid(1.0), return_states=True, backend=backend)
    (g,) = torch.autograd.grad((out.spikes * torch.arange(T, dtype=dtype)[:, None, None]).sum()
                               + out.states.v.sum(), xo)
    _fires(out.spikes)
    assert torch.equal(out.spikes, z)
    _close(out.states.v, states.v, dtype)
    # norse records the current after its decay (i (1 - du)); spikelib's is the current the membrane received
    _close(out.states.i * (1 - du), states.i * dv, dtype)
    _close(g, g_n, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_norse_lsnn_is_an_alif_on_the_delayed_input(backend):
    norse = _norse()
    from norse.torch.functional.lsnn import LSNNParameters, lsnn_feed_forward_step
    from norse.torch.module.lsnn import LSNNFeedForwardState

    dtype = torch.float64
    tau_mem, tau_adapt, beta, th, vr = 2.0, 8.0, 0.3, 0.4, 0.0

    def c(v):
        return torch.tensor(v, dtype=dtype)

    p = LSNNParameters(tau_syn_inv=c(1.0), tau_mem_inv=c(1 / tau_mem), tau_adapt_inv=c(1 / tau_adapt), v_leak=c(vr),
                       v_th=c(th), v_reset=c(vr), beta=c(beta), method="super", alpha=c(100.0))
    x = torch.rand(T, B, N, dtype=dtype)
    st = LSNNFeedForwardState(v=torch.full((B, N), vr, dtype=dtype), i=torch.zeros(B, N, dtype=dtype),
                              b=torch.full((B, N), th, dtype=dtype))
    zs, vs, bs = [], [], []
    for x_t in x.unbind(0):
        z, st = lsnn_feed_forward_step(x_t, st, p, dt=1.0)
        zs.append(z), vs.append(st.v), bs.append(st.b)
    z, v_n, b_n = torch.stack(zs), torch.stack(vs), torch.stack(bs)
    delayed = torch.cat([torch.zeros_like(x[:1]), x[:-1]])
    out = alif(delayed, tau_mem=tau_mem, tau_adapt=tau_adapt, beta=beta, v_threshold=th, v_reset=vr,
               surrogate=FastSigmoid(1.0), return_states=True, backend=backend)
    _fires(out.spikes)
    assert torch.equal(out.spikes, z)
    _close(out.states.v, v_n, dtype)
    _close(th + beta * out.states.a, b_n, dtype)


def _snntorch():
    snntorch = pytest.importorskip("snntorch")
    import snntorch.surrogate  # noqa: F401

    return snntorch


@pytest.mark.parametrize("backend", BACKENDS)
def test_snntorch_synaptic_subthreshold(backend):
    snntorch = _snntorch()
    alpha, beta = 0.75, 0.5
    syn_layer = snntorch.Synaptic(alpha=alpha, beta=beta, threshold=1e9, reset_mechanism="none")
    x = torch.rand(T, B, N)
    syns, mems = [], []
    for x_t in x.unbind(0):
        _, syn, mem = syn_layer(x_t)
        syns.append(syn), mems.append(mem)
    out = cuba_lif(x, current_decay=1 - alpha, voltage_decay=1 - beta, v_threshold=1e9, return_states=True,
                   backend=backend)
    assert out.spikes.sum() == 0
    assert torch.equal(out.states.i, torch.stack(syns)) and torch.equal(out.states.v, torch.stack(mems))


@pytest.mark.parametrize("backend", BACKENDS)
def test_snntorch_rleaky_is_recurrent_lif(backend):
    snntorch = _snntorch()
    dtype = torch.float32  # snnTorch's spikes are float32, so is its feedback layer
    beta, th = 0.5, 0.6
    rl = snntorch.RLeaky(beta=torch.tensor(beta, dtype=dtype), threshold=torch.tensor(th, dtype=dtype),
                         linear_features=N, all_to_all=True, reset_mechanism="zero", reset_delay=False,
                         spike_grad=snntorch.surrogate.fast_sigmoid(slope=25)).to(dtype)
    ours = spikelib.Recurrent(spikelib.LIF(tau=1 / (1 - beta), v_threshold=th, decay_input=False, reset="hard",
                                           surrogate=FastSigmoid(25.0), backend=backend), N, bias=True).to(dtype)
    with torch.no_grad():
        rl.recurrent.weight.mul_(3.0)
        ours.recurrent.weight.copy_(rl.recurrent.weight)
        ours.recurrent.bias.copy_(rl.recurrent.bias)
    x = torch.rand(T, B, N, dtype=dtype) * 0.8
    xs = x.clone().requires_grad_(True)
    spk, mem = rl.init_rleaky()
    spikes, mems = [], []
    for x_t in xs.unbind(0):
        spk, mem = rl(x_t, spk, mem)
        spikes.append(spk), mems.append(mem)
    s_r, m_r = torch.stack(spikes).to(dtype), torch.stack(mems)
    (g_r,) = torch.autograd.grad((s_r * torch.arange(T, dtype=dtype)[:, None, None]).sum(), xs)
    xo = x.clone().requires_grad_(True)
    s, st = ours(xo, return_states=True)
    (g,) = torch.autograd.grad((s * torch.arange(T, dtype=dtype)[:, None, None]).sum(), xo)
    _fires(s)
    assert torch.equal(s, s_r)
    _close(st.v, m_r, dtype)
    _close(g, g_r, dtype)


@pytest.mark.lava
def test_lava_float_cuba_lif_model_bitwise():
    models = pytest.importorskip("lava.proc.lif.models")

    class Arrays:  # the attributes Lava's float model methods read and write
        pass

    rng = np.random.default_rng(0)
    n = 50
    m = Arrays()
    m.u, m.v = np.zeros(n), np.zeros(n)
    m.du, m.dv = 0.3, 0.15
    m.bias_mant = rng.uniform(-0.05, 0.05, n)
    m.vth = 1.0
    a_in = rng.uniform(0, 0.4, (T, n))
    s_l, u_l, v_l = [], [], []
    for t in range(T):
        models.AbstractPyLifModelFloat.subthr_dynamics(m, activation_in=a_in[t])
        s = models.PyLifModelFloat.spiking_activation(m)
        models.AbstractPyLifModelFloat.reset_voltage(m, spike_vector=s)
        s_l.append(s.copy()), u_l.append(m.u.copy()), v_l.append(m.v.copy())
    for backend in BACKENDS:
        out = cuba_lif(torch.from_numpy(a_in)[:, None], current_decay=m.du, voltage_decay=m.dv, v_threshold=m.vth,
                       bias=torch.from_numpy(m.bias_mant), return_states=True, backend=backend)
        _fires(out.spikes)
        assert np.array_equal(out.spikes[:, 0].numpy(), np.array(s_l, dtype=np.float64))
        assert np.array_equal(out.states.i[:, 0].numpy(), np.array(u_l))
        assert np.array_equal(out.states.v[:, 0].numpy(), np.array(v_l))
