"""Replay for auditors: the chain is verified first, and a log or export that does not
verify is not replayed (:class:`~engine.audit.errors.ChainBroken`, naming the first
broken record). Then the chosen records are evaluated again with the bundle revision
they recorded (from the log, or from the export itself) or with another policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from engine.audit.chain import Verification
from engine.audit.errors import NoDecisions
from engine.audit.export import ExportReader
from engine.audit.verify import require_intact
from engine.decide import (
    BundleSource,
    DecisionLog,
    DecisionRecord,
    PolicySet,
    Replayed,
    Replayer,
)
from engine.errors import NotFoundError


@dataclass(frozen=True)
class Selection:
    """Which records to replay: one decision id, or those in a period."""

    decision_id: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    """Exclusive."""

    def wants(self, record_id: str, when: dt.datetime) -> bool:
        if self.decision_id is not None:
            return record_id == self.decision_id
        return (self.start is None or when >= self.start) and \
            (self.end is None or when < self.end)


def log_records(log: DecisionLog, selection: Selection) -> Iterator[DecisionRecord]:
    for row in log.rows():
        if selection.wants(row.decision_id, row.timestamp):
            yield row.record()


def export_records(reader: ExportReader, selection: Selection) -> Iterator[DecisionRecord]:
    for line in reader:
        if line.row is not None and selection.wants(line.row.decision_id, line.row.timestamp):
            yield line.row.record()


def replay_records(verification: Verification, source: BundleSource,
                   records: Iterable[DecisionRecord], selection: Selection, *,
                   policy: PolicySet | None = None, where: str = "the decision log"
                   ) -> list[Replayed]:
    """Replay ``records`` once ``verification`` says the chain is intact."""
    require_intact(verification)
    replayer = Replayer(source, policy, where=where)
    try:
        results = [replayer.replay(r) for r in records]
    finally:
        replayer.close()
    if not results:
        if selection.decision_id is not None:
            raise NotFoundError(f"decision {selection.decision_id} is not in {where}")
        raise NoDecisions(f"{where} holds no decision in the period asked")
    return results
