"""Reading a host's result back from the verifier's folder: only a verified result of a
regular file counts, and nothing in the folder can hang or flood the reader."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from engine.attest import (
    AttestationResult,
    TrustVector,
    VerifierId,
    load_signing_key,
    load_verification_key,
    read_result_file,
    sign_result,
    stat_result_file,
)
from engine.attest.lab import ec_key_pem
from engine.attest.result_files import MAX_RESULT_BYTES, NO_KEY
from engine.model import ImageRef

PEM = ec_key_pem()
KEY, PUBLIC = load_signing_key(PEM), load_verification_key(PEM)


def _token(host: str = "h1") -> str:
    result = AttestationResult.build(
        host_id=host, verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=[], nonce=b"\x01" * 32, image=ImageRef(name="hv", version="1"),
        components=[], ak_name=None, inventory=None)
    return sign_result(result, KEY)


def test_a_verified_result_is_read_with_its_token_and_stamp(tmp_path: Path) -> None:
    token = _token()
    (tmp_path / "h1.jwt").write_text(token + "\n")
    read = read_result_file(tmp_path, "h1", PUBLIC)
    assert read.result is not None and read.result.host_id == "h1"
    assert read.token == token and read.problem == ""
    st = (tmp_path / "h1.jwt").stat()
    assert read.stamp == (st.st_size, st.st_mtime_ns)
    assert stat_result_file(tmp_path, "h1") == (read.stamp, "")


def test_no_file_is_no_result_and_no_problem(tmp_path: Path) -> None:
    read = read_result_file(tmp_path, "h1", PUBLIC)
    assert (read.result, read.problem) == (None, "")


@pytest.mark.parametrize("host", ["../h1", "", ".hidden", "a/b"])
def test_an_id_that_names_no_file_is_not_looked_up(tmp_path: Path, host: str) -> None:
    (tmp_path / "h1.jwt").write_text(_token())
    assert read_result_file(tmp_path / "sub", host, PUBLIC).result is None


def test_another_keys_signature_does_not_verify(tmp_path: Path) -> None:
    (tmp_path / "h1.jwt").write_text(sign_result(
        _good_result(tmp_path), load_signing_key(ec_key_pem())))
    read = read_result_file(tmp_path, "h1", PUBLIC)
    assert read.result is None and "does not verify" in read.problem


def _good_result(tmp_path: Path) -> AttestationResult:
    (tmp_path / "h1.jwt").write_text(_token())
    read = read_result_file(tmp_path, "h1", PUBLIC)
    assert read.result is not None
    return read.result


def test_without_a_key_nothing_is_trusted(tmp_path: Path) -> None:
    (tmp_path / "h1.jwt").write_text(_token())
    read = read_result_file(tmp_path, "h1", None)
    assert read.result is None and read.problem == NO_KEY


def test_a_symlink_is_refused_even_to_a_good_result(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.jwt").write_text(_token())
    (tmp_path / "h1.jwt").symlink_to(tmp_path / "elsewhere.jwt")
    read = read_result_file(tmp_path, "h1", PUBLIC)
    assert read.result is None and "not a regular file" in read.problem
    assert stat_result_file(tmp_path, "h1")[0] is None


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "h1.jwt")
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(
        read_result_file(tmp_path, "h1", PUBLIC).problem), daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert out and "not a regular file" in out[0]


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / "h1.jwt", "wb") as fh:
        fh.truncate(MAX_RESULT_BYTES + 1)  # sparse: no memory or disk spent
    read = read_result_file(tmp_path, "h1", PUBLIC)
    assert read.result is None and "byte limit" in read.problem
