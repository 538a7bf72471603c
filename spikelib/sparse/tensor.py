"""``SparseSpikeTensor``: active voxels of a batch of 3D grids, with their features and a cache of kernel maps.

A sparse tensor holds ``N`` active sites with integer coordinates ``coords[i] = (b, x, y, z)`` (batch item ``b``,
spatial position ``(x, y, z)`` with ``0 <= x < X`` etc. for ``spatial_shape = (X, Y, Z)``) and features ``[N, C]``
(one step) or ``[T, N, C]`` (multi-step, time first). Its dense equivalent is a ``[B, C, X, Y, Z]`` grid that is zero
everywhere except at the active sites (:meth:`SparseSpikeTensor.dense`).

Duplicate coordinates: a site may appear once. ``duplicates="error"`` (the default) raises on any repeated
coordinate; ``duplicates="sum"`` merges repeated coordinates into one site whose features are the sum of theirs (the
dense equivalent then is the scatter-add of the inputs). Coordinates must be an integer tensor (floating-point
coordinates are refused rather than rounded), non-negative and inside ``spatial_shape`` and ``batch_size``.

Kernel maps (rulebooks, :mod:`spikelib.sparse.rulebook`) depend only on the coordinates, so they are cached on the
tensor per ``(kind, kernel_size, stride, padding, dilation)``; :meth:`replace_features` returns a tensor with the same
coordinates that *shares* the cache, which is how every submanifold layer of one resolution reuses one rulebook
(spconv's ``indice_key``, and torchsparse's ``SparseTensor`` kernel-map cache, mit-han-lab/torchsparse
torchsparse/tensor.py, follow the same idea).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch

__all__ = ["SparseSpikeTensor", "coordinate_keys"]

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def coordinate_keys(coords: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Row-major integer key ``((b X + x) Y + y) Z + z`` of ``coords [N, 4]`` (int64; no range checks)."""
    X, Y, Z = (int(s) for s in spatial_shape)
    c = coords.long()
    return ((c[:, 0] * X + c[:, 1]) * Y + c[:, 2]) * Z + c[:, 3]


def _check_shape3(value: Sequence[int], name: str) -> Tuple[int, int, int]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of 3 positive ints, got {value!r}") from None
    if len(out) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out):
        raise ValueError(f"{name} must be 3 positive ints, got {value!r}")
    return out  # type: ignore[return-value]


class SparseSpikeTensor:
    """Active sites ``coords [N, 4] = (b, x, y, z)`` of a ``[B, C, X, Y, Z]`` grid, features ``[N, C]``/``[T, N, C]``.

    Args:
        features: ``[N, C]`` or ``[T, N, C]`` floating-point tensor.
        coords: ``[N, 4]`` integer tensor ``(batch, x, y, z)``; stored as int64 on the features' device.
        spatial_shape: ``(X, Y, Z)``.
        batch_size: number of batch items ``B``; ``max(batch) + 1`` when None.
        duplicates: ``"error"`` (repeated coordinates raise) or ``"sum"`` (merged, features summed).
        check: run the argument checks (internal callers that built valid coordinates pass False).
    """

    def __init__(
        self,
        features: torch.Tensor,
        coords: torch.Tensor,
        spatial_shape: Sequence[int],
        batch_size: Optional[int] = None,
        *,
        duplicates: str = "error",
        check: bool = True,
    ) -> None:
        self.spatial_shape: Tuple[int, int, int] = _check_shape3(spatial_shape, "spatial_shape")
        if check:
            features, coords, batch_size = self._validate(features, coords, batch_size, duplicates)
        elif batch_size is None:
            batch_size = int(coords[:, 0].max()) + 1 if coords.shape[0] else 0
        self.features = features
        self.coords = coords
        self.batch_size = int(batch_size)
        self._cache: Dict[tuple, object] = {}

    # ------------------------------------------------------------------ checks
    def _validate(self, features, coords, batch_size, duplicates):
        if duplicates not in ("error", "sum"):
            raise ValueError(f"duplicates must be 'error' or 'sum', got {duplicates!r}")
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            raise TypeError(f"features must be a floating-point tensor, got {type(features).__name__}"
                            + (f" of dtype {features.dtype}" if isinstance(features, torch.Tensor) else ""))
        if features.dim() not in (2, 3):
            raise ValueError(f"features must be [N, C] or [T, N, C], got shape {tuple(features.shape)}")
        if not isinstance(coords, torch.Tensor):
            raise TypeError(f"coords must be an integer tensor [N, 4], got {type(coords).__name__}")
        if coords.dtype not in _INT_DTYPES:
            raise TypeError(f"coords must be an integer tensor (batch, x, y, z); got dtype {coords.dtype} "
                            "(floating-point coordinates are not rounded: voxelise them first)")
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must have shape [N, 4] (batch, x, y, z), got {tuple(coords.shape)}")
        n = features.shape[-2]
        if coords.shape[0] != n:
            raise ValueError(f"coords has {coords.shape[0]} rows but features has {n} sites (shape "
                             f"{tuple(features.shape)}); they must match")
        coords = coords.to(device=features.device, dtype=torch.int64)
        if n and bool((coords < 0).any()):
            bad = coords[(coords < 0).any(1)][0].tolist()
            raise ValueError(f"coords must be non-negative, got {bad}")
        if n:
            hi = coords[:, 1:].max(0).values
            for axis, (h, s) in enumerate(zip(hi.tolist(), self.spatial_shape)):
                if h >= s:
                    raise ValueError(f"coords axis {'xyz'[axis]} reaches {h}, outside spatial_shape "
                                     f"{self.spatial_shape} (valid 0..{s - 1})")
        max_b = int(coords[:, 0].max()) if n else -1
        if batch_size is None:
            batch_size = max_b + 1
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
        elif max_b >= batch_size:
            raise ValueError(f"coords has batch index {max_b} but batch_size is {batch_size}")
        X, Y, Z = self.spatial_shape
        if max(batch_size, 1) * X * Y * Z >= 2**62:
            raise ValueError(f"batch_size x spatial_shape = {batch_size} x {self.spatial_shape} is too large for "
                             "int64 coordinate keys")
        if n:
            keys = coordinate_keys(coords, self.spatial_shape)
            uniq, inverse = torch.unique(keys, return_inverse=True)
            if uniq.numel() != n:
                if duplicates == "error":
                    counts = torch.bincount(inverse)
                    dup = coords[(counts[inverse] > 1)][0].tolist()
                    raise ValueError(f"coords contains duplicate sites (e.g. {dup}, {n - uniq.numel()} repeats); "
                                     "pass duplicates='sum' to merge them by summing their features")
                first = torch.full((uniq.numel(),), n, dtype=torch.int64, device=coords.device)
                first.scatter_reduce_(0, inverse, torch.arange(n, device=coords.device), reduce="amin")
                coords = coords[first]
                if features.dim() == 2:
                    merged = features.new_zeros(uniq.numel(), features.shape[1]).index_add(0, inverse, features)
                else:
                    merged = features.new_zeros(features.shape[0], uniq.numel(), features.shape[2])
                    merged = merged.index_add(1, inverse, features)
                features = merged
        return features, coords, batch_size

    # --------------------------------------------------------------- accessors
    @property
    def num_sites(self) -> int:
        """Number of active sites ``N``."""
        return int(self.coords.shape[0])

    @property
    def num_channels(self) -> int:
        """Feature channels ``C``."""
        return int(self.features.shape[-1])

    @property
    def multistep(self) -> bool:
        """True when the features are ``[T, N, C]``."""
        return self.features.dim() == 3

    @property
    def kernel_maps(self) -> Dict[tuple, object]:
        """The kernel maps built so far for these coordinates, keyed ``(kind, kernel, stride, padding, dilation)``."""
        return self._cache

    def replace_features(self, features: torch.Tensor) -> "SparseSpikeTensor":
        """A tensor with the same coordinates (and shared kernel-map cache) and new features."""
        if (not isinstance(features, torch.Tensor) or features.dim() not in (2, 3)
                or features.shape[-2] != self.num_sites):
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be [N, C] or [T, N, C] with N = {self.num_sites}, got {shape}")
        out = SparseSpikeTensor(features, self.coords, self.spatial_shape, self.batch_size, check=False)
        out._cache = self._cache
        return out

    def to(self, *args, **kwargs) -> "SparseSpikeTensor":
        """Features moved/cast as ``Tensor.to(*args, **kwargs)``, coordinates moved to the same device (int64 kept);
        the kernel maps are rebuilt on the new device when needed (the cache is not carried over)."""
        features = self.features.to(*args, **kwargs)
        if not features.is_floating_point():
            raise TypeError(f"features must stay floating point, got {features.dtype}")
        return SparseSpikeTensor(features, self.coords.to(features.device), self.spatial_shape, self.batch_size,
                                 check=False)

    def batch_index(self) -> torch.Tensor:
        """The batch item of every site, ``[N]`` int64."""
        return self.coords[:, 0]

    def dense(self) -> torch.Tensor:
        """The dense grid ``[B, C, X, Y, Z]`` (or ``[T, B, C, X, Y, Z]``), zero at inactive sites (differentiable)."""
        X, Y, Z = self.spatial_shape
        B, C = self.batch_size, self.num_channels
        flat = coordinate_keys(self.coords, self.spatial_shape)
        if self.multistep:
            T = self.features.shape[0]
            out = self.features.new_zeros(T, B * X * Y * Z, C).index_add(1, flat, self.features)
            return out.reshape(T, B, X, Y, Z, C).permute(0, 1, 5, 2, 3, 4)
        out = self.features.new_zeros(B * X * Y * Z, C).index_add(0, flat, self.features)
        return out.reshape(B, X, Y, Z, C).permute(0, 4, 1, 2, 3)

    def __repr__(self) -> str:
        return (f"SparseSpikeTensor(sites={self.num_sites}, features={tuple(self.features.shape)}, "
                f"spatial_shape={self.spatial_shape}, batch_size={self.batch_size})")
