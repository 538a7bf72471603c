"""Delayed synapses: equivalence with DCLS ``Dcls1d`` (gauss), gradcheck, the integer path against the dense rounded
convolution on every backend, explicit modes, the training helpers, and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from spikelib.functional.delay import delayed_linear_gaussian, delayed_linear_int, gaussian_delay_kernel
from spikelib.kernels import BackendUnavailableError, available_backends, backend_calls, reset_backend_calls
from spikelib.layers import DelayedLinear
from spikelib.layers.delay_schedule import (
    SigmaSchedule,
    clamp_delays_,
    rounded_delays,
    split_delay_parameters,
)

TOL = {torch.float32: dict(rtol=1e-5, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _close(a, b):
    """Equal to rounding: sums of many float32 terms in another order differ by ~1e-6 of their largest term."""
    rel = 1e-5 if a.dtype == torch.float32 else 1e-12
    torch.testing.assert_close(a, b, rtol=rel, atol=rel * float(b.detach().abs().max()))


def _dcls_pair(c_in, c_out, max_delay, sigma, dtype):
    """Our layer and a Dcls1d in the matching configuration (same weights; P = K//2 - D; SIG = sigma - 0.27)."""
    modules = pytest.importorskip("DCLS.construct.modules")
    K = max_delay + 1
    ours = DelayedLinear(c_in, c_out, max_delay).to(dtype)
    ours.set_sigma(sigma)
    ref = modules.Dcls1d(c_in, c_out, kernel_count=1, dilated_kernel_size=K, bias=False, version="gauss").to(dtype)
    with torch.no_grad():
        ref.weight.copy_(ours.weight[:, :, None])
        ref.P.copy_((K // 2 - ours.delay)[None, :, :, None])
        ref.SIG.fill_(sigma - 0.27)
    return ours, ref


def _auto_kernel_backend() -> str:
    from spikelib.functional.delay import GaussianRequest
    from spikelib.kernels import select_backend

    return select_backend("delay_gaussian_kernel", "auto", GaussianRequest(torch.device("cpu"), torch.float32),
                          count=False).name


def _dcls_forward(ref, x, max_delay):
    """SNN-delays' use of Dcls1d: [T, B, C] -> [B, C, T], left padding K - 1, convolution, back to [T, B, C]."""
    return ref(F.pad(x.permute(1, 2, 0), (max_delay, 0))).permute(2, 0, 1)


@pytest.mark.parametrize("backend", available_backends("delay_shifted_matmul"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_delay,sigma", [(24, 12.27), (24, 0.5), (12, 3.0), (6, 0.27)])
def test_matches_dcls_outputs_and_gradients(backend, dtype, max_delay, sigma):
    T, B, c_in, c_out = 37, 3, 9, 7
    ours, ref = _dcls_pair(c_in, c_out, max_delay, sigma, dtype)
    ours.backend = backend
    x = ((torch.rand(T, B, c_in, dtype=dtype) < 0.1) * 1.5).to(dtype).requires_grad_(True)  # sparse spikes
    x_ref = x.detach().clone().requires_grad_(True)
    reset_backend_calls()
    y, y_ref = ours(x), _dcls_forward(ref, x_ref, max_delay)
    assert backend_calls("delay_shifted_matmul") == {backend: 1}
    kernel_calls = backend_calls("delay_gaussian_kernel")  # a name it lacks ("spectral") leaves it on "auto"
    assert kernel_calls == ({backend: 1} if backend in available_backends("delay_gaussian_kernel") else
                            {_auto_kernel_backend(): 1})
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    errors = {
        "output": (y - y_ref).abs().max().item(),
        "grad_x": (x.grad - x_ref.grad).abs().max().item(),
        "grad_w": (ours.weight.grad - ref.weight.grad[:, :, 0]).abs().max().item(),
        "grad_delay": (ours.delay.grad + ref.P.grad[0, :, :, 0]).abs().max().item(),  # D = K//2 - P
    }
    print(f"DCLS equivalence {backend} {dtype} max_delay={max_delay} sigma={sigma}: " +
          ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    _close(y, y_ref)
    _close(x.grad, x_ref.grad)
    _close(ours.weight.grad, ref.weight.grad[:, :, 0])
    _close(ours.delay.grad, -ref.P.grad[0, :, :, 0])
    assert ours.delay.grad.abs().max() > 1e-3  # the positions really get a gradient


def test_tap_convention_one_synapse():
    """A synapse of delay d makes the input at t - d reach the output at t (causal, output length T)."""
    layer = DelayedLinear(1, 1, 8).double()
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.delay.fill_(3.0)
    x = torch.zeros(10, 1, 1, dtype=torch.float64)
    x[2] = 1.0
    y_int = layer.round_delays()(x)
    assert y_int.shape == (10, 1, 1)
    assert torch.nonzero(y_int.flatten()).flatten().tolist() == [5] and y_int[5].item() == 2.0
    layer.use_gaussian()
    layer.set_sigma(0.3)
    y = layer(x).flatten()
    assert int(y.argmax()) == 5 and y[:2].abs().max() == 0  # nothing before the input spike
    assert y.sum().item() == pytest.approx(2.0, rel=1e-6)  # the Gaussian is normalised (up to DCLS's 1e-7)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(12, 2, 2, dtype=torch.float64)
    x[[1, 4, 9], [0, 1, 1], [1, 0, 1]] = torch.tensor([0.7, 1.2, 0.4], dtype=torch.float64)
    x.requires_grad_(True)  # sparse (1/8 nonzero, 1/7 when gradcheck perturbs a zero), so the event path can run
    w = torch.randn(3, 2, dtype=torch.float64, generator=g).requires_grad_(True)
    d = (torch.rand(3, 2, dtype=torch.float64, generator=g) * 5).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, generator=g).requires_grad_(True)
    for backend in available_backends("delay_shifted_matmul"):
        fn = lambda x, w, d, b: delayed_linear_gaussian(x, w, d, 1.3, 5, b, backend=backend)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, w, d, b))
    for backend in available_backends("delay_linear_int"):
        delays = torch.randint(0, 10, (3, 2), generator=g)  # some delays >= T: no contribution
        fn_int = lambda x, w: delayed_linear_int(x, w, delays, backend=backend)  # noqa: E731
        assert torch.autograd.gradcheck(fn_int, (x, w))


def _dense_rounded(x, weight, delays, max_delay):
    """The dense reference: a (max_delay + 1)-tap kernel, one-hot at each synapse's integer delay, via conv1d."""
    kernel = torch.zeros(weight.shape + (max_delay + 1,), dtype=weight.dtype)
    kernel = kernel.scatter(2, (max_delay - delays)[..., None], weight[..., None])  # conv1d index = max_delay - d
    return F.conv1d(F.pad(x.permute(1, 2, 0), (max_delay, 0)), kernel).permute(2, 0, 1)


@pytest.mark.parametrize("backend", available_backends("delay_linear_int"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(50, 4, 13, 11, 25), (6, 3, 5, 17, 9), (1, 1, 1, 1, 1)])
def test_integer_path_equals_dense_rounded_conv(backend, dtype, shape):
    T, B, c_in, c_out, max_delay = shape
    x = (torch.rand(T, B, c_in, dtype=dtype) * (torch.rand(T, B, c_in) < 0.4)).requires_grad_(True)
    w = torch.randn(c_out, c_in, dtype=dtype).requires_grad_(True)
    delays = torch.randint(0, max_delay + 1, (c_out, c_in))
    reset_backend_calls()
    y = delayed_linear_int(x, w, delays, backend=backend)
    assert backend_calls("delay_linear_int") == {backend: 1}, "the intended backend did not run"
    x_ref, w_ref = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    y_ref = _dense_rounded(x_ref, w_ref, delays, max_delay)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL[dtype])
    torch.testing.assert_close(w.grad, w_ref.grad, **TOL[dtype])


def test_integer_mode_is_rounded_gaussian_limit_and_explicit():
    layer = DelayedLinear(6, 5, 10).double()
    x = torch.rand(30, 2, 6, dtype=torch.float64)
    layer.set_sigma(0.27)
    with torch.no_grad():
        layer.delay.copy_(layer.delay.round())  # integer positions: the narrow Gaussian is ~one-hot
    y_gauss = layer(x)
    layer.eval()
    assert torch.equal(layer(x), y_gauss), "numerics must not change with module.training"
    with rounded_delays(layer):
        assert layer.mode == "integer"
        y_int = layer(x)
    assert layer.mode == "gaussian"
    torch.testing.assert_close(y_int, y_gauss, rtol=0, atol=1e-2)  # neighbours get exp(-0.5/0.27^2) ~ 1e-3
    torch.testing.assert_close(y_int, _dense_rounded(x, layer.weight.detach(), layer.integer_delays(), 10))


def test_delay_options():
    random = DelayedLinear(4, 3, 7, delays="random")
    assert "delay" not in dict(random.named_parameters()) and random.mode == "integer"
    assert torch.equal(random.delay, random.delay.round()) and 0 <= random.delay.min() <= random.delay.max() <= 7
    with pytest.raises(ValueError, match="mode 'gaussian' needs delays='learn'"):
        random.use_gaussian()
    none = DelayedLinear(4, 3, 7, delays="none", bias=True)
    x = torch.rand(5, 2, 4)
    torch.testing.assert_close(none(x), x @ none.weight.t() + none.bias)
    learn = DelayedLinear(4, 3, 7)
    assert learn.delay.requires_grad and learn.mode == "gaussian"
    assert learn.sigma.item() == pytest.approx(4.27)  # K // 2 + 0.27 with K = 8 taps


def test_layer_clamps_positions():
    layer = DelayedLinear(3, 2, 5).double()
    with torch.no_grad():
        layer.delay.copy_(torch.tensor([[-3.0, 2.2, 9.0], [5.0, 0.0, 7.5]]))
    x = torch.rand(12, 2, 3, dtype=torch.float64)
    clamped = layer.delay.detach().clamp(0, 5)
    torch.testing.assert_close(layer(x), delayed_linear_gaussian(x, layer.weight, clamped, float(layer.sigma), 5))
    assert layer.integer_delays().tolist() == [[0, 2, 5], [5, 0, 5]]
    clamp_delays_(layer)
    assert torch.equal(layer.delay.detach(), clamped)


def test_kernel_is_normalised_and_has_no_denormals():
    w = torch.ones(2, 3)
    d = torch.tensor([[0.0, 12.5, 24.0], [3.3, 7.0, 20.0]])
    for sigma in (0.27, 0.5, 12.27):
        k = gaussian_delay_kernel(w, d, sigma, 24)
        torch.testing.assert_close(k.sum(0), torch.ones(3, 2), rtol=1e-6, atol=1e-6)
        tiny = (k != 0) & (k.abs() < torch.finfo(torch.float32).tiny)
        assert not tiny.any()


def test_sigma_schedule_follows_reference():
    sched = SigmaSchedule(max_delay=24, epochs=150)
    assert sched.final_epoch == 37 and sched.sig_init == 12
    assert sched(0) == pytest.approx(12.27)
    assert sched.sig(37) == pytest.approx(0.23, rel=1e-9)
    assert sched.sig(150) == sched.sig(37)
    alpha = (0.23 / 12) ** (1 / 37)
    assert sched.sig(10) == pytest.approx(12 * alpha ** 10, rel=1e-12)
    assert all(sched(e + 1) < sched(e) for e in range(36))
    assert SigmaSchedule(24, 150, final_epoch=0)(50) == pytest.approx(12.27)


class _Chain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn, self.b = DelayedLinear(4, 6, 9), torch.nn.BatchNorm1d(6), DelayedLinear(6, 2, 9)

    def forward(self, x):
        h = self.a(x)
        T, B, C = h.shape
        return self.b(torch.relu(self.bn(h.reshape(T * B, C)).reshape(T, B, C))).sum(0)


def test_delay_recipe_in_the_trainer_two_optimisers_clamp_and_sigma():
    """The SNN-delays optimisers as the training core builds them: Adam on weights (weight decay) and BatchNorm (none),
    a second Adam on the positions (100x lr, cosine), positions clamped after every step, sigma per epoch."""
    from torch.utils.data import TensorDataset

    from spikelib.training import Callback, DatasetBundle, Trainer

    model = _Chain()
    groups = split_delay_parameters(model)
    assert len(groups.weights) == 2 and len(groups.delays) == 2 and len(groups.no_decay) == 2
    seen = {}

    class Probe(Callback):
        def on_step_end(self, trainer):
            seen.setdefault("bounds", []).append([(float(l.delay.detach().min()), float(l.delay.detach().max()))
                                                  for l in (trainer.model.a, trainer.model.b)])

        def on_epoch_start(self, trainer):
            seen.setdefault("sigma", []).append(float(trainer.model.b.sigma))

    x = torch.rand(16, 7, 4) * 50
    data = DatasetBundle(TensorDataset(x, torch.arange(16) % 2), None, {"n_classes": 2})
    cfg = {"data": {"batch_size": 8, "val_fraction": 0.0}, "optim": {"lr": 1e-3, "weight_decay": 1e-5},
           "schedule": {"name": "constant"}, "delays": {"lr": 0.1, "final_epoch": 2},
           "train": {"epochs": 3, "device": "cpu"}}
    trainer = Trainer(cfg, None, model=model, datasets=data, callbacks=[Probe()])
    trainer.setup()
    weights, positions = (slot.optimizer for slot in trainer.optimizers)
    assert [s.name for s in trainer.optimizers] == ["weights", "positions"]
    assert [g["weight_decay"] for g in weights.param_groups] == [1e-5, 0.0]
    assert positions.param_groups[0]["lr"] == pytest.approx(0.1) and positions.param_groups[0]["weight_decay"] == 0
    assert {id(p) for p in positions.param_groups[0]["params"]} == {id(model.a.delay), id(model.b.delay)}
    trainer.fit()
    assert all(0 <= lo and hi <= 9 for step in seen["bounds"] for lo, hi in step)
    sched = SigmaSchedule(9, 3, final_epoch=2)
    assert seen["sigma"] == pytest.approx([sched(0), sched(1), sched(2)]) and seen["sigma"][2] < seen["sigma"][0]
    assert [h["sigma"] for h in trainer.history] == pytest.approx(seen["sigma"])


def test_reference_initial_positions_equal_dcls():
    """``delay_init="reference"``: the positions SNN-delays draws (U[-K//2, K//2] on Dcls1d.P, clamped), as delays."""
    modules = pytest.importorskip("DCLS.construct.modules")
    for max_delay in (24, 6, 9):
        K = max_delay + 1
        ref = modules.Dcls1d(12, 16, kernel_count=1, dilated_kernel_size=K, bias=False, version="gauss")
        torch.manual_seed(5)
        torch.nn.init.uniform_(ref.P, a=-K // 2, b=K // 2)
        ref.clamp_parameters()
        layer = DelayedLinear(12, 16, max_delay)
        layer.init_delays_("reference", torch.Generator().manual_seed(5))
        assert torch.equal(layer.delay.detach(), (K // 2 - ref.P.detach()[0, :, :, 0]).clamp(0, max_delay))
    big = DelayedLinear(200, 200, 24, delay_init="reference", generator=torch.Generator().manual_seed(0))
    edge = float((big.delay == 24).float().mean())
    assert 0.03 < edge < 0.05  # (-13, -12] of U[-13, 12] is clamped to -12: about 1/25 of the positions
    assert float(big.delay.min()) >= 0 and float((big.delay == 0).float().mean()) == 0.0
    with pytest.raises(ValueError, match="delay_init must be one of"):
        DelayedLinear(3, 2, 4, delay_init="gauss")


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_trainer_reference_positions_are_independent_of_the_weights(seed):
    """``delays.init: reference`` in the Trainer: positions from a stream of their own. Seeded with ``train.seed``
    itself, the generator replayed the global stream that had just drawn the weights, and the first layer's delays
    were a function of its weights (correlation -0.9999 at every seed); the recipe then stalled near 48% on the
    full-size synthetic Heidelberg set where the reference reached 69-71%."""
    from torch.utils.data import TensorDataset

    from spikelib.layers.delay_schedule import delay_layers
    from spikelib.training import DatasetBundle, Trainer
    from spikelib.training.build import stream_seed

    x = (torch.rand(8, 30, 140) < 0.1).float()
    data = DatasetBundle(TensorDataset(x, torch.arange(8) % 4), None, {"n_classes": 4, "n_channels": 140})
    cfg = {"data": {"batch_size": 4, "val_fraction": 0.0},
           "model": {"name": "snn_delays", "hidden": [256, 64], "max_delay": 24, "right_padding": 12},
           "delays": {"init": "reference", "final_epoch": 1}, "train": {"epochs": 1, "device": "cpu", "seed": seed}}
    trainer = Trainer(cfg, None, datasets=data)
    trainer.setup()
    layers = delay_layers(trainer.model)
    assert len(layers) == 3
    for layer in layers:
        w, d = layer.weight.detach().flatten(), layer.delay.detach().flatten()
        assert abs(float(torch.corrcoef(torch.stack([w, d]))[0, 1])) < 4 / w.numel() ** 0.5  # 4 sigma of chance
    # the positions are still the reference's draw, from the derived stream, layers in order
    generator = torch.Generator().manual_seed(stream_seed(seed, "delay_positions"))
    for layer in layers:
        probe = DelayedLinear(layer.in_features, layer.out_features, 24)
        probe.init_delays_("reference", generator)
        assert torch.equal(layer.delay.detach(), probe.delay.detach())
    assert stream_seed(seed, "delay_positions") != seed and stream_seed(seed, "a") != stream_seed(seed, "b")
    assert 0 <= stream_seed(seed, "delay_positions") < 2 ** 63


def test_auto_picks_the_event_path_for_sparse_inputs_only():
    layer = DelayedLinear(20, 8, 6)
    for density, expected in ((0.05, "numba"), (0.5, "torch")):
        reset_backend_calls()
        layer((torch.rand(30, 4, 20) < density).float())
        assert backend_calls("delay_shifted_matmul") == {expected: 1}
    layer.backend = "numba"
    with pytest.raises(BackendUnavailableError, match="the event path is for sparse inputs"):
        layer(torch.rand(30, 4, 20))


def test_numba_backend_selected_and_torch_fallback_reason():
    from spikelib.functional.delay import DelayRequest
    from spikelib.kernels import select_backend

    req = DelayRequest(torch.device("cpu"), torch.float16, False)
    assert select_backend("delay_linear_int", "auto", req, count=False).name == "torch"
    with pytest.raises(BackendUnavailableError, match="float32 and float64"):
        select_backend("delay_linear_int", "numba", req, count=False)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: DelayedLinear(3, 2, 0), ValueError, "max_delay must be >= 1"),
        (lambda: DelayedLinear(3, 2, -4), ValueError, "max_delay must be >= 1"),
        (lambda: DelayedLinear(3, 2, 2.5), TypeError, "max_delay must be an int"),
        (lambda: DelayedLinear(0, 2, 3), ValueError, "in_features must be >= 1"),
        (lambda: DelayedLinear(3, 2, 3, delays="fixed"), ValueError, "delays must be one of"),
        (lambda: DelayedLinear(3, 2, 3, sigma=float("nan")), ValueError, "sigma must be a finite number > 0"),
        (lambda: DelayedLinear(3, 2, 3, sigma=0.0), ValueError, "sigma must be a finite number > 0"),
        (lambda: SigmaSchedule(0, 10), ValueError, "max_delay must be an int >= 1"),
    ],
)
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_forward_input():
    layer = DelayedLinear(3, 2, 4)
    with pytest.raises(ValueError, match=r"x must have 3 dimensions \[T, B, 3\]"):
        layer(torch.rand(5, 3))
    with pytest.raises(ValueError, match="x must have 3 channels in dim 2"):
        layer(torch.rand(5, 2, 4))
    with pytest.raises(ValueError, match="x must have at least one time step"):
        layer(torch.rand(0, 2, 3))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        layer(torch.ones(5, 2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        layer([[1.0]])
    with torch.no_grad():
        layer.delay[0, 1] = float("nan")
    with pytest.raises(ValueError, match="delay contains NaN or inf"):
        layer(torch.rand(5, 2, 3))
    with pytest.raises(ValueError, match="delay contains NaN or inf"):
        layer.round_delays()(torch.rand(5, 2, 3))
    good = DelayedLinear(3, 2, 4)
    good.sigma.fill_(float("nan"))  # e.g. a corrupted state dict
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        good(torch.rand(5, 2, 3))
    with pytest.raises(ValueError, match="delays must be >= 0"):
        delayed_linear_int(torch.rand(5, 2, 3), torch.rand(2, 3), -torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"delays must be an int64 tensor of shape \(2, 3\)"):
        delayed_linear_int(torch.rand(5, 2, 3), torch.rand(2, 3), torch.ones(2, 3))


def test_short_sequences_are_fine():
    """No minimum length: taps beyond the sequence read only the zero padding."""
    layer = DelayedLinear(3, 2, 20).double()
    x = torch.rand(4, 2, 3, dtype=torch.float64)
    full = layer(torch.cat([x, torch.zeros(30, 2, 3, dtype=torch.float64)]))[:4]
    torch.testing.assert_close(layer(x), full)
    layer.round_delays()
    full = layer(torch.cat([x, torch.zeros(30, 2, 3, dtype=torch.float64)]))[:4]
    torch.testing.assert_close(layer(x), full)
    assert math.isfinite(layer(x).sum().item())


def test_numba_kernels_split_over_threads(monkeypatch):
    """Several kernel threads (disjoint ranges of rows, channels or batch entries) give the single-thread result."""
    torch.manual_seed(4)
    x = ((torch.rand(23, 5, 19) < 0.1) * 1.0).requires_grad_(True)
    w = torch.randn(13, 19, requires_grad=True)
    d = (torch.rand(13, 19) * 9).requires_grad_(True)
    delays = torch.randint(0, 10, (13, 19))
    g = torch.randn(23, 5, 13)

    def run():
        out = []
        for fn in (lambda: delayed_linear_gaussian(x, w, d, 0.8, 9, backend="numba"),
                   lambda: delayed_linear_int(x, w, delays, backend="numba")):
            y = fn()
            grads = torch.autograd.grad(y, (x, w, d), g, allow_unused=True)
            out.append((y.detach(), grads))
        return out

    monkeypatch.setenv("SPIKELIB_NUM_THREADS", "1")
    single = run()
    monkeypatch.setenv("SPIKELIB_NUM_THREADS", "3")
    for (y1, g1), (y3, g3) in zip(single, run()):
        torch.testing.assert_close(y3, y1)
        for a, b in zip(g1, g3):
            if a is not None:
                torch.testing.assert_close(b, a)
