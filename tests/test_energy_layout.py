"""The layout contract of ``measure``: samples = the batch dimension of time-first input, batch-first input declared
(by the caller or the loader), the ambiguous case an error; spikelib's datasets and collates state their layout."""

import pytest
import torch
from torch import nn

import spikelib
from spikelib.hardware.energy import measure
from spikelib.hardware.energy.layout import loader_time_first


def _spikes(shape, seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def _conv(nd):
    conv = (nn.Conv1d, nn.Conv2d)[nd - 1](2, 3, 3, padding=1)
    return spikelib.layers.Sequential(conv, spikelib.LIF(v_threshold=0.3))


@pytest.mark.parametrize("shape, model", [
    ((10, 8, 6), lambda: nn.Sequential(nn.Linear(6, 4), spikelib.LIF(v_threshold=0.3))),   # [T, B, C]
    ((10, 8, 2, 9), lambda: _conv(1)),                                                      # [T, B, C, L]
    ((10, 8, 2, 5, 5), lambda: _conv(2)),                                                   # [T, B, C, H, W]
])
def test_time_first_inputs_count_the_batch_dimension(shape, model):
    net = model()
    x = _spikes(shape)
    counts = measure(net, [x, x])
    assert counts.samples == 16  # B = 8 per batch, not T = 10
    # the same data declared batch first gives the same counts
    xb = x.transpose(0, 1).contiguous()
    declared = measure(net, [(xb, None), (xb, None)], time_first=False)
    assert declared.samples == 16
    assert declared.to_dict()["layers"] == counts.to_dict()["layers"]


def test_static_batches_and_the_ambiguous_case():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten())  # takes a static image batch
    static = measure(net, [_spikes((8, 2, 5, 5))])  # [B, C, H, W]: one dimension fewer than a sequence
    assert static.samples == 8 and static.static_input
    with pytest.raises(ValueError, match="fits neither"):
        measure(net, [_spikes((8, 5, 5))])
    neurons_first = nn.Sequential(spikelib.LIF(v_threshold=0.3), nn.Identity())  # no layer tells a sample's rank
    with pytest.raises(ValueError, match=r"pass time_first=True .* time_first=False"):
        measure(neurons_first, [_spikes((10, 8, 6))])
    assert measure(neurons_first, [_spikes((10, 8, 6))], time_first=True).samples == 8
    assert measure(neurons_first, [_spikes((8, 10, 6))], time_first=False).samples == 8
    with pytest.raises(ValueError, match="time_first"):
        measure(neurons_first, [_spikes((10, 8, 6))], time_first="yes")


def test_loaders_declare_their_layout(tmp_path):
    from spikelib.data import SHDDataset, pad_collate, write_synthetic_shd

    write_synthetic_shd(tmp_path, n_train=4, n_test=10, seed=0)
    test = SHDDataset(tmp_path, "test", bin_ms=20.0, max_time=1.0, channels_out=14)
    assert test.item_layout == "time_first" and pad_collate.batch_layout == "batch_first"
    net = nn.Sequential(nn.Linear(14, 5), spikelib.LIF(v_threshold=0.3))
    plain = torch.utils.data.DataLoader(test, batch_size=4)  # torch's default collate: [B, T, C]
    padded = torch.utils.data.DataLoader(SHDDataset(tmp_path, "test", bin_ms=20.0, channels_out=14), batch_size=4,
                                         collate_fn=pad_collate)  # variable lengths
    assert loader_time_first(plain) is False and loader_time_first(padded) is False
    assert loader_time_first([1, 2]) is None
    counts = measure(net, plain)
    assert counts.samples == 10  # 10 samples, not T x batches
    n_steps = test.n_steps
    assert counts.layer("0").in_elements == 10 * n_steps * 14
    assert measure(net, padded).samples == 10


def test_a_sparse_tensor_knows_its_batch():
    from spikelib.models import get_model

    model = get_model("e3dsnn_tiny").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = model.voxelize([torch.rand(150, 6, generator=g) for _ in range(3)], g)
    assert measure(model, [x]).samples == 3
