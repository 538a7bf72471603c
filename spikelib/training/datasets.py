"""A small registry of datasets for ``spikelib train``, keyed by name.

A builder takes ``seed`` (the run's seed, for generated data) plus the ``data`` section's own options and returns a
:class:`DatasetBundle` with the ``train`` and ``test`` datasets (items ``(x: [T, C] float tensor, label: int)``),
an official ``val`` split where the data set has one (SSC), and ``info`` (``n_classes``, ``n_channels``, ``n_steps``
where fixed, ``chance``). Otherwise the validation split is carved out of the training set by the trainer
(``data.val_fraction``), never out of the test set. Unknown options and values of the wrong type raise
:class:`~spikelib.training.errors.ConfigError` naming ``data.<key>`` and what the dataset accepts.

Image data sets (items ``[C, H, W]``, ``info["layout"] = "static"``): ``digits`` (scikit-learn's 8x8 handwritten
digits, read without importing scikit-learn), ``cifar10`` / ``cifar100`` (the official binary files, never the pickled
version) and ``synthetic_images`` (blob layouts, no download).

``time_origin`` (SHD, SSC and the synthetic SHD-like sets): ``zero`` keeps the times of the files, ``first_spike``
shifts each sample so that its first spike is at t = 0, as spikingjelly's SHD frames (which SNN-delays trained on) do.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from spikelib.training.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["DatasetBundle", "register_dataset", "list_datasets", "build_datasets", "dataset_builder"]


@dataclass
class DatasetBundle:
    """``train`` and ``test`` datasets (``test`` may be ``None``), facts about them (``info``: n_classes, n_channels,
    chance, ``layout``: ``"time"`` (items ``[T, ...]``, the default) or ``"static"`` (items without a time axis, e.g.
    images that the model repeats over time), ...), the ``collate`` function of their loaders (``None``: the default
    stacking), an optional training-batch mix ``batch_mix(x [B, T, C], y) -> (x', y_a, y_b, lam)`` (e.g. time-axis
    CutMix; the loss is then ``(1 - lam) L(y_a) + lam L(y_b)`` per sample) and an optional official validation split
    ``val`` (used when ``data.val_fraction`` is left unset)."""

    train: Any
    test: Any = None
    info: Dict[str, Any] = field(default_factory=dict)
    collate: Optional[Callable] = None
    batch_mix: Optional[Callable] = None
    val: Any = None


_DATASETS: Dict[str, Callable[..., DatasetBundle]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., DatasetBundle]], Callable[..., DatasetBundle]]:
    """Decorator: register a builder ``fn(seed, **options) -> DatasetBundle`` under ``name``."""

    def deco(fn: Callable[..., DatasetBundle]) -> Callable[..., DatasetBundle]:
        if name in _DATASETS and _DATASETS[name] is not fn:
            raise ValueError(f"dataset name {name!r} is already registered")
        _DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> List[str]:
    """The registered dataset names, sorted."""
    return sorted(_DATASETS)


def dataset_builder(name: Any) -> Optional[Callable[..., DatasetBundle]]:
    """The builder registered as ``name`` (``None`` if there is none)."""
    return _DATASETS.get(name) if isinstance(name, str) else None


def check_kwargs(fn: Callable, kwargs: Dict[str, Any], path: str, skip: tuple = (), also: tuple = ()) -> None:
    """Raise :class:`ConfigError` for keys of ``kwargs`` that ``fn`` does not accept (``path.key``) and for values
    that do not fit the parameter's type annotation; ``also`` names further accepted keys (handled by the caller)."""
    from spikelib.training.typecheck import check_arguments
    from spikelib.training.typecheck import parameters

    params = {k: v for k, v in parameters(fn).items() if k not in skip}
    accepts_more = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    check_arguments(params, kwargs, path, accepts_more=accepts_more, also=also)


def build_datasets(name: str, seed: int, **options: Any) -> DatasetBundle:
    """Build the dataset registered as ``name`` with the ``data`` section's options."""
    if not isinstance(name, str) or not name:
        raise ConfigError("data.dataset: required key is missing (a name of spikelib.training.datasets."
                          "list_datasets(), or pass the datasets to the Trainer in Python)")
    if name not in _DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    fn = _DATASETS[name]
    check_kwargs(fn, options, "data", skip=("seed",))
    try:
        return fn(seed=seed, **options)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"data: dataset {name!r} rejected its options: {exc}") from exc


def _seeds(seed: int, n: int) -> List[int]:
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


@register_dataset("synthetic_temporal")
def _synthetic_temporal(seed: int, n_train: int = 2000, n_test: int = 500, **task: Any) -> DatasetBundle:
    """:class:`spikelib.data.SyntheticTemporalDataset` (class = burst order of channel groups)."""
    from spikelib.data import SyntheticTemporalDataset

    check_kwargs(SyntheticTemporalDataset.__init__, task, "data", skip=("self", "n_samples", "seed"),
                 also=("n_train", "n_test"))
    train_seed, test_seed = _seeds(seed, 2)
    task.setdefault("task_seed", seed)
    train = SyntheticTemporalDataset(n_train, train_seed, **task)
    test = SyntheticTemporalDataset(n_test, test_seed, **task)
    return DatasetBundle(train, test, {"n_classes": train.n_classes, "n_channels": train.n_channels,
                                       "n_steps": train.n_steps, "chance": train.chance_level})


def _shd_like(kind: str, root: Any, bin_ms: Any, n_bins: Any, max_time: Any, channels_out: int, cache: Any,
              download: bool, augment: Optional[str], time_origin: str = "zero") -> DatasetBundle:
    from spikelib.data import SHDDataset, SSCDataset, pad_collate

    cls = SHDDataset if kind == "shd" else SSCDataset
    kw = dict(bin_ms=bin_ms, n_bins=n_bins, max_time=max_time, channels_out=channels_out, cache=cache,
              download=download, time_origin=time_origin)
    transform = mix = None
    if augment is not None:
        if augment != "snn_delays":
            raise ConfigError(f"data.augment: expected null or 'snn_delays', got {augment!r}")
        from spikelib.data import snn_delays_augmentations

        transform, mix = snn_delays_augmentations(n_inputs=channels_out)
    train = cls(root, "train", transform=transform, **kw)
    test = cls(root, "test", **kw)
    val = cls(root, "valid", **kw) if kind == "ssc" else None  # SSC's official validation split
    info = {"n_classes": train.n_classes, "n_channels": train.channels_out, "chance": 1.0 / train.n_classes,
            "n_steps": train.n_steps, "bin_ms": train.dt * 1000.0}
    return DatasetBundle(train, test, info, collate=pad_collate if max_time is None else None, batch_mix=mix, val=val)


@register_dataset("shd")
def _shd(seed: int, root: str = "data/shd", bin_ms: Optional[float] = None, n_bins: Optional[int] = None,
         max_time: Optional[float] = 1.4, channels_out: int = 700, cache: Optional[str] = None,
         download: bool = False, augment: Optional[str] = None, time_origin: str = "zero") -> DatasetBundle:
    """Spiking Heidelberg Digits from the official files in ``root`` (:class:`spikelib.data.SHDDataset`).

    ``augment: snn_delays`` adds the SNN-delays augmentations: time and neuron masks on training samples and
    time-axis CutMix on training batches (:func:`spikelib.data.snn_delays_augmentations`). Their random draws come
    from generators seeded per process and are not in checkpoints, so a resumed run with augmentations continues
    with different (equally distributed) draws."""
    return _shd_like("shd", root, bin_ms, n_bins, max_time, channels_out, cache, download, augment, time_origin)


@register_dataset("ssc")
def _ssc(seed: int, root: str = "data/ssc", bin_ms: Optional[float] = None, n_bins: Optional[int] = None,
         max_time: Optional[float] = 1.4, channels_out: int = 700, cache: Optional[str] = None,
         download: bool = False, augment: Optional[str] = None, time_origin: str = "zero") -> DatasetBundle:
    """Spiking Speech Commands: train, the official validation split (``ssc_valid.h5``, used unless
    ``data.val_fraction`` is set) and test."""
    return _shd_like("ssc", root, bin_ms, n_bins, max_time, channels_out, cache, download, augment, time_origin)


def _cache_folder(root: str, name: str, params: Dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / f"{name}-{key}"


def _generate_once(folder: Path, files: List[str], generate: Callable[[], Any]) -> None:
    """Run ``generate`` unless ``folder`` holds ``files``; under DDP rank 0 generates while the others wait."""
    import torch.distributed as dist

    ddp = dist.is_available() and dist.is_initialized()
    if not ddp or dist.get_rank() == 0:
        if not all((folder / f).is_file() for f in files):
            logger.info("generating %s", folder)
            generate()
    if ddp:
        dist.barrier()


@register_dataset("synthetic_shd")
def _synthetic_shd(seed: int, root: str = "runs/data", n_train: int = 2000, n_test: int = 500,
                   data_seed: Optional[int] = None, task_seed: int = 0, n_speakers: int = 12,
                   n_test_speakers: int = 2, bin_ms: Optional[float] = None, n_bins: Optional[int] = None,
                   max_time: Optional[float] = 1.0, channels_out: int = 140, cache: Optional[str] = "memory",
                   augment: Optional[str] = None, time_origin: str = "zero") -> DatasetBundle:
    """The synthetic SHD-like set (:func:`spikelib.data.write_synthetic_shd`), generated once into
    ``root/synthetic_shd-<hash of the generator options>/`` and read with :class:`spikelib.data.SHDDataset`."""
    from spikelib.data import write_synthetic_shd

    gen = dict(n_train=n_train, n_test=n_test, seed=seed if data_seed is None else data_seed, task_seed=task_seed,
               n_speakers=n_speakers, n_test_speakers=n_test_speakers)
    folder = _cache_folder(root, "synthetic_shd", gen)
    _generate_once(folder, ["shd_train.h5", "shd_test.h5"], lambda: write_synthetic_shd(folder, **gen))
    bundle = _shd_like("shd", folder, bin_ms, n_bins, max_time, channels_out, cache, False, augment, time_origin)
    bundle.info["generated"] = str(folder)
    return bundle


@register_dataset("synthetic_heidelberg")
def _synthetic_heidelberg(seed: int, root: str = "runs/data", speakers: int = 12, test_speakers: Optional[int] = None,
                          repeats: int = 4, data_seed: Optional[int] = None, languages: Sequence[str] = ("en", "de"),
                          workers: Optional[int] = None, bin_ms: Optional[float] = None, n_bins: Optional[int] = None,
                          max_time: Optional[float] = 1.5, channels_out: int = 140, cache: Optional[str] = "memory",
                          augment: Optional[str] = None) -> DatasetBundle:
    """Synthetic Heidelberg Digits (:func:`spikelib.data.heidelberg.generate_heidelberg`: eSpeak NG speech through
    spikelib's cochlea model, needs ``scripts/install_speech.sh``), generated once into
    ``root/synthetic_heidelberg-<hash of the generator options>/`` and read with :class:`spikelib.data.SHDDataset`;
    train and test are split by speaker."""
    from spikelib.data.heidelberg import generate_heidelberg

    gen = dict(speakers=speakers, test_speakers=test_speakers, repeats=repeats,
               seed=seed if data_seed is None else data_seed, languages=list(languages))
    folder = _cache_folder(root, "synthetic_heidelberg", gen)
    _generate_once(folder, ["shd_train.h5", "shd_test.h5"],
                   lambda: generate_heidelberg(folder, progress=False, workers=workers, **gen))
    bundle = _shd_like("shd", folder, bin_ms, n_bins, max_time, channels_out, cache, False, augment)
    bundle.info["generated"] = str(folder)
    return bundle


@register_dataset("modelnet40")
def _modelnet40(seed: int, root: str = "data/modelnet40", n_points: int = 1024, use_normals: bool = False,
                format: str = "auto", normalize: bool = True, augment: bool = False) -> DatasetBundle:
    """ModelNet40 point clouds ``[P, 3 or 6]`` (:class:`spikelib.data.ModelNet40Dataset`); ``augment`` adds the
    random scale/shift to the training set."""
    from spikelib.data import ModelNet40Dataset, RandomScaleShift

    kw = dict(n_points=n_points, use_normals=use_normals, format=format, normalize=normalize, seed=seed)
    train = ModelNet40Dataset(root, "train", transform=RandomScaleShift() if augment else None, **kw)
    test = ModelNet40Dataset(root, "test", **kw)
    n_classes = len(train.class_names)
    return DatasetBundle(train, test, {"n_classes": n_classes, "n_channels": 6 if use_normals else 3,
                                       "chance": 1.0 / n_classes, "n_points": n_points, "layout": "points"})


@register_dataset("synthetic_shapes")
def _synthetic_shapes(seed: int, root: str = "runs/data", n_train: int = 800, n_test: int = 200,
                      data_seed: Optional[int] = None, n_points: int = 1024, noise: float = 0.01,
                      use_normals: bool = False, augment: bool = False) -> DatasetBundle:
    """Synthetic 3D shapes (:func:`spikelib.data.write_synthetic_shapes`) in the ModelNet40 HDF5 layout, generated
    once into ``root/synthetic_shapes-<hash>/`` and read with :class:`spikelib.data.ModelNet40Dataset`."""
    from spikelib.data import write_synthetic_shapes

    gen = dict(n_train=n_train, n_test=n_test, seed=seed if data_seed is None else data_seed, noise=noise)
    folder = _cache_folder(root, "synthetic_shapes", gen)
    _generate_once(folder, ["shape_names.txt"], lambda: write_synthetic_shapes(folder, **gen))
    bundle = _modelnet40(seed, str(folder), n_points=n_points, use_normals=use_normals, format="hdf5",
                         augment=augment)
    bundle.info["generated"] = str(folder)
    return bundle


# -------------------------------------------------------------------------------------------------------- images
# Static images [C, H, W] (info["layout"] = "static"): the models present them at every time step themselves.
# CIFAR trains with the IIR-SNN reference's augmentation (random crop after 4-pixel padding, horizontal flip) and
# validates on ``val_size`` training images held out *without* augmentation (a seeded choice; the reference itself
# selects on the test set).
def _image_info(n_classes: int, shape: tuple, **more) -> dict:
    return {"n_classes": n_classes, "n_channels": shape[0], "image_size": shape[-1], "chance": 1.0 / n_classes,
            "layout": "static", **more}


@register_dataset("digits")
def _digits(seed: int, test_fraction: float = 0.25, split_seed: int = 0, normalize: bool = True) -> DatasetBundle:
    """scikit-learn's handwritten digits (:class:`spikelib.data.DigitsDataset`): 1,797 images 8x8, a stratified
    seeded test split of ``test_fraction``; the validation split comes from the training part (``data.val_fraction``).
    """
    from spikelib.data.digits import DigitsDataset

    kw = dict(test_fraction=test_fraction, split_seed=split_seed, normalize=normalize)
    train, test = DigitsDataset("train", **kw), DigitsDataset("test", **kw)
    return DatasetBundle(train, test, _image_info(10, DigitsDataset.shape))


def _cifar_bundle(cls, root: str, augment: bool, val_size: int, seed: int, **kw) -> DatasetBundle:
    import torch
    from torch.utils.data import Subset

    train_aug = cls(root, "train", augment=augment, **kw)
    plain = cls(root, "train", augment=False, **kw) if augment else train_aug
    test = cls(root, "test", augment=False, **kw)
    n = len(train_aug)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < n:
        raise ValueError(f"val_size must be an int in [0, {n}), got {val_size!r}")
    val = None
    if val_size:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
        train_aug, val = Subset(train_aug, sorted(perm[val_size:])), Subset(plain, sorted(perm[:val_size]))
    return DatasetBundle(train_aug, test, _image_info(test.n_classes, (3, 32, 32), augment=augment), val=val)


@register_dataset("cifar10")
def _cifar10(seed: int, root: str = "data/cifar", augment: bool = True, normalize: bool = True,
            val_size: int = 5000) -> DatasetBundle:
    """CIFAR-10 from the binary files in ``root`` (:class:`spikelib.data.CIFAR10Dataset`); ``val_size`` training
    images (not augmented) form the validation split."""
    from spikelib.data.cifar import CIFAR10Dataset

    return _cifar_bundle(CIFAR10Dataset, root, augment, val_size, seed, normalize=normalize)


@register_dataset("cifar100")
def _cifar100(seed: int, root: str = "data/cifar", augment: bool = True, normalize: bool = True,
             label: str = "fine", val_size: int = 5000) -> DatasetBundle:
    """CIFAR-100 from the binary files (:class:`spikelib.data.CIFAR100Dataset`; ``label``: fine or coarse)."""
    from spikelib.data.cifar import CIFAR100Dataset

    return _cifar_bundle(CIFAR100Dataset, root, augment, val_size, seed, normalize=normalize, label=label)


@register_dataset("synthetic_images")
def _synthetic_images(seed: int, n_train: int = 2000, n_test: int = 500, data_seed: Optional[int] = None,
                     task_seed: int = 0, n_classes: int = 10, channels: int = 3, size: int = 32, blobs: int = 3,
                     jitter: float = 6.0, noise: float = 2.0) -> DatasetBundle:
    """Blob-layout images (:class:`spikelib.data.SyntheticImageDataset`), no download; train and test share
    ``task_seed`` and get seeds drawn from ``data_seed`` (default: the run's seed)."""
    from spikelib.data.synthetic_images import SyntheticImageDataset

    s_train, s_test = (int(s) % (2**31) for s in np.random.SeedSequence(
        seed if data_seed is None else data_seed).generate_state(2))
    kw = dict(task_seed=task_seed, n_classes=n_classes, channels=channels, size=size, blobs=blobs, jitter=jitter,
              noise=noise)
    train, test = SyntheticImageDataset(n_train, s_train, **kw), SyntheticImageDataset(n_test, s_test, **kw)
    return DatasetBundle(train, test, _image_info(n_classes, train.shape, chance=train.chance_level))
