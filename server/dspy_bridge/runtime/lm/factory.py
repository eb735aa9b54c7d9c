"""DSPy LMs from `LMSpec`s: `offline`, or any LiteLLM model behind `dspy.LM`.

`build_lm(spec, params)` is called on every execution, with the values of the LM parameters
bound to variables (`temperature`, `max_tokens`, `top_p`, `n`, `stop`, `model`), so it is
cached: equal (spec, params, key) give the same LM object from a small LRU.

- `offline` becomes `OfflineLM` (its option `latency_ms`; sampling options accepted).
- Anything else becomes `dspy.LM(model, api_base=..., api_key=..., engine="litellm", ...)`.
  `engine="litellm"` keeps the promise that *any LiteLLM model string* works and that provider
  failures arrive as LiteLLM's well-known errors (DSPy's "auto" engine would route some models
  to its own HTTP client instead).
- `options` are strings (the proto is `map<string, string>`); each known key has a type and a
  range, and an unknown key is refused: a typo such as `temprature` must not be silently sent
  to a provider or ignored.
- The key comes from the server's environment variable named by `api_key_env`. It is read when
  the LM is built, registered with `errors.redact`, and never put in a message, a log line or a
  repr; a missing variable is FAILED_PRECONDITION / LM_AUTH_FAILED naming the variable. A
  variable of the server's own settings (`DSPY_BRIDGE_*`) is never read, whatever the caller.

Response cache: off unless the LM's option `cache` is `true`. DSPy's cache key covers the
model, the messages and the sampling options but not the endpoint or the key, so on its own it
would hand one session's answers to another with another provider or no valid key. When on,
the LM carries a cache namespace (DSPy's `rollout_id`, which is part of the key and never sent)
derived from the full LM identity (model, api_base, key variable, a digest of the key, options)
and the principal it answers for (`LMSpec.cache_scope`, the session's owner): answers are
shared only by calls that would have sent the same request with the same credentials for the
same caller.

`validate_lm_spec` runs the same checks without building anything; `admit_lm_spec` adds the
operator's allow-lists (`policy.LMPolicy`) and is what every place an LM configuration enters
calls (ConfigureLM, CreateModule, jobs, and each execution for stored specs and bound models),
so a bad or forbidden spec is refused before it is stored or used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from dspy_bridge.errors import BridgeError, Reason, failed_precondition, invalid_argument
from dspy_bridge.model import LMSpec
from dspy_bridge.runtime.host_calls import host_name
from dspy_bridge.runtime.lm.errors import register_secret
from dspy_bridge.runtime.lm.host import HostLM, is_host_lm, validate_host_lm_spec
from dspy_bridge.runtime.lm.offline import OFFLINE_MODEL, OfflineLM
from dspy_bridge.runtime.lm.policy import LMPolicy, parse_api_base
from dspy_bridge.runtime.lm.provider import ENGINES, ProviderLM
from dspy_bridge.runtime.lm.retry import DEFAULT_BACKOFF_MS, DEFAULT_RETRIES, RetryPolicy

__all__ = [
    "LM_CACHE_SIZE",
    "LM_OPTIONS",
    "LM_PARAMETERS",
    "admit_lm_spec",
    "build_lm",
    "clear_lm_cache",
    "parse_lm_options",
    "validate_lm_spec",
]

#: Parameters a module may bind to variables that configure the LM (values override options).
LM_PARAMETERS = ("temperature", "max_tokens", "top_p", "n", "stop", "model")
LM_CACHE_SIZE = 64

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# LiteLLM model strings (`openai/gpt-4o-mini`, `ollama_chat/llama3:8b`, `vertex_ai/x@2024`,
# `bedrock/arn:aws:...`); no URL can hide in one (no `//`, no `%`, no spaces).
_MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,255}\Z")
MAX_OPTION_CHARS = 1024
_SERVER_SETTINGS_PREFIX = "DSPY_BRIDGE_"


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value

    return parse


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if value < low or (high is not None and value > high):
            raise ValueError(
                f"must be an integer >= {low}"
                if high is None
                else f"must be an integer from {low} to {high}"
            )
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def _stop(text: str) -> str | list[str]:
    """One stop sequence, or several as a JSON list (`["\\n\\n", "END"]`)."""
    stripped = text.strip()
    if stripped.startswith("["):
        value = json.loads(stripped)
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise ValueError("must be a string or a JSON list of strings")
        return list(value)
    return text


#: Completions one LM call may ask for (`n`): each is a full generation, on the offline LM too.
MAX_LM_CHOICES = 16
#: Output tokens one LM call may ask for (`max_tokens`); above any provider's output window.
MAX_LM_TOKENS = 1_000_000

#: Known option keys: parser and which LMs take them ("any", "offline" or "provider").
LM_OPTIONS: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "temperature": (_float(0.0, 2.0), "any", "a number from 0 to 2"),
    "top_p": (_float(0.0, 1.0), "any", "a number from 0 to 1"),
    # Bounded: each unit is work (and, with a real provider, cost) a host buys with one call.
    "max_tokens": (_int(1, MAX_LM_TOKENS), "any", f"an integer from 1 to {MAX_LM_TOKENS}"),
    "n": (_int(1, MAX_LM_CHOICES), "any", f"an integer from 1 to {MAX_LM_CHOICES}"),
    "stop": (_stop, "any", "a string or a JSON list of strings"),
    "seed": (_int(0, 2**63 - 1), "any", "an integer from 0 to 2^63-1"),
    "presence_penalty": (_float(-2.0, 2.0), "any", "a number from -2 to 2"),
    "frequency_penalty": (_float(-2.0, 2.0), "any", "a number from -2 to 2"),
    # The sidecar's retry policy (retry.py): retries after the first attempt, first backoff.
    "num_retries": (_int(0, 10), "any", "an integer from 0 to 10"),
    "retry_backoff_ms": (_float(0.0, 60_000.0), "provider", "milliseconds, from 0 to 60000"),
    # Which of DSPy's engines reaches the provider (provider.py).
    "engine": (_choice(*ENGINES), "provider", " or ".join(ENGINES)),
    # Off by default; see the module docstring for what a cached answer is shared with.
    "cache": (_bool, "any", "true or false"),
    "timeout": (_float(0.001, 86_400.0), "provider", "seconds, a number > 0"),
    "latency_ms": (_float(0.0, 3_600_000.0), "offline", "milliseconds, a number >= 0"),
}


def _bad_spec(field: str, problem: str) -> BridgeError:
    return invalid_argument(Reason.INVALID_REQUEST, f"{field}: {problem}", field)


def parse_lm_options(spec: LMSpec) -> dict[str, Any]:
    """`spec.options` typed; INVALID_ARGUMENT (field `lm.options.<key>`) for a bad one."""
    offline = spec.model == OFFLINE_MODEL
    parsed: dict[str, Any] = {}
    for key, text in spec.options.items():
        known = LM_OPTIONS.get(key)
        if known is None:
            short = len(key) <= 64
            shown = key if short else key[:61] + "..."
            raise _bad_spec(
                f"lm.options.{key}" if short else "lm.options",
                f"unknown LM option {shown!r}; known options: {', '.join(sorted(LM_OPTIONS))}",
            )
        path = f"lm.options.{key}"
        if len(text) > MAX_OPTION_CHARS:
            raise _bad_spec(path, f"{key!r} must be at most {MAX_OPTION_CHARS} characters")
        parse, applies, expected = known
        if applies == "offline" and not offline:
            raise _bad_spec(path, f"{key!r} is an option of the offline LM only")
        try:
            parsed[key] = parse(text)
        except (ValueError, TypeError):
            raise _bad_spec(path, f"{key!r} must be {expected}, got {text!r}") from None
    return parsed


def validate_lm_spec(spec: LMSpec) -> dict[str, Any]:
    """Check a spec a host sent (model, api_base, api_key_env, options); typed options back.

    Does not read the key (its variable may be set later, before the first call).
    """
    if is_host_lm(spec.model):  # served by the session's host over Connect (host.py)
        validate_host_lm_spec(spec)
        return parse_lm_options(spec)
    _check_model(spec.model, "lm.model")
    if spec.api_base:
        try:
            parse_api_base(spec.api_base)
        except ValueError as exc:
            raise _bad_spec("lm.api_base", str(exc)) from None
    if spec.api_key_env and not _ENV_NAME_RE.match(spec.api_key_env):
        raise _bad_spec(
            "lm.api_key_env",
            "must be the name of an environment variable (letters, digits, '_'; at most 128), "
            "not a key",
        )
    return parse_lm_options(spec)


def admit_lm_spec(spec: LMSpec, policy: LMPolicy) -> dict[str, Any]:
    """`validate_lm_spec` plus the operator's allow-lists: the one check for every LM
    configuration a host sends (ConfigureLM, CreateModule, jobs) and every spec an execution
    is about to use. INVALID_ARGUMENT or PERMISSION_DENIED; changes nothing."""
    options = validate_lm_spec(spec)
    policy.check(spec.api_base, spec.api_key_env)
    return options


def _check_model(model: str, path: str) -> None:
    if not model.strip():
        raise _bad_spec(path, "a model is required, e.g. 'openai/gpt-4o-mini' or 'offline'")
    shown = model if len(model) <= 64 else model[:61] + "..."
    if model != model.strip() or any(c.isspace() for c in model):
        raise _bad_spec(path, f"model {shown!r} contains whitespace")
    _, slash, rest = model.partition("/")
    if slash and not rest:
        raise _bad_spec(path, f"model {shown!r} names a provider but no model")
    if not _MODEL_RE.match(model) or "//" in model:
        raise _bad_spec(
            path,
            f"model {shown!r} is not a model name (at most 256 letters, digits and . _ : @ / + -, "
            "no '//'); endpoints go in api_base",
        )


def _check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Bound parameter values, checked (they come from variables, already typed)."""
    checked: dict[str, Any] = {}
    for key, value in params.items():
        path = f"variable_bindings.{key}"
        if key not in LM_PARAMETERS:
            raise invalid_argument(
                Reason.UNKNOWN_PARAMETER,
                f"{path}: {key!r} is not an LM parameter ({', '.join(LM_PARAMETERS)})",
                path,
            )
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {
            "temperature": number and 0 <= value <= 2,
            "top_p": number and 0 <= value <= 1,
            "max_tokens": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            "n": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            "stop": isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(s, str) for s in value)),
            "model": isinstance(value, str),
        }[key]
        if not ok:
            raise invalid_argument(
                Reason.INVALID_REQUEST, f"{path}: invalid value {value!r} for {key!r}", path
            )
        if key == "model":
            _check_model(str(value), path)
        checked[key] = float(value) if key in ("temperature", "top_p") else value
    return checked


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_cache_lock = threading.Lock()


def clear_lm_cache() -> None:
    """Forget every built LM (tests; a changed environment)."""
    with _cache_lock:
        _cache.clear()


def _read_key(spec: LMSpec) -> str | None:
    if not spec.api_key_env:
        return None
    if spec.api_key_env.upper().startswith(_SERVER_SETTINGS_PREFIX):
        # The allow-lists refuse these at the door; this holds for any path that skipped it.
        raise BridgeError(
            grpc.StatusCode.PERMISSION_DENIED,
            Reason.LM_KEY_ENV_NOT_ALLOWED,
            f"lm.api_key_env: {spec.api_key_env!r} names one of the server's own settings",
        )
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise failed_precondition(
            Reason.LM_AUTH_FAILED,
            f"the environment variable {spec.api_key_env!r} named by api_key_env is not set "
            "(or empty) on the server; set it where the server runs",
            api_key_env=spec.api_key_env,
        )
    register_secret(key)
    return key


def cache_namespace(model: str, spec: LMSpec, key: str | None, options: Mapping[str, Any]) -> int:
    """The response cache namespace of an LM: a 63-bit digest of everything that decides what
    a provider answers and for whom (DSPy's `rollout_id` must be an integer)."""
    identity = json.dumps(
        [
            spec.cache_scope,
            model,
            spec.api_base,
            spec.api_key_env,
            hashlib.sha256(key.encode()).hexdigest() if key else "",
            sorted((k, repr(v)) for k, v in options.items()),
        ]
    )
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") >> 1


def _provider_lm(model: str, spec: LMSpec, key: str | None, options: dict[str, Any]) -> Any:
    try:
        import litellm

        # LiteLLM prints "Give Feedback / Get Help" banners to stdout on every error.
        litellm.suppress_debug_info = True
    except ImportError:  # pragma: no cover - a dependency of the pinned DSPy
        pass
    kwargs: dict[str, Any] = dict(options)
    cache = bool(kwargs.pop("cache", False))
    engine = ENGINES[str(kwargs.pop("engine", "auto"))]
    policy = RetryPolicy(
        retries=int(kwargs.pop("num_retries", DEFAULT_RETRIES)),
        backoff_ms=float(kwargs.pop("retry_backoff_ms", DEFAULT_BACKOFF_MS)),
    )
    if cache:
        kwargs["rollout_id"] = cache_namespace(model, spec, key, options)
    if spec.api_base:
        kwargs["api_base"] = spec.api_base
    if key is not None:
        kwargs["api_key"] = key
    try:
        # num_retries=0: the sidecar retries (retry.py), not DSPy and not LiteLLM.
        lm = ProviderLM(model, engine=engine, cache=cache, num_retries=0, **kwargs)
        # Decided now: raises for `native` when DSPy cannot serve the model natively, not at
        # the first call, and every copy an execution binds carries the answer.
        lm.engine_path()
    except BridgeError:
        raise
    except Exception as exc:  # DSPy validates the model and its options at construction.
        from dspy_bridge.runtime.lm.errors import redact

        raise invalid_argument(
            Reason.LM_BAD_REQUEST, f"lm.model: {redact(str(exc))}", "lm.model"
        ) from None
    lm.retry_policy = policy
    return lm


def build_lm(spec: LMSpec | None, params: Mapping[str, Any] | None = None) -> Any:
    """The DSPy LM for `spec` with bound `params` (temperature, max_tokens, top_p, n, stop,
    model) overriding its options; cached.

    Raises FAILED_PRECONDITION NO_LM_CONFIGURED without a spec, FAILED_PRECONDITION
    LM_AUTH_FAILED when `api_key_env` names an unset variable, INVALID_ARGUMENT for bad options
    or parameters.
    """
    if spec is None:
        raise failed_precondition(
            Reason.NO_LM_CONFIGURED,
            "no LM is configured: call ConfigureLM for the session, give the module an lm, "
            "or start the server with --lm",
        )
    options = validate_lm_spec(spec)
    overrides = _check_params(params or {})
    model = str(overrides.pop("model", spec.model))
    options.update(overrides)
    if is_host_lm(model):  # per call, the host answers: nothing to cache or key to read
        return HostLM(host_name(model) or model, **options)
    offline = model == OFFLINE_MODEL
    if not offline and "latency_ms" in options:
        # A bound `model` switched an offline spec to a provider: the option does not apply.
        options.pop("latency_ms")
    key = None if offline else _read_key(spec)
    fingerprint = hashlib.sha256(key.encode()).hexdigest() if key else ""
    cache_key = (
        model,
        spec.cache_scope if options.get("cache") else "",
        spec.api_base,
        spec.api_key_env,
        fingerprint,
        _freeze(options),
    )
    with _cache_lock:
        lm = _cache.get(cache_key)
        if lm is not None:
            _cache.move_to_end(cache_key)
            return lm
    if offline:
        # Provider options (timeout, engine, retry_backoff_ms) do not apply; the offline LM
        # never fails (no retries) and has nothing worth caching (it answers from the prompt).
        for name in [k for k, (_, applies, _) in LM_OPTIONS.items() if applies == "provider"]:
            options.pop(name, None)
        options.pop("num_retries", None)
        options.pop("cache", None)
        lm = OfflineLM(**options)
    else:
        lm = _provider_lm(model, spec, key, options)
    with _cache_lock:
        _cache[cache_key] = lm
        _cache.move_to_end(cache_key)
        while len(_cache) > LM_CACHE_SIZE:
            _cache.popitem(last=False)
    return lm
