"""Module records: what the store keeps of a DSPy module (spec + DSPy state), per version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LMSpec:
    """A language model choice (mirrors `LMConfig`); `api_key_env` names an env var, never a key."""

    model: str
    api_base: str = ""
    api_key_env: str = ""
    options: dict[str, str] = field(default_factory=dict)
    # Whose calls these are (the session's owner), set by the server when an execution or job
    # uses the spec: the response cache never shares answers across principals. Never sent by
    # a host, never stored (not in `to_dict`).
    cache_scope: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "api_base": self.api_base,
            "api_key_env": self.api_key_env,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LMSpec:
        return cls(
            model=raw["model"],
            api_base=raw.get("api_base", ""),
            api_key_env=raw.get("api_key_env", ""),
            options=dict(raw.get("options", {})),
        )


@dataclass
class ModuleRecord:
    """One version of a module. The store keeps every version; the highest is current.

    `spec` is the JSON-able description needed to rebuild the DSPy module (type, signature,
    config, bindings, lm); `state` is DSPy's own `dump_state()` output (demos, instructions).
    """

    session_id: str
    module_id: str
    version: int
    spec: dict[str, Any]
    state: dict[str, Any] | None = None
    create_time: float = 0.0
    update_time: float = 0.0
    # Who made this version: `host`, `import`, `optimizer:<job_id>`, `revert:<version>`.
    source: str = "host"
