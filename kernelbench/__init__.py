"""kernelbench: measure convolution kernels and write Parquet runtime tables."""

__version__ = "0.1.0"
