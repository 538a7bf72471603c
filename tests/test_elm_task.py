"""ELM on tasks: the SHD-Adding transform, and a long-horizon cue-recall task where ELM beats LIF at equal budget."""

import time

import pytest
import torch

import spikelib
from spikelib.data.shd_adding import NUM_CLASSES, SHDAdding
from spikelib.neurons.elm import ELM


# ------------------------------------------------------------------------------------------------------ SHD-Adding
def _fake_shd(n=12, T=5, C=3):
    g = torch.Generator().manual_seed(0)
    return [((torch.rand(T, C, generator=g) < 0.3).float(), (7 * i + 3) % 20) for i in range(n)]


def test_shd_adding_pairs_and_labels():
    base = _fake_shd()
    ds = SHDAdding(base, num_samples=50, seed=3)
    assert len(ds) == 50 and NUM_CLASSES == 19
    labels = []
    for n in range(len(ds)):
        x, y = ds[n]
        i, j = ds.pairs[n]
        assert x.shape == (10, 3) and torch.equal(x[:5], base[i][0]) and torch.equal(x[5:], base[j][0])
        assert int(y) == base[i][1] % 10 + base[j][1] % 10 and y.dtype == torch.int64
        labels.append(int(y))
    assert 0 <= min(labels) and max(labels) <= 18 and len(set(labels)) > 5
    # English 3 (label 3) + German 3 (label 13) = 6
    # (lengths may differ: the pair is as long as both together)
    pair = SHDAdding([(torch.zeros(2, 1), 3), (torch.ones(4, 1), 13)], num_samples=40, seed=0)
    for n in range(len(pair)):
        i, j = pair.pairs[n]
        assert int(pair[n][1]) == 6 and pair[n][0].shape == (4 + 2 * int(i + j), 1)


def test_shd_adding_deterministic_by_seed_and_batches():
    base = _fake_shd()
    a, b, c = SHDAdding(base, 30, seed=1), SHDAdding(base, 30, seed=1), SHDAdding(base, 30, seed=2)
    assert (a.pairs == b.pairs).all() and not (a.pairs == c.pairs).all()
    assert all(torch.equal(a[n][0], b[n][0]) for n in range(30))
    assert len(SHDAdding(base)) == len(base)
    x, y = next(iter(torch.utils.data.DataLoader(a, batch_size=8)))
    assert x.shape == (8, 10, 3) and y.shape == (8,)


def test_shd_adding_errors():
    with pytest.raises(ValueError, match="empty"):
        SHDAdding([])
    with pytest.raises(ValueError, match="num_samples"):
        SHDAdding(_fake_shd(), num_samples=0)
    with pytest.raises(ValueError, match="seed"):
        SHDAdding(_fake_shd(), seed=-1)
    with pytest.raises(TypeError, match="map-style"):
        SHDAdding(iter(_fake_shd()))
    with pytest.raises(ValueError, match="0..19"):
        SHDAdding([(torch.zeros(2, 3), 20)], 1)[0]
    with pytest.raises(ValueError, match="label"):
        SHDAdding([(torch.zeros(2, 3), torch.tensor(1.5))], 1)[0]
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        SHDAdding([(torch.zeros(2, 3, 1), 1)], 1)[0]
    mixed = SHDAdding([(torch.zeros(2, 3), 1), (torch.zeros(2, 4), 2)], 20, seed=0)
    with pytest.raises(ValueError, match="channels"):
        [mixed[n] for n in range(20)]
    with pytest.raises(IndexError):
        SHDAdding(_fake_shd(), 5)[5]


# ------------------------------------------------------------------------------------------- long-horizon cue recall
def cue_recall(n, delay, n_cues=4, channels=8, cue_steps=5, cue_rate=0.8, noise=0.02, seed=0):
    """One of ``n_cues`` channels fires (rate ``cue_rate``, surely at step 0) during the first ``cue_steps`` steps; then
    ``delay`` steps of background noise on all channels. Label: the cued channel, read at the last step."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_cues
    x = (torch.rand(cue_steps + delay, n, channels, generator=g) < noise).float()
    cue = (torch.rand(cue_steps, n, generator=g) < cue_rate).float()
    cue[0] = 1.0
    rows = torch.arange(n)
    x[:cue_steps, rows, y] = torch.maximum(x[:cue_steps, rows, y], cue)
    return x, y


class LIFNet(torch.nn.Module):
    """Linear -> LIF (tau 10) -> Linear -> leaky non-firing readout (tau 10); logits = readout membrane at the end."""

    def __init__(self, c, hidden, k, tau=10.0):
        super().__init__()
        self.fc1, self.lif, self.fc2, self.tau = torch.nn.Linear(c, hidden), spikelib.LIF(tau=tau), \
            torch.nn.Linear(hidden, k), tau

    def forward(self, x):
        u = spikelib.lif(self.fc2(self.lif(self.fc1(x))), tau=self.tau, v_threshold=1e9, return_membrane=True)
        return u.membrane[-1]


class ELMNet(torch.nn.Module):
    """One ELM layer (reference defaults except sizes); logits = its readout at the last step."""

    def __init__(self, c, k, d_m=8, hidden=16):
        super().__init__()
        self.elm = ELM(c, k, num_memory=d_m, mlp_hidden_size=hidden)

    def forward(self, x):
        return self.elm(x)[-1]


def _train_eval(model, train, test, epochs=30, lr=1e-2, batch=64):
    (xtr, ytr), (xte, yte) = train, test
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        perm = torch.randperm(xtr.shape[1], generator=g)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(xtr[:, idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((model(xte).argmax(1) == yte).float().mean())


def _n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_elm_beats_lif_on_long_delay_cue_recall():
    start = time.perf_counter()
    accs = {}
    for delay in (2, 80):  # short delay: a control showing that the LIF network can learn the cue at all
        train, test = cue_recall(512, delay, seed=0), cue_recall(256, delay, seed=1)
        torch.manual_seed(0)
        elm_net = ELMNet(8, 4)
        torch.manual_seed(0)
        lif_net = LIFNet(8, round((_n_params(elm_net) - 4) / 13), 4)  # 13 h + 4 parameters: same budget
        assert abs(_n_params(elm_net) - _n_params(lif_net)) <= 13
        accs[delay] = (_train_eval(elm_net, train, test), _train_eval(lif_net, train, test))
    print(f"cue recall (4 classes, chance 0.25): ELM {_n_params(elm_net)} params, LIF {_n_params(lif_net)} params; "
          f"accuracy ELM/LIF delay 2: {accs[2][0]:.3f}/{accs[2][1]:.3f}, delay 80: {accs[80][0]:.3f}/"
          f"{accs[80][1]:.3f} ({time.perf_counter() - start:.1f} s)")
    assert accs[2][0] > 0.9 and accs[2][1] > 0.9           # both learn the cue when it is recent
    assert accs[80][0] > 0.9 and accs[80][1] < 0.45         # only ELM remembers it over 80 silent steps
    assert accs[80][0] - accs[80][1] > 0.4


# ----------------------------------------------------------------------------------------------- recipe and model
def _flat_section(text, name):
    """A flat ``key: value`` section of a recipe (no PyYAML needed)."""
    section, out = None, {}
    for line in text.splitlines():
        code = line.split("#", 1)[0].rstrip()
        if code and not code.startswith(" "):
            section = code.rstrip(":")
        elif code and section == name:
            key, value = (part.strip() for part in code.split(":", 1))
            if value in ("true", "false"):
                out[key] = value == "true"
            else:
                for kind in (int, float, str):
                    try:
                        out[key] = kind(value)
                        break
                    except ValueError:
                        pass
    return out


def test_recipe_builds_the_notebook_model_and_drops_inputs_only_in_training():
    from pathlib import Path

    from spikelib.models import ELMClassifier

    text = (Path(__file__).resolve().parents[1] / "configs" / "shd_elm.yaml").read_text()
    model = ELMClassifier.from_config({k: v for k, v in _flat_section(text, "model").items() if k != "name"})
    elm = model.elm
    assert elm.num_memory == 100 and elm.config.dt == 10.0 and elm.config.lambda_value == 5.0
    assert float(elm.tau_mem.max()) == pytest.approx(500.0, rel=1e-3) and elm.config.version == 1
    assert _flat_section(text, "optim")["lr"] == 5e-3 and _flat_section(text, "data")["batch_size"] == 8
    small = ELMClassifier(6, 3, num_memory=4, input_dropout=0.5)
    x = torch.ones(7, 2, 6)
    small.eval()
    assert torch.equal(small(x), small(x))                       # no dropout in evaluation
    assert torch.equal(small.dropout(x), x)
    small.train()
    dropped = small.dropout(x)
    assert set(dropped.unique().tolist()) <= {0.0, 2.0} and 0.3 < float((dropped == 0).float().mean()) < 0.7
    assert small(x).shape == (2, 3)
    with pytest.raises(ValueError, match="p must be"):
        ELMClassifier(6, 3, input_dropout=1.0)
