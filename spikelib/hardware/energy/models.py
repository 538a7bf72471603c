"""Energy models loaded from cited data files: ``horowitz45``, ``loihi`` (package data) or a user YAML/JSON file.

A model file holds named energies (picojoules, each with its ``source`` and how it was ``verified``) and one or
more *profiles* that say what each counted quantity costs as a sum of those energies, e.g. ``mac: fp32_mult +
fp32_add`` or ``weight_read: 0.5 * sram_8kb_64b``. Roles of a profile:

``ac`` (required)             one synaptic operation (an accumulate triggered by a spike)
``neuron_update`` (required)  one neuron/state update per step
``mac``                       one multiply-accumulate of a real-valued input
``weight_read``, ``state_read``, ``state_write``  one memory access (required unless ``includes_memory: true``,
                              which says the operation figures already include their memory traffic)
``spike``                     emitting one spike

Required top-level fields: ``name``, ``reference`` (with ``citation``), ``energies``, ``profiles``. Every energy
must be a finite number > 0; a missing field, an unknown role or energy name, or a bad value raises
:class:`EnergyModelError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

__all__ = ["EnergyModel", "EnergyModelError", "Profile", "load_energy_model", "builtin_models", "ROLES"]

DATA_DIR = Path(__file__).resolve().parent / "data"
ROLES = ("ac", "mac", "neuron_update", "weight_read", "state_read", "state_write", "spike")
_REQUIRED_ROLES = ("ac", "neuron_update")
_MEMORY_ROLES = ("weight_read", "state_read", "state_write")
_TERM = re.compile(r"^\s*(?:([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*$")


class EnergyModelError(ValueError):
    """An energy model name, file or field is missing or invalid."""


@dataclass(frozen=True)
class Profile:
    """The cost of each role in pJ, with the formula it came from."""

    name: str
    costs: Mapping[str, float]
    formulas: Mapping[str, str]
    includes_memory: bool = False

    def has(self, role: str) -> bool:
        return role in self.costs

    def cost(self, role: str, model: str = "") -> float:
        """The energy (pJ) of one ``role``; raises :class:`EnergyModelError` when the profile has none."""
        if role not in self.costs:
            raise EnergyModelError(f"energy model {model!r} profile {self.name!r} has no energy for {role!r} "
                                   f"(it defines: {', '.join(sorted(self.costs))})")
        return self.costs[role]


@dataclass(frozen=True)
class EnergyModel:
    """A loaded energy model (see the module docstring)."""

    name: str
    description: str
    technology_node: str
    citation: str
    where: str
    verification: str
    energies: Mapping[str, Mapping[str, Any]]
    profiles: Mapping[str, Profile]
    default_profile: str
    path: str = ""
    notes: List[str] = field(default_factory=list)

    def profile(self, name: Optional[str] = None) -> Profile:
        """The named profile (default: the file's ``default_profile``)."""
        key = self.default_profile if name is None else name
        if key not in self.profiles:
            raise EnergyModelError(f"energy model {self.name!r} has no profile {key!r}; "
                                   f"profiles: {', '.join(sorted(self.profiles))}")
        return self.profiles[key]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "description": self.description, "technology_node": self.technology_node,
                "citation": self.citation, "where": self.where, "verification": self.verification,
                "path": self.path, "energies_pJ": {k: dict(v) for k, v in self.energies.items()},
                "profiles": {k: {"costs_pJ": dict(p.costs), "formulas": dict(p.formulas),
                                 "includes_memory": p.includes_memory} for k, p in self.profiles.items()},
                "default_profile": self.default_profile}


def builtin_models() -> List[str]:
    """Names of the models shipped as package data."""
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))


def _read(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise EnergyModelError(f"energy model file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: report the file
        raise EnergyModelError(f"energy model file {str(path)!r} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EnergyModelError(f"energy model file {str(path)!r} must hold a mapping at the top level")
    return data


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise EnergyModelError(f"{where} must be a finite energy > 0 (pJ), got {value!r}")
    return float(value)


def _parse(formula: Any, energies: Mapping[str, float], where: str) -> float:
    if isinstance(formula, (int, float)) and not isinstance(formula, bool):
        raise EnergyModelError(f"{where} must name energies of the file (e.g. 'fp32_mult + fp32_add'), not a bare "
                               f"number {formula!r}: every value needs its citation in 'energies'")
    if not isinstance(formula, str) or not formula.strip():
        raise EnergyModelError(f"{where} must be a formula string such as 'fp32_mult + fp32_add', got {formula!r}")
    total = 0.0
    for term in formula.split("+"):
        m = _TERM.match(term)
        if not m:
            raise EnergyModelError(f"{where}: cannot read term {term.strip()!r} of {formula!r} "
                                   "(expected 'name' or 'number * name')")
        coef = _positive(float(m.group(1)), f"{where}: factor of {m.group(2)}") if m.group(1) else 1.0
        if m.group(2) not in energies:
            raise EnergyModelError(f"{where}: unknown energy {m.group(2)!r}; defined: {', '.join(sorted(energies))}")
        total += coef * energies[m.group(2)]
    return total


def _build(data: Dict[str, Any], origin: str) -> EnergyModel:
    for key in ("name", "reference", "energies", "profiles"):
        if key not in data:
            raise EnergyModelError(f"energy model {origin} is missing the field {key!r}")
    ref = data["reference"]
    if not isinstance(ref, dict) or not ref.get("citation"):
        raise EnergyModelError(f"energy model {origin}: 'reference' must be a mapping with a 'citation'")
    raw = data["energies"]
    if not isinstance(raw, dict) or not raw:
        raise EnergyModelError(f"energy model {origin}: 'energies' must be a non-empty mapping of name -> "
                               "{value, source}")
    energies: Dict[str, Dict[str, Any]] = {}
    values: Dict[str, float] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "value" not in entry or not entry.get("source"):
            raise EnergyModelError(f"energy model {origin}: energy {name!r} needs a 'value' and a 'source' "
                                   f"(its citation), got {entry!r}")
        values[name] = _positive(entry["value"], f"energy model {origin}: energies.{name}.value")
        energies[name] = dict(entry, value=values[name])
    profiles: Dict[str, Profile] = {}
    if not isinstance(data["profiles"], dict) or not data["profiles"]:
        raise EnergyModelError(f"energy model {origin}: 'profiles' must be a non-empty mapping")
    for pname, spec in data["profiles"].items():
        if not isinstance(spec, dict):
            raise EnergyModelError(f"energy model {origin}: profile {pname!r} must be a mapping of role -> formula")
        includes_memory = spec.get("includes_memory", False)
        if not isinstance(includes_memory, bool):
            raise EnergyModelError(f"energy model {origin}: profiles.{pname}.includes_memory must be true or false")
        unknown = sorted(set(spec) - set(ROLES) - {"includes_memory"})
        if unknown:
            raise EnergyModelError(f"energy model {origin}: profile {pname!r} has unknown role(s) {unknown}; "
                                   f"roles: {', '.join(ROLES)}")
        needed = _REQUIRED_ROLES + (() if includes_memory else _MEMORY_ROLES)
        missing = [r for r in needed if r not in spec]
        if missing:
            raise EnergyModelError(f"energy model {origin}: profile {pname!r} is missing the field(s) {missing}")
        formulas = {r: str(spec[r]) for r in ROLES if r in spec}
        costs = {r: _parse(spec[r], values, f"energy model {origin}: profiles.{pname}.{r}") for r in formulas}
        profiles[pname] = Profile(pname, costs, formulas, includes_memory)
    default = data.get("default_profile", next(iter(profiles)))
    if default not in profiles:
        raise EnergyModelError(f"energy model {origin}: default_profile {default!r} is not one of the profiles "
                               f"{sorted(profiles)}")
    return EnergyModel(name=str(data["name"]), description=str(data.get("description", "")),
                       technology_node=str(data.get("technology_node", "")), citation=str(ref["citation"]),
                       where=str(ref.get("where", "")), verification=str(data.get("verification", "")),
                       energies=energies, profiles=profiles, default_profile=default, path=origin)


def load_energy_model(model: Union[str, Path, EnergyModel]) -> EnergyModel:
    """Load a built-in model by name (``"horowitz45"``, ``"loihi"``) or a user file (a path to YAML/JSON)."""
    if isinstance(model, EnergyModel):
        return model
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a model name or a file path, got {type(model).__name__}")
    text = str(model)
    if isinstance(model, str) and model in builtin_models():
        path = DATA_DIR / f"{model}.yaml"
    elif isinstance(model, Path) or any(sep in text for sep in ("/", "\\")) or text.endswith((".yaml", ".yml",
                                                                                               ".json")):
        path = Path(text)
    else:
        raise EnergyModelError(f"unknown energy model {text!r}; built-in models: {', '.join(builtin_models())}, "
                               "or give the path of a YAML/JSON model file")
    return _build(_read(path), repr(str(path)) if path.parent != DATA_DIR else repr(path.stem))
