"""The image catalog: statuses, append-only history, targets, rollback, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.images import (
    AppliedPatch,
    Catalog,
    CatalogError,
    ImageNotFoundError,
    ImageStateError,
)
from engine.model import Component

ROOT = Path(__file__).resolve().parents[2]
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.1.76")
TOKEN = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"  # stands in for a signed manifest


def approved(catalog: Catalog, version: str, parent: str | None = None) -> None:
    catalog.create("hv", version, components=[KERNEL], actor="test", parent_version=parent)
    catalog.record_build("hv", version, components=[KERNEL], manifest=TOKEN, patches=[],
                         actor="builder")
    catalog.set_status("hv", version, "attested", actor="stager")
    catalog.set_status("hv", version, "approved", actor="operator", reason="reviewed")


def test_status_moves_forward_with_a_history_row_each(tmp_path: Path) -> None:
    with Catalog(tmp_path / "images.duckdb") as catalog:
        patch = AppliedPatch(id="linux/linux_kernel@6.1.90", component="linux/linux_kernel",
                             from_version="6.1.76", to_version="6.1.90", fixes=["CVE-1"])
        catalog.create("hv", "1", components=[KERNEL], actor="test")
        built = catalog.record_build("hv", "1", components=[KERNEL], manifest=TOKEN,
                                     patches=[patch], actor="builder")
        assert built.status == "built" and built.patches == [patch] and built.manifest == TOKEN
        with pytest.raises(ImageStateError, match="built; it cannot become approved"):
            catalog.set_status("hv", "1", "approved", actor="operator")
        catalog.set_status("hv", "1", "attested", actor="stager")
        catalog.set_status("hv", "1", "approved", actor="operator")
        history = catalog.history(name="hv")
        assert [(e.action, e.before, e.after) for e in history] == [
            ("create", None, "building"), ("build", "building", "built"),
            ("status", "built", "attested"), ("status", "attested", "approved")]
        assert [e.seq for e in history] == [1, 2, 3, 4]
        assert catalog.check() == []
        with pytest.raises(ImageStateError, match="already in the catalog"):
            catalog.create("hv", "1", components=[KERNEL], actor="test")
        with pytest.raises(ImageNotFoundError):
            catalog.get("hv", "2")
        with pytest.raises(ImageNotFoundError, match="parent"):
            catalog.create("hv", "3", components=[KERNEL], actor="t", parent_version="9")
        with pytest.raises(ImageStateError, match="without a signed"):
            catalog.create("hv", "4", components=[KERNEL], actor="t", status="approved")


def test_targets_and_rollback(tmp_path: Path) -> None:
    with Catalog(tmp_path / "images.duckdb") as catalog:
        approved(catalog, "1")
        approved(catalog, "2", parent="1")
        catalog.create("hv", "3", components=[KERNEL], actor="test", parent_version="2")
        with pytest.raises(ImageStateError, match="only an approved"):
            catalog.set_target("rack-a", "hv", "3", actor="op")
        with pytest.raises(ImageNotFoundError, match="no target"):
            catalog.rollback("rack-a", "1", actor="op")
        catalog.set_target("rack-a", "hv", "1", actor="op")
        catalog.set_target("rack-a", "hv", "2", actor="op")
        with pytest.raises(ImageStateError, match="is the target"):
            catalog.set_status("hv", "2", "retired", actor="op")
        with pytest.raises(ImageStateError, match="already the target"):
            catalog.rollback("rack-a", "2", actor="op")
        before, after = catalog.rollback("rack-a", "1", actor="op", reason="bad kernel")
        assert before is not None and before.image.version == "2"
        assert after.image.version == "1"
        assert catalog.target("rack-a") == after
        rows = [(e.action, e.before, e.after) for e in catalog.history(group="rack-a")]
        assert rows == [("target", None, "1"), ("target", "1", "2"), ("rollback", "2", "1")]
        catalog.set_status("hv", "2", "retired", actor="op")
        with pytest.raises(ImageStateError, match="only an approved"):
            catalog.rollback("rack-a", "2", actor="op")
        approved(catalog, "5", parent="1")
        with pytest.raises(ImageStateError, match="never the target"):
            catalog.rollback("rack-a", "5", actor="op")
        assert catalog.check() == []


def test_read_only_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no image catalog"):
        Catalog(tmp_path / "none.duckdb", read_only=True)
    path = tmp_path / "images.duckdb"
    with Catalog(path) as catalog:
        approved(catalog, "1")
    with Catalog(path, read_only=True) as catalog:
        assert [r.label for r in catalog.images()] == ["hv@1"]


_WRITER = textwrap.dedent("""
    import sys, time
    from engine.images import Catalog
    from engine.images import catalog as module
    from engine.model import Component

    kernel = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.1")
    record = module.Catalog._record

    def slow_record(self, con, **kw):
        seq = record(self, con, **kw)
        time.sleep(0.002)  # the change and its history row are written, not committed
        return seq

    module.Catalog._record = slow_record
    with Catalog(module.Path(sys.argv[1])) as catalog:
        n = 0
        while True:
            n += 1
            v = str(n)
            catalog.create("hv", v, components=[kernel], actor="w",
                           parent_version=None if n == 1 else str(n - 1))
            catalog.record_build("hv", v, components=[kernel], manifest="t.o.k",
                                 patches=[], actor="w")
            catalog.set_status("hv", v, "attested", actor="w")
            catalog.set_status("hv", v, "approved", actor="w")
            catalog.set_target("g", "hv", v, actor="w")
            if n > 2:
                catalog.rollback("g", str(n - 1), actor="w")
                catalog.set_target("g", "hv", v, actor="w")
            print(n, flush=True)
""")


@pytest.mark.slow
def test_a_writer_killed_mid_change_leaves_the_catalog_consistent(tmp_path: Path) -> None:
    path = tmp_path / "images.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.05, 0.3, 0.7):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the writer is writing: one round done
        assert first.strip() == b"1", proc.stderr.read() if proc.stderr else ""
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with Catalog(path, read_only=True) as catalog:
            assert catalog.check() == []
            assert len(catalog.history()) >= 6
        # the next writer picks up where the killed one stopped: the file stays usable
        with Catalog(path) as catalog:
            newest = max(int(r.version) for r in catalog.images())
            catalog.create("hv", f"{newest}-after-kill-{delay}", components=[KERNEL],
                           actor="test")
            assert catalog.check() == []
        path.rename(tmp_path / f"killed-{delay}.duckdb")


def test_the_patched_configuration_comes_from_the_catalog(tmp_path: Path) -> None:
    from engine.images import patched_configuration
    from engine.model import ImageRef

    with Catalog(tmp_path / "images.duckdb") as catalog:
        approved(catalog, "1")
        base = ImageRef(name="hv", version="1")
        assert patched_configuration(catalog, base).state == "none"
        catalog.create("hv", "1-p1", components=[KERNEL], actor="b", parent_version="1")
        found = patched_configuration(catalog, base)
        assert found.state == "preparing" and found.image is not None
        assert found.image.version == "1-p1" and not found.attested
        catalog.record_build("hv", "1-p1", components=[KERNEL], manifest=TOKEN, patches=[],
                             actor="b")
        catalog.set_status("hv", "1-p1", "attested", actor="s",
                           detail={"status": "affirming", "differences": []})
        found = patched_configuration(catalog, base)
        assert found.state == "ready" and found.attested
        assert found.attestation_status == "affirming"
        catalog.create("hv", "1-p2", components=[KERNEL], actor="b", parent_version="1")
        catalog.set_status("hv", "1-p2", "failed", actor="b", reason="build failed")
        assert patched_configuration(catalog, base).state == "ready"
