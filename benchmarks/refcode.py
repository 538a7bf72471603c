"""The authors' reference code for the side-by-side benchmarks: fetched into a scratch folder, never committed.

Each ``bench_*_ref.py`` script compares spikelib with the authors' own implementation of a published model, on the
authors' recipe and the same weights. This module

* checks out the authors' repositories at pinned commits into ``--refs`` (default ``$TMPDIR/spikelib-bench-refs``)
  with ``git clone`` from ``--git-url`` (a template with ``{owner}`` and ``{name}``; default GitHub; a local mirror
  works too, e.g. ``--git-url /mirrors/{owner}+{name}/repo``);
* prepares, for the references that need packages the project environment must not have (spikingjelly 0.0.0.0.14
  has the import name of the spikingjelly 2.0 used elsewhere; spconv's CPU build), a scratch virtual environment
  ``<refs>/venv`` that sees the project's packages through a ``.pth`` line and installs, with the project's CPU
  constraints, exactly what ``tests/fixtures/reference/generate.py`` documents (spikingjelly 0.0.0.0.14, timm 0.6.13,
  einops; spconv 2.3.8); ``--ref-python`` uses an environment prepared elsewhere instead;
* imports the authors' modules with the stand-ins of ``tests/fixtures/reference/generate.py`` (one shared helper:
  empty modules for imports the models never use, such as ``wandb`` and ``torchvision``).

A reference that cannot be fetched or imported is reported (``RefUnavailable``) and its rows are skipped, never a
crash.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
import types
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import common

#: name -> (owner, commit); the commits the benchmarks were written against (the same as the test fixtures').
REPOS: Dict[str, Tuple[str, str]] = {
    "SNN-delays": ("Thvnvtos", "d169b4e3049a3d5bff56c84a8b2f0c4e835aafda"),
    "elmneuron": ("AaronSpieler", "52e68a6d39523ac6613a586699b116e8e606dda3"),
    "Spike-Driven-Transformer-V2": ("BICLab", "35f245f4f79acf1a2b3ef22698c58ab05c1ede33"),
    "MaxFormer": ("bic-L", "6ddd4ccde2cc9c4b965059403868e57803b9b6b0"),
    "E-3DSNN": ("bollossom", "dbe5d1731d3204850bd591a18f7255ca2d1b6712"),
}
DEFAULT_GIT_URL = "https://github.com/{owner}/{name}.git"
DEFAULT_REFS = Path(tempfile.gettempdir()) / "spikelib-bench-refs"
#: What the scratch environment installs (tests/fixtures/reference/generate.py), with the project's CPU constraints.
VENV_PACKAGES = {
    "sj014": ["spikingjelly==0.0.0.0.14", "timm==0.6.13", "einops"],
    "spconv": ["spconv==2.3.8"],
}
GENERATE = common.REPO_ROOT / "tests" / "fixtures" / "reference" / "generate.py"


class RefUnavailable(RuntimeError):
    """A reference cannot be fetched, installed or imported here (the message says why)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of every reference benchmark."""
    p.add_argument("--refs", type=Path, default=DEFAULT_REFS,
                   help=f"scratch folder for the reference checkouts and environment (default {DEFAULT_REFS})")
    p.add_argument("--git-url", default=DEFAULT_GIT_URL,
                   help="where to clone the references from: a template with {owner} and {name} (default GitHub)")
    p.add_argument("--ref-python", type=Path, default=None,
                   help="python of a prepared reference environment (default: <refs>/venv, created if needed)")


def checkout(name: str, args: argparse.Namespace) -> Path:
    """``<refs>/<name>`` at the pinned commit (cloned on first use)."""
    owner, commit = REPOS[name]
    dest = Path(args.refs) / name
    if (dest / ".git").exists():
        head = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode == 0 and head.stdout.strip() == commit:
            return dest
        raise RefUnavailable(f"{dest} exists at another commit ({head.stdout.strip()[:12]}); remove it or use "
                             f"another --refs")
    if dest.exists():
        raise RefUnavailable(f"{dest} exists but is not a git checkout; remove it or use another --refs")
    url = args.git_url.format(owner=owner, name=name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    for cmd in (["git", "clone", "--quiet", "--no-checkout", url, str(tmp)],
                ["git", "-C", str(tmp), "checkout", "--quiet", commit]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RefUnavailable(f"cannot fetch {owner}/{name} ({' '.join(cmd[:3])}): "
                                 f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    os.replace(tmp, dest)
    return dest


def reference_python(args: argparse.Namespace, kinds: Sequence[str]) -> Path:
    """The python of the scratch environment with the packages of ``kinds`` (keys of :data:`VENV_PACKAGES`)."""
    if args.ref_python is not None:
        return Path(args.ref_python)
    venv = Path(args.refs) / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        proc = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RefUnavailable(f"cannot create {venv}: {proc.stderr.strip()[-200:]}")
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        # The project's packages (torch, numpy, DCLS, ...) after the scratch environment's own.
        Path(site, "zz_spikelib_project.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    constraints = common.REPO_ROOT / "constraints" / "cpu.txt"
    for kind in kinds:
        marker = venv / f".installed-{kind}"
        if marker.exists():
            continue
        cmd = [str(python), "-m", "pip", "install", "--quiet", *(["-c", str(constraints)] if constraints.exists()
                                                                  else []), *VENV_PACKAGES[kind]]
        if kind == "sj014":
            cmd.insert(4, "--no-deps")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RefUnavailable(f"cannot install {VENV_PACKAGES[kind]} into {venv}: "
                                 f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        marker.write_text("ok\n")
    return python


def generate_helpers() -> types.ModuleType:
    """tests/fixtures/reference/generate.py as a module (its stand-ins and import helpers; nothing runs on import)."""
    spec = importlib.util.spec_from_file_location("spikelib_reference_generate", GENERATE)
    if spec is None or spec.loader is None:
        raise RefUnavailable(f"{GENERATE} is missing")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def torchvision_stand_in() -> None:
    """Answer every ``torchvision`` import with an empty module (timm imports it at load; the models use none of it;
    tests/fixtures/reference/generate.py)."""
    if not any(type(h).__name__ == "_TorchvisionStandIn" for h in sys.meta_path):
        sys.meta_path.insert(0, generate_helpers()._TorchvisionStandIn())


def stand_in(name: str, **attrs: object) -> types.ModuleType:
    """An empty module ``name`` (with ``attrs``) for an import the reference model never uses."""
    return generate_helpers()._stand_in(name, **attrs)


def rerun_under(python: Path, argv: Optional[List[str]] = None) -> int:
    """Run this script again under ``python`` (the reference environment) with the same arguments."""
    argv = list(sys.argv if argv is None else argv)
    env = dict(os.environ)
    env.pop(common._REEXEC_MARK, None)
    return subprocess.run([str(python), *argv, "--in-ref-env"], env=env).returncode
