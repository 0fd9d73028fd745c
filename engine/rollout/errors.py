"""Errors of the rollout planner and executor, under the engine's one root."""

from __future__ import annotations

from engine.errors import EXIT_DATABASE, EXIT_NOT_FOUND, EXIT_USAGE, VigilError


class RolloutError(VigilError):
    """Root of the rollout's errors."""


class RolloutRefused(RolloutError):
    """The rollout cannot be done as asked (VMs that would not fit elsewhere, no
    unavailability budget left): refused before anything moves, with the reason."""

    exit_code = 1


class RolloutStateError(RolloutError):
    """The rollout state database could not be opened, migrated or written, or the
    rollout is in a state that does not allow the request (resume a finished one)."""

    exit_code = EXIT_DATABASE


class RolloutNotFound(RolloutError):
    exit_code = EXIT_NOT_FOUND


class PolicyError(RolloutError):
    """A rollout policy value is invalid (a bad percentage, a window that does not parse)."""

    exit_code = EXIT_USAGE
