"""dspy-bridge: a gRPC sidecar that builds, runs, evaluates and optimizes DSPy programs."""

import os
from importlib.metadata import PackageNotFoundError, version

# No code path of the sidecar reaches the internet on its own: LiteLLM (on import) and DSPy
# (when it first prices a call) fetch a model price list from GitHub unless this is set, and
# use their bundled copies when it is. Set before anything can import either, in every process
# (front, workers, jobs), since each imports this package first.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

try:
    __version__ = version("dspy-bridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
