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
#   3. Python 3.11 fix in lava/magma/compiler/var_model.py: mutable dataclass defaults `ByteEncoder()` ->
#      `field(default_factory=ByteEncoder)`;
#   4. delete the top-level `tests` package both wheels put into site-packages (it could shadow a project's tests).
# spikelib imports lava.lib.dl.netx with an empty stand-in for slayer's object_detection module (it needs
# torchvision/cv2), see spikelib/hardware/loihi/lava_runner.py.
set -euo pipefail

PY="${1:?usage: bash scripts/install_lava.sh <python>}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$HERE/constraints/cpu.txt"
LAVA_NC=0.10.0
LAVA_DL=0.6.0

check() {
    "$PY" - <<'EOF'
import sys, types
sys.modules.setdefault("lava.lib.dl.slayer.object_detection", types.ModuleType("lava.lib.dl.slayer.object_detection"))
import importlib.metadata as md
assert md.version("lava-nc") == "0.10.0" and md.version("lava-dl") == "0.6.0"
import lava.magma.compiler.var_model  # fails on 3.11 without the dataclass fix
import lava.lib.dl.netx  # noqa: F401
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401
EOF
}

if check >/dev/null 2>&1; then
    echo "install_lava.sh: lava-nc $LAVA_NC and lava-dl $LAVA_DL already installed and working"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 \
    "lava-nc==$LAVA_NC" "lava-dl==$LAVA_DL" -d "$TMP"
"$PY" -m pip install -q --no-deps --ignore-requires-python "$TMP"/lava_nc-*.whl "$TMP"/lava_dl-*.whl
# The small real needs (no torch among them; the constraints file pins what is shared with the core). pip then
# reports lava's unmet declared pins (torch<2.4, numpy<2, torchvision, opencv, ...): expected, they are not needed.
echo "install_lava.sh: installing lava's small runtime needs (pip's report of lava's unmet pins is expected)"
"$PY" -m pip install -q -c "$CONSTRAINTS" "asteval>=0.9.31,<0.10" "networkx>=2.8" "scipy>=1.10" "matplotlib>=3.5"

SITE="$("$PY" -c 'import importlib.metadata as md; print(md.distribution("lava-nc").locate_file(""))')"
VAR_MODEL="$SITE/lava/magma/compiler/var_model.py"
if grep -q "ByteEncoder = ByteEncoder()" "$VAR_MODEL"; then
    sed -i 's/: ByteEncoder = ByteEncoder()/: ByteEncoder = field(default_factory=ByteEncoder)/' "$VAR_MODEL"
    sed -i 's/^from dataclasses import dataclass, InitVar$/from dataclasses import dataclass, InitVar, field/' \
        "$VAR_MODEL"
    grep -q "from dataclasses import dataclass, InitVar, field" "$VAR_MODEL" || {
        echo "install_lava.sh: could not patch $VAR_MODEL (unexpected import line)" >&2
        exit 1
    }
fi
# The wheels' top-level `tests` package (lava's own test suite) must not shadow anyone's `tests`.
rm -rf "$SITE/tests/lava"
if [ -d "$SITE/tests" ] && [ -z "$(ls -A "$SITE/tests" | grep -v -x -e __init__.py -e __pycache__)" ]; then
    rm -rf "$SITE/tests"
fi

if ! check; then
    echo "install_lava.sh: lava installed but does not import (see the error above)" >&2
    exit 1
fi
echo "install_lava.sh: installed lava-nc $LAVA_NC and lava-dl $LAVA_DL into $SITE"
