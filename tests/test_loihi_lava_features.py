"""Networks in the formats lava-dl writes, made with lava-dl's own exporter (slayer blocks' ``export_hdf5``), run in
Lava (lava-nc 0.10.0 + lava-dl 0.6.0, ``fixed_pt``, through ``netx.hdf5.Network`` with ``reset_interval``) and in
spikelib's simulator: equal bit for bit on spikes, ``u`` and ``v`` of every neuron group at every step. Then the Lava
runner's failure paths: a Lava child that raises, a timeout and a KeyboardInterrupt each end the call with no Lava
process left. Lava is installed by ``scripts/install_lava.sh`` (run by ``make``).
"""

import os
import signal
import time

import h5py
import pytest
import torch

from spikelib.hardware.loihi import LoihiLayer, LoihiNetwork, export_netx, load_netx, simulate
from spikelib.hardware.loihi import lava_runner
from spikelib.hardware.loihi.lava_runner import LavaError, import_lava, run_lava

pytestmark = pytest.mark.lava


def _slayer():
    import_lava()  # registers the object_detection stand-in before slayer is imported
    import lava.lib.dl.slayer as slayer

    return slayer


def _export(blocks, path, shape):
    """Run slayer ``blocks`` once (slayer learns its shapes in the first forward pass), then export them as lava-dl's
    tutorials do."""
    with torch.no_grad():
        x = torch.rand(shape)
        for b in blocks:
            x = b(x)
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i}"))
    return path


def _assert_same(sim, lava, groups):
    assert len(sim.spikes) == len(lava.spikes) == groups
    for i in range(groups):
        for name, a, b in (("spikes", sim.spikes[i], lava.spikes[i]), ("u", sim.u[i], lava.u[i]),
                           ("v", sim.v[i], lava.v[i])):
            assert a.shape == b.shape, (i, name, a.shape, b.shape)
            bad = (a != b).nonzero()
            assert bad.numel() == 0, f"group {i} {name}: {len(bad)} mismatches, first {bad[0].tolist()}"
        assert int(sim.spikes[i].sum()) > 0, f"group {i} never spiked"


def test_input_neurons_5d_conv_flatten_per_neuron_dense_with_reset(tmp_path):
    """lava-dl's Input block (an input layer with a neuron group, netx transform weight/bias), a Conv block whose
    weights are rewritten in the older 5-d layout [C_out, C_in, kh, kw, 1] (lava-dl's tiny.net), Flatten, and a Dense
    block with per-neuron decays (shared_param=False); graded input current, a per-sample input bias and a reset
    interval (group l resets at t % 6 == l)."""
    slayer = _slayer()
    torch.manual_seed(0)
    p = {"threshold": 1.0, "current_decay": 0.2, "voltage_decay": 0.05, "requires_grad": False}
    blocks = torch.nn.ModuleList([
        slayer.block.cuba.Input(dict(p, threshold=0.5), weight=2.0, bias=0.25),
        slayer.block.cuba.Conv(p, 2, 4, 3, stride=2, padding=1, weight_scale=2, weight_norm=False),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(dict(p, shared_param=False, current_decay=[0.1, 0.6], voltage_decay=[0.0, 0.3]),
                                64, 6, weight_scale=3, weight_norm=False),
    ])
    path = _export(blocks, tmp_path / "slayer_conv.net", (1, 2, 8, 8, 10))
    with h5py.File(path, "a") as f:  # the older 5-d conv weights netx reshapes
        w = f["layer/1/weight"][()]
        del f["layer/1/weight"]
        f["layer/1"].create_dataset("weight", data=w[..., None])
        assert f["layer/1/weight"].ndim == 5 and f["layer/3/neuron/iDecay"].shape == (6,)
    net = load_netx(path)
    assert net.input_neurons is not None and net.input_neurons.transform_weight == 128
    assert len(set(net.layers[1].i_decay.tolist())) > 1  # per-neuron decays really differ
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 400, (16, 2, 128), generator=g) * (torch.rand(16, 2, 128, generator=g) < 0.5)
    bias = torch.randint(-20, 40, (2, 128), generator=g)
    sim = simulate(net, x, reset_interval=6, input_bias=bias)
    lava = run_lava(path, x, reset_interval=6, input_bias=bias)
    _assert_same(sim, lava, 3)
    assert not torch.equal(simulate(net, x, input_bias=bias).v[1], sim.v[1])  # the reset mattered


def test_recurrent_per_neuron_decays_with_reset_offset(tmp_path):
    """lava-dl's Recurrent block (netx dense_rec: input and recurrent weights scaled together) with per-neuron decays,
    between two Dense blocks; spikes in, reset_interval 9 with offset 2."""
    slayer = _slayer()
    torch.manual_seed(2)
    p = {"threshold": 0.6, "current_decay": 0.3, "voltage_decay": 0.1, "requires_grad": False}
    blocks = torch.nn.ModuleList([
        slayer.block.cuba.Dense(p, 12, 8, weight_scale=2, weight_norm=False),
        slayer.block.cuba.Recurrent(dict(p, shared_param=False, current_decay=[0.05, 0.5],
                                         voltage_decay=[0.0, 0.2]), 8, 7, weight_scale=2, weight_norm=False),
        slayer.block.cuba.Dense(p, 7, 4, weight_scale=3, weight_norm=False),
    ])
    path = _export(blocks, tmp_path / "slayer_rec.net", (1, 12, 10))
    with h5py.File(path, "r") as f:
        assert f["layer/1/type"][0] == b"dense_rec" and f["layer/1/weight_rec"].shape == (7, 7)
    net = load_netx(path)
    assert net.layers[1].weight_rec is not None and bool(net.layers[1].weight_rec.any())
    x = (torch.rand(40, 2, 12, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    sim = simulate(net, x, reset_interval=9, reset_offset=2)
    _assert_same(sim, run_lava(path, x, reset_interval=9, reset_offset=2), 3)
    no_rec = LoihiNetwork(12, [net.layers[0], LoihiLayer(weight=net.layers[1].weight, vth=net.layers[1].vth,
                                                         i_decay=net.layers[1].i_decay,
                                                         v_decay=net.layers[1].v_decay), net.layers[2]])
    assert not torch.equal(simulate(no_rec, x, reset_interval=9, reset_offset=2).v[1], sim.v[1])


# ------------------------------------------------------------------------------------------ the runner's failures
def _live_members(pgid):
    """Processes of process group ``pgid`` that are not zombies (zombies are dead and await reaping by init)."""
    live = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.append(int(entry))
    return live


def _assert_no_lava_process_left():
    pgid = lava_runner._last_process_group
    assert pgid is not None
    deadline = time.monotonic() + 20  # SIGKILL is immediate; this only waits for the kernel to finish the exits
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_members(pgid) == [], f"processes left in Lava's process group {pgid}"


def _small_net(tmp_path, T=20):
    g = torch.Generator().manual_seed(4)
    net = LoihiNetwork(6, [LoihiLayer(weight=torch.randint(-50, 200, (4, 6), generator=g), vth=100, name="a")])
    return export_netx(net, tmp_path / "small.net"), (torch.rand(T, 1, 6, generator=g) < 0.3).float()


def test_normal_run_leaves_no_process(tmp_path):
    path, x = _small_net(tmp_path)
    run_lava(path, x)
    _assert_no_lava_process_left()


def test_child_exception_is_raised_with_its_message(tmp_path, monkeypatch):
    """A Lava process model that raises: run_lava raises LavaError with the child's message and traceback (not a
    TimeoutError: without the runner's hooks Lava 0.10 waits forever), and no Lava process is left."""
    from lava.proc.lif.models import PyLifModelBitAcc

    def fail(self):
        raise ValueError("injected failure in a Lava child (spikelib test)")

    monkeypatch.setattr(PyLifModelBitAcc, "spiking_activation", fail)  # inherited by the forked Lava processes
    path, x = _small_net(tmp_path)
    with pytest.raises(LavaError, match=r"PyLifModelBitAcc raised ValueError: injected failure in a Lava child") as e:
        run_lava(path, x, timeout=300)
    assert "spiking_activation" in str(e.value)  # the child's traceback
    _assert_no_lava_process_left()


def test_timeout_kills_lava(tmp_path):
    path, x = _small_net(tmp_path, T=200_000)  # minutes of Lava steps
    with pytest.raises(TimeoutError, match=r"Lava did not finish within timeout=4 s"):
        run_lava(path, x, timeout=4)
    _assert_no_lava_process_left()


def test_keyboard_interrupt_kills_lava(tmp_path):
    path, x = _small_net(tmp_path, T=200_000)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 4.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_lava(path, x, timeout=None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    _assert_no_lava_process_left()


def test_runner_argument_checks(tmp_path):
    path, x = _small_net(tmp_path)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        run_lava(path, x, timeout=0)
    with pytest.raises(ValueError, match="input_bias needs a network with input neurons"):
        run_lava(path, x, input_bias=torch.zeros(6))
    with pytest.raises(ValueError, match="reset_interval must be None"):
        run_lava(path, x, reset_interval=-2)
    with pytest.raises(FileNotFoundError):
        run_lava(tmp_path / "none.net", x)
