"""`hammer users add|list|remove|reset|token`: web accounts, on the store directly (the
gateway may be running: SQLite's WAL lets both use it)."""

from __future__ import annotations

import datetime

from rich.table import Table

from gateway.cli.common import die, out
from gateway.config import Settings
from gateway.store import Store, StoreError
from gateway.webauth import AccountError, Accounts, sign_in_link


async def users(settings: Settings, action: str, name: str | None, role: str) -> int:
    try:
        store = await Store(settings.db_path).open()
    except StoreError as exc:
        return die(str(exc))
    accounts = Accounts(store, settings.data_dir / "web" / "secret.key", invite_ttl_s=settings.http.invite_ttl,
                        session_ttl_s=settings.http.session_ttl)
    ttl = f"{settings.http.invite_ttl / 3600:g} h"
    try:
        if action == "list":
            table = Table("name", "role", "created", "last sign-in")
            for a in await accounts.list():
                table.add_row(a.name, a.role, _when(a.created_at), _when(a.signed_in_at) if a.signed_in_at else "never")
            out.print(table)
            return 0
        assert name is not None
        if action == "add":
            invite = await accounts.add(name, role)
            out.print(f"{name} ({role}): send them this sign-in link (works once, for {ttl}):", markup=False)
            out.print(sign_in_link(settings.public_url, invite), markup=False)
        elif action == "reset":
            invite = await accounts.reset(name)
            out.print(f"{name}: signed out everywhere, API tokens revoked. New sign-in link (once, {ttl}):",
                      markup=False)
            out.print(sign_in_link(settings.public_url, invite), markup=False)
        elif action == "remove":
            await accounts.remove(name)
            out.print(f"{name}: removed; its sessions and API tokens no longer work", markup=False)
        elif action == "token":
            token = await accounts.api_token(name)
            out.print(f"API token for {name} (shown once; send it as `Authorization: Bearer TOKEN`, or set "
                      "HAMMER_API_TOKEN for `hammer run`):", markup=False)
            out.print(token, markup=False)
        return 0
    except AccountError as exc:
        return die(str(exc))
    finally:
        await store.close()


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""
