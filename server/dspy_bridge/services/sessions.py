"""Sessions: creation with unguessable ids, lookup, paging, heartbeat, LM choice and expiry."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable

from dspy_bridge.config import Settings
from dspy_bridge.errors import (
    BridgeError,
    Reason,
    invalid_argument,
    session_not_found,
)
from dspy_bridge.log import get_logger
from dspy_bridge.model import LMSpec, Session
from dspy_bridge.observability import SESSIONS_EXPIRED
from dspy_bridge.runtime.lm.factory import admit_lm_spec
from dspy_bridge.services import paging
from dspy_bridge.services.clock import Clock, system_clock
from dspy_bridge.services.watch import WatchHub
from dspy_bridge.store.base import SessionStore
from dspy_bridge.to_the_end import to_the_end

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DEFAULT_PAGE = 100
_MAX_PAGE = 1000

log = get_logger(__name__)

# Called with a session id after the session is gone (e.g. to drop cached modules).
SessionGoneHook = Callable[[str], Awaitable[None]]


class SessionService:
    """Session lifecycle. Deleting or expiring a session ends its watch streams."""

    def __init__(
        self,
        store: SessionStore,
        hub: WatchHub,
        settings: Settings,
        clock: Clock = system_clock,
    ) -> None:
        self._store = store
        self._hub = hub
        self._settings = settings
        self._lm_policy = settings.lm_policy()
        self._clock = clock
        self._gone_hooks: list[SessionGoneHook] = []
        self._owners: dict[str, str] = {}  # session id -> owner, for check_owner

    def on_session_gone(self, hook: SessionGoneHook) -> None:
        self._gone_hooks.append(hook)

    async def create(
        self, session_id: str, metadata: dict[str, str], ttl_seconds: int, owner: str = ""
    ) -> Session:
        if session_id and not _SESSION_ID.match(session_id):
            raise invalid_argument(
                Reason.INVALID_REQUEST,
                "session_id must be 1-128 letters, digits, '_' or '-'",
                "session_id",
            )
        longest = self._settings.max_session_ttl_seconds
        if not 0 <= ttl_seconds <= longest:
            raise invalid_argument(
                Reason.INVALID_REQUEST,
                f"ttl_seconds: {ttl_seconds} is outside the allowed range 0 to {longest}",
                "ttl_seconds",
            )
        ttl = ttl_seconds or self._settings.session_ttl_seconds
        now = self._clock()
        session = Session(
            session_id=session_id or f"ses_{secrets.token_hex(16)}",
            metadata=dict(metadata),
            ttl_seconds=ttl,
            create_time=now,
            expire_time=now + ttl if ttl else None,
            owner=owner,
        )
        # The caller's share is counted by the store in the same step as the create, so it
        # holds across replicas on a shared store.
        created = await self._store.create_session(
            session,
            max_sessions=self._settings.max_sessions,
            max_per_owner=self._settings.max_sessions_per_caller if owner else 0,
        )
        if not self._store.shared:
            self._owners[created.session_id] = created.owner
        return created

    async def get(self, session_id: str) -> Session:
        session = await self._store.get_session(session_id)
        if session.expired(self._clock()):
            raise session_not_found(session_id)
        return session

    async def list_page(
        self, page_size: int, page_token: str, owner: str | None = None
    ) -> paging.Page[Session]:
        if page_size < 0:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "page_size must not be negative", "page_size"
            )
        limit = min(page_size or _DEFAULT_PAGE, _MAX_PAGE)
        offset = paging.offset_from_token("o", page_token)
        # One extra row tells whether another page exists.
        rows = await self._store.list_sessions(offset=offset, limit=limit + 1, visible_to=owner)
        now = self._clock()
        live = [(offset + i, s) for i, s in enumerate(rows[:limit]) if not s.expired(now)]
        return paging.Page(
            "o",
            [s for _, s in live],
            [at for at, _ in live],
            offset + limit,
            len(rows) > limit,
        )

    async def check_owner(self, session_id: str, principal: str) -> None:
        """NOT_FOUND `SESSION_NOT_FOUND` unless `principal` made the session or no one did (a
        session from before ownership was turned on stays shared, as it was): another caller
        must not even learn that it exists. Owners never change, so they are cached until the
        session is gone — on one server. A shared store is read every time: another replica may
        have deleted the session and another principal made a new one under the same id."""
        owner = None if self._store.shared else self._owners.get(session_id)
        if owner is None:
            owner = await self._store.session_owner(session_id)
            if not self._store.shared:
                self._owners[session_id] = owner
        if owner not in ("", principal):
            raise session_not_found(session_id)

    async def delete(self, session_id: str, reason: str = "deleted") -> None:
        """Deletes the session, then ends its watches and runs the gone hooks: all of it, even
        when the caller is cancelled once the store's delete is under way (it may commit)."""
        await to_the_end(self._delete(session_id, reason))

    async def _delete(self, session_id: str, reason: str) -> None:
        self._owners.pop(session_id, None)
        await self._store.delete_session(session_id, reason)
        self._owners.pop(session_id, None)  # and whatever a check read meanwhile
        self._hub.end_session(session_id, reason)
        for hook in self._gone_hooks:
            await hook(session_id)

    async def heartbeat(self, session_id: str) -> Session:
        session = await self.get(session_id)
        expire = self._clock() + session.ttl_seconds if session.ttl_seconds else None
        return await self._store.set_session_expiry(session_id, expire)

    async def configure_lm(self, session_id: str, lm: LMSpec | None) -> Session:
        """Sets (or with None clears) the session's LM, checked exactly as CreateModule checks
        a module's `lm` (`admit_lm_spec`) before anything is stored."""
        await self.get(session_id)
        if lm is not None:
            admit_lm_spec(lm, self._lm_policy)
        return await self._store.set_session_lm(session_id, lm)

    async def expire_due(self) -> list[str]:
        """Deletes every session past its expiry; returns their ids."""
        gone = []
        for session_id in await self._store.expired_sessions(self._clock()):
            try:
                await self.delete(session_id, reason="expired")
            except BridgeError:
                continue  # deleted concurrently
            gone.append(session_id)
            SESSIONS_EXPIRED.inc()
            log.info("session expired", session_id=session_id)
        return gone

    async def run_expiry(self, interval: float) -> None:
        """Sweeps expired sessions every `interval` seconds until cancelled."""
        while True:
            try:
                await self.expire_due()
            except Exception:  # a failing store must not stop the sweeper for good
                log.exception("session expiry sweep failed")
            await asyncio.sleep(interval)
