"""The tiny guest the QEMU backend runs: a multiboot kernel assembled here, byte by byte.

Nothing is downloaded: :func:`image` returns the bytes of a multiboot (version 1) kernel
in the "a.out kludge" form QEMU's ``-kernel`` loads without ELF headers. QEMU's multiboot
loader enters it in 32-bit protected mode with paging off. The program then

1. loads its own flat GDT (code 0x08, data 0x10) and reloads every segment register;
2. fills an IDT whose 256 gates all point at one handler that acknowledges the PIC
   (``EOI``) and returns;
3. remaps the PIC (IRQ 0–7 to vectors 0x20–0x27) with only IRQ 0 unmasked, and sets the
   PIT's channel 0 to ``hz`` ticks per second;
4. loops forever: ``sti; hlt`` until the next tick, then writes the round counter into
   the first word of every 4 KiB page of its *working set* (``dirty_mib`` MiB from
   :data:`DIRTY_BASE`), so every page of it is dirty again after each tick, and stores
   the counter at :data:`COUNTER_ADDR`.

Between ticks the virtual CPU halts, so a guest costs little host CPU under TCG, yet
pre-copy has real work: every round must resend the whole working set, and a migration
whose bandwidth × downtime limit is below the working set never converges. The VM's
name is written into the image at :data:`NAME_ADDR` (64 bytes, NUL-padded), so a reader
of guest memory can tell which guest it is looking at; the counter shows it running.

Physical memory layout: the image at 1 MiB (header, code, GDT, descriptors, name,
counter), the IDT at 1.5 MiB, the stack below 1.5625 MiB, the working set from 2 MiB.
"""

from __future__ import annotations

import struct

LOAD_ADDR = 0x0010_0000
"""Where the image is loaded (1 MiB) and its multiboot header lies."""
_GDT = LOAD_ADDR + 0x200
_GDTR = LOAD_ADDR + 0x218
_IDTR = LOAD_ADDR + 0x220
NAME_ADDR = LOAD_ADDR + 0x240
"""64 bytes: the VM's name, NUL-padded."""
COUNTER_ADDR = LOAD_ADDR + 0x280
"""The guest's round counter (little-endian u32), incremented once per tick."""
_SIZE = 0x300
_IDT = 0x0018_0000
_STACK_TOP = 0x0019_0000
DIRTY_BASE = 0x0020_0000
"""The working set starts at 2 MiB."""
_PIT_HZ = 1_193_182
_MB_MAGIC = 0x1BAD_B002
_MB_FLAGS = 0x0001_0000  # bit 16: the load addresses are in the header (a.out kludge)


def _u32(n: int) -> bytes:
    return struct.pack("<I", n & 0xFFFF_FFFF)


def _code(entry: int, pages: int, divisor: int) -> bytes:
    """The program's machine code, one ``emit`` per instruction. Two passes: the first
    finds where the interrupt handler lands, the second writes its address into the IDT
    entries (the code's length does not depend on it)."""

    def assemble(handler: int) -> tuple[bytes, int]:
        out = bytearray()
        at: dict[str, int] = {}

        def here() -> int:
            return entry + len(out)

        def emit(*chunks: bytes | int) -> None:
            for c in chunks:
                out.extend(bytes([c]) if isinstance(c, int) else c)

        emit(0xFA)                                    # cli
        emit(0xFC)                                    # cld
        emit(0x0F, 0x01, 0x15, _u32(_GDTR))           # lgdt [GDTR]
        reload = here() + 7
        emit(0xEA, _u32(reload), b"\x08\x00")         # jmp far 0x08:reload
        emit(0xB8, _u32(0x10))                        # mov eax, 0x10
        for modrm in (0xD8, 0xC0, 0xD0, 0xE0, 0xE8):  # mov ds/es/ss/fs/gs, ax
            emit(0x8E, modrm)
        emit(0xBC, _u32(_STACK_TOP))                  # mov esp, STACK_TOP
        emit(0xBF, _u32(_IDT))                        # mov edi, IDT
        emit(0xB9, _u32(256))                         # mov ecx, 256
        at["fill"] = here()
        emit(0xB8, _u32((0x08 << 16) | (handler & 0xFFFF)))   # mov eax, selector:low
        emit(0xAB)                                              # stosd
        emit(0xB8, _u32((handler & 0xFFFF_0000) | 0x8E00))     # mov eax, high|present int gate
        emit(0xAB)                                              # stosd
        emit(0xE2, (at["fill"] - (here() + 2)) & 0xFF)          # loop fill
        emit(0x0F, 0x01, 0x1D, _u32(_IDTR))           # lidt [IDTR]
        for value, ports in ((0x11, (0x20, 0xA0)),    # ICW1: init, ICW4 follows
                             (0x20, (0x21,)), (0x28, (0xA1,)),  # ICW2: vector bases
                             (0x04, (0x21,)), (0x02, (0xA1,)),  # ICW3: cascade on IRQ 2
                             (0x01, (0x21, 0xA1)),    # ICW4: 8086 mode
                             (0xFE, (0x21,)), (0xFF, (0xA1,)),  # masks: IRQ 0 only
                             (0x34, (0x43,)),         # PIT channel 0, lo/hi, mode 2
                             (divisor & 0xFF, (0x40,)), (divisor >> 8, (0x40,))):
            emit(0xB0, value)                         # mov al, value
            for port in ports:
                emit(0xE6, port)                      # out port, al
        emit(0x8B, 0x0D, _u32(COUNTER_ADDR))          # mov ecx, [COUNTER]
        at["main"] = here()
        emit(0xFB)                                    # sti
        emit(0xF4)                                    # hlt (until the next interrupt)
        emit(0xFA)                                    # cli
        emit(0xBF, _u32(DIRTY_BASE))                  # mov edi, DIRTY_BASE
        emit(0xBA, _u32(pages))                       # mov edx, pages
        at["dirty"] = here()
        emit(0x89, 0x0F)                              # mov [edi], ecx
        emit(0x81, 0xC7, _u32(4096))                  # add edi, 4096
        emit(0x4A)                                    # dec edx
        emit(0x75, (at["dirty"] - (here() + 2)) & 0xFF)  # jnz dirty
        emit(0x41)                                    # inc ecx
        emit(0x89, 0x0D, _u32(COUNTER_ADDR))          # mov [COUNTER], ecx
        emit(0xEB, (at["main"] - (here() + 2)) & 0xFF)   # jmp main
        handler_here = here()
        emit(0x50)                                    # push eax
        emit(0xB0, 0x20)                              # mov al, 0x20 (EOI)
        emit(0xE6, 0x20)                              # out 0x20, al
        emit(0x58)                                    # pop eax
        emit(0xCF)                                    # iretd
        return bytes(out), handler_here

    _, handler_at = assemble(0)
    code, check = assemble(handler_at)
    assert check == handler_at
    return code


def image(name: str, *, memory_mib: int = 64, dirty_mib: int = 4, hz: int = 100) -> bytes:
    """The kernel for the VM ``name``: ``dirty_mib`` MiB of working set, dirtied ``hz``
    times a second, in a guest of ``memory_mib`` MiB."""
    if not 1 <= dirty_mib <= memory_mib - DIRTY_BASE // 2**20 - 1:
        raise ValueError(f"a working set of {dirty_mib} MiB does not fit above 2 MiB in a"
                         f" {memory_mib} MiB guest")
    divisor = _PIT_HZ // hz
    if not 19 <= hz <= 1000 or not 0 < divisor < 0x10000:
        raise ValueError(f"tick rate {hz} Hz: use 19 to 1000")
    raw = name.encode()
    if len(raw) > 63:
        raise ValueError(f"VM name {name!r} is longer than 63 bytes")
    entry = LOAD_ADDR + 0x20
    header = struct.pack("<8I", _MB_MAGIC, _MB_FLAGS, (-(_MB_MAGIC + _MB_FLAGS)) & 0xFFFF_FFFF,
                         LOAD_ADDR, LOAD_ADDR, LOAD_ADDR + _SIZE, LOAD_ADDR + _SIZE, entry)
    code = _code(entry, dirty_mib * 256, divisor)
    if 0x20 + len(code) > _GDT - LOAD_ADDR:
        raise AssertionError("the guest's code overruns its data")
    img = bytearray(_SIZE)
    img[0:32] = header
    img[0x20:0x20 + len(code)] = code
    gdt = struct.pack("<3Q", 0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF)
    img[_GDT - LOAD_ADDR:_GDT - LOAD_ADDR + 24] = gdt
    img[_GDTR - LOAD_ADDR:_GDTR - LOAD_ADDR + 6] = struct.pack("<HI", 23, _GDT)
    img[_IDTR - LOAD_ADDR:_IDTR - LOAD_ADDR + 6] = struct.pack("<HI", 256 * 8 - 1, _IDT)
    img[NAME_ADDR - LOAD_ADDR:NAME_ADDR - LOAD_ADDR + len(raw)] = raw
    return bytes(img)
