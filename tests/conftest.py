import sys
from pathlib import Path

import pytest

# Test helper modules (op_models, ...) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

KERNEL_PATHS = ("scalar", "portable", "avx2", "avx512")


def _cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


_REQUIRED_FLAGS = {"avx2": {"avx2", "fma"}, "avx512": {"avx512f"}}
# PredictiveQLinearConv's AVX-512 path multiplies with VNNI (vpdpbusd) and refuses a CPU without it.
_REQUIRED_FLAGS_INT8 = {**_REQUIRED_FLAGS, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}}


def _use_kernel(path: str, required: dict, monkeypatch) -> str:
    missing = required.get(path, set()) - _cpu_flags()
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(sorted(missing))}")
    monkeypatch.setenv("ONNXPRED_KERNEL", path)
    return path


@pytest.fixture(params=KERNEL_PATHS)
def kernel_path(request, monkeypatch):
    """Runs a test once per PredictiveConv code path (ONNXPRED_KERNEL), skipping what the CPU lacks."""
    return _use_kernel(request.param, _REQUIRED_FLAGS, monkeypatch)


@pytest.fixture(params=KERNEL_PATHS)
def int8_kernel_path(request, monkeypatch):
    """Runs a test once per PredictiveQLinearConv code path, skipping what the CPU lacks."""
    return _use_kernel(request.param, _REQUIRED_FLAGS_INT8, monkeypatch)
