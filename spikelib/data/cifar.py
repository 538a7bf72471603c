"""CIFAR-10 and CIFAR-100 from the official *binary* files (never the pickled "python version": nothing here
unpickles).

The binary versions (``cifar-10-binary.tar.gz`` and ``cifar-100-binary.tar.gz`` from the CIFAR page of the University
of Toronto) hold fixed-size records, one per image, 32 x 32 pixels stored as 1024 red, 1024 green, 1024 blue bytes
(rows in order)::

    CIFAR-10   <1 byte label 0..9> <3072 pixel bytes>                          data_batch_1..5.bin (10,000 each),
                                                                               test_batch.bin (10,000)
    CIFAR-100  <1 byte coarse label 0..19> <1 byte fine label 0..99> <3072>    train.bin (50,000), test.bin (10,000)

``root`` may hold the extracted folder (``cifar-10-batches-bin/`` or ``cifar-100-binary/``) or the ``.tar.gz``
archive itself; from an archive only the record files are read, in memory (nothing is extracted to disk). Every file
is checked: its size must be a whole number of records of the expected count, and every label in range.

Items are ``(x [3, 32, 32] float32, label)``: pixels scaled to ``[0, 1]`` then normalised per channel with IIR-SNN's
statistics (SayeedChowdhury/IIR-SNN ``snncifar_bnfused.py``: CIFAR-10 mean ``(0.4914, 0.4822, 0.4465)``, std
``(0.2023, 0.1994, 0.2010)``; CIFAR-100 ``(0.5071, 0.4867, 0.4408)``, ``(0.2675, 0.2565, 0.2761)``); ``augment=True``
adds the reference's training augmentation (random crop after 4-pixel zero padding, horizontal flip;
:class:`~spikelib.data.image_transforms.PadCropFlip`).
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from spikelib.data.image_transforms import PadCropFlip, check_stats, normalize

__all__ = ["CIFAR10Dataset", "CIFAR100Dataset", "read_cifar_records", "CIFAR_STATS", "RECORDS", "write_cifar_binary"]

PIXELS = 3 * 32 * 32

#: per-channel (mean, std) of the reference's transforms
CIFAR_STATS = {
    10: ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    100: ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}

#: (folder in the archive, archive name, files per split, label bytes)
_LAYOUT: Dict[int, Tuple[str, str, Dict[str, List[str]], int]] = {
    10: ("cifar-10-batches-bin", "cifar-10-binary.tar.gz",
         {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}, 1),
    100: ("cifar-100-binary", "cifar-100-binary.tar.gz", {"train": ["train.bin"], "test": ["test.bin"]}, 2),
}
#: records per file of the official files
RECORDS = {(10, "train"): 10000, (10, "test"): 10000, (100, "train"): 50000, (100, "test"): 10000}


def read_cifar_records(data: bytes, label_bytes: int, name: str, expected: Optional[int] = None,
                       label_limits: Sequence[int] = (10,)) -> Tuple[np.ndarray, np.ndarray]:
    """``(images [N, 3, 32, 32] uint8, labels [N, label_bytes] uint8)`` of one binary file's bytes.

    Raises ValueError (naming ``name``) when the size is not a whole number of records, the record count differs
    from ``expected``, or a label is out of range (``label_limits``: one bound per label byte).
    """
    record = label_bytes + PIXELS
    if len(data) == 0 or len(data) % record:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of {record}-byte CIFAR records "
                         f"({label_bytes} label byte(s) + {PIXELS} pixels); is this the binary version?")
    n = len(data) // record
    if expected is not None and n != expected:
        raise ValueError(f"{name}: expected {expected} records, found {n}")
    table = np.frombuffer(data, dtype=np.uint8).reshape(n, record)
    labels = table[:, :label_bytes]
    for k, limit in enumerate(label_limits):
        top = int(labels[:, k].max())
        if top >= limit:
            raise ValueError(f"{name}: label byte {k} has value {top}, expected < {limit}")
    return table[:, label_bytes:].reshape(n, 3, 32, 32), labels


def _find_source(root: Path, classes: int) -> Tuple[str, Path]:
    folder, archive, _, _ = _LAYOUT[classes]
    if (root / folder).is_dir():
        return "folder", root / folder
    if root.name == folder and root.is_dir():
        return "folder", root
    if (root / archive).is_file():
        return "archive", root / archive
    if root.is_file() and root.name == archive:
        return "archive", root
    raise FileNotFoundError(f"CIFAR-{classes}: found neither {root / folder}/ nor {root / archive}; download the "
                            f"binary version ({archive}) from the CIFAR page (www.cs.toronto.edu/~kriz/cifar.html) "
                            f"into {root}")


def _read_files(source: Tuple[str, Path], names: List[str]) -> List[Tuple[str, bytes]]:
    kind, path = source
    if kind == "folder":
        out = []
        for n in names:
            f = path / n
            if not f.is_file():
                raise FileNotFoundError(f"{f} is missing")
            out.append((str(f), f.read_bytes()))
        return out
    out = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name.split("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
            for n in names:
                m = members.get(n)
                if m is None:
                    raise FileNotFoundError(f"{path}: the archive has no file {n}")
                f = tar.extractfile(m)
                if f is None:  # pragma: no cover - isfile() members always extract
                    raise ValueError(f"{path}: cannot read {n}")
                out.append((f"{path}:{n}", f.read()))
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable .tar.gz archive ({exc})") from None
    return out


class _CIFAR(Dataset):
    classes = 10

    def __init__(self, root: Union[str, Path] = "data/cifar", split: str = "train", augment: bool = False,
                 normalize: bool = True, label: str = "fine") -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        for name, flag in (("augment", augment), ("normalize", normalize)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if label not in ("fine", "coarse"):
            raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
        if label == "coarse" and self.classes != 100:
            raise ValueError("label='coarse' exists only for CIFAR-100")
        _, _, files, label_bytes = _LAYOUT[self.classes]
        limits = (10,) if self.classes == 10 else (20, 100)
        expected = RECORDS[(self.classes, split)]
        parts = [read_cifar_records(data, label_bytes, name, expected, limits)
                 for name, data in _read_files(_find_source(Path(root), self.classes), files[split])]
        self.images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        column = 0 if self.classes == 10 or label == "coarse" else 1
        self.labels = torch.from_numpy(labels[:, column].astype(np.int64))
        self.n_classes = 20 if label == "coarse" else self.classes
        self.split = split
        self.normalize = normalize
        self.mean, self.std = check_stats(*CIFAR_STATS[self.classes], 3)
        self.transform = PadCropFlip(4, 0.5) if augment else None

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i].astype(np.float32) / 255.0)
        if self.normalize:
            x = normalize(x, self.mean, self.std)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


class CIFAR10Dataset(_CIFAR):
    """CIFAR-10 from the binary files (see the module docstring).

    Args:
        root: folder holding ``cifar-10-batches-bin/`` or ``cifar-10-binary.tar.gz``.
        split: ``"train"`` (50,000) or ``"test"`` (10,000).
        augment: random crop (4-pixel zero padding) and horizontal flip, as the reference trains.
        normalize: per-channel normalisation with the reference's statistics (else pixels in ``[0, 1]``).
    """

    classes = 10

    def __init__(self, root: Union[str, Path] = "data/cifar", split: str = "train", augment: bool = False,
                 normalize: bool = True) -> None:
        super().__init__(root, split, augment, normalize)


class CIFAR100Dataset(_CIFAR):
    """CIFAR-100 from the binary files; ``label``: ``"fine"`` (100 classes) or ``"coarse"`` (20 super-classes).
    Other arguments as in :class:`CIFAR10Dataset` (``root`` holds ``cifar-100-binary/`` or the archive)."""

    classes = 100

    def __init__(self, root: Union[str, Path] = "data/cifar", split: str = "train", augment: bool = False,
                 normalize: bool = True, label: str = "fine") -> None:
        super().__init__(root, split, augment, normalize, label)


def write_cifar_binary(path: Union[str, Path], images: np.ndarray, labels: np.ndarray) -> None:
    """Write records in the official binary layout (tests and small fixtures): ``images [N, 3, 32, 32]`` uint8,
    ``labels [N]`` (CIFAR-10) or ``[N, 2]`` (CIFAR-100: coarse, fine) uint8."""
    from spikelib._atomic import atomic_write_bytes

    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.ndim == 1:
        labels = labels[:, None]
    if images.shape[1:] != (3, 32, 32) or labels.shape[0] != images.shape[0]:
        raise ValueError(f"images must be [N, 3, 32, 32] and labels [N] or [N, 2], got {images.shape}, {labels.shape}")
    table = np.concatenate([labels, images.reshape(len(images), -1)], axis=1)
    atomic_write_bytes(Path(path), table.tobytes())
