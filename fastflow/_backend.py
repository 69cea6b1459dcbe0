"""Loads the compiled extension ``fastflow._C`` lazily and reports how it was built."""
from __future__ import annotations

import importlib
from typing import Any, Dict

__version__ = "0.1.0"

_C = None


def load():
    """The extension module; raises ImportError with a fix if fastflow was not built."""
    global _C
    if _C is None:
        try:
            _C = importlib.import_module("fastflow._C")
        except ImportError as e:  # running from a source tree without `pip install .`
            raise ImportError(
                "fastflow's compiled extension fastflow._C could not be imported "
                f"({e}). Install the package with `pip install .` from the repository root."
            ) from e
    return _C


_SIMT = None
_SIMT_ERROR = None


class SimtError(RuntimeError):
    """A check of the SIMT host runtime failed while it ran a CUDA kernel on the CPU
    (``fastflow.ops.simt``): a shared-memory race, an uninitialised or out-of-bounds access, a
    cp.async destination used before its wait, barrier divergence or deadlock, a misaligned
    vector access, ... The message names the kernel, block, thread and address."""


def load_simt():
    """The SIMT host runtime extension ``fastflow._simt``; raises ImportError saying why if it is
    missing (FASTFLOW_NO_SIMT=1 at install, or a compiler without -fsanitize=thread)."""
    global _SIMT, _SIMT_ERROR
    if _SIMT is None:
        if _SIMT_ERROR is not None:
            raise ImportError(_SIMT_ERROR)
        try:
            _SIMT = importlib.import_module("fastflow._simt")
        except ImportError as e:
            _SIMT_ERROR = (
                f"fastflow's SIMT host runtime fastflow._simt could not be imported ({e}); it is built by "
                "`pip install .` unless FASTFLOW_NO_SIMT=1 was set or the C++ compiler lacks -fsanitize=thread "
                "(the build log says which)"
            )
            raise ImportError(_SIMT_ERROR) from e
    return _SIMT


def simt_available() -> bool:
    """Whether ``fastflow._simt`` (the CUDA kernels on the CPU, ``fastflow.ops.simt``) is built."""
    try:
        load_simt()
        return True
    except ImportError:
        return False


_INFO = None


def build_info() -> Dict[str, Any]:
    """How this fastflow was built and what it can run.

    Keys: ``version``, ``cuda_compiled`` (bool: CUDA kernels are in the build), ``cuda_archs``
    (e.g. ``"80;86;89;90"``), ``nvcc_version``, ``cuda_runtime_version``, ``cpu_ops``, ``cuda_ops``,
    ``cxx_compiler``, ``cuda_devices`` (GPUs the extension's runtime sees now; 0 without a driver),
    ``simt`` (bool: ``fastflow._simt`` is built, so ``fastflow.ops.simt()`` runs the CUDA kernels on
    the CPU with checks).
    """
    info = dict(_static_info())
    info["simt"] = simt_available()
    info["cuda_devices"] = int(load().cuda_device_count()) if info["cuda_compiled"] else 0
    return info


def _static_info() -> Dict[str, Any]:
    global _INFO
    if _INFO is None:
        _INFO = dict(load().build_info())
        _INFO["version"] = __version__
    return _INFO


def cuda_compiled() -> bool:
    """Whether this build has the CUDA kernels (cached; no CUDA call)."""
    return bool(_static_info()["cuda_compiled"])
