"""dspy-bridge: a gRPC sidecar that builds, runs, evaluates and optimizes DSPy programs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dspy-bridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
