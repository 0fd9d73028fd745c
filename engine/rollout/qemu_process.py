"""One QEMU process and its QMP connection (the QEMU project's ``qemu.qmp`` library).

A :class:`Guest` is started from a command line, reached over a QMP UNIX socket it
listens on, asked commands with a timeout each, and stopped: SIGTERM (QEMU exits
cleanly), then SIGKILL if it has not exited in time. Every wait is bounded; a process
that exits early is reported with the end of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError

from engine.rollout.errors import RolloutError

_XP = re.compile(r"^[0-9a-f]+:((?:\s+0x[0-9a-f]+)+)\s*$", re.MULTILINE)
_SOCKET_MAX = 107  # sun_path holds 108 bytes with the NUL


class QemuError(RolloutError):
    """A QEMU process could not be started, answered a QMP command with an error, did not
    answer in time, or exited."""


class Guest:
    """A running QEMU process. Create with :meth:`spawn`."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], qmp: QMPClient, log: Path,
                 timeout_s: float) -> None:
        self.name, self.proc, self.qmp, self.log = name, proc, qmp, log
        self.timeout_s = timeout_s

    @classmethod
    async def spawn(cls, name: str, argv: list[str], sock: Path, log: Path, *,
                    timeout_s: float, qmp_timeout_s: float) -> Guest:
        """Start ``argv`` with its QMP monitor on a UNIX socket this process binds and
        listens on at ``sock`` before QEMU starts (handed over as a file descriptor, so a
        connection never races QEMU's own bind), and connect to it within ``timeout_s``."""
        if len(str(sock)) > _SOCKET_MAX:
            raise QemuError(f"QMP socket path {sock} is longer than {_SOCKET_MAX} bytes;"
                            " use a shorter run directory")
        sock.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener, \
                log.open("wb") as out:
            listener.bind(str(sock))
            listener.listen(1)
            fd = listener.fileno()
            proc = subprocess.Popen([*argv, "-chardev", f"socket,id=qmp,fd={fd},server=on,"
                                     "wait=off", "-mon", "chardev=qmp,mode=control"],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    pass_fds=(fd,))
        qmp = QMPClient(name)
        try:
            await asyncio.wait_for(qmp.connect(str(sock)), timeout_s)
        except (ConnectError, OSError, EOFError, TimeoutError) as exc:
            _kill(proc)
            why = (f"exited with status {proc.returncode}" if proc.returncode not in (None, -9)
                   else f"did not answer QMP within {timeout_s:g} s ({exc!r})")
            raise QemuError(f"QEMU for {name} {why}: {_tail(log)}") from None
        return cls(name, proc, qmp, log, qmp_timeout_s)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    async def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.qmp.execute(command, args), self.timeout_s)
        except TimeoutError:
            raise QemuError(f"{self.name}: QMP {command} got no answer within"
                            f" {self.timeout_s:g} s") from None
        except ExecuteError as exc:
            raise QemuError(f"{self.name}: QMP {command} failed: {exc}") from None
        except (QMPError, OSError, EOFError) as exc:
            why = "QEMU exited" if not self.alive else f"connection lost ({exc!r})"
            raise QemuError(f"{self.name}: QMP {command}: {why}") from None

    async def status(self) -> str:
        """The run state ``query-status`` reports (running, paused, postmigrate, …)."""
        return str((await self.execute("query-status"))["status"])

    async def read_u32(self, addr: int, count: int = 1) -> list[int]:
        """``count`` little-endian words of guest-physical memory from ``addr`` (HMP
        ``xp``)."""
        text = await self.execute("human-monitor-command",
                                  {"command-line": f"xp /{count}wx {addr:#x}"})
        words = [int(w, 16) for m in _XP.finditer(str(text)) for w in m.group(1).split()]
        if len(words) != count:
            raise QemuError(f"{self.name}: unexpected xp output {text!r}")
        return words

    async def stop(self, grace_s: float = 5.0) -> None:
        """Disconnect QMP and end the process: SIGTERM, then SIGKILL after ``grace_s``."""
        with contextlib.suppress(QMPError, OSError, EOFError, TimeoutError):
            await asyncio.wait_for(self.qmp.disconnect(), grace_s)
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        _kill(self.proc)

    def kill(self) -> None:
        """SIGKILL, now (a host that dies)."""
        _kill(self.proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _tail(log: Path, n: int = 400) -> str:
    try:
        text = log.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return text[-n:].replace("\n", " | ") or "(empty log)"
