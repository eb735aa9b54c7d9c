"""Provider failures as bridge errors: status codes hosts can act on, stable reasons, no keys.

An LM call can fail three ways and each arrives in a different shape:

- through `dspy.LM` (the normal path), DSPy has already translated LiteLLM's exception into its
  own `dspy.LMError` hierarchy (`LMRateLimitError`, `LMAuthError`, `ContextWindowExceededError`,
  ...), keeping the provider's status, code and retry hint;
- code that calls LiteLLM directly, or a custom engine, raises LiteLLM's or lm15's classes;
- the LM answered but the adapter could not read the answer (`AdapterParseError`).

`lm_error_to_bridge` maps all of them:

| failure | code | reason |
|---|---|---|
| rate limit, quota | RESOURCE_EXHAUSTED | LM_RATE_LIMITED |
| authentication, permission, missing credentials | FAILED_PRECONDITION | LM_AUTH_FAILED |
| timeout | DEADLINE_EXCEEDED | LM_TIMEOUT |
| context window exceeded | INVALID_ARGUMENT | LM_CONTEXT_WINDOW_EXCEEDED |
| connection, 5xx, incomplete stream | UNAVAILABLE | LM_UNAVAILABLE |
| other 4xx, unsupported model or feature | INVALID_ARGUMENT | LM_BAD_REQUEST |
| output not matching the signature | FAILED_PRECONDITION | LM_OUTPUT_UNPARSEABLE |

and returns None for anything else (a bug: the caller reports INTERNAL).

What a host gets is the status code, the reason, and a short message of our own: what went
wrong in words, the provider's HTTP status and, for rate limits, `retry_after_ms`. Nothing of
the provider's response body reaches a host: a body can echo the key (plainly, reversed,
base64-encoded) or be another local service's answer when `api_base` points at one. Failures
DSPy raises locally, before any request (a bad option, a missing key variable, a feature the
model lacks), keep DSPy's message, which names no secret but says what to fix.

The provider's own message goes to the server log only (`log_lm_failure`), after `redact`:
every key the bridge has read from the environment is registered here and removed from text
in plain, reversed, hex and base64 forms, as is anything shaped like a key.
"""

from __future__ import annotations

import base64
import math
import re
import sys
import threading
from typing import Any

import grpc

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.log import get_logger

__all__ = [
    "MAX_RAW_OUTPUT_CHARS",
    "lm_error_to_bridge",
    "log_lm_failure",
    "redact",
    "register_secret",
    "with_raw_output",
]

log = get_logger(__name__)

_MAX_MESSAGE = 500
_MAX_LOGGED = 300
_REDACTED = "[REDACTED]"
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# A provider name as DSPy derives it from the model string (`openai`, `together_ai`).
_PROVIDER_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}\Z")
# Shapes of credentials a provider may echo even when the bridge never saw them.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + _REDACTED),
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}"), _REDACTED),
    (re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"), r"\1" + _REDACTED),
)


def _encodings(secret: str) -> set[str]:
    """`secret` as a careless (or hostile) server might echo it: reversed, hex, and the part of
    its base64 (standard and URL-safe) that is the same at any of the three byte alignments it
    can have inside a longer encoded text."""
    raw = secret.encode()
    forms = {secret, secret[::-1], raw.hex()}
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw).decode()
            stable = text[math.ceil(pad * 4 / 3) + 1 : -4]
            if len(stable) >= 8:
                forms.add(stable)
    return forms


def register_secret(value: str) -> None:
    """Remember a credential so that `redact` removes it from any text (logs, traces)."""
    if len(value) >= 4:
        forms = _encodings(value)
        with _secrets_lock:
            _secrets.update(forms)


def redact(text: str) -> str:
    """`text` with every registered secret and anything shaped like a key replaced."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _clean(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after_ms(exc: BaseException) -> int | None:
    from dspy_bridge.runtime.lm.retry import retry_after_seconds

    seconds = retry_after_seconds(exc)
    return None if seconds is None else min(int(seconds * 1000), 86_400_000)


def _http_status(exc: BaseException) -> int | None:
    for attr in ("status", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _error(
    code: grpc.StatusCode,
    reason: str,
    what: str,
    exc: BaseException,
    *,
    local: bool = False,
    **extra: str,
) -> BridgeError:
    """The host's view of a failure: `what` (our words), the HTTP status, a retry hint; with
    `local` (raised by DSPy before any request) DSPy's own message too. Never the provider's
    body, its error code or its request id (see the module docstring)."""
    metadata: dict[str, str] = {"error_type": type(exc).__name__}
    status = _http_status(exc)
    message = what
    if status is not None:
        metadata["http_status"] = str(status)
        message += f" (HTTP {status})"
    retry_after = _retry_after_ms(exc)
    if retry_after is not None:
        metadata["retry_after_ms"] = str(retry_after)
    provider = getattr(exc, "provider", None)
    if isinstance(provider, str) and _PROVIDER_RE.match(provider):
        metadata["provider"] = provider
    if local:
        detail = getattr(exc, "message", None) or str(exc)
        if detail:
            message += f": {_clean(detail)}"
    metadata.update(extra)
    return BridgeError(code, reason, message, metadata)


def log_lm_failure(exc: BaseException, mapped: BridgeError) -> None:
    """One server log line for an LM failure, with what the provider said (redacted and cut
    short) for the operator; the host got `mapped`, which carries none of it."""
    cause: BaseException = exc
    while isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
        cause = cause.exceptions[0]
    detail = getattr(cause, "message", None) or str(cause)
    request_id = getattr(cause, "request_id", None)
    log.info(
        "lm call failed",
        code=mapped.code.name,
        reason=mapped.reason,
        http_status=mapped.metadata.get("http_status"),
        model=_clean(str(getattr(cause, "model", "") or ""), 256),
        error_type=type(cause).__name__,
        provider_message=_clean(detail, _MAX_LOGGED),
        request_id=_clean(str(request_id), 128) if request_id else None,
    )


def _timed_out(exc: BaseException) -> bool:
    current: BaseException | None = exc.__cause__
    for _ in range(6):
        if current is None:
            return False
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return True
        current = current.__cause__
    return False


def _from_dspy(exc: BaseException) -> BridgeError | None:
    """DSPy's public LM errors (what `dspy.LM` raises)."""
    from dspy.utils import exceptions as ex

    code = grpc.StatusCode
    if isinstance(exc, ex.ContextWindowExceededError):
        return _error(
            code.INVALID_ARGUMENT,
            Reason.LM_CONTEXT_WINDOW_EXCEEDED,
            "the prompt is longer than the model's context window",
            exc,
        )
    if isinstance(exc, ex.LMAuthError):
        return _error(
            code.FAILED_PRECONDITION,
            Reason.LM_AUTH_FAILED,
            "the LM provider rejected the credentials",
            exc,
        )
    if isinstance(exc, ex.LMBillingError):
        return _error(
            code.RESOURCE_EXHAUSTED,
            Reason.LM_RATE_LIMITED,
            "the LM provider refused the call for billing or quota",
            exc,
            kind="quota",
        )
    if isinstance(exc, ex.LMRateLimitError):
        return _error(
            code.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED, "the LM provider rate-limited", exc
        )
    if isinstance(exc, ex.LMTimeoutError):
        return _error(code.DEADLINE_EXCEEDED, Reason.LM_TIMEOUT, "the LM call timed out", exc)
    if isinstance(exc, ex.LMUnsupportedModelError):
        return _error(
            code.INVALID_ARGUMENT,
            Reason.LM_BAD_REQUEST,
            "the LM provider does not offer this model",
            exc,
        )
    if isinstance(exc, ex.LMInvalidRequestError):
        return _error(
            code.INVALID_ARGUMENT,
            Reason.LM_BAD_REQUEST,
            "the LM provider rejected the request",
            exc,
        )
    if isinstance(exc, ex.LMServerError):
        return _error(code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM provider failed", exc)
    if isinstance(exc, ex.LMTransportError) and _timed_out(exc):
        # DSPy's native engine reports its read timeout as a transport error; LiteLLM's is a
        # Timeout. Both are the same thing to a host.
        return _error(code.DEADLINE_EXCEEDED, Reason.LM_TIMEOUT, "the LM call timed out", exc)
    if isinstance(exc, ex.LMTransportError):
        return _error(
            code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM provider could not be reached", exc
        )
    if isinstance(exc, ex.LMLockTimeoutError):
        return _error(
            code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM call waited too long", exc, local=True
        )
    if isinstance(exc, ex.LMStreamAssemblyError):
        return _error(
            code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM's stream ended incomplete", exc
        )
    if isinstance(exc, ex.LMNotConfiguredError):
        return _error(
            code.FAILED_PRECONDITION,
            Reason.LM_AUTH_FAILED,
            "the LM is missing credentials or configuration",
            exc,
            local=True,
        )
    if isinstance(exc, (ex.LMConfigurationError, ex.LMUnsupportedFeatureError)):
        return _error(
            code.INVALID_ARGUMENT,
            Reason.LM_BAD_REQUEST,
            "the LM cannot make this call",
            exc,
            local=True,
        )
    if isinstance(exc, ex.LMCollectionLimitError):
        return _error(
            code.RESOURCE_EXHAUSTED,
            Reason.LM_BAD_REQUEST,
            "the LM's response exceeded a size limit",
            exc,
            local=True,
        )
    if isinstance(exc, ex.LMProviderError):
        status = getattr(exc, "status", None)
        if isinstance(status, int) and 400 <= status < 500:
            return _error(
                code.INVALID_ARGUMENT,
                Reason.LM_BAD_REQUEST,
                "the LM provider rejected the request",
                exc,
            )
        return _error(code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM provider failed", exc)
    if isinstance(exc, ex.AdapterParseError):
        expected = ", ".join(getattr(exc.signature, "output_fields", {}) or ())
        return BridgeError(
            code.FAILED_PRECONDITION,
            Reason.LM_OUTPUT_UNPARSEABLE,
            f"the LM's output did not match the signature: {exc.adapter_name} could not read "
            f"the output fields [{expected}] from it",
            {"adapter": str(exc.adapter_name), "expected_fields": expected},
        )
    return None


#: Most characters of a failed parse's raw LM output put in the error (it travels in the
#: status trailers, which gRPC clients cap at 8 KiB by default).
MAX_RAW_OUTPUT_CHARS = 2048


def with_raw_output(mapped: BridgeError, exc: BaseException, include: bool) -> BridgeError:
    """For LM_OUTPUT_UNPARSEABLE: with `include` (the request's include_trace), the LM's raw
    output (at most MAX_RAW_OUTPUT_CHARS, redacted) as the `raw_output` detail; the message
    says truthfully where it is, or how to get it."""
    if mapped.reason != Reason.LM_OUTPUT_UNPARSEABLE:
        return mapped
    from dspy.utils.exceptions import AdapterParseError

    current: BaseException | None = exc
    while current is not None and not isinstance(current, AdapterParseError):
        if isinstance(current, BaseExceptionGroup) and len(current.exceptions) == 1:
            current = current.exceptions[0]
        else:
            current = current.__cause__ or current.__context__
    if current is None:
        return mapped
    metadata = dict(mapped.metadata)
    if include:
        raw = redact(str(current.lm_response))
        metadata["raw_output_chars"] = str(len(raw))
        metadata["raw_output"] = raw[:MAX_RAW_OUTPUT_CHARS]
        shown = "" if len(raw) <= MAX_RAW_OUTPUT_CHARS else f" (first {MAX_RAW_OUTPUT_CHARS})"
        note = f"; the raw output is in the error's raw_output detail{shown}"
    else:
        note = "; set include_trace to receive the raw output in the error's details"
    return BridgeError(
        mapped.code, mapped.reason, mapped.message + note, metadata, mapped.violations
    )


_LITELLM_ORDER = (
    # Subclasses first: ContextWindowExceeded and ContentPolicyViolation are BadRequests,
    # Timeout is an APIConnectionError.
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
    "BudgetExceededError",
    "RateLimitError",
    "AuthenticationError",
    "PermissionDeniedError",
    "Timeout",
    "APIConnectionError",
    "ServiceUnavailableError",
    "InternalServerError",
    "BadGatewayError",
    "NotFoundError",
    "UnprocessableEntityError",
    "BadRequestError",
    "APIError",
)


def _from_litellm(exc: BaseException) -> BridgeError | None:
    """LiteLLM's own exceptions, for code that calls LiteLLM directly.

    Never imports LiteLLM (it takes seconds): an exception of one of its classes can only
    exist once it has been imported.
    """
    module = sys.modules.get("litellm")
    if module is None:
        return None
    for name in _LITELLM_ORDER:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            break
    else:
        return None
    code = grpc.StatusCode
    if name == "ContextWindowExceededError":
        return _error(
            code.INVALID_ARGUMENT,
            Reason.LM_CONTEXT_WINDOW_EXCEEDED,
            "the prompt is longer than the model's context window",
            exc,
        )
    if name in ("RateLimitError", "BudgetExceededError"):
        return _error(
            code.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED, "the LM provider rate-limited", exc
        )
    if name in ("AuthenticationError", "PermissionDeniedError"):
        return _error(
            code.FAILED_PRECONDITION,
            Reason.LM_AUTH_FAILED,
            "the LM provider rejected the credentials",
            exc,
        )
    if name == "Timeout":
        return _error(code.DEADLINE_EXCEEDED, Reason.LM_TIMEOUT, "the LM call timed out", exc)
    if name in ("APIConnectionError", "ServiceUnavailableError", "InternalServerError"):
        return _error(code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM provider failed", exc)
    if name == "BadGatewayError":
        return _error(code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM provider failed", exc)
    if name == "APIError":
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            return _error(
                code.INVALID_ARGUMENT,
                Reason.LM_BAD_REQUEST,
                "the LM provider rejected the request",
                exc,
            )
        return _error(code.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM provider failed", exc)
    return _error(
        code.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST, "the LM provider rejected the request", exc
    )


def _from_lm15(exc: BaseException) -> BridgeError | None:
    """lm15's canonical errors (custom engines), via DSPy's own projection."""
    try:
        from dspy import lm15
        from dspy.clients.errors import wrap_error
    except ImportError:  # pragma: no cover - part of the pinned DSPy
        return None
    if not isinstance(exc, lm15.LM15Error):
        return None
    wrapped: Any = wrap_error(exc, model=getattr(exc, "model", None) or "")
    return _from_dspy(wrapped)


def _one(exc: BaseException) -> BridgeError | None:
    if isinstance(exc, BridgeError):
        return exc
    return _from_dspy(exc) or _from_lm15(exc) or _from_litellm(exc)


def _unexpected(exc: BaseException) -> BridgeError | None:
    """`LMUnexpectedError` (what DSPy wraps an engine's unknown failure in) and any other
    `LMError` nothing more specific explains: UNAVAILABLE, failing closed with no text."""
    from dspy.utils.exceptions import LMError

    if isinstance(exc, LMError):
        return _error(grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE, "the LM call failed", exc)
    return None


def lm_error_to_bridge(exc: BaseException) -> BridgeError | None:
    """The bridge error for an LM or adapter failure, or None when `exc` is something else.

    Looks through an exception group holding a single failure (task groups, `streamify`) and
    along the `raise ... from` chain (DSPy raises its errors from LiteLLM's, and an
    `LMUnexpectedError` wraps whatever the engine raised).
    """
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    for _ in range(8):
        if current is None or id(current) in seen:
            break
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup) and len(current.exceptions) == 1:
            current = current.exceptions[0]
            continue
        mapped = _one(current)
        if mapped is not None:
            return mapped
        chain.append(current)
        current = current.__cause__
    return next((m for m in map(_unexpected, chain) if m is not None), None)
