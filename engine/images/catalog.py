"""The image catalog: host image versions, their change history, each host group's
target version. Its own DuckDB file (``VIGIL_IMAGES_DB``), migrated forward-only.

* ``images``: one row per (name, version): parent version, status, component list
  (:class:`engine.model.Component`), the signed reference manifest (compact JWS, see
  :mod:`engine.attest`), the patches applied, who or what made it and when.
* ``history``: append-only; every change is one row (``seq`` dense from 1): an image
  created, its status changed, its build recorded, a group's target set or rolled back.
* ``targets``: per host group, the image version hosts of the group should run.

Every change is one transaction that writes the row it changes *and* its history row,
so a writer killed at any point leaves either both or neither: an image's status is
always its last history row's ``after``, a group's target its last target row's.

Status moves only forward along :data:`TRANSITIONS`::

    building -> built -> attested -> approved -> retired
         \\         \\         \\
          failed    failed    failed     (failed -> retired)

Only an ``approved`` version can be a group's target; rolling back makes an approved
version that was the group's target before the target again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import duckdb
import orjson
from pydantic import BaseModel, ConfigDict, Field

from engine.config import Settings
from engine.images.errors import CatalogError, ImageNotFoundError, ImageStateError
from engine.migrations import StateFile, schema_version
from engine.model import Component, ImageRef

__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "AppliedPatch",
    "Catalog",
    "HistoryEntry",
    "ImageRecord",
    "Status",
    "Target",
]

Status = Literal["building", "built", "attested", "approved", "retired", "failed"]
STATUSES: tuple[Status, ...] = ("building", "built", "attested", "approved", "retired",
                                "failed")
TRANSITIONS: dict[str, frozenset[str]] = {
    "building": frozenset({"built", "failed"}),
    "built": frozenset({"attested", "failed", "retired"}),
    "attested": frozenset({"approved", "failed", "retired"}),
    "approved": frozenset({"retired"}),
    "failed": frozenset({"retired"}),
    "retired": frozenset(),
}
"""Status -> the statuses it may move to."""

SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: """
    CREATE TABLE images (
        name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        parent_version VARCHAR,
        status VARCHAR NOT NULL,
        components JSON NOT NULL,
        manifest VARCHAR,
        patches JSON NOT NULL,
        made_by VARCHAR NOT NULL,
        made_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE history (
        seq BIGINT PRIMARY KEY,
        changed_at TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        image_name VARCHAR,
        image_version VARCHAR,
        group_name VARCHAR,
        old_value VARCHAR,
        new_value VARCHAR,
        reason VARCHAR,
        detail JSON
    );
    CREATE TABLE targets (
        group_name VARCHAR PRIMARY KEY,
        image_name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        set_by VARCHAR NOT NULL,
        set_at TIMESTAMPTZ NOT NULL
    );
    """,
}


class AppliedPatch(BaseModel):
    """One patch an image version was built with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    component: str
    from_version: str | None
    to_version: str
    fixes: list[str] = []
    reboot: bool = True


class ImageRecord(BaseModel):
    """One image version as the catalog holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    parent_version: str | None
    status: Status
    components: list[Component]
    manifest: str | None = Field(default=None, description="Signed reference manifest (JWS)")
    patches: list[AppliedPatch] = []
    made_by: str
    made_at: dt.datetime
    updated_at: dt.datetime

    @property
    def ref(self) -> ImageRef:
        return ImageRef(name=self.name, version=self.version)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


class HistoryEntry(BaseModel):
    """One recorded change."""

    model_config = ConfigDict(frozen=True)

    seq: int
    at: dt.datetime
    actor: str
    action: str
    """``create``, ``build``, ``status``, ``target``, ``rollback``."""
    image_name: str | None
    image_version: str | None
    group_name: str | None
    before: str | None
    """The status (or target version) before the change."""
    after: str | None
    reason: str | None
    detail: dict[str, Any] | None


class Target(BaseModel):
    """A host group's target image version."""

    model_config = ConfigDict(frozen=True)

    group: str
    image: ImageRef
    set_by: str
    set_at: dt.datetime


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Catalog(StateFile):
    """The catalog file, open for reading and (unless ``read_only``) writing."""

    MIGRATIONS = _MIGRATIONS
    NAME = "the image catalog"
    SETTING = "VIGIL_IMAGES_DB"
    ERROR = CatalogError

    def __init__(self, path: Path, *, read_only: bool = False,
                 now: Callable[[], dt.datetime] = _utcnow) -> None:
        self.path = path
        self.now = now
        try:
            if read_only and not path.exists():
                raise CatalogError(f"there is no image catalog at {path}",
                                   tip="create an image first, or set VIGIL_IMAGES_DB")
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path), read_only=read_only)
        except (duckdb.Error, OSError) as exc:
            raise CatalogError(f"cannot open the image catalog {path}: {exc}",
                               tip="check VIGIL_IMAGES_DB, or wait for another Vigil command"
                               ) from exc
        if not read_only:
            self._migrate()
        else:
            self._check_version()

    @classmethod
    def from_settings(cls, settings: Settings, *, read_only: bool = False) -> Catalog:
        return cls(settings.images_db, read_only=read_only)

    # -- schema ---------------------------------------------------------------------------

    def _check_version(self) -> None:
        current = schema_version(self._con)
        if current > SCHEMA_VERSION:
            raise CatalogError(f"the image catalog {self.path} has schema version {current}, "
                               f"newer than this Vigil ({SCHEMA_VERSION})",
                               tip="upgrade Vigil, or point VIGIL_IMAGES_DB at another file")
        if current < SCHEMA_VERSION:
            raise CatalogError(f"the image catalog {self.path} is not migrated yet",
                               tip="run a command that writes it (vigil images import)")

    @contextmanager
    def _transaction(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._con
        try:
            con.execute("BEGIN TRANSACTION")
        except duckdb.Error as exc:
            raise CatalogError(f"{what} failed: {exc}") from exc
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        try:
            con.execute("COMMIT")
        except duckdb.Error as exc:
            raise CatalogError(f"{what} failed: {exc}") from exc

    def _record(self, con: duckdb.DuckDBPyConnection, *, actor: str, action: str,
                at: dt.datetime, name: str | None = None, version: str | None = None,
                group: str | None = None, before: str | None = None, after: str | None = None,
                reason: str | None = None, detail: dict[str, Any] | None = None) -> int:
        """The history row of a change, inside the change's own transaction."""
        row = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM history").fetchone()
        seq = int(row[0]) if row else 1
        con.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [seq, at, actor, action, name, version, group, before, after, reason,
                     None if detail is None else orjson.dumps(detail).decode()])
        return seq

    # -- images ---------------------------------------------------------------------------

    def create(self, name: str, version: str, *, components: Sequence[Component],
               actor: str, parent_version: str | None = None,
               patches: Sequence[AppliedPatch] = (), manifest: str | None = None,
               status: Status = "building", reason: str | None = None) -> ImageRecord:
        """Add an image version (``building`` unless ``status`` says otherwise, e.g. an
        imported image that is already ``approved``)."""
        if not name.strip() or not version.strip():
            raise ImageStateError("an image needs a name and a version")
        if status not in STATUSES:
            raise ImageStateError(f"unknown image status {status!r}")
        if status in ("built", "attested", "approved") and manifest is None:
            raise ImageStateError(f"{name}@{version} cannot be {status} without a signed "
                                  "reference manifest")
        at = self.now()
        with self._transaction(f"recording image {name}@{version}") as con:
            if self._row(name, version) is not None:
                raise ImageStateError(f"image {name}@{version} is already in the catalog")
            if parent_version is not None and self._row(name, parent_version) is None:
                raise ImageNotFoundError(f"parent image {name}@{parent_version} is not in "
                                         "the catalog")
            con.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [name, version, parent_version, status, _components_json(components),
                         manifest, _patches_json(patches), actor, at, at])
            self._record(con, actor=actor, action="create", at=at, name=name, version=version,
                         after=status, reason=reason,
                         detail={"parent_version": parent_version,
                                 "patches": [p.id for p in patches]})
        return self.get(name, version)

    def record_build(self, name: str, version: str, *, components: Sequence[Component],
                     manifest: str, patches: Sequence[AppliedPatch], actor: str,
                     reason: str | None = None) -> ImageRecord:
        """A ``building`` version's result: its components, signed manifest and patches;
        it becomes ``built``."""
        at = self.now()
        with self._transaction(f"recording the build of {name}@{version}") as con:
            record = self._require(name, version)
            self._check_move(record, "built")
            con.execute("UPDATE images SET status = 'built', components = ?, manifest = ?,"
                        " patches = ?, updated_at = ? WHERE name = ? AND version = ?",
                        [_components_json(components), manifest, _patches_json(patches), at,
                         name, version])
            self._record(con, actor=actor, action="build", at=at, name=name, version=version,
                         before=record.status, after="built", reason=reason,
                         detail={"components": len(components),
                                 "patches": [p.id for p in patches]})
        return self.get(name, version)

    def set_status(self, name: str, version: str, status: Status, *, actor: str,
                   reason: str | None = None, detail: dict[str, Any] | None = None
                   ) -> ImageRecord:
        """Move an image version to ``status`` (see :data:`TRANSITIONS`)."""
        if status not in STATUSES:
            raise ImageStateError(f"unknown image status {status!r}")
        at = self.now()
        with self._transaction(f"changing the status of {name}@{version}") as con:
            record = self._require(name, version)
            self._check_move(record, status)
            if status == "retired":
                for target in self._targets():
                    if (target.image.name, target.image.version) == (name, version):
                        raise ImageStateError(
                            f"{name}@{version} is the target of host group {target.group}",
                            tip="set another target (or roll the group back) first")
            con.execute("UPDATE images SET status = ?, updated_at = ? WHERE name = ? AND "
                        "version = ?", [status, at, name, version])
            self._record(con, actor=actor, action="status", at=at, name=name, version=version,
                         before=record.status, after=status, reason=reason, detail=detail)
        return self.get(name, version)

    def _check_move(self, record: ImageRecord, status: str) -> None:
        if status not in TRANSITIONS[record.status]:
            allowed = ", ".join(sorted(TRANSITIONS[record.status])) or "nothing"
            raise ImageStateError(
                f"{record.label} is {record.status}; it cannot become {status} "
                f"(from {record.status} only {allowed})",
                tip="only an attested image can be approved; only an approved one targeted"
                if status == "approved" else None)

    def get(self, name: str, version: str) -> ImageRecord:
        """The image version; :class:`ImageNotFoundError` when there is none."""
        return self._require(name, version)

    def find(self, name: str, version: str) -> ImageRecord | None:
        return self._row(name, version)

    def _require(self, name: str, version: str) -> ImageRecord:
        record = self._row(name, version)
        if record is None:
            raise ImageNotFoundError(f"image {name}@{version} is not in the catalog",
                                     tip="vigil images list shows the catalog")
        return record

    def _row(self, name: str, version: str) -> ImageRecord | None:
        row = self._con.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE name = ? AND "
                                "version = ?", [name, version]).fetchone()
        return None if row is None else _image(row)

    def images(self, name: str | None = None, status: str | None = None) -> list[ImageRecord]:
        sql = f"SELECT {_IMAGE_COLUMNS} FROM images WHERE 1 = 1"
        args: list[object] = []
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        rows = self._con.execute(sql + " ORDER BY name, made_at, version", args).fetchall()
        return [_image(r) for r in rows]

    def children(self, name: str, version: str) -> list[ImageRecord]:
        rows = self._con.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE name = ? AND "
                                 "parent_version = ? ORDER BY made_at, version",
                                 [name, version]).fetchall()
        return [_image(r) for r in rows]

    def history(self, *, name: str | None = None, version: str | None = None,
                group: str | None = None) -> list[HistoryEntry]:
        """Recorded changes, oldest first, of an image (or one version), or of a group."""
        sql = "SELECT * FROM history WHERE 1 = 1"
        args: list[object] = []
        if name is not None:
            sql += " AND image_name = ?"
            args.append(name)
        if version is not None:
            sql += " AND image_version = ?"
            args.append(version)
        if group is not None:
            sql += " AND group_name = ?"
            args.append(group)
        rows = self._con.execute(sql + " ORDER BY seq", args).fetchall()
        return [_history(r) for r in rows]

    # -- host group targets ---------------------------------------------------------------

    def set_target(self, group: str, name: str, version: str, *, actor: str,
                   reason: str | None = None) -> Target:
        """Make an approved image version the target of ``group``."""
        return self._move_target(group, name, version, actor=actor, reason=reason,
                                 action="target")

    def rollback(self, group: str, version: str, *, actor: str, reason: str | None = None
                 ) -> tuple[Target | None, Target]:
        """Make ``version`` (of the group's current target image) the target again: it
        must be approved and have been the group's target before. Returns (the target
        before, the target now)."""
        current = self.target(group)
        if current is None:
            raise ImageNotFoundError(f"host group {group} has no target to roll back",
                                     tip="vigil images target GROUP NAME@VERSION sets one")
        name = current.image.name
        if version == current.image.version:
            raise ImageStateError(f"{name}@{version} is already the target of {group}")
        earlier = {(e.image_name, e.after) for e in self.history(group=group)
                   if e.action in ("target", "rollback")}
        if (name, version) not in earlier:
            raise ImageStateError(f"{name}@{version} was never the target of {group}: a "
                                  "rollback returns to a version the group ran before",
                                  tip="set a new target with vigil images target")
        after = self._move_target(group, name, version, actor=actor, reason=reason,
                                  action="rollback")
        return current, after

    def _move_target(self, group: str, name: str, version: str, *, actor: str,
                     reason: str | None, action: str) -> Target:
        if not group.strip():
            raise ImageStateError("a host group needs a name")
        at = self.now()
        with self._transaction(f"setting the target of {group}") as con:
            record = self._require(name, version)
            if record.status != "approved":
                raise ImageStateError(f"{record.label} is {record.status}: only an approved "
                                      "image version can be a host group's target",
                                      tip="vigil images approve NAME@VERSION, after it is "
                                      "attested")
            before = self._target(group)
            con.execute("INSERT OR REPLACE INTO targets VALUES (?, ?, ?, ?, ?)",
                        [group, name, version, actor, at])
            self._record(con, actor=actor, action=action, at=at, name=name, version=version,
                         group=group, before=None if before is None else
                         before.image.version, after=version, reason=reason,
                         detail=None if before is None else
                         {"before_image": before.image.name})
        target = self._target(group)
        assert target is not None
        return target

    def target(self, group: str) -> Target | None:
        return self._target(group)

    def _target(self, group: str) -> Target | None:
        row = self._con.execute("SELECT group_name, image_name, version, set_by, set_at FROM "
                                "targets WHERE group_name = ?", [group]).fetchone()
        return None if row is None else _target_row(row)

    def targets(self) -> list[Target]:
        return self._targets()

    def _targets(self) -> list[Target]:
        rows = self._con.execute("SELECT group_name, image_name, version, set_by, set_at FROM "
                                 "targets ORDER BY group_name").fetchall()
        return [_target_row(r) for r in rows]

    # -- consistency ----------------------------------------------------------------------

    def check(self) -> list[str]:
        """Every inconsistency between the current rows and the history (none expected:
        each change writes both in one transaction)."""
        problems: list[str] = []
        history = self.history()
        seqs = [e.seq for e in history]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append("history sequence numbers are not 1..n")
        last_status: dict[tuple[str, str], str | None] = {}
        last_target: dict[str, tuple[str | None, str | None]] = {}
        for e in history:
            if e.action in ("create", "build", "status") and e.image_name and e.image_version:
                last_status[(e.image_name, e.image_version)] = e.after
            if e.action in ("target", "rollback") and e.group_name:
                last_target[e.group_name] = (e.image_name, e.after)
        images = {(r.name, r.version): r for r in self.images()}
        for key, record in images.items():
            if last_status.get(key) != record.status:
                problems.append(f"{record.label} is {record.status} but its history ends "
                                f"with {last_status.get(key)}")
        for key in set(last_status) - set(images):
            problems.append(f"history names {key[0]}@{key[1]}, which has no row")
        targets = {t.group: (t.image.name, t.image.version) for t in self._targets()}
        if targets != last_target:
            problems.append(f"targets {targets} differ from their history {last_target}")
        for group, (name, version) in targets.items():
            targeted = images.get((name, version))
            if targeted is None or targeted.status != "approved":
                problems.append(f"group {group} targets {name}@{version}, not approved")
        return problems


_IMAGE_COLUMNS = ("name, version, parent_version, status, components, manifest, patches, "
                  "made_by, made_at, updated_at")


def _components_json(components: Sequence[Component]) -> str:
    return orjson.dumps([c.model_dump(exclude_none=True) for c in components]).decode()


def _patches_json(patches: Sequence[AppliedPatch]) -> str:
    return orjson.dumps([p.model_dump() for p in patches]).decode()


def _image(row: tuple[Any, ...]) -> ImageRecord:
    (name, version, parent, status, components, manifest, patches, made_by, made_at,
     updated_at) = row
    return ImageRecord(
        name=name, version=version, parent_version=parent, status=status,
        components=[Component.model_validate(c) for c in orjson.loads(components)],
        manifest=manifest, patches=[AppliedPatch.model_validate(p)
                                    for p in orjson.loads(patches)],
        made_by=made_by, made_at=made_at, updated_at=updated_at)


def _history(row: tuple[Any, ...]) -> HistoryEntry:
    seq, at, actor, action, name, version, group, before, after, reason, detail = row
    return HistoryEntry(seq=seq, at=at, actor=actor, action=action, image_name=name,
                        image_version=version, group_name=group, before=before, after=after,
                        reason=reason, detail=None if detail is None else orjson.loads(detail))


def _target_row(row: tuple[Any, ...]) -> Target:
    group, name, version, set_by, set_at = row
    return Target(group=group, image=ImageRef(name=name, version=version), set_by=set_by,
                  set_at=set_at)
