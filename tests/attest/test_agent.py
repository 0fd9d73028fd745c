"""The host agent's inventory, read from a fake sysfs/procfs."""

from __future__ import annotations

from pathlib import Path

from engine.attest.agent import collect_inventory


def fake_host(root: Path, *, xen: bool = False) -> tuple[Path, Path]:
    sys_root, proc_root = root / "sys", root / "proc"
    dmi = sys_root / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    for name, value in {"bios_vendor": "Dell Inc.", "bios_version": "2.19.0",
                        "bios_date": "03/07/2024", "sys_vendor": "Dell Inc.",
                        "product_name": "PowerEdge R650"}.items():
        (dmi / name).write_text(value + "\n")
    (proc_root / "sys" / "kernel").mkdir(parents=True)
    (proc_root / "sys" / "kernel" / "osrelease").write_text("6.1.0-18-amd64\n")
    cpu = "processor\t: {n}\nvendor_id\t: GenuineIntel\nmicrocode\t: {rev}\n\n"
    (proc_root / "cpuinfo").write_text(cpu.format(n=0, rev="0xd0003d1")
                                       + cpu.format(n=1, rev="0xd0003a5"))
    if xen:
        (sys_root / "hypervisor" / "version").mkdir(parents=True)
        (sys_root / "hypervisor" / "type").write_text("xen\n")
        for part, value in {"major": "4", "minor": "17", "extra": ".3"}.items():
            (sys_root / "hypervisor" / "version" / part).write_text(value + "\n")
    else:
        (sys_root / "module" / "kvm").mkdir(parents=True)
    return sys_root, proc_root


def test_inventory_from_sysfs_and_procfs(tmp_path: Path) -> None:
    sys_root, proc_root = fake_host(tmp_path)
    inventory = collect_inventory(sys_root=sys_root, proc_root=proc_root)
    assert inventory.bios_version == "2.19.0" and inventory.bios_vendor == "Dell Inc."
    assert inventory.product_name == "PowerEdge R650"
    assert inventory.kernel_release == "6.1.0-18-amd64"
    assert inventory.microcode == "0xd0003a5"  # the CPUs disagree: the lowest revision
    assert (inventory.hypervisor, inventory.hypervisor_version) == ("kvm", "6.1.0-18-amd64")


def test_inventory_of_a_xen_host_and_overrides(tmp_path: Path) -> None:
    sys_root, proc_root = fake_host(tmp_path, xen=True)
    inventory = collect_inventory(sys_root=sys_root, proc_root=proc_root, overrides={
        "bios_version": "2.20.1", "bmc_firmware": "iDRAC 7.00.00"})
    assert (inventory.hypervisor, inventory.hypervisor_version) == ("xen", "4.17.3")
    assert inventory.bios_version == "2.20.1"
    assert inventory.extra == {"bmc_firmware": "iDRAC 7.00.00"}


def test_missing_files_give_an_empty_inventory(tmp_path: Path) -> None:
    inventory = collect_inventory(sys_root=tmp_path / "none", proc_root=tmp_path / "none")
    assert inventory.model_dump(exclude={"extra"}) == dict.fromkeys(
        inventory.model_dump(exclude={"extra"}))



def test_a_simulated_host_reports_what_its_image_runs() -> None:
    from engine.attest.lab import COMPONENTS, INVENTORY, inventory_of
    from engine.model import Component

    assert inventory_of(COMPONENTS) == INVENTORY
    xen = inventory_of([
        Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.12.40"),
        Component(kind="hypervisor", vendor="xen", product="xen", version="4.17.3"),
        Component(kind="microcode", vendor="intel", product="microcode", version="0x2b000620"),
    ])
    assert (xen.kernel_release, xen.hypervisor, xen.hypervisor_version, xen.microcode) == (
        "6.12.40", "xen", "4.17.3", "0x2b000620")
    assert xen.bios_vendor is None  # no firmware component: nothing is made up
