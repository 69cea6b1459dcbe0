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


_INFO = None


def build_info() -> Dict[str, Any]:
    """How this fastflow was built and what it can run.

    Keys: ``version``, ``cuda_compiled`` (bool: CUDA kernels are in the build), ``cuda_archs``
    (e.g. ``"80;86;89;90"``), ``nvcc_version``, ``cuda_runtime_version``, ``cpu_ops``, ``cuda_ops``,
    ``cxx_compiler``, ``cuda_devices`` (GPUs the extension's runtime sees now; 0 without a driver).
    """
    info = dict(_static_info())
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
