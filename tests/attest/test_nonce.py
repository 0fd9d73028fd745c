"""Step 2: nonces are issued per host, expire, are used once (also across processes), and
the TPM counters never go back."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

import pytest

from engine.attest.nonce import ClockRegressionError, NonceError, NonceStore
from engine.attest.quote import ClockInfo
from tests.attest.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> NonceStore:
    return NonceStore(tmp_path / "attest.sqlite3", ttl=dt.timedelta(seconds=60), now=clock)


def test_a_nonce_is_random_bound_to_its_host_and_expires(store: NonceStore) -> None:
    first, second = store.issue("hv-1"), store.issue("hv-1")
    assert len(first.value) == 32 and first.value != second.value
    assert first.host_id == "hv-1"
    assert first.expires_at - first.issued_at == dt.timedelta(seconds=60)


def test_a_nonce_is_accepted_once(store: NonceStore) -> None:
    nonce = store.issue("hv-1")
    assert store.consume("hv-1", nonce.value).value == nonce.value
    with pytest.raises(NonceError, match=r"already used .*replay") as caught:
        store.consume("hv-1", nonce.value)
    assert caught.value.step == "2 nonce"


def test_an_expired_nonce_is_refused(store: NonceStore, clock: FakeClock) -> None:
    nonce = store.issue("hv-1")
    clock.advance(60)
    with pytest.raises(NonceError, match="expired"):
        store.consume("hv-1", nonce.value)


def test_a_nonce_of_another_host_or_unknown_is_refused(store: NonceStore) -> None:
    nonce = store.issue("hv-1")
    with pytest.raises(NonceError, match="another host"):
        store.consume("hv-2", nonce.value)
    with pytest.raises(NonceError, match="not issued by this verifier"):
        store.consume("hv-1", b"\x00" * 32)
    with pytest.raises(NonceError, match="not issued"):
        store.consume("hv-1", b"")
    # A refused attempt does not use the nonce up for its real host.
    store.consume("hv-1", nonce.value)


def test_nonces_survive_a_restart_of_the_verifier(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "attest.sqlite3"
    with NonceStore(path, now=clock) as first:
        nonce = first.issue("hv-1")
    with NonceStore(path, now=clock) as second:
        second.consume("hv-1", nonce.value)
    with NonceStore(path, now=clock) as third, pytest.raises(NonceError, match="already"):
        third.consume("hv-1", nonce.value)


def test_long_expired_nonces_are_purged(store: NonceStore, clock: FakeClock) -> None:
    old = store.issue("hv-1")
    clock.advance(2 * 86_400)
    store.issue("hv-1")
    with pytest.raises(NonceError, match="not issued"):
        store.consume("hv-1", old.value)


def _consume(path: str, value: bytes, barrier: multiprocessing.synchronize.Barrier,
             results: multiprocessing.queues.Queue[str]) -> None:
    store = NonceStore(Path(path))
    barrier.wait()
    try:
        store.consume("hv-1", value)
        results.put("ok")
    except NonceError:
        results.put("refused")


def test_of_processes_racing_with_one_nonce_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "attest.sqlite3"
    nonce = NonceStore(path).issue("hv-1")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results: multiprocessing.queues.Queue[str] = context.Queue()
    workers = [context.Process(target=_consume, args=(str(path), nonce.value, barrier, results))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    outcomes = sorted(results.get(timeout=10) for _ in workers)
    assert outcomes == ["ok"] + ["refused"] * 3


@pytest.mark.parametrize(("last", "new", "message"), [
    (ClockInfo(5000, 3, 0, True), ClockInfo(6000, 2, 0, True), "resetCount went back"),
    (ClockInfo(5000, 3, 2, True), ClockInfo(6000, 3, 1, True), "restartCount went back"),
    (ClockInfo(5000, 3, 2, True), ClockInfo(4000, 3, 2, True), "same reset and restart"),
    (ClockInfo(5000, 3, 2, True), ClockInfo(4000, 4, 0, True), "while marked safe"),
])
def test_counter_regressions_are_refused(store: NonceStore, last: ClockInfo, new: ClockInfo,
                                         message: str) -> None:
    store.check_counters("hv-1", last)
    with pytest.raises(ClockRegressionError, match=message) as caught:
        store.check_counters("hv-1", new)
    assert caught.value.step == "2 clock counters"
    assert store.last_counters("hv-1") == last


@pytest.mark.parametrize("new", [
    ClockInfo(6000, 3, 2, True),   # time went on
    ClockInfo(5000, 3, 2, True),   # two quotes in the same millisecond
    ClockInfo(5200, 3, 3, True),   # a resume from suspend: restartCount up
    ClockInfo(100, 4, 0, False),   # a reboot after a disorderly shutdown: clock not safe
])
def test_counters_that_go_forward_are_accepted(store: NonceStore, new: ClockInfo) -> None:
    store.check_counters("hv-1", ClockInfo(5000, 3, 2, True))
    store.check_counters("hv-1", new)
    assert store.last_counters("hv-1") == new


def test_counters_are_per_host(store: NonceStore) -> None:
    store.check_counters("hv-1", ClockInfo(5000, 3, 2, True))
    store.check_counters("hv-2", ClockInfo(10, 0, 0, True))
    assert store.last_counters("hv-3") is None


def test_a_nonce_needs_a_host(store: NonceStore) -> None:
    with pytest.raises(NonceError):
        store.issue("")
