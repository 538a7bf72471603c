#!/usr/bin/env bash
# Install lava-nc 0.10.0 and lava-dl 0.6.0 (test-time references for spikelib.hardware.loihi) into the given Python.
#
# Usage: bash scripts/install_lava.sh <python>      (run by `make` after the core install; idempotent)
#
# Both packages are archived upstream and declare Python <3.11 plus pins we must never resolve (torch<2.4,
# torchvision, opencv, numpy<2). The way verified in ../shared/REFERENCES.md ("Lava / Loihi"):
#   1. `pip download --no-deps --python-version 3.10` both wheels and `pip install --no-deps --ignore-requires-python`;
#   2. install only the small packages lava really imports on our code paths (asteval, networkx, scipy, matplotlib),
#      with the project's constraints so that torch is never touched;
#   3. patches, each applied once (the patched text is recognised) and verified by running the patched code:
#      - Python 3.11: lava/magma/compiler/var_model.py's mutable dataclass defaults `ByteEncoder()` ->
#        `field(default_factory=ByteEncoder)`;
#      - NumPy 2.4: lava/magma/core/process/ports/ports.py's ReshapePort calls `np.reshape(..., newshape=...)` (two
#        places; the keyword is gone in NumPy 2.4): a module-level helper passes the shape positionally;
#      - NumPy 2: lava/proc/conv/utils.py's output_shape adds Python ints to the conv model's int8 padding/stride
#        (NEP 50 keeps int8), which overflows for input sides over 127: its arguments are made Python ints first;
#      - NumPy 2.4: lava/lib/dl/netx/hdf5.py's create_input calls int() on the input layer's (1,)-shaped weight and
#        bias (as lava-dl's own exporter writes them, e.g. tiny.net), which NumPy 2.4 refuses: the one element is taken.
#      Unpatched, the first two raise inside a Lava child process and Lava 0.10 then waits forever;
#   4. delete the top-level `tests` package both wheels put into site-packages (it could shadow a project's tests).
# spikelib imports lava.lib.dl.netx with an empty stand-in for slayer's object_detection module (it needs
# torchvision/cv2), see spikelib/hardware/loihi/lava_runner.py.
set -euo pipefail

PY="${1:?usage: bash scripts/install_lava.sh <python>}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$HERE/constraints/cpu.txt"
LAVA_NC=0.10.0
LAVA_DL=0.6.0

installed() {
    "$PY" - <<EOF >/dev/null 2>&1
import importlib.metadata as md
assert md.version("lava-nc") == "$LAVA_NC" and md.version("lava-dl") == "$LAVA_DL"
EOF
}

check() {
    "$PY" - <<'EOF'
import sys, types
sys.modules.setdefault("lava.lib.dl.slayer.object_detection", types.ModuleType("lava.lib.dl.slayer.object_detection"))
import importlib.metadata as md
assert md.version("lava-nc") == "0.10.0" and md.version("lava-dl") == "0.6.0"
import lava.magma.compiler.var_model  # fails on 3.11 without the dataclass fix
import lava.lib.dl.netx  # noqa: F401
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401
import numpy as np
from lava.magma.core.process.ports.ports import ReshapePort, OutPort
port = ReshapePort(new_shape=(6,), old_shape=(2, 3))
assert port.get_transform_func_fwd()(np.arange(6).reshape(2, 3)).shape == (6,), "ReshapePort fwd"
assert port.get_transform_func_bwd()(np.arange(6)).shape == (2, 3), "ReshapePort bwd"
from lava.proc.conv import utils
i8 = lambda *v: np.array(v, dtype=np.int8)
assert tuple(utils.output_shape((200, 130, 2), 4, i8(3, 3), i8(1, 1), i8(1, 1), i8(1, 1))) == (200, 130, 4), "conv"
import inspect
from lava.lib.dl.netx.hdf5 import Network
assert "int(layer_config['weight'])" not in inspect.getsource(Network.create_input), "netx create_input"
EOF
}

if ! installed; then
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 \
        "lava-nc==$LAVA_NC" "lava-dl==$LAVA_DL" -d "$TMP"
    "$PY" -m pip install -q --no-deps --ignore-requires-python "$TMP"/lava_nc-*.whl "$TMP"/lava_dl-*.whl
    # The small real needs (no torch among them; the constraints file pins what is shared with the core). pip then
    # reports lava's unmet declared pins (torch<2.4, numpy<2, torchvision, opencv, ...): expected, they are not needed.
    echo "install_lava.sh: installing lava's small runtime needs (pip's report of lava's unmet pins is expected)"
    "$PY" -m pip install -q -c "$CONSTRAINTS" "asteval>=0.9.31,<0.10" "networkx>=2.8" "scipy>=1.10" "matplotlib>=3.5"
fi

SITE="$("$PY" -c 'import importlib.metadata as md; print(md.distribution("lava-nc").locate_file(""))')"

# Each patch: (file, [(original text, patched text)]). Patched text present: left alone; else every original
# is replaced; neither found: an error.
"$PY" - "$SITE" <<'EOF'
import sys
from pathlib import Path

site = Path(sys.argv[1])
RESHAPE_HELPER = '''

def _spikelib_reshape(data, shape):
    """np.reshape with the shape passed positionally (NumPy 2.4 removed ``newshape=``); added by spikelib's
    scripts/install_lava.sh."""
    return np.reshape(data, shape)
'''
CONV_OLD = """    x_out = np.floor(
        (
            input_shape[0] + 2 * padding[0]"""
CONV_NEW = (
    "    # spikelib install_lava.sh: Python ints (the conv model keeps these as int8, which NumPy 2 does not widen)\n"
    "    input_shape, kernel_size, stride, padding, dilation = (\n"
    "        [int(v) for v in a] for a in (input_shape, kernel_size, stride, padding, dilation))\n" + CONV_OLD)
PATCHES = [
    ("lava/magma/compiler/var_model.py", [
        ("from dataclasses import dataclass, InitVar\n", "from dataclasses import dataclass, InitVar, field\n"),
        (": ByteEncoder = ByteEncoder()", ": ByteEncoder = field(default_factory=ByteEncoder)"),
    ]),
    ("lava/magma/core/process/ports/ports.py", [
        ("ft.partial(np.reshape, newshape=self.shape)", "ft.partial(_spikelib_reshape, shape=self.shape)"),
        ("ft.partial(np.reshape, newshape=self.old_shape)", "ft.partial(_spikelib_reshape, shape=self.old_shape)"),
        (None, RESHAPE_HELPER),  # appended once
    ]),
    ("lava/lib/dl/netx/hdf5.py", [
        ("weight = int(layer_config['weight'])", "weight = int(np.ravel(layer_config['weight'])[0])"),
        ("bias = int(layer_config['bias'])", "bias = int(np.ravel(layer_config['bias'])[0])"),
    ]),
    ("lava/proc/conv/utils.py", [(CONV_OLD, CONV_NEW)]),
]
for rel, edits in PATCHES:
    path = site / rel
    text = path.read_text()
    new = text
    for old, patched in edits:
        if old is None:
            if patched.strip() not in new:
                new = new.rstrip("\n") + "\n" + patched
        elif patched in new:
            continue
        elif old in new:
            new = new.replace(old, patched)
        else:
            sys.exit(f"install_lava.sh: cannot patch {path}: expected text not found: {old[:60]!r}")
    if new != text:
        path.write_text(new)
        print(f"install_lava.sh: patched {rel}")
EOF

# The wheels' top-level `tests` package (lava's own test suite) must not shadow anyone's `tests`.
rm -rf "$SITE/tests/lava"
if [ -d "$SITE/tests" ] && [ -z "$(ls -A "$SITE/tests" | grep -v -x -e __init__.py -e __pycache__)" ]; then
    rm -rf "$SITE/tests"
fi

if ! check; then
    echo "install_lava.sh: lava installed but does not import or run patched (see the error above)" >&2
    exit 1
fi
echo "install_lava.sh: lava-nc $LAVA_NC and lava-dl $LAVA_DL installed, patched and verified in $SITE"
