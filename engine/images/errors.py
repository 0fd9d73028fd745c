"""Errors of the image catalog, the patch graph and the builder, under the engine's one
root (:class:`engine.errors.VigilError`)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import EXIT_DATABASE, EXIT_INPUT, EXIT_NOT_FOUND, EXIT_USAGE, VigilError


class ImageError(VigilError):
    """Root of the image part's errors."""

    exit_code = EXIT_INPUT


class CatalogError(ImageError):
    """The image catalog's database could not be opened, migrated or written."""

    exit_code = EXIT_DATABASE


class ImageNotFoundError(ImageError):
    """An image version or a host group the caller named is not in the catalog."""

    exit_code = EXIT_NOT_FOUND


class ImageStateError(ImageError):
    """A change the image's status does not allow (approving an image that was never
    attested, targeting a retired one, rolling back to a version never approved)."""

    exit_code = EXIT_USAGE


class PatchCatalogueError(ImageError):
    """The operator's patch catalogue file cannot be read or is inconsistent (an unknown
    patch named, a supersedence cycle)."""

    exit_code = EXIT_INPUT


class PlanError(ImageError):
    """No complete patch plan can be made; ``nodes`` are the patches concerned."""

    exit_code = EXIT_INPUT

    def __init__(self, summary: str, *, nodes: Sequence[str] = (), tip: str | None = None
                 ) -> None:
        super().__init__(summary, tip=tip)
        self.nodes = tuple(nodes)


class PatchCycleError(PlanError):
    """The patches a plan needs require each other in a cycle: no install order exists."""


class MissingRequirementError(PlanError):
    """A patch a plan needs requires a component version that neither the image nor any
    patch of the graph provides."""


class BuildError(ImageError):
    """The builder could not make the new image version."""

    exit_code = EXIT_INPUT
