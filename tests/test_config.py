"""Run configurations: every shipped configs/*.yaml validates and builds its model; unknown keys and bad values give
errors that name the key path and what was expected; overrides parsed by the type of their target; duplicate keys,
non-UTF-8 and oversized files refused; sizes taken from the data set (and contradictions refused); stages; the tiny
section; the registries' argument checks; limits for configurations read from checkpoints."""

from pathlib import Path

import pytest
import yaml

from spikelib.training.build import build_model
from spikelib.training.config import (ConfigError, RunConfig, apply_overrides, apply_tiny, check_limits, load_config,
                                      parse_config, read_yaml)
from spikelib.training.datasets import build_datasets, check_kwargs, dataset_builder, list_datasets

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
    check_kwargs(dataset_builder(config.data.dataset), config.data.args, "data", skip=("seed",))
    model = build_model(config, {})  # the sizes the recipe states
    assert sum(p.numel() for p in model.parameters()) > 0
    assert parse_config(config.to_dict()) == config  # the plain form round-trips
    assert config.tiny, f"{path.name} documents no tiny variant"
    tiny = parse_config(apply_tiny(read_yaml(path)))
    assert tiny.data.dataset in list_datasets()


def test_recipes_keep_their_reference_values():
    delays = load_config(CONFIGS[0].parent / "shd_delays.yaml")
    assert delays.model.name == "snn_delays" and delays.model.args["hidden"] == [256, 256]
    assert delays.optim.lr == 1e-3 and delays.schedule.name == "onecycle" and delays.schedule.max_lr == 5e-3
    assert delays.schedule.interval == "epoch" and delays.schedule.cycle_momentum
    assert (delays.schedule.base_momentum, delays.schedule.max_momentum) == (0.85, 0.95)
    assert delays.delays.lr == 0.1 and delays.delays.final_epoch == 37 and delays.delays.eval == "rounded"
    assert delays.delays.init == "reference" and delays.delays.schedule == "cosine"
    assert delays.data.batch_size == 256 and delays.train.epochs == 150 and delays.data.args["channels_out"] == 140
    assert delays.data.args["time_origin"] == "first_spike" and delays.train.amp is False
    assert delays.train.dtype == "float32" and delays.optim.weight_decay == 1e-5
    elm = load_config(CONFIGS[0].parent / "shd_elm.yaml")
    assert elm.optim.name == "adamax" and elm.optim.lr == 5e-3 and elm.data.val_fraction == 0.2
    assert elm.delays is None and elm.data.batch_size == 8 and elm.train.amp is False
    ssc = load_config(CONFIGS[0].parent / "ssc_delays.yaml")
    assert ssc.data.dataset == "ssc" and ssc.data.val_fraction is None  # the official validation split
    assert ssc.model.args["out_features"] == 35 and ssc.train.epochs == 60 and ssc.model.args["hidden"] == [512] * 3


def test_defaults_and_open_sections():
    c = parse_config({"data": {"dataset": "synthetic_temporal", "n_train": 10}, "model": {"name": "m", "hidden": [4]}})
    assert c.data.args == {"n_train": 10} and c.model.args == {"hidden": [4]}
    assert c.optim.name == "adam" and c.schedule.name == "constant" and c.train.amp == "auto" and c.delays is None
    assert c.loss.name == "cross_entropy" and c.stages is None and c.schedule.interval == "step"
    assert c.to_dict()["data"]["n_train"] == 10 and "delays" not in c.to_dict() and "stages" not in c.to_dict()
    # the data set / model sections may be left to Python (Trainer(model=..., datasets=...))
    assert parse_config({"optim": {"lr": 0.1}}, require=()).data.dataset == ""


@pytest.mark.parametrize("raw, message", [
    ({"data": {"dataset": "x"}, "model": {"name": "m"}, "optimizer": {}},
     "optimizer: unknown key (did you mean 'optim'?)"),
    (_with("optim", lrr=0.1), "optim.lrr: unknown key (did you mean 'lr'?); known keys: betas, grad_clip, groups, lr"),
    (_with("train", epochs=0), "train.epochs: expected an integer >= 1, got 0"),
    (_with("train", epochs=2.5), "train.epochs: expected an integer >= 1, got 2.5"),
    (_with("train", epochs=True), "train.epochs: expected an integer >= 1, got True"),
    (_with("optim", lr="fast"), "optim.lr: expected a finite number > 0, got 'fast'"),
    (_with("optim", lr=-1e-3), "optim.lr: expected a number > 0, got -0.001"),
    (_with("optim", lr=float("nan")), "optim.lr: expected a finite number > 0"),
    (_with("optim", name="adagrad"), "optim.name: expected one of adam, adamw, adamax, sgd, got 'adagrad'"),
    (_with("optim", betas=[0.9]), "optim.betas: expected two numbers in [0, 1), got [0.9]"),
    (_with("optim", grad_clip=0), "optim.grad_clip: expected a number > 0, got 0"),
    (_with("optim", groups={"params": "*"}), "optim.groups: expected a list of groups"),
    (_with("data", val_fraction=1.0), "data.val_fraction: expected a number >= 0 and < 1, got 1.0"),
    (_with("data", batch_size="64"), "data.batch_size: expected an integer >= 1, got '64'"),
    (_with("schedule", name="linear"), "schedule.name: expected one of constant, cosine, step, multistep, onecycle"),
    (_with("schedule", interval="batch"), "schedule.interval: expected one of step, epoch, got 'batch'"),
    (_with("train", device="gpu"), "train.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    (_with("train", amp="yes"), "train.amp: expected auto, true or false, got 'yes'"),
    (_with("train", progress=1), "train.progress: expected true or false, got 1"),
    (_with("train", select="acc"), "train.select: expected val_acc, val_loss, val_<metric> or last, got 'acc'"),
    (_with("train", dtype="float16"), "train.dtype: expected one of float32, float64, got 'float16'"),
    (_with("delays", lr=0), "delays.lr: expected a number > 0, got 0"),
    (_with("delays", eval="floor"), "delays.eval: expected one of rounded, float"),
    (_with("delays", init="gauss"), "delays.init: expected one of model, reference"),
    ({"data": {"dataset": "x"}}, "model: required section is missing"),
    ({"data": {"batch_size": 8}, "model": {"name": "m"}}, "data.dataset: required key is missing"),
    ({"data": {"dataset": "x"}, "model": {"hidden": [3]}}, "model.name: required key is missing"),
    ({"data": [1, 2], "model": {"name": "m"}}, "data: expected a mapping of keys to values, got list"),
    ([1, 2], "a run configuration must be a mapping"),
    (dict(BASE, stages={"timesteps": [5, 3], "epochs": [2, 2, 2]}), "stages.epochs: expected one value or a list of 2"),
    (dict(BASE, stages={"timesteps": []}), "stages.timesteps: expected a non-empty list"),
    (dict(BASE, stages=[{"timesteps": 2}]), "stages[0]: expected a mapping with at least epochs"),
    (dict(BASE, stages=[{"epochs": 1, "name": "a"}, {"epochs": 1, "name": "a"}]), "stage name 'a' appears twice"),
    (dict(BASE, stages=[{"epochs": 1, "delays": "rounded"}]), "stages: delays: rounded needs a delays section"),
    (dict(_with("train", epochs=3), stages={"timesteps": [2], "epochs": 1}),
     "train.epochs: with a stages section the epochs are given per stage"),
    (dict(BASE, tiny={"lr": 1}), "tiny.lr: expected section.key"),
])
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    assert message in str(exc.value)


def test_stages_short_and_long_form():
    c = parse_config(dict(BASE, stages={"timesteps": [5, 3, 2, 1], "epochs": [4, 2, 2, 2], "lr": 0.01}))
    assert [(s.name, s.timesteps, s.epochs, s.lr, s.init) for s in c.stages] == [
        ("T5", 5, 4, 0.01, "best"), ("T3", 3, 2, 0.01, "best"), ("T2", 2, 2, 0.01, "best"), ("T1", 1, 2, 0.01, "best")]
    assert c.total_epochs == 10 and parse_config(c.to_dict()) == c
    long = parse_config(dict(BASE, delays={}, stages=[{"name": "train", "epochs": 3},
                                                      {"name": "finetune", "epochs": 1, "delays": "rounded",
                                                       "lr": 1e-4, "init": "last"}]))
    assert [(s.name, s.delays, s.init) for s in long.stages] == [("train", None, "best"), ("finetune", "rounded", "last")]


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


def test_overrides_are_parsed_by_the_type_of_their_target(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"data": {"dataset": "synthetic_shd"}, "model": {"name": "snn_delays"}}))
    c = load_config(good, ["optim.lr=1e-3", "data.root=2024", "data.max_time=null", "model.tau=2",
                           "train.device=cuda:1", "model.surrogate_alpha=4", "data.bin_ms=5"])
    assert c.optim.lr == 1e-3  # YAML alone would read 1e-3 as a string
    assert c.data.args["root"] == "2024" and c.data.args["max_time"] is None  # a str target keeps the text
    assert c.model.args["tau"] == 2 and c.model.args["surrogate_alpha"] == 4 and c.data.args["bin_ms"] == 5
    assert load_config(good, ["data.root=runs/x", "data.root="]).data.args == {}  # an empty value removes the key
    with pytest.raises(ConfigError, match=r"model.hidden: expected a list of integers \(e.g. \[64\] or \[64, 64\]\), "
                                          r"got 8"):
        build_model(load_config(good, ["model.hidden=8"]), {"n_channels": 140, "n_classes": 20})
    with pytest.raises(ConfigError, match=r"data.n_train: expected an integer, got 'many'"):
        build_datasets("synthetic_shd", 0, **load_config(good, ["data.n_train=many"]).data.args)
    with pytest.raises(ConfigError, match=r"model.max_delay: expected an integer, got 2.5"):
        build_model(load_config(good, ["model.max_delay=2.5"]), {"n_channels": 140, "n_classes": 20})


def test_duplicate_keys_non_utf8_and_oversized_files_are_refused(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("data:\n  dataset: synthetic_temporal\nmodel:\n  name: spiking_mlp\noptim:\n  lr: 0.01\n  lr: 5.0\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: line 7: key 'lr' appears twice in one mapping \(first on line "
                                          r"6\); remove one of them"):
        load_config(dup)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("data:\n  dataset: synthetic_temporal\n  root: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8 text \(byte 0xe9 at offset 47\); save the file as "
                                          r"UTF-8"):
        load_config(latin)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="is too large for a run configuration"):
        load_config(big)


def test_limits_of_configurations_read_from_checkpoints():
    check_limits({"data": {"dataset": "x"}, "model": {"hidden": [256, 256]}})
    for raw, message in (({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}, "nested deeper than 8"),
                         ({"model": {"hidden": list(range(5000))}}, "model.hidden has 5000 items"),
                         ({"data": {"root": "x" * 5000}}, "data.root is a string of 5000 characters"),
                         ({"model": {"hidden": [10 ** 13]}}, r"model.hidden\[0\] = 10000000000000 is beyond"),
                         ({"optim": {"lr": float("inf")}}, "optim.lr = inf is not finite"),
                         ({"model": {"x": object()}}, "model.x holds a object, not a plain value")):
        with pytest.raises(ConfigError, match=message):
            check_limits(raw)


def test_sizes_come_from_the_data_set_unless_the_config_contradicts_it():
    info = {"n_channels": 6, "n_classes": 3}
    model = build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "spiking_mlp", "hidden": [5]}}),
                        info)
    assert model.linears[0].in_features == 6 and model.out.out_features == 3
    same = parse_config({"data": {"dataset": "d"}, "model": {"name": "spiking_mlp", "out_features": 3}})
    assert build_model(same, info).out.out_features == 3
    other = parse_config({"data": {"dataset": "synthetic_shapes"}, "model": {"name": "e3dsnn_tiny", "num_classes": 40,
                                                                             "in_channels": 3}})
    with pytest.raises(ConfigError, match=r"model.num_classes: 40 in the configuration, but synthetic_shapes has 10 "
                                          r"classes; remove model.num_classes \(it is taken from the data\) or fix it"):
        build_model(other, {"n_channels": 3, "n_classes": 10})
    recipe = load_config(CONFIGS[0].parent / "modelnet_e3dsnn.yaml",
                         ["data.dataset=synthetic_shapes", "data.use_normals=false", "model.use_normals=false",
                          "model.in_channels=3"])
    with pytest.raises(ConfigError, match="model.num_classes: 40 in the configuration, but synthetic_shapes has 10"):
        build_model(recipe, {"n_channels": 3, "n_classes": 10})


def test_dataset_and_model_arguments_are_checked():
    with pytest.raises(ConfigError, match="data.dataset: unknown dataset 'cifar'; known: .*synthetic_shd"):
        build_datasets("cifar", 0)
    with pytest.raises(ConfigError, match=r"data.n_trian: unknown key; this accepts: .*n_train"):
        build_datasets("synthetic_temporal", 0, n_trian=5)
    with pytest.raises(ConfigError, match="data.bin_width: unknown key; this accepts: .*bin_ms"):
        build_datasets("synthetic_shd", 0, bin_width=5)
    with pytest.raises(ConfigError, match="data.time_origin: expected a string, got 0"):
        build_datasets("shd", 0, time_origin=0)
    with pytest.raises(ConfigError, match="data: dataset 'synthetic_temporal' rejected its options: n_classes"):
        build_datasets("synthetic_temporal", 0, n_train=4, n_classes=1000)
    info = {"n_channels": 6, "n_classes": 3}
    with pytest.raises(ConfigError, match="model.name: unknown model 'resnet'; known: .*spiking_mlp"):
        build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "resnet"}}), info)
    with pytest.raises(ConfigError, match="model.hiden: unknown key; this accepts: .*hidden"):
        build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "spiking_mlp", "hiden": [3]}}), info)
    with pytest.raises(ConfigError, match=r"model: 'spiking_mlp' rejected its arguments: .*hidden\[0\]"):
        build_model(parse_config({"data": {"dataset": "d"}, "model": {"name": "spiking_mlp", "hidden": [0]}}), info)


def test_the_model_registry_exposes_what_constructors_accept():
    from spikelib.models.registry import model_accepts_any, model_parameters

    mlp = model_parameters("spiking_mlp")
    assert {"in_features", "hidden", "out_features", "tau"} <= set(mlp) and not model_accepts_any("spiking_mlp")
    delays = model_parameters("snn_delays")
    assert {"in_features", "max_delay", "surrogate_alpha", "right_padding"} <= set(delays)
    assert "num_classes" in model_parameters("e3dsnn_tiny")  # from the return annotation E3DSNN
    assert model_accepts_any("elm_classifier") and "num_input" in model_parameters("elm_classifier")
