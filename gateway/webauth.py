"""Web identities: accounts, one-time sign-in links, sessions, API tokens, and the
origin and CSRF checks that keep other sites out.

Reaching the port is not a credential. A web user is an account an admin made
(`hammer users add NAME --role ROLE`, or `.invite NAME` in the web chat); the account gets
a one-time sign-in link; following it (and pressing "Sign in", a POST, so link previews
cannot use it up) starts a session: a random id, stored hashed, sent as a signed
(itsdangerous), HttpOnly, SameSite=Strict cookie. Programs use per-account API tokens
(`Authorization: Bearer`), also stored hashed. Every state-changing request that rides
on the cookie must come from the gateway's own origin and carry the session's CSRF token;
the WebSocket must come from the gateway's own origin. Removing or resetting an account
ends its sessions and tokens at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from itsdangerous import BadSignature, TimestampSigner

from gateway.store import Store

ROLES = ("viewer", "member", "trainer", "admin")
NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}")
SESSION_COOKIE = "hammer_session"
CSRF_HEADER = "X-CSRF-Token"
OPERATOR = "admin"



class AccountError(Exception):
    """A request about accounts hammer will not do; the message says why and what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    created_at: float
    signed_in_at: float | None = None

    @property
    def roles(self) -> tuple[str, ...]:
        """The role and every role below it (a trainer may do what a member may)."""
        return ROLES[: ROLES.index(self.role) + 1] if self.role in ROLES else (self.role,)


@dataclass(frozen=True)
class Identity:
    """Who made a request: the account, how it proved it, and its session's CSRF token."""

    account: Account
    via: str  # "session" | "token"
    csrf: str = ""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise AccountError(f"{name[:40]!r} is not an account name: use lowercase letters, digits, '.', '_' or '-' "
                           "(at most 32, starting with a letter)")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"{role[:20]!r} is not a role; use one of {', '.join(ROLES)}")
    return role


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_key(path: Path) -> bytes:
    """The gateway's signing key, made on first use (0600, never leaves the data dir)."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    _write_private(path, key)
    return key


class Accounts:
    def __init__(self, store: Store, key_path: Path, *, invite_ttl_s: float = 86400,
                 session_ttl_s: float = 30 * 86400) -> None:
        self.store = store
        self.key_path = key_path
        self.invite_ttl_s, self.session_ttl_s = invite_ttl_s, session_ttl_s
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_key(self.key_path)
        return self._key

    # -- accounts ----------------------------------------------------------------------------
    async def get(self, name: str) -> Account | None:
        async with self.store.db.execute("SELECT name, role, created_at, signed_in_at FROM web_users WHERE name=?",
                                         (name,)) as cur:
            row = await cur.fetchone()
        return Account(row[0], row[1], row[2], row[3]) if row else None

    async def list(self) -> list[Account]:
        async with self.store.db.execute("SELECT name, role, created_at, signed_in_at FROM web_users "
                                         "ORDER BY name") as cur:
            return [Account(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]

    async def add(self, name: str, role: str = "member") -> str:
        """Make an account; returns its one-time sign-in token."""
        check_name(name)
        check_role(role)
        if await self.get(name) is not None:
            raise AccountError(f"there is already an account {name}; `hammer users reset {name}` makes a new "
                               "sign-in link")
        await self.store.db.execute("INSERT INTO web_users VALUES (?,?,?,NULL)", (name, role, time.time()))
        return await self._issue(name, "invite", self.invite_ttl_s)

    async def reset(self, name: str) -> str:
        """End every session and token of the account; returns a new sign-in token."""
        if await self.get(name) is None:
            raise AccountError(f"there is no account {name}; see `hammer users list`")
        await self.store.db.execute("DELETE FROM web_credentials WHERE name=?", (name,))
        return await self._issue(name, "invite", self.invite_ttl_s)

    async def remove(self, name: str) -> None:
        if await self.get(name) is None:
            raise AccountError(f"there is no account {name}; see `hammer users list`")
        await self.store.db.execute("DELETE FROM web_credentials WHERE name=?", (name,))
        await self.store.db.execute("DELETE FROM web_users WHERE name=?", (name,))
        await self.store.db.commit()

    async def api_token(self, name: str) -> str:
        """A new API token for programs acting as this account (shown once)."""
        if await self.get(name) is None:
            raise AccountError(f"there is no account {name}; see `hammer users list`")
        return await self._issue(name, "api", None)

    async def _issue(self, name: str, kind: str, ttl: float | None) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        await self.store.db.execute("INSERT INTO web_credentials VALUES (?,?,?,?,?,NULL)",
                                    (_hash(token), name, kind, now, now + ttl if ttl else None))
        await self.store.db.commit()
        return token

    async def _credential(self, token: str, kind: str) -> Account | None:
        async with self.store.db.execute(
                "SELECT c.name, c.expires_at, c.used_at FROM web_credentials c WHERE c.hash=? AND c.kind=?",
                (_hash(token), kind)) as cur:
            row = await cur.fetchone()
        if row is None or (row[1] is not None and row[1] < time.time()) or row[2] is not None:
            return None
        return await self.get(row[0])

    # -- signing in ---------------------------------------------------------------------------
    async def redeem(self, invite: str) -> tuple[Account, str] | None:
        """Use a one-time sign-in token: (account, session cookie value), or None."""
        account = await self._credential(invite, "invite")
        if account is None:
            return None
        now = time.time()
        cur = await self.store.db.execute("UPDATE web_credentials SET used_at=? WHERE hash=? AND used_at IS NULL",
                                          (now, _hash(invite)))
        if cur.rowcount != 1:  # used by someone else a moment ago
            await self.store.db.commit()
            return None
        session = await self._issue(account.name, "session", self.session_ttl_s)
        await self.store.db.execute("UPDATE web_users SET signed_in_at=? WHERE name=?", (now, account.name))
        await self.store.db.commit()
        return account, TimestampSigner(self.key, salt="hammer-session").sign(session).decode()

    async def from_cookie(self, cookie: str) -> Identity | None:
        try:
            session = TimestampSigner(self.key, salt="hammer-session").unsign(
                cookie, max_age=int(self.session_ttl_s)).decode()
        except (BadSignature, ValueError):
            return None
        account = await self._credential(session, "session")
        if account is None:
            return None
        return Identity(account, "session", self.csrf(session))

    async def from_token(self, token: str) -> Identity | None:
        account = await self._credential(token, "api")
        return Identity(account, "token") if account is not None else None

    async def sign_out(self, cookie: str) -> None:
        try:
            session = TimestampSigner(self.key, salt="hammer-session").unsign(cookie).decode()
        except (BadSignature, ValueError):
            return
        await self.store.db.execute("DELETE FROM web_credentials WHERE hash=?", (_hash(session),))
        await self.store.db.commit()

    def csrf(self, session: str) -> str:
        return hmac.new(self.key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    # -- the operator ----------------------------------------------------------------------------
    async def ensure_operator(self, token_file: Path) -> str | None:
        """First start: an admin account for whoever runs hammer. Returns a sign-in token
        while no account has ever signed in (print it as a link), else None. Writes an API
        token for the operator's own CLI to `token_file` (0600) when it is missing."""
        accounts = await self.list()
        invite: str | None = None
        if not accounts:
            invite = await self.add(OPERATOR, "admin")
            accounts = await self.list()
        elif not any(a.signed_in_at for a in accounts):
            admin = next((a for a in accounts if a.role == "admin"), accounts[0])
            invite = await self._issue(admin.name, "invite", self.invite_ttl_s)
        self._key = await asyncio.to_thread(load_key, self.key_path)
        admins = [a for a in accounts if a.role == "admin"]
        current = await asyncio.to_thread(_read, token_file)
        if admins and not (current and await self.from_token(current)):
            token = await self.api_token(admins[0].name)
            await asyncio.to_thread(_write_private, token_file, (token + "\n").encode())
        return invite


def sign_in_link(public_url: str, invite: str) -> str:
    return f"{public_url.rstrip('/')}/login?token={invite}"


# -- origins ---------------------------------------------------------------------------------------


def own_hosts(public_url: str, port: int | None) -> set[str]:
    """The Host headers this gateway answers to: its public URL's, and loopback on its port."""
    hosts = {urlsplit(public_url).netloc.lower()} if public_url else set()
    if port:
        hosts |= {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    return {h for h in hosts if h}


def origin_allowed(origin: str, hosts: set[str]) -> bool:
    """`Origin: http://host:port` names this gateway (scheme http or https, no path)."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() in hosts and not parts.path.strip("/")
