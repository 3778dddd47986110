"""The VM test harness's own logic, without booting anything: the summary line's
shape, junit parsing, the image cache key, QEMU's command line, the KVM probe."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.ledger import alive, identity
from testbed.vm import distros, guest, image, qemu, report
from testbed.vm.image import Image

SUMMARY = re.compile(
    r"^vm-test: \d+ passed, \d+ failed, \d+ skipped; [^;]+; kernel \S+; python \S+; "
    r"netem (yes|no); ovs-module (yes|no); accel (kvm|tcg)$"
)

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="20"
 time="1.0"></testsuite></testsuites>"""


def test_summary_line_has_the_promised_shape(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    counts = report.junit_counts(tmp_path / "junit.xml")
    facts = {"kernel": "6.12.57-cloud-amd64", "netem": True, "ovs_module": False}
    facts |= {"distro": "Debian GNU/Linux 13 (trixie)", "python": "3.13.5"}
    line = report.summary_line(counts, facts, "tcg")
    assert SUMMARY.match(line), line
    assert line.startswith("vm-test: 14 passed, 3 failed, 3 skipped;")  # errors are failures
    assert "; Debian GNU/Linux 13 (trixie); kernel 6.12.57-cloud-amd64; python 3.13.5;" in line
    assert "netem yes; ovs-module no; accel tcg" in line


def test_missing_junit_and_facts_still_give_the_shape(tmp_path):
    assert report.junit_counts(tmp_path / "absent.xml") is None
    (tmp_path / "bad.xml").write_text("<testsuites")
    assert report.junit_counts(tmp_path / "bad.xml") is None
    assert SUMMARY.match(report.summary_line(None, {}, "kvm"))


def test_cache_key_follows_every_input():
    base = {"suite": "bookworm", "packages": ["a", "b"], "wheels": ["torch==2.13.0+cpu"]}
    key = image.cache_key(base)
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert image.cache_key(dict(reversed(list(base.items())))) == key  # order-free
    for change in ({"packages": ["a"]}, {"wheels": ["torch==2.14.1"]}, {"suite": "trixie"}):
        assert image.cache_key({**base, **change}) != key


def test_os_release_names_the_release(tmp_path):
    (tmp_path / "os-release").write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian 13"\n')
    assert report.os_release(tmp_path / "os-release") == "Debian 13"
    assert report.os_release(tmp_path / "absent") == "unknown"


def test_an_unknown_distro_is_one_line_naming_the_choices():
    with pytest.raises(distros.UnknownDistro, match=r"^DISTRO = 'sid': expected one of "):
        distros.get("sid")
    assert distros.get("trixie").name == "Debian 13 (trixie)"


def same_python() -> distros.Distro:
    """A release whose python3 is this interpreter's version (the pinned path)."""
    return distros.Distro("bookworm", "12", "{}.{}".format(*sys.version_info[:2]))


def other_python() -> distros.Distro:
    """A release whose python3 is not this interpreter's, with torch from the distro."""
    version = "3.13" if sys.version_info[:2] != (3, 13) else "3.11"
    return distros.Distro("trixie", "13", version, ("python3-torch",))


def test_recipe_takes_bootstrap_packages_and_the_venv_as_they_are():
    assert "qemu-system-x86" not in image.bootstrap_packages()  # `--vm` adds it on hosts
    recipe = image.recipe(sys.executable, same_python())
    assert recipe["pinned"] and recipe["suite"] == "bookworm"
    assert {"mininet", "openvswitch-switch", "nftables", "linux-image-cloud-amd64"} <= set(
        recipe["packages"]
    )
    assert any(w.startswith("torch==") for w in recipe["wheels"])
    assert not any(w.startswith("mlnet-testbed") for w in recipe["wheels"])  # the checkout
    assert set(recipe["files"]) >= {"scripts/bootstrap.sh", "testbed/vm/init.sh"}


def test_a_guest_of_another_python_takes_the_projects_requirements_unpinned():
    distro = other_python()
    recipe = image.recipe(sys.executable, distro)
    assert not recipe["pinned"] and recipe["python"] == distro.python
    assert "python3-torch" in recipe["packages"]
    names = {distros.requirement_name(r) for r in recipe["wheels"]}
    assert {"numpy", "os-ken", "pytest", "mkdocs"} <= names  # run, test and docs extras
    assert "torch" not in names  # the release's own package provides it
    with_wheel = image.recipe(sys.executable, distros.Distro("x", "1", distro.python))
    assert any(w.startswith("torch==") for w in with_wheel["wheels"])  # bootstrap's version


def test_each_release_keeps_its_own_image(monkeypatch, tmp_path):
    monkeypatch.setattr(image, "CACHE", tmp_path)
    for key, suite in (("old12", "bookworm"), ("new12", "bookworm"), ("only13", "trixie")):
        (tmp_path / key).mkdir()
        (tmp_path / key / "manifest.json").write_text(f'{{"recipe": {{"suite": "{suite}"}}}}')
    (tmp_path / "broken").mkdir()  # no manifest: nobody can use it
    (tmp_path / ".build-x-1").mkdir()  # another build's scratch: not ours to remove
    assert image.stale_images("new12", "bookworm") == [tmp_path / "broken", tmp_path / "old12"]
    assert image.stale_images("only13", "trixie") == [tmp_path / "broken"]


def test_bootstrap_rejects_an_unknown_option():
    proc = subprocess.run(
        ["bash", str(image.REPO / "scripts/bootstrap.sh"), "--nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "unknown option '--nope'" in proc.stderr


def test_boot_argv_keeps_the_image_pristine_and_the_guest_offline(tmp_path):
    img = Image(tmp_path / "key")
    argv = qemu.boot_argv(img, tmp_path / "work.img", "tcg", 4096, 2)
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives == [
        f"file={img.rootfs},if=virtio,format=raw,snapshot=on",
        f"file={tmp_path / 'work.img'},if=virtio,format=raw",
    ]
    assert argv[argv.index("-nic") + 1] == "none"
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert argv[argv.index("-cpu") + 1] == "max,-avx2"  # TCG's AVX2 crashed numpy's argsort
    assert "init=/sbin/mlnet-vm-init" in argv[argv.index("-append") + 1]
    kvm = qemu.machine_args("kvm", 512, 1)
    assert kvm[:4] == ["-accel", "kvm", "-cpu", "host"]


def test_kvm_probe_says_why_it_falls_back_to_tcg(monkeypatch, tmp_path):
    img = Image(tmp_path)
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: True)
    monkeypatch.setattr(qemu, "_cpu_flags", lambda: {"avx2", "sse4_2"})
    assert qemu.probe_accel(img) == ("tcg", "/dev/kvm exists, but the CPU exposes no vmx or svm")
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: False)
    assert qemu.probe_accel(img) == ("tcg", "no usable /dev/kvm")


def test_kvm_probe_falls_back_when_a_test_boot_hangs(monkeypatch, tmp_path):
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: True)
    monkeypatch.setattr(qemu, "_cpu_flags", lambda: {"vmx"})

    def hang(argv, **kwargs):
        assert argv[0] == qemu.QEMU and "kvm" in argv
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(qemu.subprocess, "run", hang)
    accel, why = qemu.probe_accel(Image(tmp_path))
    assert accel == "tcg" and "hung" in why


def test_cache_path_with_shell_characters_is_refused(monkeypatch):
    monkeypatch.setattr(image, "CACHE", Path("/var/cache/my vm;rm -rf"))
    with pytest.raises(image.VmError, match="MLNET_VM_CACHE"):
        image.ensure("python3", distros.get("bookworm"))


@pytest.mark.skipif(not shutil.which("debugfs"), reason="e2fsprogs (mke2fs, debugfs) missing")
def test_work_disk_carries_the_checkout_in_and_results_out(tmp_path):
    """The real tools, no mount: the staged checkout is on the disk, extra files beside
    it readable by root only (a cluster guest's ssh key), and out/ comes back with its
    symlinks as links (pytest's `*current` links point into the guest)."""
    disk = tmp_path / "work.img"
    guest._work_disk(tmp_path / "stage", "make vm-tier", disk, {"cluster/role": b"a"})

    def debugfs(request: str) -> str:
        argv = ["debugfs", "-R", request, str(disk)]
        return subprocess.run(argv, capture_output=True, text=True).stdout

    listing = debugfs("ls -p /src/testbed/vm")
    assert "guest.sh" in listing and "init.sh" in listing and "cluster.sh" in listing
    assert debugfs("cat /cluster/role") == "a"
    assert re.search(r"Mode:\s+0600", debugfs("stat /cluster/role"))
    for request in ("write /etc/hostname /out/facts.json", "symlink /out/current /mnt/work/x"):
        subprocess.run(["debugfs", "-w", "-R", request, str(disk)], check=True, capture_output=True)
    results = tmp_path / "results"
    guest._copy_out(disk, tmp_path / "back", results)
    assert (results / "facts.json").read_text() == Path("/etc/hostname").read_text()
    assert (results / "current").is_symlink()
    assert os.readlink(results / "current") == "/mnt/work/x"


def test_a_build_step_that_times_out_takes_its_whole_session_along(tmp_path):
    """mmdebstrap's apt/dpkg/pip run below it (in a PID namespace of their own): a step
    stopped early must not leave any of them running."""
    child = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {child}; wait"
    with pytest.raises(image.VmError, match="took longer than 1 s"):
        image._run(["sh", "-c", script], "a step", timeout=1)
    grandchild = identity(int(child.read_text()))  # start time -1 if already gone
    deadline = time.monotonic() + 5  # SIGKILL reaches the grandchild asynchronously
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)
