"""The dashboard's routes over plain HTTP: the login, the session cookie, CSRF, roles and
tenant isolation (the browser's view: tests/api/test_ui_browser.py)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.api.conftest import Service
from tests.conftest import ROOT
from tests.tools import HANG_GUARD


def client(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.url, timeout=HANG_GUARD, follow_redirects=False)


@contextlib.contextmanager
def login(service: Service, who: str) -> Iterator[httpx.Client]:
    with client(service) as c:
        page = c.get("/ui/login")
        r = c.post("/ui/login", data={"token": service.world.tokens[who],
                                      "csrf": csrf_of(page.text)})
        assert r.status_code == 303, r.text
        yield c


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found[1]


def test_no_session_goes_to_the_login_page(service: Service) -> None:
    with client(service) as c:
        for path in ("/ui/", "/ui/fleet", "/ui/requests", "/ui/decisions", "/ui/timeline",
                     "/ui/requests/00000000-0000-0000-0000-000000000000"):
            r = c.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"] == "/ui/login"
        # a bearer token is not a session: the dashboard wants its cookie
        r = c.get("/ui/fleet", headers={"Authorization":
                                        f"Bearer {service.world.tokens['ops']}"})
        assert r.status_code == 303
        # a made-up session id is no session
        c.cookies.set("vigil_session", "made-up", path="/ui")
        assert c.get("/ui/fleet").status_code == 303


def test_the_session_cookie_holds_no_token(service: Service) -> None:
    with client(service) as c:
        page = c.get("/ui/login")
        token = service.world.tokens["ops"]
        r = c.post("/ui/login", data={"token": token, "csrf": csrf_of(page.text)})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "vigil_session=" in cookie
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert token not in cookie
        secret = token.rsplit("_", 1)[-1]
        assert secret not in cookie
        assert c.get("/ui/fleet").status_code == 200


def test_login_refuses_a_bad_token_and_a_missing_csrf(service: Service) -> None:
    with client(service) as c:
        page = c.get("/ui/login")
        r = c.post("/ui/login", data={"token": "vgl_nope_nope", "csrf": csrf_of(page.text)})
        assert r.status_code == 401
        assert "vigil_session" not in r.headers.get("set-cookie", "")
        c.cookies.clear()
        r = c.post("/ui/login", data={"token": service.world.tokens["ops"], "csrf": "x"})
        assert r.status_code == 403
        assert "vigil_session" not in r.headers.get("set-cookie", "")


def test_a_tenant_cannot_reach_the_admin_pages(service: Service) -> None:
    with login(service, "acme") as c:
        assert c.get("/ui/").headers["location"] == "/ui/requests"
        for path in ("/ui/fleet", "/ui/decisions", "/ui/timeline"):
            r = c.get(path)
            assert r.status_code == 403, path
            assert "hv-admit" not in r.text
        assert c.get("/ui/requests").status_code == 200
        assert c.get("/ui/requests", params={"status": "junk"}).status_code == 422
        r = c.get("/ui/requests", params={"status": "launched"})
        assert r.status_code == 200 and "no requests" in r.text


def test_a_tenant_sees_only_its_own_requests(service: Service) -> None:
    ours = service.submit("hv-admit", "acme")["request_id"]
    theirs = service.submit("hv-patch", "globex")["request_id"]
    with login(service, "acme") as c:
        listing = c.get("/ui/requests").text
        assert ours in listing and theirs not in listing
        assert c.get(f"/ui/requests/{ours}").status_code == 200
        for path in (f"/ui/requests/{theirs}", f"/ui/requests/{theirs}/report",
                     "/ui/requests/not-an-id"):
            assert c.get(path).status_code == 404, path
        page = c.get(f"/ui/requests/{ours}").text
        r = c.post(f"/ui/requests/{theirs}/approve", data={"csrf": csrf_of(page)})
        assert r.status_code == 404
    body = service.call("GET", f"/v1/provisioning-requests/{theirs}", "globex").json()
    assert body["status"] == "awaiting_approval"


def test_approve_needs_the_session_csrf_token(service: Service) -> None:
    rid = service.submit("hv-admit", "acme")["request_id"]
    with login(service, "acme") as c:
        r = c.post(f"/ui/requests/{rid}/approve", data={"csrf": "forged"})
        assert r.status_code == 403
        assert service.call("GET", f"/v1/provisioning-requests/{rid}").json()[
            "status"] == "awaiting_approval"
        page = c.get(f"/ui/requests/{rid}").text
        r = c.post(f"/ui/requests/{rid}/approve", data={"csrf": csrf_of(page)})
        assert r.status_code == 303
    service.wait(rid, lambda b: b["status"] == "launched")


def test_an_auditor_reads_but_does_not_approve(service: Service) -> None:
    rid = service.submit("hv-admit", "acme")["request_id"]
    with login(service, "audit") as c:
        page = c.get(f"/ui/requests/{rid}")
        assert page.status_code == 200 and 'id="approve"' not in page.text
        r = c.post(f"/ui/requests/{rid}/approve", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 403
        assert c.get("/ui/fleet").status_code == 200


def test_the_fleet_decisions_and_timeline_for_an_admin(service: Service) -> None:
    service.submit("hv-reject", "acme")
    with login(service, "ops") as c:
        empty = c.get("/ui/timeline").text.split('id="queue"')[1]
        assert "nothing to prepare" in empty
    service.submit("hv-delay", "acme")  # a delay queues the patched configuration
    with login(service, "ops") as c:
        fleet = c.get("/ui/fleet").text
        for host in ("hv-admit", "hv-delay", "hv-patch", "hv-patched", "hv-reject"):
            assert f'id="host-{host}"' in fleet
        vulns = fleet.split('id="vulns"')[1]
        assert vulns.index("CVE-2099-0002") < vulns.index("CVE-2099-0001")  # KEV first
        # what fixes each, for the hosts' own lines: the 6.6 hosts' fix is only predicted
        # (6.9.8 is another line's), the KEV one is fixed only by an upgrade
        table = vulns.split("</table>")[0]
        rows = {row.split("</td>")[0]: row for row in table.split("<tr><td>")[1:]}
        assert "patch estimated for its line" in rows["CVE-2099-0001"]
        assert "6.9.8" not in rows["CVE-2099-0001"]
        assert "upgrade to another line (6.2)" in rows["CVE-2099-0002"]
        awaiting = fleet.split('id="awaiting"')[1].split("</table>")[0]
        assert "hv-patch" in awaiting and "hv-admit" not in awaiting
        kev_only = c.get("/ui/fleet", params={"kev": "1"}).text
        assert 'id="host-hv-reject"' in kev_only and 'id="host-hv-admit"' not in kev_only
        timeline = c.get("/ui/timeline").text
        assert "<svg" in timeline and "CVE-2099-0001" in timeline
        assert "2024-07-04" in timeline
        queue = timeline.split('id="queue"')[1].split("</table>")[0]
        assert "hv-old" in queue and "CVE-2099-0001" in queue and "2024-07-04" in queue
        log = c.get("/ui/decisions", params={"verdict": "reject"}).text
        assert "The hash chain verifies" in log
        rows = log.split('id="decisions"')[1]
        assert "hv-reject" in rows and "acme" in rows
        none = c.get("/ui/decisions", params={"tenant": "nobody"}).text
        assert "no decisions match" in none
        assert c.get("/ui/decisions", params={"since": "junk"}).status_code == 422


def test_logout_ends_the_session(service: Service) -> None:
    with login(service, "ops") as c:
        page = c.get("/ui/fleet").text
        assert c.post("/ui/logout", data={"csrf": csrf_of(page)}).status_code == 303
        assert c.get("/ui/fleet").status_code == 303


def test_a_revoked_token_ends_the_session(service: Service) -> None:
    from engine.api import TokenStore

    with login(service, "acme") as c:
        assert c.get("/ui/requests").status_code == 200
        token_id = service.world.tokens["acme"].split("_")[1]
        with TokenStore(service.world.folder / "tokens.sqlite3") as tokens:
            tokens.revoke(token_id)
        assert c.get("/ui/requests").status_code == 303


def recorded_rollout(service: Service) -> str:
    """A finished rollout of a synthetic group, in the service's rollout database."""
    import datetime as dt

    from engine.fleet import synthetic
    from engine.rollout import (
        Failures,
        RolloutOptions,
        RolloutPolicy,
        StaticTargets,
        attestor_for,
        plan,
        start_rollout,
    )

    snap = synthetic(6, 4, seed=2)
    failures = Failures(migrations={}, attestation=[])
    p = plan(snap, "group-1", StaticTargets({"group-1": "v2"}), attestor_for(failures, "v2"),
             RolloutPolicy(max_unavailable="50%"),
             start_at=dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC))
    rid, summary = start_rollout(RolloutOptions(service.world.settings["rollout_db"]), p,
                                 snap, untrusted=[], failures=failures)
    assert summary.status == "completed"
    return rid


def test_rollouts_for_admins_and_auditors(service: Service) -> None:
    rid = recorded_rollout(service)
    with login(service, "ops") as c:
        page = c.get("/ui/rollouts").text
        row = page.split(f'id="rollout-{rid}"')[1].split("</tr>")[0]
        assert "completed" in row and "done: " in row
        # a finished rollout cannot be paused or resumed: the state machine says why
        for what in ("pause", "resume"):
            r = c.post(f"/ui/rollouts/{rid}/{what}", data={"csrf": csrf_of(page)})
            assert r.status_code == 409, (what, r.text)
        assert c.post(f"/ui/rollouts/{rid}/pause", data={"csrf": "x"}).status_code == 403
        assert c.post("/ui/rollouts/nope/pause",
                      data={"csrf": csrf_of(page)}).status_code in (404, 409)
    with login(service, "audit") as c:
        page = c.get("/ui/rollouts").text
        assert rid in page and 'class="pause"' not in page
        assert c.post(f"/ui/rollouts/{rid}/pause",
                      data={"csrf": csrf_of(page)}).status_code == 403
    with login(service, "acme") as c:
        assert c.get("/ui/rollouts").status_code == 403


INTERRUPTED = """
import datetime as dt, sys
from pathlib import Path
from engine.fleet import synthetic
from engine.rollout import (Failures, RolloutOptions, RolloutPolicy, StaticTargets,
                            attestor_for, plan, start_rollout)
failures = Failures(migrations={}, attestation=[])
snap = synthetic(20, 10, seed=5)
p = plan(snap, "group-1", StaticTargets({"group-1": "v2"}), attestor_for(failures, "v2"),
         RolloutPolicy(max_unavailable="20%"),
         start_at=dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC))
start_rollout(RolloutOptions(Path(sys.argv[1]), pace_s=0.004), p, snap, untrusted=[],
              failures=failures)
"""


def interrupted_rollout(db: Path) -> str:
    """A rollout whose executor was killed mid-way: recorded as running, held by nobody."""
    from engine.rollout.state import side_dir

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(db)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + HANG_GUARD
        traces: list[Path] = []
        while time.monotonic() < deadline:
            traces = list(side_dir(db).glob("*.trace.ndjson")) if side_dir(db).exists() else []
            if traces and traces[0].read_bytes().count(b"\n") > 100:
                break
            assert child.poll() is None, "the rollout finished before it could be killed"
            time.sleep(0.02)
        else:
            raise AssertionError("the rollout did not get going")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(HANG_GUARD)
    return traces[0].name.split(".")[0]


def test_an_admin_pauses_and_resumes_a_rollout(service: Service) -> None:
    rid = interrupted_rollout(Path(service.world.settings["rollout_db"]))
    with login(service, "ops") as c:
        page = c.get("/ui/rollouts").text
        row = page.split(f'id="rollout-{rid}"')[1].split("</tr>")[0]
        assert "running" in row and "interrupted" in row and 'class="pause"' in row
        r = c.post(f"/ui/rollouts/{rid}/pause", data={"csrf": csrf_of(page)})
        assert r.status_code == 303, r.text
        page = c.get("/ui/rollouts").text
        row = page.split(f'id="rollout-{rid}"')[1].split("</tr>")[0]
        assert "paused" in row and 'class="resume"' in row and 'class="pause"' not in row
        r = c.post(f"/ui/rollouts/{rid}/resume", data={"csrf": csrf_of(page)})
        assert r.status_code == 303, r.text
        deadline = time.monotonic() + HANG_GUARD
        while True:
            page = c.get("/ui/rollouts").text
            row = page.split(f'id="rollout-{rid}"')[1].split("</tr>")[0]
            if "completed" in row and "resuming" not in row:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.1)
        assert "done: 20" in row


def test_fleet_page_assesses_a_host_again_only_when_its_facts_change(
        service: Service) -> None:
    fleet = service.state.ui_fleet
    with login(service, "ops") as c:
        first = c.get("/ui/fleet").text
        hosts = len(re.findall(r'id="host-', first))
        assert hosts >= 5 and fleet.assessed == hosts
        again = c.get("/ui/fleet").text
        assert fleet.assessed == hosts  # nothing changed: nothing re-assessed
        assert re.findall(r'id="host-[^"]+"', again) == re.findall(r'id="host-[^"]+"', first)
        c.get("/ui/timeline")
        assert fleet.assessed == hosts
        service.clock.advance(days=1)  # a new day: days to a fix, predictions, ages
        c.get("/ui/fleet")
        assert fleet.assessed == 2 * hosts


def test_decision_search_and_audit_status_come_from_the_log(service: Service) -> None:
    import duckdb

    service.submit("hv-reject", "acme")
    service.submit("hv-admit", "acme")
    audit = service.state.ui_audit
    with login(service, "ops") as c:
        page = c.get("/ui/decisions", params={"host": "hv-reject"}).text
        assert "The hash chain verifies" in page
        rows = page.split('id="decisions"')[1]
        assert "hv-reject" in rows and "hv-admit" not in rows
        reason = c.get("/ui/decisions", params={"reason": "NO-SUCH-REASON-TEXT"}).text
        assert "no decisions match" in reason
        made = audit.verified
        c.get("/ui/decisions")
        assert audit.verified == made  # the log did not change: its verification is kept
        # an edit behind the service's back (same process, same database)
        # (the first record naming the tenant: a host's posture record names none)
        con = duckdb.connect(str(service.world.settings["decision_log"]))
        row = con.execute("SELECT min(seq) FROM decision_log WHERE input LIKE '%acme%'"
                          ).fetchone()
        assert row is not None and row[0] is not None
        seq = int(row[0])
        con.execute("UPDATE decision_log SET input = replace(input, 'acme', 'ACME') "
                    "WHERE seq = ?", [seq])
        con.close()
        broken = c.get("/ui/decisions").text.split('id="chain"')[1].split("</div>")[0]
        assert "does not verify" in broken and f"record {seq}" in broken
        assert "a field was edited" in broken
