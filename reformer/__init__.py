"""Reformer: learn to pick the fastest convolution kernel for a problem, on the CPU.

Public entry points (imported lazily so ``import reformer`` stays cheap):

* :class:`reformer.Selector` — ``Selector.load(model_dir).select(problem, applicable=None, top=1)``;
* :func:`reformer.fit` with :class:`reformer.FitConfig` — train and evaluate;
* :func:`reformer.load_matrix` — a dataset as a problems x kernels runtime matrix.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Selector": "reformer.selector",
    "fit": "reformer.train",
    "FitConfig": "reformer.config",
    "FitResult": "reformer.train",
    "load_matrix": "reformer.data",
    "RuntimeMatrix": "reformer.data",
    "SplitSpec": "reformer.splits",
    "make_split": "reformer.splits",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reformer' has no attribute {name!r}")
