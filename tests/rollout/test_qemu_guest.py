"""The QEMU backend's tiny guest image: a valid multiboot header, the VM's name at its
address, refused sizes (the guest running is shown by tests/rollout/test_qemu.py)."""

from __future__ import annotations

import struct

import pytest

from engine.rollout import qemu_guest


def test_the_image_carries_a_valid_multiboot_header_and_the_vm_name() -> None:
    img = qemu_guest.image("vm-7", dirty_mib=8)
    magic, flags, checksum, header, load, load_end, bss_end, entry = struct.unpack_from(
        "<8I", img)
    assert magic == 0x1BADB002 and flags & 0x10000  # the load addresses are in the header
    assert (magic + flags + checksum) % 2**32 == 0
    assert header == load == qemu_guest.LOAD_ADDR
    assert load_end == bss_end == load + len(img)
    assert load < entry < qemu_guest.NAME_ADDR
    at = qemu_guest.NAME_ADDR - load
    assert img[at:at + 5] == b"vm-7\0"
    # the counter starts at zero; the working set's page count is in the code
    at = qemu_guest.COUNTER_ADDR - load
    assert img[at:at + 4] == b"\0\0\0\0"
    assert b"\xba" + struct.pack("<I", 8 * 256) in img  # mov edx, pages
    assert img != qemu_guest.image("vm-8", dirty_mib=8)


@pytest.mark.parametrize(("kw", "message"), [
    ({"dirty_mib": 63}, "does not fit"),
    ({"dirty_mib": 0}, "does not fit"),
    ({"hz": 5000}, "tick rate"),
])
def test_sizes_that_do_not_fit_are_refused(kw: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qemu_guest.image("vm", **kw)


def test_a_name_longer_than_its_slot_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 63"):
        qemu_guest.image("v" * 64)
