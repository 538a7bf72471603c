"""Loading the authors' released checkpoints into spikelib's models: a key and layout map per model, strict loading.

Every model that can read its reference's checkpoints has a method ``reference_layout()`` returning, in the order of
the reference model's ``state_dict``, one :class:`RefEntry` per reference leaf module: the reference prefix (e.g.
``block3.0.attn.q_conv.0.body.0``), the spikelib leaf module that holds the same tensors, and the layout conversion
of its weight:

``"same"``
    identical names and shapes below the prefix (``weight``, ``bias``, BatchNorm statistics, a PLIF's ``w``).
``"conv1d"``
    a reference ``Conv1d`` on flattened tokens, weight ``[C_out, C_in, 1]``, held here as a 1x1 ``Conv2d``
    ``[C_out, C_in, 1, 1]`` (Meta-SpikeFormer's ``MS_MLP``, Max-Former's ``SSA``).
``"spconv"``
    an spconv 2.x sparse convolution weight ``[C_out, kx, ky, kz, C_in]`` -> spikelib's ``[K, C_in, C_out]``.
``"spconv_1x1_raw"``
    spconv's 1x1x1 path multiplies the features by ``weight.view(C_in, C_out)`` of the weight stored
    ``[C_out, 1, 1, 1, C_in]`` (spconv issue #450), so the reference computes with a raw reshape of the stored tensor,
    not its transpose (E-3DSNN's final layer).
``"dcls"``
    a DCLS ``Dcls1d`` (SNN-delays): weight ``[C_out, C_in, 1]``, centred positions ``P [1, C_out, C_in, 1]`` and
    ``SIG`` -> spikelib's ``DelayedLinear`` weight ``[C_out, C_in]``, delays ``D = K // 2 - P``,
    ``sigma = |SIG| + 0.27``.

A reference tensor that the reference builds but never uses (SDT v1's ``talking_heads`` conv, the PLIF parameter of
its unused ``attn_lif``) is listed with ``module=None`` and skipped, and the entry says why.

:func:`load_reference_checkpoint` reads a file with ``torch.load(weights_only=True)`` (only tensors and plain
containers; the ``argparse.Namespace`` and ``collections.Counter`` that the references' training scripts store
beside the weights are allowed as plain data), unwraps ``state_dict``/``model``, strips a DDP ``module.`` prefix and
the model's wrapper prefixes (Pointcept's ``backbone.``), converts every tensor, and loads strictly: a reference key
without a place here, a missing one or a shape that does not fit raises :class:`CheckpointMismatchError` naming the
first such key. ``positional=True`` pairs the checkpoint's tensors with the reference keys by order instead of by
name (the authors' own ``load_old_ckpt`` of bic-L/MaxFormer ``imagenet/misc.py``, needed because their released
ImageNet files were saved by an older version of the code with other module names, bic-L/MaxFormer issue #10); every
shape must still match.
"""

from __future__ import annotations

import argparse
import collections
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

__all__ = ["RefEntry", "leaf", "unused", "CheckpointMismatchError", "read_checkpoint", "reference_state_keys",
           "convert_reference_state", "load_reference_checkpoint"]

LAYOUTS = ("same", "conv1d", "spconv", "spconv_1x1_raw", "dcls")
_SAFE_GLOBALS = [argparse.Namespace, collections.Counter]


class CheckpointMismatchError(KeyError):
    """A checkpoint does not fit the model (the message names the first key that does not match)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RefEntry:
    """One reference leaf module: its key prefix, the spikelib module holding its tensors, the weight layout.

    ``module=None`` marks tensors the reference stores but never uses (``names`` lists them, ``note`` says why).
    """

    ref: str
    module: Optional[nn.Module]
    layout: str = "same"
    names: Tuple[str, ...] = ()
    note: str = ""


def leaf(ref: str, module: nn.Module, layout: str = "same") -> RefEntry:
    """The entry of a reference leaf ``ref`` held by ``module`` (whose ``state_dict`` has the same tensor names)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return RefEntry(ref, module, layout)


def unused(ref: str, names: Iterable[str], note: str) -> RefEntry:
    """Reference tensors ``ref.<name>`` that the reference builds but never uses (skipped when loading)."""
    return RefEntry(ref, None, "same", tuple(names), note)


def _local_names(entry: RefEntry) -> List[str]:
    if entry.module is None:
        return list(entry.names)
    if entry.layout == "dcls":
        return ["weight", "P", "SIG"]
    return list(entry.module.state_dict().keys())


def reference_state_keys(model: nn.Module) -> List[str]:
    """The reference ``state_dict`` keys of ``model``'s configuration, in the reference's order."""
    return [f"{e.ref}.{n}" for e in _layout(model) for n in _local_names(e)]


def snn_delays_layout(model: nn.Module) -> List[RefEntry]:
    """Thvnvtos/SNN-delays ``SnnDelays.model`` (an ``nn.Sequential``): per hidden layer ``Dcls1d``, ``BatchNorm1d``,
    LIF, Dropout; then the readout ``Dcls1d`` and LIF (the configuration of best_config_SHD.py: batch norm, LIF
    neurons, no synapse filter, no bias)."""
    out: List[RefEntry] = []
    idx = 0
    for syn, norm in zip(model.synapses, model.norms):
        out.append(RefEntry(f"model.{idx}", syn, "dcls"))
        if isinstance(norm, nn.BatchNorm1d):
            out.append(leaf(f"model.{idx + 1}", norm))
            idx += 1
        idx += 3
    out.append(RefEntry(f"model.{idx}", model.readout, "dcls"))
    return out


def _layout(model: nn.Module) -> List[RefEntry]:
    from spikelib.models.snn_delays import SNNDelays  # here: its module belongs to another area of the code

    if isinstance(model, SNNDelays):
        return snn_delays_layout(model)
    fn = getattr(model, "reference_layout", None)
    if fn is None:
        raise TypeError(f"{type(model).__name__} has no reference checkpoint layout (reference_layout())")
    return list(fn())


def _safe_load(path: Union[str, os.PathLike]) -> Any:
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file {os.fspath(path)!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError / RuntimeError for refused content
        if "weights_only" in str(exc) or "Unpickl" in type(exc).__name__:
            raise ValueError(
                f"{os.fspath(path)!r} holds objects that safe loading refuses (weights_only=True): {exc}. If you "
                f"trust the file, extract its state_dict in a separate process and save it as plain tensors"
            ) from None
        raise


def read_checkpoint(source: Union[str, os.PathLike, Mapping[str, Any]],
                    wrappers: Tuple[str, ...] = ()) -> "collections.OrderedDict[str, torch.Tensor]":
    """The reference ``state_dict`` in a checkpoint file (or mapping), unwrapped and without DDP/wrapper prefixes.

    Accepted containers: a plain ``state_dict``, or a dict holding it under ``state_dict`` (timm, Pointcept) or
    ``model`` (the MaxFormer/SDT V2 scripts). ``wrappers`` are further prefixes to strip when every key has them.
    """
    obj = source if isinstance(source, Mapping) else _safe_load(source)
    if not isinstance(obj, Mapping):
        raise ValueError(f"a checkpoint must hold a mapping, got {type(obj).__name__}")
    for key in ("state_dict", "model", "model_state_dict", "net"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not obj:
        what = f"entry {bad[0]!r} is not a named tensor" if bad else "it is empty"
        raise ValueError(f"the checkpoint's state_dict is not a mapping of names to tensors: {what}")
    state = collections.OrderedDict(obj.items())
    for prefix in ("module.",) + tuple(wrappers):
        if all(k.startswith(prefix) for k in state):
            state = collections.OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return state


def _convert(entry: RefEntry, name: str, t: torch.Tensor, target: torch.Tensor, ref_key: str) -> torch.Tensor:
    layout = entry.layout
    if layout in ("conv1d",) and name == "weight":
        if t.dim() != 3 or t.shape[-1] != 1:
            raise CheckpointMismatchError(f"{ref_key}: expected a Conv1d weight [C_out, C_in, 1], got {tuple(t.shape)}")
        t = t[..., None]
    elif layout == "spconv" and name == "weight":
        if t.dim() != 5:
            raise CheckpointMismatchError(f"{ref_key}: expected an spconv weight [C_out, kx, ky, kz, C_in], got "
                                          f"{tuple(t.shape)}")
        c_out, c_in = t.shape[0], t.shape[-1]
        t = t.reshape(c_out, -1, c_in).permute(1, 2, 0)
    elif layout == "spconv_1x1_raw" and name == "weight":
        if t.dim() != 5 or tuple(t.shape[1:4]) != (1, 1, 1):
            raise CheckpointMismatchError(f"{ref_key}: expected an spconv 1x1x1 weight [C_out, 1, 1, 1, C_in], got "
                                          f"{tuple(t.shape)}")
        t = t.reshape(1, t.shape[-1], t.shape[0])  # the raw view spconv computes with
    if tuple(t.shape) != tuple(target.shape):
        raise CheckpointMismatchError(f"{ref_key}: shape {tuple(t.shape)} (after layout {layout!r}) does not fit "
                                      f"{tuple(target.shape)} of this model")
    return t.to(dtype=target.dtype)


def _convert_dcls(entry: RefEntry, tensors: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    m = entry.module
    w, P, SIG = tensors["weight"], tensors["P"], tensors["SIG"]
    c_out, c_in = m.weight.shape
    if tuple(w.shape) != (c_out, c_in, 1) or tuple(P.shape) != (1, c_out, c_in, 1):
        raise CheckpointMismatchError(f"{entry.ref}.weight/P: Dcls1d shapes {tuple(w.shape)}, {tuple(P.shape)} do not "
                                      f"fit [{c_out}, {c_in}, 1] / [1, {c_out}, {c_in}, 1] (kernel_count 1)")
    sig = SIG.detach().abs().unique()
    if sig.numel() != 1:
        raise CheckpointMismatchError(f"{entry.ref}.SIG: one shared Gaussian width expected, got {sig.numel()} values")
    K = m.max_delay + 1
    # DCLS computes |SIG| + 0.27 and uses P in the model's dtype: convert in float64 (exact for float32 files)
    out = {f"{prefix}.weight": w[:, :, 0], f"{prefix}.sigma": (sig[0].double() + 0.27).reshape(())}
    delay = K // 2 - P[0, :, :, 0].double()
    if "delay" in m.state_dict():
        out[f"{prefix}.delay"] = delay
    return out


def convert_reference_state(model: nn.Module, state: Mapping[str, torch.Tensor], positional: bool = False
                            ) -> Dict[str, torch.Tensor]:
    """``model``'s ``state_dict`` filled from a reference ``state`` (see the module docstring); strict."""
    entries = _layout(model)
    names = {id(m): n for n, m in model.named_modules()}
    expected = [(e, n, f"{e.ref}.{n}") for e in entries for n in _local_names(e)]
    state = collections.OrderedDict(state)
    if positional:
        if len(state) != len(expected):
            raise CheckpointMismatchError(f"positional loading: the checkpoint has {len(state)} tensors, the reference "
                                          f"layout {len(expected)} (first reference key {expected[0][2]!r})")
        state = collections.OrderedDict((ref_key, t) for (_, _, ref_key), t in zip(expected, state.values()))
    known = {ref_key for _, _, ref_key in expected}
    for key in state:
        if key not in known:
            raise CheckpointMismatchError(f"checkpoint key {key!r} has no place in {type(model).__name__} "
                                          f"(its reference layout does not contain it)")
    ours = model.state_dict()
    out: Dict[str, torch.Tensor] = {}
    for entry in entries:
        local = _local_names(entry)
        for n in local:
            if f"{entry.ref}.{n}" not in state:
                raise CheckpointMismatchError(f"the checkpoint lacks {entry.ref}.{n!s} (needed by "
                                              f"{type(model).__name__})")
        if entry.module is None:
            continue
        prefix = names.get(id(entry.module))
        if prefix is None:
            raise RuntimeError(f"reference_layout of {type(model).__name__} names a module outside the model")
        if entry.layout == "dcls":
            conv = _convert_dcls(entry, {n: state[f"{entry.ref}.{n}"] for n in local}, prefix)
            for k, t in conv.items():
                if tuple(t.shape) != tuple(ours[k].shape):
                    raise CheckpointMismatchError(f"{entry.ref}: {k} shape {tuple(t.shape)} does not fit "
                                                  f"{tuple(ours[k].shape)}")
                out[k] = t.to(ours[k].dtype)
            continue
        for n in local:
            key = f"{prefix}.{n}" if prefix else n
            out[key] = _convert(entry, n, state[f"{entry.ref}.{n}"], ours[key], f"{entry.ref}.{n}")
    missing = [k for k in ours if k not in out]
    if missing:
        raise CheckpointMismatchError(f"{type(model).__name__}.{missing[0]} is not filled by the reference layout "
                                      f"(an incomplete reference_layout)")
    return out


def load_reference_checkpoint(model: nn.Module, source: Union[str, os.PathLike, Mapping[str, Any]],
                              positional: bool = False) -> nn.Module:
    """Load an authors' checkpoint (file or mapping) into ``model`` strictly; returns ``model``.

    Args:
        model: a spikelib model whose configuration is that of the checkpoint (same sizes).
        source: path of the released file (read with ``weights_only=True``) or a loaded mapping.
        positional: pair tensors with the reference keys by order (module docstring), not by name.
    """
    state = read_checkpoint(source, tuple(getattr(model, "reference_wrappers", ())))
    model.load_state_dict(convert_reference_state(model, state, positional), strict=True)
    return model
