"""Language models: the `offline` test/demo double, the factory and provider error mapping."""

from dspy_bridge.runtime.lm.errors import lm_error_to_bridge, redact, register_secret
from dspy_bridge.runtime.lm.factory import (
    LM_OPTIONS,
    LM_PARAMETERS,
    build_lm,
    clear_lm_cache,
    parse_lm_options,
    validate_lm_spec,
)
from dspy_bridge.runtime.lm.offline import OFFLINE_MODEL, OfflineLM

__all__ = [
    "LM_OPTIONS",
    "LM_PARAMETERS",
    "OFFLINE_MODEL",
    "OfflineLM",
    "build_lm",
    "clear_lm_cache",
    "lm_error_to_bridge",
    "parse_lm_options",
    "redact",
    "register_secret",
    "validate_lm_spec",
]
