"""Export a :class:`~spikelib.hardware.loihi.network.LoihiNetwork` to lava-dl's netx HDF5 format, and import it back.

The layout is the one lava-nc/lava-dl's ``src/lava/lib/dl/netx/hdf5.py`` (``Network._create``, ``create_input``,
``create_dense``, ``create_conv``, ``get_neuron_params``) and ``src/lava/lib/dl/netx/utils.py`` (``NetDict``) read::

    /layer/0/type   b"input"   shape [n] or [C, H, W]   (no neuron group: spikes enter unchanged)
                               neuron/ (optional: input neurons fed with graded current), weight, bias (scalars:
                               netx's input transform, not applied by netx)
    /layer/i/type   b"dense"   shape [out] (or [out, 1, 1]), weight [out, in] (or flat [out * in]), bias [out] (opt.),
                               delay [out, in], [out], [in] or scalar (opt.), neuron/ (opt.; netx's default without
                               it: iDecay 0, vDecay 4096, vThMant 1 << 17, a non-spiking integrator)
    /layer/i/type   b"dense_rec"  as dense, plus weight_rec [out, out] (lava-dl ``slayer.block.cuba.Recurrent``)
    /layer/i/type   b"conv"    shape [C_out, H_out, W_out], weight [C_out, C_in / groups, kh, kw] or the older 5-d
                               [C_out, C_in / groups, kh, kw, 1], stride, padding, dilation ((y, x) pairs or scalars;
                               netx reverses them to (x, y)), groups, bias [C_out] (opt.), neuron/
    /layer/i/type   b"flatten" (between a conv, or a 3-d input neuron group, and a dense layer)
    neuron/type b"CUBA" or b"LOIHI", iDecay, vDecay (scalars, or one per neuron / per output channel), vThMant,
                refDelay, gradedSpike

``type`` strings are stored as ``S`` arrays of shape ``(1,)`` (as lava-dl's own exporters write them). The root
attribute ``spikelib_meta`` (JSON) keeps the quantisation facts; netx ignores it. Files are written atomically.

:func:`load_netx` reads everything above and raises :class:`NetxFormatError` naming the layer and field for anything
malformed or unsupported: sigma-delta (``SDNN``), resonate-and-fire and complex neurons, graded output spikes, and the
layer types netx itself does not implement (``pool``, ``convT``, ``unpool``, ``average``, ``concat``; load the layers
before them with ``num_layers``, as netx's ``num_layers``). Every dataset's type and shape are checked before it is
read, sizes are computed in Python integers (no wrap-around) and bounded by ``max_elements``, and values are
range-checked in their stored type before any cast, so a crafted file can neither allocate unbounded memory nor load
wrapped values. A git-LFS pointer file (what a repository clone without ``git lfs`` holds) is recognised as such.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from spikelib._atomic import atomic_path
from spikelib.hardware.loihi.network import (
    LIMITS, VTH_NEVER, ConvGeometry, InputNeurons, LoihiLayer, LoihiNetwork,
)

__all__ = ["export_netx", "load_netx", "NetxFormatError", "MAX_ELEMENTS"]

PathLike = Union[str, os.PathLike]

#: Default bound on the elements of one dataset and the neurons of one layer read by :func:`load_netx`.
MAX_ELEMENTS = 1 << 28

_LFS_MAGIC = b"version https://git-lfs.github.com/spec/"
_NETX_UNIMPLEMENTED = ("pool", "convT", "unpool", "average", "concat")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_VTH_RANGE = (LIMITS["vth"][0], VTH_NEVER)


class NetxFormatError(ValueError):
    """A netx HDF5 file that is malformed or uses layers spikelib cannot import."""


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a core dependency
        raise ImportError("netx export/import needs h5py (a core dependency of spikelib: pip install h5py)") from exc
    return h5py


# ----------------------------------------------------------------------------------------------------------- export
def _write_type(group, text: str) -> None:
    group.create_dataset("type", (1,), "S10", [text.encode("ascii")])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _int_data(value: Any) -> np.ndarray:
    return value.numpy().astype(np.int64) if isinstance(value, torch.Tensor) else np.int64(value)


def _write_neuron(g, group) -> None:
    n = g.create_group("neuron")
    _write_type(n, "CUBA")
    n.create_dataset("iDecay", data=_int_data(group.i_decay))
    n.create_dataset("vDecay", data=_int_data(group.v_decay))
    n.create_dataset("vThMant", data=np.int64(group.vth))
    n.create_dataset("refDelay", data=np.int64(1))
    n.create_dataset("gradedSpike", data=np.bool_(False))


def _write_layer(g, layer: LoihiLayer) -> None:
    if layer.conv is not None:
        c = layer.conv
        _write_type(g, "conv")
        g.create_dataset("shape", data=np.array(c.out_shape(layer.weight), dtype=np.int64))
        for key, value in (("stride", c.stride), ("padding", c.padding), ("dilation", c.dilation)):
            g.create_dataset(key, data=np.array(value, dtype=np.int64))
        g.create_dataset("groups", data=np.int64(c.groups))
    else:
        _write_type(g, "dense_rec" if layer.weight_rec is not None else "dense")
        g.create_dataset("shape", data=np.array([layer.out_features], dtype=np.int64))
    g.create_dataset("weight", data=layer.weight.numpy().astype(np.int64))
    if layer.weight_rec is not None:
        g.create_dataset("weight_rec", data=layer.weight_rec.numpy().astype(np.int64))
    if layer.bias is not None:
        g.create_dataset("bias", data=layer.bias.numpy().astype(np.int64))
    if layer.delay is not None:
        g.create_dataset("delay", data=layer.delay.numpy().astype(np.int64))
    _write_neuron(g, layer)
    g.attrs["name"] = layer.name


def export_netx(net: LoihiNetwork, path: PathLike) -> Path:
    """Write ``net`` to ``path`` in netx HDF5 format (atomically). Returns the path."""
    if not isinstance(net, LoihiNetwork):
        raise TypeError(f"net must be a LoihiNetwork, got {type(net).__name__}")
    h5py = _h5py()
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: folder {path.parent} does not exist")
    with atomic_path(path, create_parent=False) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["spikelib_meta"] = json.dumps(_jsonable(net.meta))
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _write_type(g, "input")
        first, inp = net.layers[0], net.input_neurons
        if inp is not None:
            in_shape = list(inp.shape)
        else:
            in_shape = list(first.conv.in_shape) if first.conv is not None else [net.input_size]
        g.create_dataset("shape", data=np.array(in_shape, dtype=np.int64))
        if inp is not None:
            _write_neuron(g, inp)
            g.create_dataset("weight", data=np.int64(inp.transform_weight))
            g.create_dataset("bias", data=np.int64(inp.transform_bias))
            g.attrs["name"] = inp.name
        index, spatial = 1, len(in_shape) == 3 and inp is not None
        for layer in net.layers:
            if spatial and layer.conv is None:
                _write_type(layers.create_group(str(index)), "flatten")
                index += 1
            g = layers.create_group(str(index))
            index += 1
            spatial = layer.conv is not None
            _write_layer(g, layer)
    return path


# ----------------------------------------------------------------------------------------------------------- import
class _Reader:
    """Validated reads from an open netx file: type and shape checked before reading, values before casting."""

    def __init__(self, max_elements: int) -> None:
        self.h5py = _h5py()
        self.max_elements = max_elements

    def dataset(self, group, key: str, where: str):
        if key not in group:
            raise NetxFormatError(f"{where}: missing dataset '{key}'")
        ds = group[key]
        if not isinstance(ds, self.h5py.Dataset):
            raise NetxFormatError(f"{where}: '{key}' must be a dataset, got a {type(ds).__name__}")
        return ds

    def text(self, group, key: str, where: str) -> str:
        ds = self.dataset(group, key, where)
        if ds.shape not in ((), (1,)) or (ds.dtype.kind not in "SU" and self.h5py.check_string_dtype(ds.dtype) is None):
            raise NetxFormatError(f"{where}: '{key}' must be one string, got dtype {ds.dtype} shape {ds.shape}")
        value = ds[()]
        if isinstance(value, np.ndarray):
            value = value.reshape(-1)[0]
        return value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)

    def ints(self, group, key: str, where: str, shapes: Optional[Sequence[tuple]] = None,
             lo: Optional[int] = None, hi: Optional[int] = None) -> np.ndarray:
        """The dataset as int64, after checking its shape (one of ``shapes``), size and values (``[lo, hi]``)."""
        ds = self.dataset(group, key, where)
        size = math.prod(ds.shape)  # Python ints: no wrap-around
        if shapes is not None and tuple(ds.shape) not in [tuple(s) for s in shapes]:
            raise NetxFormatError(f"{where}: '{key}' must have shape {' or '.join(str(list(s)) for s in shapes)}, "
                                  f"got {list(ds.shape)}")
        if size > self.max_elements:
            raise NetxFormatError(f"{where}: '{key}' declares {size} elements {list(ds.shape)}, more than "
                                  f"max_elements={self.max_elements} (pass a larger max_elements to load it)")
        if ds.dtype.kind not in "iubf":
            raise NetxFormatError(f"{where}: '{key}' must hold integers, got dtype {ds.dtype}")
        value = np.asarray(ds[()])
        if value.dtype.kind == "f":
            if not bool(np.all(np.isfinite(value))) or not bool(np.all(value == np.round(value))):
                raise NetxFormatError(f"{where}: '{key}' must hold integers, got non-integer values (dtype "
                                      f"{value.dtype})")
            if value.size and float(np.abs(value).max()) > 2.0 ** 53:
                raise NetxFormatError(f"{where}: '{key}' holds values beyond 2^53, not exact integers")
        if value.size:
            mn, mx = int(value.min()), int(value.max())  # exact in the stored type, before any cast
            low, high = (_INT64[0] if lo is None else lo), (_INT64[1] if hi is None else hi)
            if mn < low or mx > high:
                got = mn if mn == mx else f"[{mn}, {mx}]"
                raise NetxFormatError(f"{where}: '{key}' must be in [{low}, {high}], got {got}")
        return value.astype(np.int64)

    def scalar(self, group, key: str, where: str, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
        return int(self.ints(group, key, where, [(), (1,)], lo, hi).reshape(-1)[0])

    def shape(self, group, where: str, dims: Sequence[int] = (1, 2, 3)) -> Tuple[int, ...]:
        ds = self.dataset(group, "shape", where)
        if len(ds.shape) != 1 or ds.shape[0] not in dims:
            raise NetxFormatError(f"{where}: 'shape' must be a list of {' or '.join(map(str, dims))} sizes, "
                                  f"got a dataset of shape {list(ds.shape)}")
        shape = tuple(int(v) for v in self.ints(group, "shape", where, lo=1))
        if math.prod(shape) > self.max_elements:
            raise NetxFormatError(f"{where}: 'shape' {list(shape)} declares {math.prod(shape)} neurons, more than "
                                  f"max_elements={self.max_elements}")
        return shape

    def decay(self, n, key: str, where: str, count: int) -> Union[int, torch.Tensor]:
        """A decay: one int, or ``count`` of them (per neuron / per channel, as slayer's ``shared_param=False``)."""
        limits = LIMITS["i_decay" if key == "iDecay" else "v_decay"]
        value = self.ints(n, key, where, [(), (1,), (count,)], *limits).reshape(-1)
        return int(value[0]) if value.size == 1 else torch.from_numpy(value)

    def neuron(self, g, where: str, count: int, required: bool = True) -> Dict[str, Any]:
        """``i_decay``, ``v_decay``, ``vth`` of the neuron group; ``count``: neurons/channels a decay array may have."""
        if "neuron" not in g:
            if required:
                raise NetxFormatError(f"{where}: missing 'neuron' group")
            return {"i_decay": 0, "v_decay": 4096, "vth": VTH_NEVER}  # netx's default: non-spiking integrator
        n, nw = g["neuron"], f"{where}/neuron"
        if not isinstance(n, self.h5py.Group):
            raise NetxFormatError(f"{nw}: must be a group")
        ntype = self.text(n, "type", nw)
        if ntype == "SDNN":
            raise NetxFormatError(f"{nw}: sigma-delta (SDNN) neurons are not supported: spikelib simulates netx's "
                                  f"CUBA LIF networks (neuron type 'CUBA' or 'LOIHI') only")
        if ntype not in ("CUBA", "LOIHI"):
            kind = "resonate-and-fire " if "RF" in ntype else ""
            raise NetxFormatError(f"{nw}: {kind}neuron type {ntype!r} is not supported (only CUBA/LOIHI)")
        if "gradedSpike" in n and self.scalar(n, "gradedSpike", nw):
            raise NetxFormatError(f"{nw}: graded spikes are not supported (Lava's LIF sends binary spikes)")
        return {"i_decay": self.decay(n, "iDecay", nw, count), "v_decay": self.decay(n, "vDecay", nw, count),
                "vth": self.scalar(n, "vThMant", nw, *_VTH_RANGE)}


def _strip(exc: Exception, name: str) -> str:
    msg, prefix = str(exc), f"layer {name!r}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _read_dense(r: _Reader, g, where: str, kind: str, in_size: Optional[int]) -> LoihiLayer:
    out = math.prod(r.shape(g, where))
    ds = r.dataset(g, "weight", where)
    if in_size is None:  # lava-dl slayer's exporters start with the first dense layer: its input size
        if len(ds.shape) == 2 and ds.shape[0] == out:
            in_size = int(ds.shape[1])
        elif len(ds.shape) == 1 and ds.shape[0] % out == 0 and ds.shape[0]:
            in_size = int(ds.shape[0]) // out
        else:
            raise NetxFormatError(f"{where}: 'weight' must have shape [{out}, in], got {list(ds.shape)}")
    # weights: exact int64 here; their sign-mode range is checked by LoihiLayer (both matrices of dense_rec together)
    weight = r.ints(g, "weight", where, [(out, in_size), (out * in_size,)]).reshape(out, in_size)
    weight_rec = None
    if kind == "dense_rec":
        weight_rec = r.ints(g, "weight_rec", where, [(out, out), (out * out,)]).reshape(out, out)
        weight_rec = torch.from_numpy(weight_rec)
    bias = None
    if "bias" in g:
        bias = torch.from_numpy(r.ints(g, "bias", where, [(), (1,), (out,)], *LIMITS["bias"]).reshape(-1))
        bias = bias.expand(out).clone()
    delay = None
    if "delay" in g:  # netx: scalar, per neuron [out] (checked first, as netx), per input [in], per synapse
        delay = torch.from_numpy(r.ints(g, "delay", where, [(), (1,), (out,), (in_size,), (out, in_size)],
                                        *LIMITS["delay"]))
        if delay.dim() == 0 or delay.numel() == 1 and out != 1:
            delay = delay.reshape(-1).expand(out).clone()
        elif delay.dim() == 1 and delay.numel() != out:
            delay = delay[None, :].expand(out, in_size).clone()
    neuron = r.neuron(g, where, out, required=False)
    name = _name(g, f"{kind}{where.split()[-1]}")
    try:
        return LoihiLayer(weight=torch.from_numpy(weight), bias=bias, delay=delay, weight_rec=weight_rec,
                          name=name, **neuron)
    except (ValueError, TypeError) as exc:
        raise NetxFormatError(f"{where}: {_strip(exc, name)}") from exc


def _pair(r: _Reader, g, key: str, where: str, lo: int) -> Tuple[int, int]:
    value = r.ints(g, key, where, [(), (1,), (2,)], lo).reshape(-1)
    return (int(value[0]), int(value[-1]))


def _read_conv(r: _Reader, g, where: str, in_shape: Optional[Tuple[int, int, int]]) -> LoihiLayer:
    if in_shape is None:
        raise NetxFormatError(f"{where}: a conv layer needs a (C, H, W) input: an input layer of 3-d shape or a "
                              f"conv layer before it")
    out_shape = r.shape(g, where, dims=(3,))
    ds = r.dataset(g, "weight", where)
    dims = tuple(ds.shape)
    if len(dims) == 5 and dims[4] == 1:  # lava-dl slayer's conv weights [C_out, C_in, kh, kw, 1]; netx drops the 1
        dims = dims[:4]
    if len(dims) != 4 or dims[0] != out_shape[0] or 0 in dims:
        raise NetxFormatError(f"{where}: conv 'weight' must be [C_out, C_in / groups, kh, kw] (or with a trailing "
                              f"1) with C_out = {out_shape[0]}, got {list(ds.shape)}")
    weight = r.ints(g, "weight", where, [ds.shape]).reshape(dims)
    try:
        geometry = ConvGeometry(in_shape, stride=_pair(r, g, "stride", where, 1),
                                padding=_pair(r, g, "padding", where, 0),
                                dilation=_pair(r, g, "dilation", where, 1),
                                groups=r.scalar(g, "groups", where, 1, in_shape[0]))
    except ValueError as exc:
        raise NetxFormatError(f"{where}: {exc}") from exc
    bias = torch.from_numpy(r.ints(g, "bias", where, [(out_shape[0],)], *LIMITS["bias"])) if "bias" in g else None
    if "delay" in g:
        raise NetxFormatError(f"{where}: conv layers with delays are not supported (netx's conv has none)")
    neuron = r.neuron(g, where, out_shape[0])
    name = _name(g, f"conv{where.split()[-1]}")
    try:
        layer = LoihiLayer(weight=torch.from_numpy(weight), bias=bias, conv=geometry, name=name, **neuron)
    except (ValueError, TypeError) as exc:
        raise NetxFormatError(f"{where}: {_strip(exc, name)}") from exc
    if geometry.out_shape(layer.weight) != out_shape:
        raise NetxFormatError(f"{where}: 'shape' {list(out_shape)} does not match the convolution's output "
                              f"{list(geometry.out_shape(layer.weight))}")
    return layer


def _read_input_neurons(r: _Reader, g, where: str, shape: Tuple[int, ...]) -> InputNeurons:
    if len(shape) not in (1, 3):
        raise NetxFormatError(f"{where}: an input neuron group must have shape [n] or [C, H, W], got {list(shape)}")
    neuron = r.neuron(g, where, shape[0])
    transform = {"transform_weight": r.scalar(g, "weight", where) if "weight" in g else 64,
                 "transform_bias": r.scalar(g, "bias", where) if "bias" in g else 0}
    name = _name(g, "input")
    try:
        return InputNeurons(shape=shape, name=name, **neuron, **transform)
    except (ValueError, TypeError) as exc:
        raise NetxFormatError(f"{where}: {_strip(exc, name)}") from exc


def _name(g, default: str) -> str:
    value = g.attrs.get("name", default)
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _open(path: Path):
    h5py = _h5py()
    with open(path, "rb") as fh:
        head = fh.read(len(_LFS_MAGIC))
    if head == _LFS_MAGIC:
        raise NetxFormatError(f"{path} is a git-LFS pointer file ({path.stat().st_size} bytes), not the network: "
                              f"fetch the real file (`git lfs pull` in its repository)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise NetxFormatError(f"{path} is not an HDF5 file ({exc})") from exc


def _read_meta(f, path: Path) -> Dict[str, Any]:
    if "spikelib_meta" not in f.attrs:
        return {}
    try:
        meta = json.loads(f.attrs["spikelib_meta"])
    except (TypeError, ValueError) as exc:
        raise NetxFormatError(f"{path}: attribute 'spikelib_meta' is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise NetxFormatError(f"{path}: attribute 'spikelib_meta' must be a JSON object, got {type(meta).__name__}")
    return meta


def load_netx(path: PathLike, num_layers: Optional[int] = None, max_elements: int = MAX_ELEMENTS) -> LoihiNetwork:
    """Read a netx HDF5 network (see the module docstring).

    Args:
        path: the ``.net`` / ``.h5`` file.
        num_layers: read only the first ``num_layers`` entries of ``/layer`` (netx's ``num_layers``; e.g. to leave
            out a final ``average`` layer netx does not implement); None: all.
        max_elements: the largest dataset (elements) and layer (neurons) accepted.

    Raises:
        NetxFormatError: for anything malformed or unsupported, naming the layer and the field.
    """
    path = Path(path)
    for name, value in (("num_layers", num_layers), ("max_elements", max_elements)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not path.is_file():
        raise FileNotFoundError(f"netx file {path} does not exist")
    r = _Reader(max_elements)
    with _open(path) as f:
        if "layer" not in f or not isinstance(f["layer"], r.h5py.Group):
            raise NetxFormatError(f"{path}: no 'layer' group (not a netx network file)")
        group = f["layer"]
        keys = sorted(group.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
        if keys != [str(i) for i in range(len(keys))] or not keys:
            raise NetxFormatError(f"{path}: layers must be named '0', '1', ... without gaps, got {list(group.keys())}")
        meta = _read_meta(f, path)
        keys = keys[:num_layers] if num_layers is not None else keys
        input_size: Optional[int] = None
        input_neurons: Optional[InputNeurons] = None
        spatial: Optional[Tuple[int, int, int]] = None  # (C, H, W) of the previous layer's output, if 3-d
        needs_flatten = False  # the previous output is 3-d neurons: netx needs 'flatten' before a dense layer
        layers: List[LoihiLayer] = []
        for i, key in enumerate(keys):
            where = f"layer {key}"
            g = group[key]
            if not isinstance(g, r.h5py.Group):
                raise NetxFormatError(f"{where}: must be a group")
            kind = r.text(g, "type", where)
            if kind == "input":
                if i != 0:
                    raise NetxFormatError(f"{where}: an input layer must be layer 0")
                shape = r.shape(g, where)
                input_size = math.prod(shape)
                spatial = shape if len(shape) == 3 else None
                if "neuron" in g:
                    input_neurons = _read_input_neurons(r, g, where, shape)
                    needs_flatten = spatial is not None
            elif kind == "flatten":
                if input_size is None:
                    raise NetxFormatError(f"{where}: 'flatten' cannot be the first layer")
                spatial, needs_flatten = None, False
            elif kind in ("dense", "dense_rec"):
                if needs_flatten:
                    raise NetxFormatError(f"{where}: a dense layer after 3-d neurons needs a 'flatten' layer before "
                                          f"it (netx connects the shapes unchanged)")
                prev = layers[-1].out_features if layers else input_size
                layers.append(_read_dense(r, g, where, kind, prev))
                input_size = layers[0].in_features if input_size is None else input_size
                spatial = None
            elif kind == "conv":
                layers.append(_read_conv(r, g, where, spatial))
                spatial = layers[-1].conv.out_shape(layers[-1].weight)
                needs_flatten = True
            elif kind in _NETX_UNIMPLEMENTED:
                raise NetxFormatError(f"{where}: layer type {kind!r} is not supported: netx (lava-dl 0.6) does not "
                                      f"implement it either; load the layers before it with num_layers={i}")
            elif kind == "dense_comp":
                raise NetxFormatError(f"{where}: complex dense layers ('dense_comp') are not supported")
            else:
                raise NetxFormatError(f"{where}: layer type {kind!r} is not supported (input, dense, dense_rec, "
                                      f"conv, flatten)")
        if not layers:
            raise NetxFormatError(f"{path}: no dense or conv layers after the input layer")
        try:
            return LoihiNetwork(input_size=input_size, layers=layers, meta=meta, input_neurons=input_neurons)
        except (ValueError, TypeError) as exc:
            raise NetxFormatError(f"{path}: {exc}") from exc
