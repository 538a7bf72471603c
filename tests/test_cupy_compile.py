"""Every generated CUDA kernel variant compiles, on a machine without a GPU: all neuron models x surrogates x dtypes x
reset modes x detach_reset, batched into one translation unit per dtype. NVRTC (the compiler CuPy uses at run time,
from the nvidia-cuda-nvrtc-cu12 wheel that scripts/install_cuda_check.sh installs) builds all of them; nvcc builds
them too (one unit when NVRTC also ran, every unit otherwise). Skipped only when neither compiler exists. The PTX must
hold both kernels of every variant; a deliberately broken variant must fail (the check can fail)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from spikelib.kernels.cupy.codegen import DTYPES, all_variant_keys, translation_unit
from spikelib.kernels.cupy.toolchain import CompileError, compile_nvcc, compile_nvrtc, find_nvcc, find_nvrtc

NVCC = find_nvcc()
NVRTC = find_nvrtc()
KEYS = list(all_variant_keys())


def _units():
    return {d: [k for k in KEYS if k.dtype == d] for d in sorted(DTYPES)}


def _check_ptx(ptx, keys):
    for key in keys:
        assert f".entry {key.forward_name}(" in ptx, key
        assert f".entry {key.backward_name}(" in ptx, key
    assert ptx.count(".entry ") == 2 * len(keys)


def test_variant_matrix_is_complete():
    neurons = {k.neuron.name for k in KEYS}
    assert neurons == {"lif", "lif_nodecay", "lif_leak", "qif(a0=1,v_c=0.8,v_rest=0)"}
    assert len(KEYS) == 4 * 6 * 3 * 2 * 2 and len({k.tag for k in KEYS}) == len(KEYS)


@pytest.mark.skipif(NVRTC is None and NVCC is None, reason="neither NVRTC nor nvcc is installed")
def test_every_variant_compiles():
    units = _units()
    jobs = []
    if NVRTC is not None:
        jobs += [("nvrtc", d) for d in units]
    if NVCC is not None:
        jobs += [("nvcc", d) for d in (units if NVRTC is None else ["float16"])]

    def run(job):
        tool, dtype = job
        source = translation_unit(units[dtype])
        ptx = compile_nvrtc(source) if tool == "nvrtc" else compile_nvcc(source)
        _check_ptx(ptx, units[dtype])
        return job

    with ThreadPoolExecutor(max_workers=2) as pool:  # at most two compilers at once (a shared 2-core machine)
        done = list(pool.map(run, jobs))
    assert len(done) == len(jobs) >= 3


@pytest.mark.skipif(NVRTC is None and NVCC is None, reason="neither NVRTC nor nvcc is installed")
def test_a_broken_variant_fails_to_compile():
    key = KEYS[0]
    source = translation_unit([key]).replace("return 1.0f - inv_tau;", "return 1.0f - inv_taus;")
    compile_fn = compile_nvrtc if NVRTC is not None else compile_nvcc
    with pytest.raises(CompileError, match="inv_taus"):
        compile_fn(source)


@pytest.mark.skipif(NVRTC is None and NVCC is None, reason="neither NVRTC nor nvcc is installed")
def test_every_multistate_variant_compiles():
    """The neuron families' generated kernels (every family x options x storage dtype, and every surrogate),
    compiled with their own options (no FMA contraction); a broken one must fail."""
    from spikelib.kernels.cupy.multistate import MULTISTATE_OPTIONS, all_multistate_keys

    keys = list(all_multistate_keys())
    assert len({k.tag for k in keys}) == len(keys) == 20 * 3 + 5
    source = translation_unit(keys)
    ptx = compile_nvrtc(source, options=MULTISTATE_OPTIONS) if NVRTC else compile_nvcc(source,
                                                                                        options=MULTISTATE_OPTIONS)
    _check_ptx(ptx, keys)
    broken = translation_unit(keys[:1]).replace("surrogate(n", "surrogat(n")
    with pytest.raises(CompileError):
        compile_nvrtc(broken, options=MULTISTATE_OPTIONS) if NVRTC else compile_nvcc(broken,
                                                                                     options=MULTISTATE_OPTIONS)

