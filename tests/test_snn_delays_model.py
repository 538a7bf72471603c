"""SNN-delays: the architecture against a re-assembly of the reference (spikingjelly + DCLS), the loss, dropout, the
recipe file, and a seeded synthetic task where learned delays beat fixed random delays, which beat no delays (trained
by the training core with the recipe's two optimisers and a fine-tuning stage with rounded delays)."""

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from spikelib.data.timing import relative_timing_task
from spikelib.layers.delay_schedule import delay_layers
from spikelib.models.snn_delays import SNNDelays, TimeSharedDropout

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "shd_delays.yaml"


def test_shapes_and_loss_is_ce_of_summed_softmax():
    model = SNNDelays(10, (16, 12), 5, max_delay=6, dropout=0.0)
    x = (torch.rand(20, 3, 10) < 0.2).float()
    u = model.membrane(x)
    assert u.shape == (20 + 3 * 3, 3, 5)  # every delayed layer appends right_padding = max_delay // 2 steps
    m = model(x)
    torch.testing.assert_close(m, torch.softmax(u, 2).sum(0))
    assert m.shape == (3, 5) and torch.allclose(m.sum(1), torch.full((3,), 29.0))


def test_dropout_mask_is_shared_over_time():
    drop = TimeSharedDropout(0.4)
    y = drop(torch.ones(30, 4, 50))
    assert torch.equal(y, y[:1].expand_as(y))
    assert set(torch.unique(y).tolist()) <= {0.0, torch.tensor(1.0 / 0.6).item()}
    drop.eval()
    assert torch.equal(drop(torch.ones(3, 2, 2)), torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\)"):
        TimeSharedDropout(1.0)


def test_matches_reference_assembly():
    """The reference forward of Thvnvtos/SNN-delays (snn_delays.py), assembled from DCLS and spikingjelly modules
    with our weights: the readout membrane and the input gradient agree (dropout off, BatchNorm in training mode)."""
    modules = pytest.importorskip("DCLS.construct.modules")
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    torch.manual_seed(3)
    c_in, hidden, classes, max_delay = 12, (16, 16), 4, 8
    K, tau = max_delay + 1, (10.05 + 1e-9) / 10
    ours = SNNDelays(c_in, hidden, classes, max_delay=max_delay, dropout=0.0).double()
    for l in delay_layers(ours):
        l.set_sigma(1.7)
    sizes = (c_in,) + hidden + (classes,)
    dcls = [modules.Dcls1d(a, b, kernel_count=1, dilated_kernel_size=K, bias=False, version="gauss").double()
            for a, b in zip(sizes[:-1], sizes[1:])]
    with torch.no_grad():
        for ref, l in zip(dcls, delay_layers(ours)):
            ref.weight.copy_(l.weight[:, :, None])
            ref.P.copy_((K // 2 - l.delay)[None, :, :, None])
            ref.SIG.fill_(1.7 - 0.27)
    lif_args = dict(tau=tau, surrogate_function=surrogate.ATan(alpha=5.0), detach_reset=True, step_mode="m",
                    decay_input=False, store_v_seq=True)
    bns = [layer.BatchNorm1d(h, step_mode="m").double() for h in hidden]
    lifs = [neuron.LIFNode(v_threshold=1.0, **lif_args) for _ in hidden]
    out_lif = neuron.LIFNode(v_threshold=1e9, **lif_args)

    def reference(x):
        for conv, bn, lif in zip(dcls[:-1], bns, lifs):
            x = F.pad(x.permute(1, 2, 0), (K - 1, (K - 1) // 2))
            x = conv(x).permute(2, 0, 1)
            x = bn(x.unsqueeze(3)).squeeze(3)
            x = lif(x)
        x = F.pad(x.permute(1, 2, 0), (K - 1, (K - 1) // 2))
        out_lif(dcls[-1](x).permute(2, 0, 1))
        return out_lif.v_seq

    x = ((torch.rand(25, 6, c_in) < 0.3).double() * 2.0).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    u, u_ref = ours.membrane(x), reference(x_ref)
    functional.reset_net(torch.nn.ModuleList(lifs + [out_lif]))
    torch.testing.assert_close(u, u_ref, rtol=1e-9, atol=1e-9)
    loss = F.cross_entropy(torch.softmax(u, 2).sum(0), torch.arange(6) % classes)
    loss_ref = F.cross_entropy(torch.softmax(u_ref, 2).sum(0), torch.arange(6) % classes)
    loss.backward()
    loss_ref.backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-7, atol=1e-9)
    assert x.grad.abs().max() > 0


def _model_section(text):
    """The ``model:`` mapping of the recipe (flat ``key: value`` lines); PyYAML when installed, else a tiny reader."""
    try:
        import yaml
    except ImportError:
        section, out = None, {}
        for line in text.splitlines():
            code = line.split("#", 1)[0].rstrip()
            if code and not code.startswith(" "):
                section = code.rstrip(":")
            elif code and section == "model":
                key, value = (part.strip() for part in code.split(":", 1))
                if value.startswith("["):
                    out[key] = [int(v) for v in value.strip("[]").split(",")]
                elif value in ("true", "false"):
                    out[key] = value == "true"
                else:
                    try:
                        out[key] = int(value)
                    except ValueError:
                        try:
                            out[key] = float(value)
                        except ValueError:
                            out[key] = value
        out.pop("name", None)  # the registry name (spikelib train), not a constructor argument
        return out
    return {k: v for k, v in yaml.safe_load(text)["model"].items() if k != "name"}


def test_config_builds_the_reference_model():
    text = CONFIG.read_text()
    model = SNNDelays.from_config(_model_section(text))
    assert [l.max_delay for l in delay_layers(model)] == [24, 24, 24]
    assert [tuple(l.weight.shape) for l in delay_layers(model)] == [(256, 140), (256, 256), (20, 256)]
    assert model.right_padding == 12 and model.tau == pytest.approx((10.05 + 1e-9) / 10, rel=1e-12)
    assert model.neurons[0].config.surrogate.alpha == 5.0 and not model.neurons[0].config.decay_input
    assert model.dropouts[0].p == 0.4 and isinstance(model.norms[0], torch.nn.BatchNorm1d)
    assert "lr: 0.1" in text and "lr: 1.0e-3" in text  # positions: 100x the weights' learning rate


def test_learned_delays_beat_random_beat_none():
    """Classes differ only in relative spike timing (with jitter and noise): seeded, CI-sized, rounded evaluation;
    25 epochs of the SNN-delays recipe (two Adams, one-cycle with beta1 cycling and cosine, per epoch), then 5 epochs
    of fine-tuning with integer delays (the reference's ``fine_tune``), as two stages of one run."""
    from spikelib.training import DatasetBundle, Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and deterministic
    try:
        start = time.perf_counter()
        task = dict(n_classes=8, channels=12, spacing=1, n_steps=40, jitter_prob=0.15, noise_rate=0.02, task_seed=5)
        x_train, y_train = relative_timing_task(512, seed=0, **task)
        x_test, y_test = relative_timing_task(256, seed=1, **task)
        data = DatasetBundle(TensorDataset(x_train, y_train), TensorDataset(x_test, y_test), {"n_classes": 8})
        config = {"data": {"batch_size": 64, "val_fraction": 0.0, "eval_batch_size": 256},
                  "optim": {"lr": 1e-3, "weight_decay": 1e-5},
                  "schedule": {"name": "onecycle", "max_lr": 5e-3, "interval": "epoch", "cycle_momentum": True},
                  "delays": {"lr": 0.1}, "train": {"select": "last", "device": "cpu", "evaluate_test": False},
                  "stages": [{"name": "train", "epochs": 25}, {"name": "finetune", "epochs": 5, "lr": 1.2e-3,
                                                              "delays": "rounded", "init": "last"}]}
        accuracy = {}
        for delays in ("learn", "random", "none"):
            model = SNNDelays(12, (32,), 8, max_delay=16, delays=delays, dropout=0.0,
                              generator=torch.Generator().manual_seed(0))
            trainer = Trainer(config, None, model=model, datasets=data, monitor=("test",))
            trainer.fit()
            history = trainer.history
            assert [h["stage"] for h in history] == ["train"] * 25 + ["finetune"] * 5
            accuracy[delays] = history[-1]["test_acc"]
            accuracy[delays + "_before_finetune"] = history[24]["test_acc"]
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    print(f"relative-timing task (8 classes, chance 0.125), rounded delays: {accuracy}; {seconds:.1f} s")
    assert accuracy["learn"] >= accuracy["random"] + 0.15
    assert accuracy["random"] >= accuracy["none"] + 0.2
    assert accuracy["learn_before_finetune"] >= accuracy["random_before_finetune"] + 0.08
