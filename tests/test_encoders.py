"""Spike encoders against norse / snnTorch where they define the same code, and analytic cases."""

import math

import pytest
import torch

from spikelib import encoders


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- analytic
def test_rate_probabilities_zero_one_and_frequency():
    x = torch.tensor([[0.0, 1.0, 0.3]])
    s = encoders.rate(x, 20000, generator=_gen())
    assert s.shape == (20000, 1, 3) and s.dtype == torch.float32
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert s[:, 0, 0].sum() == 0 and s[:, 0, 1].sum() == 20000
    # binomial(20000, 0.3): mean 6000, sd 64.8; 5 sd bound
    assert abs(float(s[:, 0, 2].sum()) - 6000) < 5 * math.sqrt(20000 * 0.3 * 0.7)
    # steps are independent: the count of 1-1 pairs follows p^2
    pairs = float((s[1:, 0, 2] * s[:-1, 0, 2]).sum())
    assert abs(pairs - 19999 * 0.09) < 5 * math.sqrt(19999 * 0.09 * 0.91)


def test_rate_gain_sequence_input_and_reproducibility():
    x = torch.rand(3, 4)
    assert torch.equal(encoders.rate(x, 7, generator=_gen(1)), encoders.rate(x, 7, generator=_gen(1)))
    assert torch.equal(encoders.rate(x, 7, gain=0.5, generator=_gen(2)),
                       encoders.rate(0.5 * x, 7, generator=_gen(2)))
    seq = torch.rand(5, 3, 4)  # already time first: one draw per given step
    out = encoders.rate(seq, generator=_gen(3))
    assert out.shape == seq.shape
    u = torch.rand(seq.shape, generator=_gen(3))
    assert torch.equal(out, (u < seq).float())
    assert encoders.rate(x.double(), 2).dtype == torch.float64


def test_rate_and_poisson_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"gain \* x must lie in \[0, 1\], got values in \[0, 2\].*nothing is clipped"):
        encoders.rate(torch.tensor([0.0, 2.0]), 3)
    with pytest.raises(ValueError, match="lie in"):
        encoders.rate(torch.tensor([0.5, float("nan")]), 3)
    with pytest.raises(ValueError, match="num_steps must be an int >= 1, got 0"):
        encoders.rate(torch.rand(2), 0)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        encoders.rate(torch.ones(2, dtype=torch.int64), 3)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        encoders.rate([0.5], 3)
    with pytest.raises(ValueError, match=r"dt \* f_max \* x reaches 2 > 1"):
        encoders.poisson(torch.tensor([1.0]), 3, f_max=2000.0, dt=1e-3)
    with pytest.raises(ValueError, match="f_max must be a finite number > 0"):
        encoders.poisson(torch.tensor([1.0]), 3, f_max=-1.0)


def test_latency_linear_analytic():
    T = 11
    x = torch.tensor([1.0, 0.5, 0.0, 0.005, 0.3])
    s = encoders.latency(x, T)
    assert s.shape == (T, 5) and torch.equal(s.sum(0), torch.ones(5))  # exactly one spike each
    steps = s.argmax(0).tolist()
    assert steps == [0, 5, round(10 * 0.99), round(10 * 0.99), 7]
    clipped = encoders.latency(x, T, clip=True)
    assert clipped.sum(0).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]  # below threshold: no spike


def test_latency_log_analytic_and_window_error():
    x = torch.tensor([1.0, 0.5, 0.2, 0.01, 0.0])
    s = encoders.latency(x, 10, mode="log", tau=5.0, threshold=0.1)
    expected = [round(5 * math.log(v / (v - 0.1))) for v in (1.0, 0.5, 0.2)] + [9, 9]
    assert s.argmax(0).tolist() == expected and torch.equal(s.sum(0), torch.ones(5))
    assert encoders.latency(x, 10, mode="log", tau=5.0, threshold=0.1, clip=True).sum(0).tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match=r"spike at step 10\.4 > 9.*raise num_steps or lower tau"):
        encoders.latency(torch.tensor([0.12]), 10, mode="log", tau=5.8, threshold=0.1)
    with pytest.raises(ValueError, match=r"latency: x must lie in \[0, 1\]"):
        encoders.latency(torch.tensor([1.5]), 10)
    with pytest.raises(ValueError, match="mode must be one of"):
        encoders.latency(torch.tensor([0.5]), 10, mode="exp")
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\)"):
        encoders.latency(torch.tensor([0.5]), 10, threshold=0.0)


def test_delta_analytic():
    x = torch.tensor([1.0, 2.0, 2.9, 3.0, 3.9, 1.0])
    assert encoders.delta(x, 1.0).tolist() == [1, 1, 0, 0, 0, 0]
    assert encoders.delta(x, 1.0, padding=True).tolist() == [0, 1, 0, 0, 0, 0]
    assert encoders.delta(x, 1.0, off_spikes=True).tolist() == [1, 1, 0, 0, 0, -1]
    with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
        encoders.delta(x, 0.0)


# ------------------------------------------------------------------------------------------------------- peers
@pytest.mark.peers
def test_poisson_equals_norse_poisson_encode():
    norse = pytest.importorskip("norse.torch.functional.encode")
    x = torch.rand(4, 30)
    for f_max, dt in ((100.0, 1e-3), (500.0, 2e-3), (1000.0, 1e-3)):
        ours = encoders.poisson(x, 40, f_max=f_max, dt=dt, generator=_gen(7))
        theirs = norse.poisson_encode(x, 40, f_max=f_max, dt=dt, generator=_gen(7))
        assert torch.equal(ours, theirs) and 0 < ours.sum() < ours.numel()


@pytest.mark.peers
def test_delta_equals_snntorch():
    spikegen = pytest.importorskip("snntorch.spikegen")
    x = torch.randn(30, 4, 5).cumsum(0)
    for padding in (False, True):
        for off in (False, True):
            ours = encoders.delta(x, 0.5, padding=padding, off_spikes=off)
            theirs = spikegen.delta(x, threshold=0.5, padding=padding, off_spike=off)
            assert torch.equal(ours, theirs) and ours.abs().sum() > 0


@pytest.mark.peers
def test_latency_equals_snntorch():
    spikegen = pytest.importorskip("snntorch.spikegen")
    x = torch.rand(6, 40)
    x[0, :5] = torch.tensor([0.0, 0.001, 0.01, 1.0, 0.5])
    for clip in (False, True):
        ours = encoders.latency(x, 25, threshold=0.01, clip=clip)
        theirs = spikegen.latency(x, num_steps=25, threshold=0.01, linear=True, normalize=True, clip=clip)
        assert torch.equal(ours, theirs)
    above = 0.3 + 0.7 * torch.rand(6, 40)  # log code: inputs above the threshold, spikes inside the window
    ours = encoders.latency(above, 12, mode="log", tau=4.0, threshold=0.2)
    theirs = spikegen.latency(above, num_steps=12, threshold=0.2, tau=4.0)
    assert torch.equal(ours, theirs) and ours.argmax(0).max() > 2


@pytest.mark.peers
def test_rate_matches_snntorch_where_deterministic_and_in_distribution():
    spikegen = pytest.importorskip("snntorch.spikegen")
    edge = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert torch.equal(encoders.rate(edge, 6), spikegen.rate(edge, num_steps=6))
    x = torch.full((1, 50), 0.25)
    ours, theirs = encoders.rate(x, 400, generator=_gen(4)), spikegen.rate(x, num_steps=400)
    n = ours.numel()
    for s in (ours, theirs):  # both Bernoulli(0.25): counts within 5 sd of n p
        assert abs(float(s.sum()) - 0.25 * n) < 5 * math.sqrt(n * 0.25 * 0.75)
