"""``python -m testbed.vm build | test | run | clean | facts`` (root, except facts).

    build   build the guest image, or say that the cached one is current
    test    boot the guest, run `make vm-tier` there (the smoke tier plus the tests
            only a stock kernel can run; `--tier smoke`: `make smoke`), bring the
            results back to results/vm-test/<UTC>-<distro>/, and print the summary as
            the last line
    run     boot the guest and run any command in the checkout there, e.g.
            `python -m testbed.vm run -- .venv/bin/python benchmarks/link_fidelity.py`
    cluster-test
            boot two guests on one private segment (testbed/vm/pair.py), run
            `make cluster-tier` on the first, results in results/cluster-test/<UTC>/
    clean   remove the image cache
    facts   (inside the guest) the kernel's features as JSON

Every command but facts and clean takes `--distro` (a Debian suite: bookworm, the
default, or trixie); each release has its own cached image.

Exit codes: the job's own exit code for test and run; 1 for a failed build or boot;
130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys

from testbed.results.rundir import utc_stamp
from testbed.vm import distros, guest, image, pair, qemu, report
from testbed.vm.image import VmError

OUT = "/mnt/work/out"  # the guest's side of the work disk's out/ folder
TIERS = {"vm": "vm-tier", "smoke": "smoke"}  # --tier -> the make target the guest runs


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # As a background job we inherit SIGINT ignored; Ctrl-C/kill -INT must still stop
    # QEMU, and SIGTERM too (both unwind through the `finally` that kills it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except (VmError, distros.UnknownDistro) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vm: interrupted; the guest was stopped", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.vm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build or reuse the guest image")
    build.set_defaults(func=cmd_build)
    test = sub.add_parser("test", help="run the VM tier of the tests in the guest")
    test.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    test.add_argument("--tier", choices=sorted(TIERS), default="vm", help="vm (default) or smoke")
    test.set_defaults(func=cmd_test)
    run = sub.add_parser("run", help="run a command in the checkout inside the guest")
    run.add_argument("argv", nargs="+", help="the command (after --)")
    run.set_defaults(func=cmd_run)
    cluster = sub.add_parser("cluster-test", help="run the cluster tier on two guests")
    cluster.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    cluster.set_defaults(func=cmd_cluster_test)
    for p in (build, test, run, cluster):
        p.add_argument("--distro", default=distros.DEFAULT, help="Debian suite of the guest")
    for p in (test, run, cluster):
        p.add_argument("--timeout-s", type=float, default=45 * 60, help="stop the guest then")
        p.add_argument("--memory-mb", type=int, default=4096)
        # Two cluster guests share the host's cores: one vCPU each by default.
        cpus = (os.cpu_count() or 1) // (2 if p is cluster else 1)
        p.add_argument("--cpus", type=int, default=max(1, min(2, cpus)))
        p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
        p.add_argument("--cpu-model", default="", help="QEMU -cpu (default: host/max)")
    sub.add_parser("clean", help="remove the image cache").set_defaults(func=cmd_clean)
    sub.add_parser("facts", help="(in the guest) kernel features").set_defaults(func=cmd_facts)
    return parser


def cmd_build(args: argparse.Namespace) -> int:
    """Build the image unless the cached one matches the recipe."""
    built = image.ensure(sys.executable, distros.get(args.distro))
    print(f"vm image: {built.directory} (kernel {built.manifest['kernel']})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """The VM tier in a fresh guest; the summary line is printed last."""
    pytest_args = [f"--junitxml={OUT}/junit.xml", f"--basetemp={OUT}/pytest", "-v"]
    make = [
        "make",
        TIERS[args.tier],
        "PYTEST_ARGS=" + shlex.join([*pytest_args, *args.pytest_args]),
    ]
    result = _boot(args, shlex.join(make), "vm-test")
    counts = report.junit_counts(result.out_dir / "junit.xml")
    if counts is None:
        print(f"vm-test: no junit.xml came back from the guest ({result.out_dir})")
    print(report.summary_line(counts, result.facts, result.accel))
    return 1 if result.error or counts is None else _exit(result)


def cmd_run(args: argparse.Namespace) -> int:
    """Any command in the guest's checkout; its output is on the console."""
    result = _boot(args, shlex.join(args.argv), "vm-run")
    return 1 if result.error else _exit(result)


def cmd_cluster_test(args: argparse.Namespace) -> int:
    """The cluster tier on guest a, guest b serving; the summary line is printed last."""
    # -s: the tests' own progress (Mininet's, the doctor's table) shows on the console.
    pytest_args = [f"--junitxml={OUT}/junit.xml", f"--basetemp={OUT}/pytest", "-v", "-s"]
    make = ["make", "cluster-tier", "PYTEST_ARGS=" + shlex.join([*pytest_args, *args.pytest_args])]
    built = image.ensure(sys.executable, distros.get(args.distro))
    accel, why = qemu.probe_accel(built) if args.accel == "auto" else (args.accel, "requested")
    out_dir = image.REPO / "results" / "cluster-test" / utc_stamp()
    print(f"vm: booting two guests under {accel} ({why}); {args.cpus} vCPUs and "
          f"{args.memory_mb} MiB each; results in {out_dir}")  # fmt: skip
    results = pair.run_pair(
        built, shlex.join(make), out_dir, accel, args.timeout_s, args.memory_mb, args.cpus,
        echo=lambda line: print(line, flush=True),
    )  # fmt: skip
    for role, result in results.items():
        print(f"vm: guest {role} finished in {result.seconds:.0f} s (job exit {result.job_exit})")
        if result.error:
            print(result.error, file=sys.stderr)
    report_b = out_dir / "b" / "leftovers.txt"
    left = report_b.read_text() if report_b.exists() and results["b"].job_exit == 0 else None
    if left:
        print(f"vm: guest b kept: {left.strip()}", file=sys.stderr)
    counts = report.junit_counts(out_dir / "a" / "junit.xml")
    print(report.summary_line(counts, results["a"].facts, accel).replace("vm-test", "cluster-test"))
    if left is None:
        print(f"vm: guest b never reported its leftovers ({out_dir / 'b'})", file=sys.stderr)
    failed = any(r.error for r in results.values()) or counts is None or left != ""
    return 1 if failed else _exit(results["a"])


def cmd_clean(args: argparse.Namespace) -> int:
    removed = image.clean()
    print(f"vm: removed {image.CACHE}" if removed else "vm: no image cache")
    return 0


def cmd_facts(args: argparse.Namespace) -> int:
    print(json.dumps(report.guest_facts(), indent=1))
    return 0


def _boot(args: argparse.Namespace, command: str, kind: str) -> guest.GuestRun:
    """Build or reuse the image, pick the accelerator, run `command` in a fresh guest."""
    distro = distros.get(args.distro)
    built = image.ensure(sys.executable, distro)
    accel, why = qemu.probe_accel(built) if args.accel == "auto" else (args.accel, "requested")
    out_dir = image.REPO / "results" / kind / f"{utc_stamp()}-{distro.suite}"
    out_dir.mkdir(parents=True)
    print(f"vm: booting {distro.name}, kernel {built.manifest['kernel']}, under {accel} ({why}); "
          f"{args.cpus} vCPUs, {args.memory_mb} MiB; results in {out_dir}")  # fmt: skip
    print(f"vm: guest runs: {command}")
    result = guest.run(
        built,
        command,
        out_dir,
        accel,
        timeout_s=args.timeout_s,
        memory_mb=args.memory_mb,
        cpus=args.cpus,
        cpu_model=args.cpu_model,
        echo=lambda line: print(f"guest | {line}", flush=True),
    )
    print(f"vm: guest finished in {result.seconds:.0f} s (job exit {result.job_exit})")
    if result.error:
        print(result.error, file=sys.stderr)
    return result


def _exit(result: guest.GuestRun) -> int:
    return result.job_exit if result.job_exit is not None else 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
