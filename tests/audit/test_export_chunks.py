"""An export read in chunks: a line cut by a chunk boundary is read whole, the last line
may lack its newline, empty lines are skipped but counted; the canonical text the reader
remembers for repeated values is the one ``canonical_json`` gives (1 and 1.0 differ)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine.audit import ExportReader, export, verify_export
from engine.decide import DecisionLog, canonical_json
from engine.keys import load_verification_key
from tests.audit.conftest import decide_n


@pytest.fixture()
def exported(tmp_path: Path, evaluator, audit_keys) -> Path:  # type: ignore[no-untyped-def]
    from engine.keys import load_signing_key

    log = tmp_path / "d.duckdb"
    decide_n(log, evaluator, 5, key=audit_keys[0])
    out = io.BytesIO()
    with DecisionLog(log, signing_key=load_signing_key(audit_keys[0]),
                     checkpoint_every=3) as dlog:
        dlog.export_ndjson(out)
    path = tmp_path / "export.ndjson"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, 8 << 20])
def test_any_chunk_size_reads_the_same_lines(exported: Path, audit_keys, chunk: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(export, "_CHUNK", chunk)
    keys = [load_verification_key(audit_keys[1])]
    found = verify_export(ExportReader(exported), keys)
    assert found.ok, found.problems
    assert found.records == 5
    lines = exported.read_bytes().split(b"\n")
    spaced = exported.with_name("spaced.ndjson")  # an empty line, no final newline
    spaced.write_bytes(b"\n".join([lines[0], b"", *lines[1:5]]))
    reader = ExportReader(spaced)
    numbers = [line.line_no for line in reader]
    assert numbers == [1, 3, 4, 5, 6] and reader.lines == 6


def test_an_edit_cut_by_a_chunk_boundary_is_found(exported: Path, audit_keys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(export, "_CHUNK", 64)
    lines = exported.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"tenant":"', b'"tenant":"x', 1)
    exported.write_bytes(b"\n".join(lines))
    found = verify_export(ExportReader(exported), [load_verification_key(audit_keys[1])])
    assert found.first_broken is not None and found.first_broken.seq == 3


def test_remembered_canonical_text_is_canonical_json(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"{}\n")
    reader = ExportReader(path)
    values = [{"b": 1, "a": [1.0, "é\n"]}, {"b": 1, "a": [1, "é\n"]}, {"a": [1.0, "é\n"], "b": 1},
              {"n": 2**70}, {"x": 1e16}]
    for _ in range(2):
        for value in values:
            assert reader._canonical(value) == canonical_json(value)
