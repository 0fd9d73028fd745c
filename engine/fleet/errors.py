"""Errors of the fleet inventory, under the engine's one root."""

from __future__ import annotations

from engine.errors import EXIT_DATABASE, EXIT_INPUT, EXIT_NOT_FOUND, VigilError


class FleetError(VigilError):
    """Root of the fleet inventory's errors."""


class InventoryError(FleetError):
    """An inventory document was refused: it does not parse, or it names unknown hosts,
    repeats an id, or places VMs that do not fit. Nothing was written."""

    exit_code = EXIT_INPUT

    def __init__(self, summary: str, *, problems: list[str] | None = None,
                 tip: str | None = None) -> None:
        super().__init__(summary, tip=tip)
        self.problems = problems or []


class FleetDbError(FleetError):
    """The inventory's database could not be opened, migrated or written."""

    exit_code = EXIT_DATABASE


class FleetNotFound(FleetError):
    """A host or VM named by the caller is not in the inventory."""

    exit_code = EXIT_NOT_FOUND
