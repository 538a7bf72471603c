"""The LIF implementations compared, each configured to the same dynamics, behind one interface.

Every implementation is a factory for an ``nn.Module`` mapping input current ``x: [T, B, N]`` to spikes ``[T, B, N]``,
starting from rest on every call. The common dynamics (spikelib's and spikingjelly's ``decay_input=True`` form)::

    H[t] = V[t-1] + (X[t] - V[t-1]) / tau,   tau = 2
    S[t] = Theta(H[t] - 1)                   (surrogate gradient ATan(alpha=2) where the library has it)
    V[t] = H[t] (1 - S[t])                   hard reset to 0, reset detached from the graph

How each library is made to compute exactly this is written in ``Impl.config`` (and README.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

TAU = 2.0
V_TH = 1.0
SPIKELIB_REFERENCE = "spikelib-torch"


@dataclass(frozen=True)
class Impl:
    """One implementation: ``build()`` returns a fresh sequence module; ``package`` is what must be importable."""

    name: str
    package: str
    is_peer: bool
    config: str
    build: Callable[[], nn.Module]


# ---------------------------------------------------------------------------------------------------------------
# spikelib
# ---------------------------------------------------------------------------------------------------------------

def _spikelib(backend: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import spikelib

        return spikelib.LIF(tau=TAU, v_threshold=V_TH, v_reset=0.0, reset="hard", decay_input=True,
                            detach_reset=True, surrogate="atan", backend=backend)

    return build


# ---------------------------------------------------------------------------------------------------------------
# spikingjelly 2.0
# ---------------------------------------------------------------------------------------------------------------

class SpikingJellyLIF(nn.Module):
    """spikingjelly ``LIFNode`` in multi-step mode, reset after every call (as a training loop must)."""

    def __init__(self) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron, surrogate

        self.node = neuron.LIFNode(tau=TAU, decay_input=True, v_threshold=V_TH, v_reset=0.0, detach_reset=True,
                                   surrogate_function=surrogate.ATan(), step_mode="m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.node(x)
        self.node.reset()
        return spikes


# ---------------------------------------------------------------------------------------------------------------
# norse 1.1
# ---------------------------------------------------------------------------------------------------------------

class NorseLIF(nn.Module):
    """norse's sequence module ``LIF`` with an instantaneous synapse (``tau_syn_inv * dt = 1`` empties the current
    every step, so ``v += 0.5 (x - v)``)."""

    def __init__(self) -> None:
        super().__init__()
        import norse.torch as norse

        p = norse.LIFParameters(tau_syn_inv=torch.as_tensor(1.0), tau_mem_inv=torch.as_tensor(1.0 / TAU),
                                v_leak=torch.as_tensor(0.0), v_th=torch.as_tensor(V_TH),
                                v_reset=torch.as_tensor(0.0), method="super", alpha=torch.as_tensor(100.0))
        self.lif = norse.LIF(p=p, dt=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(x)[0]


def detached_reset_value(z: torch.Tensor, v: torch.Tensor, reset: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
    """norse's ``reset_value`` with the spike detached (norse's ``reset_method`` hook; detach_reset=True)."""
    z = z.detach()
    return (1 - z) * v + z * reset


class NorseLIFBoxCell(nn.Module):
    """norse's current-free ``LIFBoxCell`` (exactly ``v += 0.5 (x - v)``), stepped over ``x.unbind(0)``, with the
    reset detached through ``LIFBoxParameters.reset_method``."""

    def __init__(self) -> None:
        super().__init__()
        import norse.torch as norse

        p = norse.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / TAU), v_leak=torch.as_tensor(0.0),
                                   v_th=torch.as_tensor(V_TH), v_reset=torch.as_tensor(0.0), method="super",
                                   alpha=torch.as_tensor(100.0), reset_method=detached_reset_value)
        self.cell = norse.LIFBoxCell(p=p, dt=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = None
        out = []
        for x_t in x.unbind(0):
            z, state = self.cell(x_t, state)
            out.append(z)
        return torch.stack(out)


# ---------------------------------------------------------------------------------------------------------------
# snnTorch 1.0
# ---------------------------------------------------------------------------------------------------------------

class SnnTorchLeaky(nn.Module):
    """snnTorch ``Leaky(beta = 1 - 1/tau, reset_mechanism='zero')`` stepped over time, fed ``x / tau``.

    ``beta V + x / tau`` is the decay_input=True charge; snnTorch applies the (always detached) reset at the start of
    the next step, which gives the same spikes.
    """

    def __init__(self) -> None:
        super().__init__()
        import snntorch
        from snntorch import surrogate

        self.beta = 1.0 - 1.0 / TAU
        self.leaky = snntorch.Leaky(beta=self.beta, threshold=V_TH, spike_grad=surrogate.atan(alpha=2.0),
                                    reset_mechanism="zero")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.leaky.reset_mem()
        out = []
        for x_t in (x * (1.0 - self.beta)).unbind(0):
            spk, mem = self.leaky(x_t, mem)
            out.append(spk)
        self.leaky.reset_mem()  # drop the last step's graph held by the module
        return torch.stack(out)


IMPLEMENTATIONS: Tuple[Impl, ...] = (
    Impl("spikelib-torch", "spikelib", False,
         "spikelib.LIF(tau=2, detach_reset=True, surrogate='atan', backend='torch'): plain per-step torch loop "
         "(the reference)", _spikelib("torch")),
    Impl("spikelib-numba", "spikelib", False,
         "spikelib.LIF(..., backend='numba'): generated numba forward/BPTT kernels ('auto' picks it on CPU)",
         _spikelib("numba")),
    Impl("spikingjelly", "spikingjelly", True,
         "neuron.LIFNode(tau=2., decay_input=True, v_reset=0., detach_reset=True, surrogate_function="
         "surrogate.ATan(), step_mode='m'); 2.0 has no backend argument: on CPU torch.ops.sj_lif.forward runs its "
         "torch per-step loop and autograd differentiates it", SpikingJellyLIF),
    Impl("norse-LIF", "norse", True,
         "norse.torch.LIF(LIFParameters(tau_syn_inv=1, tau_mem_inv=0.5, v_leak=0, v_th=1, v_reset=0, "
         "method='super'), dt=1): norse's sequence module (loops with x[t]); SuperSpike surrogate (no ATan in "
         "norse; alpha ignored by 1.1); reset kept in the graph (LIFParameters has no option)", NorseLIF),
    Impl("norse-LIFBoxCell", "norse", True,
         "norse.torch.LIFBoxCell(LIFBoxParameters(tau_mem_inv=0.5, v_leak=0, v_th=1, v_reset=0, method='super', "
         "reset_method=<reset_value with z detached>), dt=1) stepped over x.unbind(0): no synaptic current, fewest "
         "ops; SuperSpike surrogate (no ATan in norse)",
         NorseLIFBoxCell),
    Impl("snntorch", "snntorch", True,
         "snntorch.Leaky(beta=0.5, threshold=1, spike_grad=surrogate.atan(alpha=2), reset_mechanism='zero') "
         "stepped over time with input x*0.5 (= x/tau); reset detached (snnTorch always detaches it)",
         SnnTorchLeaky),
)


def select(only: Optional[Sequence[str]] = None) -> Tuple[List[Impl], Dict[str, str]]:
    """Implementations to run (filtered by ``only``: exact names or prefixes) and the skipped ones with the reason."""
    unknown = [o for o in only or () if not any(i.name == o or i.name.startswith(o) for i in IMPLEMENTATIONS)]
    if unknown:
        raise SystemExit(f"--only: no implementation matches {unknown}; known: {[i.name for i in IMPLEMENTATIONS]}")
    chosen: List[Impl] = []
    skipped: Dict[str, str] = {}
    for impl in IMPLEMENTATIONS:
        if only and not any(impl.name == o or impl.name.startswith(o) for o in only):
            continue
        reason = import_problem(impl.package)
        if reason:
            skipped[impl.name] = reason
        else:
            chosen.append(impl)
    return chosen, skipped


def import_problem(package: str) -> Optional[str]:
    """None if ``package`` imports, else why not (a missing or broken peer is skipped, never fatal)."""
    try:
        importlib.import_module(package)
    except Exception as exc:  # a peer may fail with more than ImportError when its dependencies disagree
        return f"not importable ({type(exc).__name__}: {exc})"
    return None


def build_all(impls: Sequence[Impl], skipped: Dict[str, str],
              build: Optional[Callable[[Impl], nn.Module]] = None) -> Dict[str, nn.Module]:
    """Build a module per implementation (``build(impl)``, default ``impl.build()``); failures go to ``skipped``."""
    modules: Dict[str, nn.Module] = {}
    for impl in impls:
        try:
            modules[impl.name] = build(impl) if build else impl.build()
        except Exception as exc:  # a peer that cannot be configured is skipped, not fatal
            skipped[impl.name] = f"construction failed ({type(exc).__name__}: {exc})"
    return modules


def by_name(name: str) -> Impl:
    for impl in IMPLEMENTATIONS:
        if impl.name == name:
            return impl
    raise KeyError(f"unknown implementation {name!r}; known: {[i.name for i in IMPLEMENTATIONS]}")


def auto_backend_on_cpu() -> Optional[str]:
    """Which backend spikelib's ``backend='auto'`` runs for a float32 CPU tensor with grad (None without spikelib)."""
    try:
        import spikelib
        from spikelib.kernels import reset_backend_calls
    except ImportError:
        return None
    reset_backend_calls()
    x = torch.randn(3, 2, 4, requires_grad=True)
    spikelib.LIF(tau=TAU, detach_reset=True)(x).sum().backward()
    calls = spikelib.backend_calls("lif")
    return max(calls, key=calls.get) if calls else None
