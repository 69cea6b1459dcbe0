"""fastflow: fast FlowNet2-S optical flow inference.

Public API (docs/design.md section 2). Heavy modules (torch, the extension) load on first use, so
``import fastflow`` is cheap and works on machines with no GPU and no driver.
"""
import importlib as _importlib

from ._backend import __version__, build_info

_LAZY = {
    "FlowNet2S": ("model", "FlowNet2S"),
    "load_model": ("load", "load_model"),
    "CheckpointError": ("checkpoint", "CheckpointError"),
    "estimate_flow": ("api", "estimate_flow"),
    "warp": ("ops", "warp"),
    "read_flow": ("io", "read_flow"),
    "write_flow": ("io", "write_flow"),
    "flow_to_color": ("viz", "flow_to_color"),
    "track_points": ("tracking", "track_points"),
    "extract": ("extraction", "extract"),
    "validate": ("validation", "validate"),
    "reference": ("reference", None),
    "precision": ("precision", None),
    "ops": ("ops", None),
    "io": ("io", None),
    "viz": ("viz", None),
    "images": ("images", None),
}

__all__ = ["__version__", "build_info", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'fastflow' has no attribute {name!r}")
    mod, attr = _LAZY[name]
    module = _importlib.import_module(f".{mod}", __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted({n for n in globals() if not n.startswith("_")} | set(__all__) | {"__version__"})
