"""Audit: the decision log checked and read the way an auditor needs it, months later
and without the running system.

Public surface::

    from engine.audit import verify_log, verify_export, ExportReader, verification_keys

    keys = verification_keys(settings)                 # current and retired public keys
    with DecisionLog.from_settings(settings, read_only=True) as log:
        found = verify_log(log, keys, expect_every=settings.audit_checkpoint_every)
    found.ok, found.first_broken                       # the first broken record, named
    found = verify_export(ExportReader(path), keys)    # an export, on its own

    builder = ReportBuilder(Period(start, end, as_of, tenant))   # the compliance report
    writer = ReportWriter(out, "html")                 # json | csv | html
    verify_log(log, keys, on_row=lambda row: ...)      # builder.add(row) -> writer.placement
    writer.close(builder.finish(pvdb, images=..., rollouts=...))

* :mod:`engine.audit.chain`: the record-by-record check of the hash chain and its signed
  checkpoints (numbered steps), and what it found (:class:`Verification`);
* :mod:`engine.audit.export`: an export read back into the records it was written from,
  byte for byte, with the bundles and attestation results it carries;
* :mod:`engine.audit.bulk`: a log's chain checked in bulk (one scan, hashed on two
  threads, runs of clean records passed to the verifier together);
* :mod:`engine.audit.verify`: a log or an export verified end to end;
* :mod:`engine.audit.replay`: replay that refuses a chain that does not verify;
* :mod:`engine.audit.report`: the compliance report (placements, what was known then and
  what is known now, exposure after the fact, predicted and real fix dates, patched
  configurations, policy revisions); :mod:`engine.audit.render` its JSON, CSV and HTML
  (plots as SVG, drawn by matplotlib on the server).

Layer 6, beside ``engine.provision``: it reads the decision part's log and the PVDB,
images and rollout parts through their faces.
"""

from engine.audit.chain import ChainVerifier, CheckpointSeen, Problem, Verification
from engine.audit.errors import AuditError, ChainBroken, ExportError, NoDecisions
from engine.audit.export import ExportLine, ExportReader
from engine.audit.render import TABLES, ReportWriter, render_html
from engine.audit.replay import Selection, export_records, log_records, replay_records
from engine.audit.report import Period, ReportBuilder
from engine.audit.verify import require_intact, verification_keys, verify_export, verify_log

__all__ = [
    "TABLES",
    "AuditError",
    "ChainBroken",
    "ChainVerifier",
    "CheckpointSeen",
    "ExportError",
    "ExportLine",
    "ExportReader",
    "NoDecisions",
    "Period",
    "Problem",
    "ReportBuilder",
    "ReportWriter",
    "Selection",
    "Verification",
    "export_records",
    "log_records",
    "render_html",
    "replay_records",
    "require_intact",
    "verification_keys",
    "verify_export",
    "verify_log",
]
