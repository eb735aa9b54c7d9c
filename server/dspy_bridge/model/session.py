"""Sessions: the unit of ownership and expiry."""

from __future__ import annotations

from dataclasses import dataclass, field

from dspy_bridge.model.module import LMSpec


@dataclass
class Session:
    """A session record. Times are Unix seconds (float)."""

    session_id: str
    metadata: dict[str, str] = field(default_factory=dict)
    ttl_seconds: int = 0
    create_time: float = 0.0
    # None: never expires.
    expire_time: float | None = None
    lm: LMSpec | None = None
    variable_count: int = 0
    module_count: int = 0
    # The principal that created it (an auth token's name or a client certificate's identity);
    # "" when the server authenticates no one. Only its owner sees a session.
    owner: str = ""

    def expired(self, now: float) -> bool:
        return self.expire_time is not None and now >= self.expire_time
