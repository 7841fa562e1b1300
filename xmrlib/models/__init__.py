"""The book's models. Each follows the model contract of CONTRIBUTING.md.

``build_model(name, **config)`` rebuilds any of them from its JSON-able ``config`` (how checkpoints
are reloaded); modules are imported lazily so that importing ``xmrlib.models`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from torch import nn

#: model name -> "module:Class" inside xmrlib.models
REGISTRY: dict[str, str] = {
    "vse": "vse:KirosVSE",
    "vsepp": "vsepp:VSEPP",
    "scan": "scan:SCAN",
    "summax": "scan:SumMax",
    "scan_ensemble": "scan:SCANEnsemble",
    "mmca": "mmca:MMCA",
    "a3vse": "a3vse:A3VSE",
}


def build_model(name: str, **config: Any) -> nn.Module:
    """Instantiate model ``name`` with ``config`` (the model's constructor arguments)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(import_module(f"xmrlib.models.{module_name}"), class_name)
    return cls(**config)
