"""The CUDA backend on CuPy: detection, hand-written and array-level kernels, event timing.

Nothing here imports CuPy at module level: the CPU path imports
:mod:`kernelbench.backends`, which only reaches into this package when a CUDA
device is asked for.  See ``docs/gpu.md``.
"""
