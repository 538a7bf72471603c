"""The training core's losses against independent computations and the peers: TET against the reference formula
(brain-intelligence-lab/temporal_efficient_training ``TET_loss``, written out here as a loop) and spikingjelly's
TET cross-entropy, ce_rate and rate_mse against snnTorch's ``ce_rate_loss`` / ``mse_count_loss``, SNN-delays'
sum-of-softmax, cross-entropy on counts / mean / last / max, per-sample values, scores, and bad input."""

import pytest
import torch
import torch.nn.functional as F

from spikelib.training import Loss, build_loss, list_losses
from spikelib.training.errors import ConfigError
from spikelib.training.losses import (CrossEntropy, RateCrossEntropy, RateMSE, SumSoftmaxCrossEntropy, TETLoss,
                                      as_loss)

T, B, C = 6, 5, 4


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(T, B, C, generator=g, dtype=torch.float64) * 2, torch.tensor([0, 3, 1, 2, 3])


def tet_reference(outputs, labels, means=1.0, lamb=1e-3):
    """TET_loss of the reference code, for [T, B, C] outputs."""
    loss_es = 0
    for t in range(outputs.size(0)):
        loss_es = loss_es + F.cross_entropy(outputs[t], labels)
    loss_es = loss_es / outputs.size(0)
    loss_mmd = F.mse_loss(outputs, torch.zeros_like(outputs).fill_(means)) if lamb != 0 else 0
    return (1 - lamb) * loss_es + lamb * loss_mmd


def test_registered():
    assert list_losses() == ["ce_rate", "cross_entropy", "rate_mse", "sum_softmax", "tet"]


@pytest.mark.parametrize("lam, phi", [(1e-3, 1.0), (0.3, 0.5), (0.0, 1.0)])
def test_tet_equals_the_reference_formula(data, lam, phi):
    o, y = data
    per = TETLoss(lam=lam, phi=phi)(o, y)
    assert per.shape == (B,)
    torch.testing.assert_close(per.mean(), tet_reference(o, y, phi, lam), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(TETLoss().scores(o), o.mean(0))
    sj = pytest.importorskip("spikingjelly.activation_based.functional")
    torch.testing.assert_close(TETLoss(lam=0.0)(o, y).mean(), sj.temporal_efficient_training_cross_entropy(o, y))


def test_rate_losses_equal_snntorch(data):
    SF = pytest.importorskip("snntorch.functional")
    o, y = data
    spikes = (o > 0.5).to(torch.float64)
    want = SF.ce_rate_loss()(o, y).reshape(()).double()  # snnTorch returns shape [1], accumulated in float32
    torch.testing.assert_close(RateCrossEntropy()(o, y).mean(), want, rtol=1e-6, atol=1e-6)
    for correct, incorrect in ((1.0, 0.0), (0.5, 0.0)):  # T r integer (snnTorch rounds the targets down)
        want = SF.mse_count_loss(correct_rate=correct, incorrect_rate=incorrect)(spikes, y)
        torch.testing.assert_close(RateMSE(correct, incorrect)(spikes, y).mean(), want.reshape(()).to(torch.float64),
                                   rtol=1e-6, atol=1e-6)
    assert torch.equal(RateMSE().scores(spikes), spikes.sum(0))


def test_sum_softmax_is_the_snn_delays_loss(data):
    o, y = data
    m = torch.softmax(o, 2).sum(0)
    torch.testing.assert_close(SumSoftmaxCrossEntropy()(o, y), F.cross_entropy(m, y, reduction="none"))
    torch.testing.assert_close(SumSoftmaxCrossEntropy().scores(o), m)


@pytest.mark.parametrize("reduce, fn", [("sum", lambda o: o.sum(0)), ("mean", lambda o: o.mean(0)),
                                        ("last", lambda o: o[-1]), ("max", lambda o: o.max(0).values)])
def test_cross_entropy_over_time(data, reduce, fn):
    o, y = data
    loss = CrossEntropy(time_reduce=reduce, label_smoothing=0.1)
    torch.testing.assert_close(loss(o, y), F.cross_entropy(fn(o), y, reduction="none", label_smoothing=0.1))
    torch.testing.assert_close(loss.scores(o), fn(o))


def test_mixed_precision_outputs_are_promoted(data):
    o, y = data
    assert CrossEntropy()(o[0].to(torch.bfloat16), y).dtype == torch.float32
    assert CrossEntropy()(o[0], y).dtype == torch.float64  # float64 training stays float64


def test_build_and_bad_input(data):
    o, y = data
    assert isinstance(build_loss("tet", {"lam": 0.01}), TETLoss)
    assert build_loss("cross_entropy", {"time_reduce": "sum"}, label_smoothing=0.2).label_smoothing == 0.2
    with pytest.raises(ConfigError, match="loss.name: unknown loss 'focal'; known: ce_rate"):
        build_loss("focal", {})
    with pytest.raises(ConfigError, match="loss.lamda: unknown key; this accepts: lam, phi"):
        build_loss("tet", {"lamda": 0.1})
    with pytest.raises(ConfigError, match="loss.lam: expected a number, got 'x'"):
        build_loss("tet", {"lam": "x"})
    with pytest.raises(ConfigError, match="train.label_smoothing: loss 'rate_mse' has no label smoothing"):
        build_loss("rate_mse", {}, label_smoothing=0.1)
    with pytest.raises(ConfigError, match=r"loss: 'tet' rejected its options: lam must be a number in \[0, 1\]"):
        build_loss("tet", {"lam": 2.0})
    with pytest.raises(ValueError, match=r"loss 'tet' needs a time-resolved output \[T, B, classes\], got \(5, 4\)"):
        TETLoss()(o[0], y)
    with pytest.raises(ValueError, match=r"loss 'cross_entropy' expects logits \[B, classes\], got \(6, 5, 4\)"):
        CrossEntropy()(o, y)
    custom = as_loss(lambda out, t: F.cross_entropy(out.mean(0), t))
    assert isinstance(custom, Loss) and custom(o, y).dim() == 0 and torch.equal(custom.scores(o), o.mean(0))
    with pytest.raises(TypeError, match="loss must be a spikelib.training.losses.Loss or a callable"):
        as_loss(3)
