"""Who may do what: roles, the per-user concurrency limit, model and task allowlists,
approvals, and the `hammer_policy_check` plugin vetoes.

Every decision is returned with its reasons (shown to the user as they are) and is
written to the audit log by the caller.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from gateway.config import Settings
from gateway.contracts import Permissions
from gateway.model import Actor, Command, JobSpec
from gateway.plugins import Plugins
from gateway.store import Store

ADMIN = "admin"


def roles_of(actor: Actor, settings: Settings) -> frozenset[str]:
    """Platform-mapped roles plus roles granted by `[policy.roles]` to `platform:user_id`."""
    roles = set(actor.roles)
    roles |= {role for role, members in settings.policy.roles.items() if actor.key in members}
    if actor.key in settings.policy.admins:
        roles.add(ADMIN)
    return frozenset(roles)


def is_admin(actor: Actor, settings: Settings) -> bool:
    return ADMIN in roles_of(actor, settings)


def permissions(actor: Actor, settings: Settings) -> Permissions:
    return Permissions(actor, roles_of(actor, settings))


def may_run(actor: Actor, verb: str, settings: Settings) -> bool:
    """Whether `[policy.allowed_tasks]` lets this actor use `verb` at all (help hides the rest)."""
    needed = settings.policy.allowed_tasks.get(verb)
    if needed is None:
        return True
    roles = roles_of(actor, settings)
    return ADMIN in roles or bool(roles & set(needed))


@dataclass
class Decision:
    allowed: bool = True
    reasons: list[str] = field(default_factory=list)
    needs_approval: bool = False

    def deny(self, reason: str) -> None:
        self.allowed = False
        self.reasons.append(reason)


async def evaluate(actor: Actor, command: Command, spec: JobSpec | None, *, settings: Settings, store: Store,
                   plugins: Plugins, estimated_cost_usd: float | None = None) -> Decision:
    decision = Decision()
    admin = is_admin(actor, settings)
    if spec is not None:
        limit = settings.jobs.max_concurrent_per_user
        active = await store.count_active(actor.key)
        if active >= limit:
            decision.deny(f"you already have {active} job(s) running or waiting (limit {limit}); "
                          "wait for one to finish or cancel one with .cancel JOB")
        allowed_models = settings.policy.allowed_models
        if allowed_models and not admin and not any(fnmatch.fnmatch(spec.model, pat) for pat in allowed_models):
            decision.deny(f"model {spec.model} is not on this server's allowlist "
                          f"({', '.join(allowed_models)}); ask an admin to add it")
        if not may_run(actor, command.verb, settings):
            task_roles = settings.policy.allowed_tasks[command.verb]
            decision.deny(f".{command.verb} needs one of the roles {', '.join(task_roles)}; ask an admin")
        threshold = settings.policy.require_approval_over_usd
        if threshold and estimated_cost_usd is not None and estimated_cost_usd > threshold and not admin:
            decision.needs_approval = True
    for reason in plugins.policy_vetoes(actor, command, spec):
        decision.deny(reason)
    return decision
