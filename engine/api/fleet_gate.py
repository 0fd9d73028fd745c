"""The default placement gate: the fleet inventory, cached attestation results, the PVDB
and the policy, composed.

For one VM it

1. takes the fleet's hosts in service that have room for the VM (and run the requested
   image version, when one is requested);
2. of those, keeps the hosts with a fresh verified attestation result
   (:class:`~engine.api.results.ResultCache`); none is a reject naming why for each host
   (fail closed: an unattested host is never decided as if it were);
3. decides the placement on the first of them (affirming results first, then the most
   free vCPUs, then the host id) with :func:`engine.provision.decide_placement`: the
   PVDB's findings for the attested image's components, the policy's verdict, logged in
   the decision log unless the request is a dry run;
4. offers, as the host's patched configuration, the newest image version that another
   attested host with room already runs (attested ``affirming``): that is what a
   ``patch`` verdict moves the VM to.

A ``patch`` answer names that image version and the hosts in service that run it.

The PVDB is read from the generation that was live when it was opened; when an ingest
switches a new generation in, the gate opens it on a thread of its own, loads its match
index, and only then decides on it (the decisions meanwhile go on, on the previous one).
Host postures are kept by the decider, keyed on the PVDB generation among the rest.
"""

from __future__ import annotations

import datetime as dt
import operator
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from engine.api.gate import GateAnswer
from engine.api.results import ResultCache
from engine.attest import AttestationResult, load_verification_key
from engine.config import Settings
from engine.decide import (
    Decider,
    DecisionLog,
    Image,
    PatchedConfiguration,
    RequestFacts,
    Verdict,
    VmShape,
)
from engine.errors import VersionSchemeError, VigilError
from engine.fleet import Fleet, FleetSnapshot, Host, HostState
from engine.provision import decide_placement
from engine.pvdb import Pvdb, compare_versions

_MESSAGE = operator.attrgetter("message")

MAX_NAMED_HOSTS = 3
"""Hosts named one by one in a reject's reason; the rest are counted."""


def _newer(a: str, b: str) -> bool:
    try:
        return compare_versions("generic", a, b) > 0
    except VersionSchemeError:
        return a > b


class FleetGate:
    """The default :class:`~engine.api.gate.PlacementGate`."""

    def __init__(self, settings: Settings, *, results: ResultCache | None = None,
                 decision_log: DecisionLog | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        """``decision_log`` is the log decisions are written to (default: one opened on
        ``settings.decision_log`` by :meth:`open`, closed by :meth:`close`); pass the
        service's own so that one writer keeps the hash chain."""
        self.settings = settings
        self._given_log = decision_log
        self._log: DecisionLog | None = None
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        key = None
        key_problem = ""
        if results is None:
            if settings.attest_result_verification_key is not None:
                try:
                    key = load_verification_key(settings.attest_result_verification_key)
                except (VigilError, OSError) as exc:
                    key_problem = exc.summary if isinstance(exc, VigilError) else str(exc)
            results = ResultCache(settings.attest_results, key,
                                  ttl=settings.attest_result_ttl, clock=self.clock)
        self.results = results
        self._key_problem = key_problem
        self._lock = threading.Lock()
        self._pvdb: Pvdb | None = None
        self._decider: Decider | None = None
        self._quiet: Decider | None = None
        self._problems: list[str] = []
        self._fleet: tuple[tuple[int, int], FleetSnapshot] | None = None
        self._pvdb_stamp: tuple[int, int, int] | None = None
        self._pvdb_checked = 0.0
        self._reopening = False
        self._retired: list[Pvdb] = []

    # life cycle ---------------------------------------------------------------------

    def open(self) -> list[str]:
        """Open the PVDB (read-only) and load the policy; the problems, empty when
        both are there. Called again by :meth:`readiness` until it succeeds."""
        with self._lock:
            problems: list[str] = []
            if self._pvdb is None:
                if not self.settings.db.is_file():
                    problems.append(f"no PVDB at {self.settings.db} (build it with "
                                    "`vigil feeds ingest`)")
                else:
                    try:
                        self._pvdb_stamp = self._stamp()
                        self._pvdb = Pvdb.open(self.settings.db, read_only=True,
                                               settings=self.settings)
                    except VigilError as exc:
                        problems.append(f"the PVDB does not open read-only: {exc.summary}")
                    except Exception as exc:  # duckdb's own errors (locked, corrupt)
                        problems.append(f"the PVDB does not open read-only: {exc}")
            if self._decider is None:
                try:
                    quiet = Decider.from_settings(self.settings, log=False)
                    try:
                        log = self._given_log or DecisionLog(self.settings.decision_log)
                        self._decider = Decider(quiet.evaluator, log)
                    except BaseException:
                        quiet.close()
                        raise
                    self._quiet = quiet
                    self._log = log if self._given_log is None else None
                except VigilError as exc:
                    problems.append(f"the policy does not load: {exc.summary}")
                except Exception as exc:  # the decision log's file
                    problems.append(f"the policy or the decision log does not load: {exc}")
            if self._key_problem:
                problems.append(f"the attestation-result key does not load: "
                                f"{self._key_problem}")
            self._problems = problems
            return list(problems)

    def readiness(self) -> list[str]:
        if self._pvdb is None or self._decider is None or self._key_problem:
            return self.open()
        return []

    def close(self) -> None:
        with self._lock:
            if self._quiet is not None:
                self._quiet.close()  # the evaluator both deciders share
            if self._log is not None:
                self._log.close()
            self._log = None
            if self._pvdb is not None:
                self._pvdb.close()
            for gone in self._retired:
                gone.close()
            self._retired = []
            self._decider = self._quiet = None
            self._pvdb = None

    def __enter__(self) -> FleetGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the PVDB's generations -----------------------------------------------------------

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.settings.db.stat()
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns)

    def _follow_pvdb(self) -> None:
        """Open a newly switched-in PVDB generation in the background (at most one check
        every 0.2 s): decisions never wait for it."""
        now = time.monotonic()
        if self._reopening or now - self._pvdb_checked < 0.2:
            return
        self._pvdb_checked = now
        stamp = self._stamp()
        if stamp is None or stamp == self._pvdb_stamp:
            return
        self._reopening = True
        threading.Thread(target=self._reopen, args=(stamp,), name="vigil-pvdb-reopen",
                         daemon=True).start()

    def _reopen(self, stamp: tuple[int, int, int]) -> None:
        try:
            fresh = Pvdb.open(self.settings.db, read_only=True, settings=self.settings)
            fresh.affecting([])  # its match index, loaded before any decision needs it
            fresh.history()  # and the fix history the estimator reads
        except Exception:  # noqa: BLE001 - mid-switch or unreadable: the old one stands
            self._reopening = False
            return
        with self._lock:
            old, self._pvdb, self._pvdb_stamp = self._pvdb, fresh, stamp
            # the one before the last: no decision still reads it
            for gone in self._retired[:-1]:
                gone.close()
            self._retired = [*self._retired[-1:], *([old] if old is not None else [])]
        self._reopening = False

    # the fleet ----------------------------------------------------------------------

    def _snapshot(self) -> FleetSnapshot | str:
        """The inventory (re-read when its file changed), or why there is none."""
        path: Path = self.settings.fleet_db
        try:
            st = path.stat()
        except OSError:
            return f"there is no fleet inventory at {path} (import one with `vigil fleet import`)"
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self._fleet
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            with Fleet.open(path, read_only=True) as fleet:
                snapshot = fleet.snapshot()
        except VigilError as exc:
            if cached is not None:
                return cached[1]  # being rewritten: the last inventory read still stands
            return f"the fleet inventory does not open: {exc.summary}"
        self._fleet = (stamp, snapshot)
        return snapshot

    # deciding -----------------------------------------------------------------------

    def decide(self, tenant: str, vm_shape: VmShape, requested_image: Image | None, *,
               requested_patch_level: str | None = None, record: bool = True) -> GateAnswer:
        problems = self.readiness()
        if problems:
            return GateAnswer("reject", (f"Vigil cannot decide placements now: {problems[0]}",))
        self._follow_pvdb()
        snapshot = self._snapshot()
        if isinstance(snapshot, str):
            return GateAnswer("reject", (snapshot,))
        in_service = [h for h in snapshot.hosts if h.state == HostState.IN_SERVICE]
        if not in_service:
            return GateAnswer("reject", ("no host of the fleet inventory is in service",))
        used: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for vm in snapshot.vms:
            used[vm.host][0] += vm.vcpus
            used[vm.host][1] += vm.memory_mib

        def free(h: Host) -> tuple[int, int]:
            return h.vcpus - used[h.id][0], h.memory_mib - used[h.id][1]

        fits = [h for h in in_service
                if free(h)[0] >= vm_shape.vcpus and free(h)[1] >= vm_shape.memory_mib]
        if not fits:
            return GateAnswer("reject", (
                f"no host in service has {vm_shape.vcpus} vCPUs and {vm_shape.memory_mib} "
                "MiB free; ask for a smaller VM or add capacity",))
        attested: list[tuple[Host, AttestationResult]] = []
        missing: list[str] = []
        for h in fits:
            result, why = self.results.get(h.id)
            if result is None:
                missing.append(f"{h.id}: {why}")
            else:
                attested.append((h, result))
        candidates = [(h, r) for h, r in attested
                      if requested_image is None or h.image_version == requested_image.version]
        if not candidates:
            if requested_image is not None and attested:
                return GateAnswer("reject", (
                    f"no attested host with room runs the requested image version "
                    f"{requested_image.version}; drop the request or wait for a host on it",))
            named = "; ".join(missing[:MAX_NAMED_HOSTS])
            more = len(missing) - MAX_NAMED_HOSTS
            return GateAnswer("reject", (
                "no host with room has a fresh verified attestation result (" + named
                + (f"; and {more} more" if more > 0 else "") + "); attest the hosts "
                "with `vigil attest verify` and try again",))
        candidates.sort(key=lambda hr: (hr[1].status != "affirming", -free(hr[0])[0],
                                        hr[0].id))
        host, result = candidates[0]
        patched, patched_hosts = self._patched_configuration(host, attested, in_service)
        request = RequestFacts(tenant=tenant, vm=vm_shape,
                               requested_patch_level=requested_patch_level,
                               requested_image=requested_image)
        with self._lock:
            decider = self._decider if record else self._quiet
            pvdb = self._pvdb
        if decider is None or pvdb is None:
            return GateAnswer("reject", ("Vigil is shutting down; try again",))
        # decided outside the lock, so that decisions overlap (the decision log writes
        # them in groups); a PVDB generation replaced meanwhile stays open (retired)
        placement = decide_placement(decider, pvdb, request, result, patched=patched,
                                     now=self.clock())
        return self._answer(placement.verdict, host, patched, patched_hosts, in_service,
                            record=record)

    def _patched_configuration(self, host: Host,
                               attested: list[tuple[Host, AttestationResult]],
                               in_service: list[Host]
                               ) -> tuple[PatchedConfiguration, tuple[str, ...]]:
        best: AttestationResult | None = None
        for other, result in attested:
            if (result.status != "affirming" or result.image is None
                    or not _newer(other.image_version, host.image_version)):
                continue
            if best is None or (best.image is not None
                                and _newer(result.image.version, best.image.version)):
                best = result
        if best is None or best.image is None:
            return PatchedConfiguration(state="none"), ()
        image = Image(name=best.image.name, version=best.image.version)
        hosts = tuple(sorted(h.id for h in in_service if h.image_version == image.version))
        return (PatchedConfiguration(state="ready", image=image, attested=True,
                                     attestation_status="affirming"), hosts)

    def _answer(self, verdict: Verdict, host: Host, patched: PatchedConfiguration,
                patched_hosts: tuple[str, ...], in_service: list[Host], *,
                record: bool) -> GateAnswer:
        reasons = tuple(map(_MESSAGE, verdict.reasons))
        warnings = tuple(map(_MESSAGE, verdict.warnings))
        decision_id = verdict.decision_id if record else None
        if verdict.verdict == "patch":
            version = next((o.image.version for o in verdict.obligations
                            if o.type == "place_on_image" and o.image is not None),
                           patched.image.version if patched.image is not None else None)
            if version is None:
                return GateAnswer("reject", (*reasons, "the policy asks for a patched "
                                  "configuration but names no image"), warnings,
                                  decision_id=decision_id)
            hosts = patched_hosts if patched.image is not None and \
                patched.image.version == version else tuple(sorted(
                    h.id for h in in_service if h.image_version == version))
            return GateAnswer("patch", reasons, warnings, patched_image_version=version,
                              hosts=hosts, decision_id=decision_id)
        recheck = next((o.at for o in verdict.obligations if o.type == "recheck_at"), None)
        return GateAnswer(verdict.verdict, reasons, warnings, hosts=(host.id,),
                          recheck_at=recheck if verdict.verdict == "delay" else None,
                          decision_id=decision_id)
