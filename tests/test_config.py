"""Run configurations: every shipped configs/*.yaml validates and builds its model; unknown keys and bad values give
errors that name the key path and what was expected; overrides; the dataset/model registries' argument checks."""

from pathlib import Path

import pytest
import yaml

from spikelib.training.config import (ConfigError, RunConfig, apply_overrides, load_config, parse_config)
from spikelib.training.datasets import build_datasets, check_kwargs, list_datasets, _DATASETS
from spikelib.training.trainer import build_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
BASE = {"data": {"dataset": "synthetic_temporal"}, "model": {"name": "spiking_mlp"}}


def _with(section, **values):
    raw = {k: dict(v) for k, v in BASE.items()}
    raw.setdefault(section, {}).update(values)
    return raw


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load_and_build(path):
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config.data.dataset in list_datasets()
    check_kwargs(_DATASETS[config.data.dataset], config.data.args, "data", skip=("seed",))
    model = build_model(config, {"n_channels": 140, "n_classes": 20})
    assert sum(p.numel() for p in model.parameters()) > 0
    assert parse_config(config.to_dict()) == config  # the plain form round-trips


def test_recipes_keep_their_reference_values():
    delays = load_config(CONFIGS[0].parent / "shd_delays.yaml")
    assert delays.model.name == "snn_delays" and delays.model.args["hidden"] == [256, 256]
    assert delays.optim.lr == 1e-3 and delays.schedule.name == "onecycle" and delays.schedule.max_lr == 5e-3
    assert delays.delays.lr == 0.1 and delays.delays.final_epoch == 37 and delays.delays.eval == "rounded"
    assert delays.data.batch_size == 256 and delays.train.epochs == 150 and delays.data.args["channels_out"] == 140
    elm = load_config(CONFIGS[0].parent / "shd_elm.yaml")
    assert elm.optim.name == "adamax" and elm.optim.lr == 5e-3 and elm.data.val_fraction == 0.2
    assert elm.delays is None and elm.data.batch_size == 8


def test_defaults_and_open_sections():
    c = parse_config({"data": {"dataset": "synthetic_temporal", "n_train": 10}, "model": {"name": "m", "hidden": [4]}})
    assert c.data.args == {"n_train": 10} and c.model.args == {"hidden": [4]}
    assert c.optim.name == "adam" and c.schedule.name == "constant" and c.train.amp == "auto" and c.delays is None
    assert c.to_dict()["data"]["n_train"] == 10 and "delays" not in c.to_dict()


@pytest.mark.parametrize("raw, message", [
    ({"data": {"dataset": "x"}, "model": {"name": "m"}, "optimizer": {}},
     "optimizer: unknown key (did you mean 'optim'?)"),
    (_with("optim", lrr=0.1), "optim.lrr: unknown key (did you mean 'lr'?); known keys: betas, grad_clip, lr"),
    (_with("train", epochs=0), "train.epochs: expected an integer >= 1, got 0"),
    (_with("train", epochs=2.5), "train.epochs: expected an integer >= 1, got 2.5"),
    (_with("train", epochs=True), "train.epochs: expected an integer >= 1, got True"),
    (_with("optim", lr="fast"), "optim.lr: expected a finite number > 0, got 'fast'"),
    (_with("optim", lr=-1e-3), "optim.lr: expected a number > 0, got -0.001"),
    (_with("optim", lr=float("nan")), "optim.lr: expected a finite number > 0"),
    (_with("optim", name="adagrad"), "optim.name: expected one of adam, adamw, adamax, sgd, got 'adagrad'"),
    (_with("optim", betas=[0.9]), "optim.betas: expected two numbers in [0, 1), got [0.9]"),
    (_with("optim", grad_clip=0), "optim.grad_clip: expected a number > 0, got 0"),
    (_with("data", val_fraction=1.0), "data.val_fraction: expected a number >= 0 and < 1, got 1.0"),
    (_with("data", batch_size="64"), "data.batch_size: expected an integer >= 1, got '64'"),
    (_with("schedule", name="linear"), "schedule.name: expected one of constant, cosine, step, multistep, onecycle"),
    (_with("train", device="gpu"), "train.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    (_with("train", amp="yes"), "train.amp: expected auto, true or false, got 'yes'"),
    (_with("train", progress=1), "train.progress: expected true or false, got 1"),
    (_with("delays", lr=0), "delays.lr: expected a number > 0, got 0"),
    (_with("delays", eval="floor"), "delays.eval: expected one of rounded, float"),
    ({"data": {"dataset": "x"}}, "model: required section is missing"),
    ({"data": {"batch_size": 8}, "model": {"name": "m"}}, "data.dataset: required key is missing"),
    ({"data": {"dataset": "x"}, "model": {"hidden": [3]}}, "model.name: required key is missing"),
    ({"data": [1, 2], "model": {"name": "m"}}, "data: expected a mapping of keys to values, got list"),
    ([1, 2], "a run configuration must be a mapping"),
])
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    assert message in str(exc.value)


def test_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="config file .*nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(tmp_path)
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    c = load_config(good, ["optim.lr=0.05", "train.epochs=3", "model.hidden=[8, 4]", "optim.grad_clip=null"])
    assert c.optim.lr == 0.05 and c.train.epochs == 3 and c.model.args["hidden"] == [8, 4] and c.optim.grad_clip is None
    with pytest.raises(ConfigError, match=r"good.yaml: train.epochs: expected an integer >= 1, got 'many'"):
        load_config(good, ["train.epochs=many"])
    for bad, message in (("optim.lr", "expected section.key=value"), ("lr=1", "expected section.key=value"),
                         ("optm.lr=1", "optm: unknown key")):
        with pytest.raises(ConfigError, match=message):
            apply_overrides(BASE, [bad])


def test_dataset_and_model_arguments_are_checked():
    with pytest.raises(ConfigError, match="data.dataset: unknown dataset 'cifar'; known: .*synthetic_shd"):
        build_datasets("cifar", 0)
    with pytest.raises(ConfigError, match=r"data.n_trian: unknown key; this accepts: .*n_train"):
        build_datasets("synthetic_temporal", 0, n_trian=5)
    with pytest.raises(ConfigError, match="data.bin_width: unknown key; this accepts: .*bin_ms"):
        build_datasets("synthetic_shd", 0, bin_width=5)
    with pytest.raises(ConfigError, match="data: dataset 'synthetic_temporal' rejected its options: n_classes"):
        build_datasets("synthetic_temporal", 0, n_train=4, n_classes=1000)
    info = {"n_channels": 6, "n_classes": 3}
    with pytest.raises(ConfigError, match="model.name: unknown model 'resnet'; known: .*spiking_mlp"):
        build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "resnet"}}), info)
    with pytest.raises(ConfigError, match="model: 'spiking_mlp' rejected its arguments: .*hiden"):
        build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "spiking_mlp", "hiden": [3]}}), info)
    with pytest.raises(ConfigError, match=r"model: 'spiking_mlp' rejected its arguments: .*hidden\[0\]"):
        build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "spiking_mlp", "hidden": [0]}}), info)
    model = build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "spiking_mlp", "hidden": [5]}}),
                        info)  # in/out sizes come from the data
    assert model.linears[0].in_features == 6 and model.out.out_features == 3
