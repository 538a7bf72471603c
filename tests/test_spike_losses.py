"""Spike-train losses and rate regularisers against snnTorch / spikingjelly where they share the definition, the
authors' TET definition written from the paper, and analytic cases."""

import pytest
import torch
from torch.nn import functional as F

from spikelib import losses


def _data(T=6, B=5, C=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, C, generator=g), torch.randint(0, C, (B,), generator=g)


def _spikes(T=10, B=5, C=4, p=0.4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, C, generator=g) < p).float()


def _tet_from_paper(o_bt, y, lam, phi):
    """Deng et al. 2022 as the authors' code lays it out: batch first [B, T, C], CE per step averaged over T, MSE over
    every element, (1 - lam) and lam weights."""
    T = o_bt.shape[1]
    ce = sum(F.cross_entropy(o_bt[:, t], y) for t in range(T)) / T
    mse = F.mse_loss(o_bt, torch.full_like(o_bt, phi))
    return (1 - lam) * ce + lam * mse


def test_rate_cross_entropy_is_the_mean_of_per_step_ce():
    o, y = _data()
    loop = torch.stack([F.cross_entropy(o[t], y, reduction="none") for t in range(o.shape[0])]).mean(0)
    assert torch.allclose(losses.rate_cross_entropy(o, y, reduction="none"), loop, atol=1e-6)
    assert torch.allclose(losses.rate_cross_entropy(o, y), loop.mean(), atol=1e-6)
    assert torch.allclose(losses.rate_cross_entropy(o, y, reduction="sum"), loop.sum(), atol=1e-5)


def test_tet_equals_the_papers_definition_values_and_gradients():
    o, y = _data(T=4, B=6, C=10)
    for lam, phi in ((1e-3, 1.0), (0.3, 0.5), (0.0, 1.0)):
        a = o.clone().requires_grad_(True)
        b = o.clone().requires_grad_(True)
        ours = losses.tet_loss(a, y, lam=lam, phi=phi)
        ref = _tet_from_paper(b.transpose(0, 1), y, lam, phi)
        assert torch.allclose(ours, ref, atol=1e-6)
        ours.backward()
        ref.backward()
        assert torch.allclose(a.grad, b.grad, atol=1e-7)
    assert torch.allclose(losses.tet_loss(o, y, lam=0.0), losses.rate_cross_entropy(o, y))
    # the default weights: 0.999 CE + 0.001 MSE(o, 1)
    ce, mse = losses.rate_cross_entropy(o, y), (o - 1).pow(2).mean()
    assert torch.allclose(losses.tet_loss(o, y), 0.999 * ce + 0.001 * mse, atol=1e-6)


def test_count_and_rate_mse_analytic():
    s = torch.zeros(4, 2, 3)
    s[:, 0, 1] = 1.0          # sample 0: class 1 fires every step
    s[:2, 1, 0] = 1.0         # sample 1: class 0 fires at half the steps
    y = torch.tensor([1, 2])
    # targets: 4 spikes for the label, 0 for the others
    per = losses.count_mse(s, y, reduction="none")
    assert per.tolist() == pytest.approx([0.0, (2.0 ** 2 + 0 + 4.0 ** 2) / 3])
    assert torch.allclose(losses.rate_mse(s, y, reduction="none"), per / 16)
    rates = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.0]])
    assert losses.count_mse(s, rates).item() == 0.0 and losses.rate_mse(s, rates).item() == 0.0
    assert losses.count_mse(s, y, correct_rate=0.5, incorrect_rate=0.25, reduction="none")[0].item() == pytest.approx(
        (1 + 4 + 1) / 3)


def test_regularisers_analytic():
    s = torch.zeros(10, 2, 3)
    s[:5, :, 1] = 1.0   # neuron 1: rate 0.5
    s[:, :, 2] = 1.0    # neuron 2: rate 1
    assert losses.rate_l1(s).item() == pytest.approx(1.5 / 3)
    assert losses.rate_l1(s, reduction="sum").item() == 30.0
    value = losses.rate_bounds(s, lower=0.1, upper=0.8)
    assert value.item() == pytest.approx((0.1 ** 2) / 3 + (0.2 ** 2) / 3)
    assert losses.rate_bounds(s, lower=0.1).item() == pytest.approx(0.01 / 3)
    x = s.clone().requires_grad_(True)
    losses.rate_bounds(x, upper=0.8).backward()
    assert (x.grad[:, :, 2] > 0).all() and (x.grad[:, :, :2] == 0).all()  # only the overactive neuron is pushed


def test_half_precision_outputs_are_promoted():
    o, y = _data()
    half = o.half()
    assert losses.tet_loss(half, y).dtype == torch.float32
    assert torch.allclose(losses.tet_loss(half, y), losses.tet_loss(half.float(), y))


def test_layout_and_argument_errors():
    o, y = _data(T=6, B=5)
    with pytest.raises(ValueError, match=r"look batch first \(\[B, T, C\]\).*outputs.transpose\(0, 1\)"):
        losses.tet_loss(o.transpose(0, 1), y)
    with pytest.raises(ValueError, match=r"time first \[T, B, C\], got shape \(5, 4\).*cross_entropy"):
        losses.count_cross_entropy(o[0], y)
    with pytest.raises(ValueError, match=r"one class index per sample \(\[B\] = \[5\]\), got shape \[3\]"):
        losses.rate_cross_entropy(o, y[:3])
    with pytest.raises(TypeError, match="class indices"):
        losses.rate_cross_entropy(o, y.float())
    with pytest.raises(ValueError, match=r"target rates must have shape \[B, C\]"):
        losses.count_mse(o, torch.rand(5, 3))
    with pytest.raises(ValueError, match=r"target rates must lie in \[0, 1\]"):
        losses.rate_mse(o, torch.full((5, 4), 2.0))
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.tet_loss(o, y, reduction="avg")
    with pytest.raises(ValueError, match=r"lam must be a number in \[0, 1\], got 2"):
        losses.tet_loss(o, y, lam=2)
    with pytest.raises(ValueError, match="lam must be"):
        losses.TETLoss(lam=-1.0)
    with pytest.raises(ValueError, match="needs lower, upper or both"):
        losses.rate_bounds(_spikes())
    with pytest.raises(ValueError, match=r"lower \(0.5\) must not exceed upper \(0.1\)"):
        losses.rate_bounds(_spikes(), lower=0.5, upper=0.1)


def test_module_forms_equal_the_functions():
    o, y = _data()
    s = _spikes()
    ys = torch.randint(0, 4, (5,))
    assert torch.equal(losses.TETLoss(lam=0.1)(o, y), losses.tet_loss(o, y, lam=0.1))
    assert torch.equal(losses.RateCrossEntropyLoss()(o, y), losses.rate_cross_entropy(o, y))
    assert torch.equal(losses.CountCrossEntropyLoss()(s, ys), losses.count_cross_entropy(s, ys))
    assert torch.equal(losses.CountMSELoss(correct_rate=0.5)(s, ys), losses.count_mse(s, ys, correct_rate=0.5))
    assert torch.equal(losses.RateMSELoss(reduction="none")(s, ys), losses.rate_mse(s, ys, reduction="none"))
    assert "lam=0.1" in repr(losses.TETLoss(lam=0.1))


# ------------------------------------------------------------------------------------------------------- peers
@pytest.mark.peers
def test_cross_entropies_equal_snntorch_and_spikingjelly():
    SF = pytest.importorskip("snntorch.functional")
    sj = pytest.importorskip("spikingjelly.activation_based.functional.loss")
    o, y = _data(T=8, B=6, C=5)
    s = _spikes(T=8, B=6, C=5)
    assert torch.allclose(losses.rate_cross_entropy(o, y), SF.ce_rate_loss()(o, y).squeeze(), atol=1e-6)
    assert torch.allclose(losses.rate_cross_entropy(o, y), sj.temporal_efficient_training_cross_entropy(o, y),
                          atol=1e-6)
    assert torch.allclose(losses.count_cross_entropy(s, y), SF.ce_count_loss()(s, y), atol=1e-6)


@pytest.mark.peers
def test_tet_equals_spikingjelly_tet_loss():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based.examples.memopt.loss import TETLoss as SJTETLoss

    o, y = _data(T=5, B=4, C=10)
    for lam, phi in ((1e-3, 1.0), (0.2, 0.7)):
        a, b = o.clone().requires_grad_(True), o.clone().requires_grad_(True)
        ours, theirs = losses.tet_loss(a, y, lam=lam, phi=phi), SJTETLoss(mean=phi, tet_lambda=lam)(b, y)
        assert torch.allclose(ours, theirs, atol=1e-6)
        ours.backward()
        theirs.backward()
        assert torch.allclose(a.grad, b.grad, atol=1e-7)


@pytest.mark.peers
def test_count_mse_is_snntorch_mse_count_loss_times_T():
    SF = pytest.importorskip("snntorch.functional")
    s = _spikes(T=10, B=6, C=5, p=0.5)
    y = torch.randint(0, 5, (6,))
    for correct, incorrect in ((1.0, 0.0), (0.8, 0.2)):  # T * rate integral: snnTorch's int() truncation is exact
        theirs = SF.mse_count_loss(correct_rate=correct, incorrect_rate=incorrect)(s, y)
        ours = losses.count_mse(s, y, correct_rate=correct, incorrect_rate=incorrect)
        assert torch.allclose(ours, 10 * theirs, atol=1e-5)


@pytest.mark.peers
def test_rate_l1_sum_is_snntorch_l1_rate_sparsity():
    SF = pytest.importorskip("snntorch.functional")
    s = _spikes()
    assert losses.rate_l1(s, reduction="sum").item() == SF.l1_rate_sparsity(Lambda=1.0)(s).item()
