"""The model-zoo recipes: they validate against the run-config schema, name registered models with the reference
settings, list their deliberate differences, and the models take batches as the trainer hands them.

The ImageNet-size transformer recipes live in configs/transformers/ because spikelib has no ImageNet reader yet
(tests/test_config.py builds the datasets of every configs/*.yaml); the CPU-sized one (configs/transformer_cpu.yaml)
trains on the registered synthetic images and runs in tests/test_recipes.py like every shipped recipe."""

from pathlib import Path

import pytest
import torch

from spikelib.models import get_model
from spikelib.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
REFERENCE = {  # recipe: (model name, model arguments that must be the reference's, optimiser lr, epochs)
    "transformers/meta_spikeformer_imagenet.yaml": ("meta_spikeformer_8_512", dict(num_classes=1000, T=1), 2.4e-3, 200),
    "transformers/sdt_v1_imagenet.yaml": ("sdt_8_512", dict(num_classes=1000, T=4, pooling_stat="1111"), 1e-3, 310),
    "transformers/maxformer_imagenet.yaml": ("maxformer_10_384", dict(num_classes=1000, T=4), 2.7e-3, 200),
    "transformer_cpu.yaml": ("maxformer_cifar_tiny_test", dict(T=2), 1.5e-3, 20),
    "e3dsnn_cpu.yaml": ("e3dsnn_tiny", dict(in_channels=3), 1e-2, 8),
}


@pytest.mark.parametrize("recipe", list(REFERENCE))
def test_recipe_parses_and_builds_its_model(recipe):
    cfg = load_config(CONFIGS / recipe)
    name, args, lr, epochs = REFERENCE[recipe]
    assert cfg.model.name == name and cfg.optim.lr == pytest.approx(lr) and cfg.train.epochs == epochs
    for k, v in args.items():
        assert cfg.model.args[k] == v, k
    text = (CONFIGS / recipe).read_text()
    assert "Deliberate differences" in text
    if "imagenet" in recipe:
        return  # reference sizes: built (and their parameter counts checked) in tests/test_zoo_models.py
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.args.items()}
    model = get_model(name, **kw).eval()
    if name.startswith("e3dsnn"):
        x = torch.rand(128, 2, 3)  # points first [P, B, C], as the trainer hands a loader batch [B, P, C]
    else:
        x = torch.rand(model.T, 2, 3, 16, 16)  # [T, B, C, H, W]: loader items [T, C, H, W], made time first
    with torch.no_grad():
        assert model(x).shape == (2, cfg.model.args["num_classes"])


@pytest.mark.parametrize("recipe", ["transformers/meta_spikeformer_imagenet.yaml", "transformers/sdt_v1_imagenet.yaml",
                                    "transformers/maxformer_imagenet.yaml"])
def test_reference_size_models_take_time_first_batches(recipe):
    cfg = load_config(CONFIGS / recipe)
    model = get_model(cfg.model.name, **cfg.model.args).eval()
    x = torch.rand(model.T, 1, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (1, 1000)
