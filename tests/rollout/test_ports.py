"""The rollout's real ports: targets and approved versions from the image catalog, a
rollout refused before anything moves when its target cannot be rolled out, hosts
trusted only on verified attestation results and re-attested on a software TPM."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from engine.attest import (
    AttestationResult,
    TrustVector,
    VerifierId,
    load_signing_key,
    load_verification_key,
    sign_result,
)
from engine.attest.lab import ec_key_pem
from engine.fleet import synthetic
from engine.images import Catalog
from engine.model import ImageRef
from engine.rollout import (
    CatalogTargets,
    MemoryAttestor,
    RolloutPolicy,
    RolloutRefused,
    RolloutStateError,
    StaticTargets,
    SwtpmAttestor,
    memory_attestor,
    plan,
    service,
    state,
)
from engine.rollout.simulator import Failures, SimTimings
from tests.rollout.conftest import IMAGE, KERNEL, Pipeline, add_version
from tests.rollout.fleets import fleet

PATCHED = KERNEL.model_copy(update={"version": "6.6.31"})
NEWER = KERNEL.model_copy(update={"version": "6.6.32"})


def test_targets_and_approved_versions_come_from_the_catalog(catalog: Catalog,
                                                              pipeline: Pipeline) -> None:
    add_version(catalog, pipeline, "v1", [KERNEL])
    add_version(catalog, pipeline, "v2", [PATCHED], parent="v1")
    add_version(catalog, pipeline, "v3", [NEWER], parent="v2", status="attested")
    catalog.create("other", "v9", components=[KERNEL], actor="test",
                   manifest=catalog.get(IMAGE, "v1").manifest, status="approved")
    catalog.set_target("g", IMAGE, "v1", actor="op")
    catalog.set_target("g", IMAGE, "v2", actor="op")
    targets = CatalogTargets.from_catalog(catalog, [pipeline.public])
    assert targets.target("g") == "v2"
    # approved versions of the target's image only: not the attested v3, not other@v9
    assert targets.approved("g") == {"v1", "v2"}
    p = plan(fleet(3, {"h1": [(2, 4096)]}), "g", targets, MemoryAttestor())
    assert p.target == "v2" and p.approved_versions == ["v1", "v2"]
    assert [h for w in p.waves for h in w] == ["h1", "h2", "h3"]


def _refusal(catalog: Catalog, pipeline: Pipeline, case: str) -> CatalogTargets:
    """Targets of group g that a rollout must refuse, for ``case``."""
    base = add_version(catalog, pipeline, "v1", [KERNEL])
    ref = ImageRef(name=IMAGE, version="v2")
    if case == "no target":
        return CatalogTargets([base], {}, [pipeline.public])
    if case == "untrusted key":
        add_version(catalog, pipeline, "v2", [PATCHED], parent="v1",
                    key=load_signing_key(ec_key_pem()))
        catalog.set_target("g", IMAGE, "v2", actor="op")
        return CatalogTargets.from_catalog(catalog, [pipeline.public])
    if case == "no key":
        add_version(catalog, pipeline, "v2", [PATCHED], parent="v1")
        catalog.set_target("g", IMAGE, "v2", actor="op")
        return CatalogTargets.from_catalog(catalog, [])
    # the catalog itself never lets these be a target; a source built from rows that
    # say so (an older file, a hand edit) is refused all the same
    if case == "not approved":
        record = add_version(catalog, pipeline, "v2", [PATCHED], parent="v1",
                             status="attested")
    elif case == "no manifest":
        record = catalog.create(IMAGE, "v2", components=[PATCHED], actor="test",
                                parent_version="v1").model_copy(update={"status": "approved"})
    else:  # another version's manifest
        record = catalog.create(IMAGE, "v2", components=[PATCHED], actor="test",
                                parent_version="v1", manifest=base.manifest,
                                status="approved")
    return CatalogTargets([base, record], {"g": ref}, [pipeline.public])


@pytest.mark.parametrize(("case", "reason"), [
    ("no target", "host group g has no target version in the image catalog"),
    ("untrusted key", f"the target of g, {IMAGE}@v2, has a reference manifest that does"
                      " not verify"),
    ("no key", "has a reference manifest, but no key to verify it with is configured"),
    ("not approved", f"the target of g, {IMAGE}@v2, is attested, not approved"),
    ("no manifest", f"the target of g, {IMAGE}@v2, has no signed reference manifest"),
    ("other manifest", f"has the signed manifest of {IMAGE} v1, not its own"),
])
def test_a_target_that_cannot_be_rolled_out_is_refused_before_anything_moves(
        catalog: Catalog, pipeline: Pipeline, tmp_path: Path, case: str, reason: str) -> None:
    targets = _refusal(catalog, pipeline, case)
    snap = fleet(3, {"h1": [(2, 4096)]})
    with pytest.raises(RolloutRefused) as info:
        plan(snap, "g", targets, MemoryAttestor())
    assert reason in info.value.summary
    # nor can an attestor be made for it: nothing about the group is trusted
    with pytest.raises(RolloutRefused):
        SwtpmAttestor.for_group(targets, "g", snap.hosts)


def _result(host: str, version: str, *, status_failures: bool = False,
            issued_at: dt.datetime | None = None) -> AttestationResult:
    from engine.attest import Failure

    return AttestationResult.build(
        host_id=host, verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=[Failure(step="5", reason="PCR 4 differs")] if status_failures else [],
        nonce=b"\x01" * 32, image=ImageRef(name=IMAGE, version=version),
        components=[KERNEL], ak_name=None, inventory=None, issued_at=issued_at)


def test_trust_comes_from_verified_results_only(tmp_path: Path) -> None:
    pem = ec_key_pem()
    key, public = load_signing_key(pem), load_verification_key(pem)
    folder = tmp_path / "results"
    folder.mkdir()
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    written = {"h1": sign_result(_result("h1", "v1"), key),
               "h2": sign_result(_result("h2", "v1"), load_signing_key(ec_key_pem())),
               "h3": sign_result(_result("h3", "v1", issued_at=old), key),
               "h4": sign_result(_result("h4", "v0"), key),
               "h5": sign_result(_result("h5", "v1", status_failures=True), key),
               "h6": sign_result(_result("h1", "v1"), key)}
    for host, token in written.items():
        (folder / f"{host}.jwt").write_text(token + "\n")
    hosts = {f"h{i}": "v1" for i in range(1, 8)}
    attestor = SwtpmAttestor(IMAGE, {}, [], expected=hosts, results=folder,
                             results_key=public, ttl_s=900, untrusted=["h1x"])
    why = {h: attestor.why_untrusted(h) for h in hosts}
    assert why["h1"] is None and attestor.trusted("h1")
    assert "does not verify" in (why["h2"] or "")
    assert "over the 900 s limit" in (why["h3"] or "")
    assert "of version v0, but it runs v1" in (why["h4"] or "")
    assert "contraindicated, not affirming" in (why["h5"] or "")
    assert "is for host 'h1'" in (why["h6"] or "")
    assert why["h7"] == "no attestation result for it"
    assert not any(attestor.trusted(h) for h in hosts if h != "h1")
    # no key configured: a result file is not believed
    keyless = SwtpmAttestor(IMAGE, {}, [], expected=hosts, results=folder)
    assert not keyless.trusted("h1")
    assert "no key to verify" in (keyless.why_untrusted("h1") or "")


def test_a_version_without_a_manifest_fails_attestation_without_booting(
        catalog: Catalog, pipeline: Pipeline) -> None:
    building = catalog.create(IMAGE, "v2", components=[PATCHED], actor="test")
    attestor = SwtpmAttestor(IMAGE, {"v2": building}, [pipeline.public])
    unknown = attestor.attest("h1", "v7")
    assert not unknown.ok and "version v7 of hv-kvm is not in the image catalog" in (
        unknown.reason or "")
    bare = attestor.attest("h1", "v2")
    assert not bare.ok and "has no signed reference manifest" in (bare.reason or "")
    assert attestor.runs == 0 and not attestor.trusted("h1")


@pytest.mark.slow
@pytest.mark.usefixtures("need_swtpm")
def test_a_host_is_attested_on_a_software_tpm_against_its_version(
        catalog: Catalog, pipeline: Pipeline, tmp_path: Path) -> None:
    v1 = add_version(catalog, pipeline, "v1", [KERNEL])
    v2 = add_version(catalog, pipeline, "v2", [PATCHED], parent="v1")
    attestor = SwtpmAttestor(IMAGE, {"v1": v1, "v2": v2}, [pipeline.public],
                             expected={"h1": "v1", "h2": "v1"}, tamper=[("h2", "v2")],
                             workdir=tmp_path / "tpms")
    (tmp_path / "tpms").mkdir()
    assert not attestor.trusted("h1")
    assert attestor.attest("h1", "v1").ok and attestor.trusted("h1")
    assert attestor.attest("h1", "v2").ok and attestor.trusted("h1")
    result = attestor.result("h1")
    assert result is not None and result.host_id == "h1" and result.status == "affirming"
    assert result.image == ImageRef(name=IMAGE, version="v2")
    assert [c.version for c in result.components] == ["6.6.31"]
    # h2 boots a kernel its image does not name: the verifier says which measurement
    failed = attestor.attest("h2", "v2")
    assert not failed.ok and attestor.result("h2") is None and not attestor.trusted("h2")
    reason = failed.reason or ""
    assert reason.startswith(f"{IMAGE}@v2: ")
    assert "PCR 4 boot application /boot/vmlinuz-6.6.31" in reason
    assert "PCR 9 file /boot/vmlinuz-6.6.31" in reason
    # ... and on its previous version it passes again (a rollback's attestation)
    assert attestor.attest("h2", "v1").ok and attestor.trusted("h2")
    assert attestor.runs == 4
    assert list((tmp_path / "tpms").iterdir()) == []  # each boot's TPM is cleaned away


def test_a_rollout_resumes_only_with_the_attestor_it_started_with(tmp_path: Path) -> None:
    snap = synthetic(4, 2, seed=3)
    p = plan(snap, "group-1", StaticTargets({"group-1": "v2"}), MemoryAttestor(),
             RolloutPolicy(max_unavailable=1))
    db = tmp_path / "rollouts.duckdb"
    with state.RolloutStore(db) as store:
        rec = store.create(p, snap, untrusted=[], timings=SimTimings(), failures=Failures(),
                           executor="simulator",
                           attestor={"kind": "swtpm", "image": IMAGE})
        assert store.get(rec.id).attestor == {"kind": "swtpm", "image": IMAGE}
    with pytest.raises(RolloutStateError, match="re-attests its hosts with the swtpm"):
        memory_attestor(rec.attestor, p, Failures())
    with pytest.raises(RolloutStateError, match="re-attests its hosts with the swtpm"):
        service.resume(service.Options(db), rec.id)
    with state.RolloutStore(db) as store:  # nothing moved
        assert store.steps(rec.id) == [] and store.get(rec.id).status == "planned"


def test_a_state_file_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "rollouts.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL)")
    con.execute(state._MIGRATIONS[1])
    con.execute("INSERT INTO schema_migrations VALUES (1, now())")
    con.close()
    snap = synthetic(2, 1, seed=3)
    p = plan(snap, "group-1", StaticTargets({"group-1": "v2"}), MemoryAttestor())
    with state.RolloutStore(db) as store:
        rec = store.create(p, snap, untrusted=[], timings=SimTimings(), failures=Failures(),
                           executor="simulator")
        assert store.get(rec.id).attestor == {"kind": "memory"}
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_migrations").fetchone() == (2,)
    con.close()

