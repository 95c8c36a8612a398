"""Jobs: the Orchestrator (state machine, watchdogs, re-attach) and the ProgressNotifier."""

from gateway.jobs.notifier import ProgressNotifier
from gateway.jobs.orchestrator import IN_FLIGHT, Orchestrator

__all__ = ["IN_FLIGHT", "Orchestrator", "ProgressNotifier"]
