"""Command line: ``testbed check | run | doctor | clean``.

Exit codes: 0 success, 1 run failed or a run-time error, 2 bad input (spec or
arguments), 130 interrupted. Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import yaml
from rich.console import Console
from rich.table import Table

from testbed.errors import SpecError, TestbedError
from testbed.spec import load_experiment

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `testbed` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed", description="Emulated data-centre network experiments on distributed ML."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a spec and print it resolved (no root)")
    _spec_arguments(check)
    check.set_defaults(func=cmd_check)

    run = sub.add_parser("run", help="run an experiment (root)")
    _spec_arguments(run)
    run.add_argument("--out", help="run directory (default results/<name>/<UTC timestamp>)")
    run.set_defaults(func=cmd_run)

    doctor = sub.add_parser("doctor", help="report what this machine offers")
    doctor.set_defaults(func=cmd_doctor)

    clean = sub.add_parser("clean", help="remove leftovers of crashed runs of ours")
    clean.set_defaults(func=cmd_clean)
    return parser


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a spec key (repeatable)")  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    """Print the resolved spec as YAML."""
    exp = load_experiment(args.spec, args.overrides)
    print(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the experiment; print the summary and, last, the run directory."""
    # Started as a background job (`cmd &`), we inherit SIGINT ignored; Ctrl-C and
    # `kill -INT` must still stop the run (the running testbed takes SIGTERM too).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    exp = load_experiment(args.spec, args.overrides)
    if os.geteuid() != 0:
        raise TestbedError(
            "testbed run needs root (it creates namespaces and OVS bridges); run it with sudo"
        )
    from testbed.results.summary import summary_table
    from testbed.runner import run_experiment

    result = run_experiment(exp, args.spec, out=args.out)
    out = Console()
    if len(result.jobs):
        out.print(summary_table(result.jobs))
    if result.fidelity and not result.fidelity["trustworthy"]:
        reasons = "; ".join(result.fidelity["reasons"])
        print(f"not trustworthy as a network measurement: {reasons}", file=sys.stderr)
    if result.status != "ok":
        print(f"run {result.status}: {result.error}", file=sys.stderr)
    print(result.run_dir)
    return {"ok": 0, "interrupted": EXIT_INTERRUPTED}.get(result.status, EXIT_FAILED)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the machine report."""
    from testbed.platform import probe

    p = probe()
    table = Table(title="mlnet-testbed doctor", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value")
    table.add_row("root", _yes(p.root))
    table.add_row(
        "Open vSwitch daemons",
        _yes(p.ovs_running, "running", "not running (sudo make bootstrap starts them)"),
    )
    module = "openvswitch kernel module " + ("present" if p.ovs_kernel_module else "absent")
    table.add_row("OVS datapath (auto)", f"{p.datapath('auto')} ({module})")
    table.add_row(
        "/dev/net/tun", _tri(p.tun, "present", "missing: the userspace datapath cannot run")
    )
    table.add_row(
        "sch_netem",
        _tri(
            p.netem,
            "usable (delay, jitter, loss)",
            "not available (loss via nftables; no delay/jitter)",
        ),
    )
    table.add_row("nftables netdev egress", _tri(p.nftables_egress, "usable", "not available"))
    backend, why = p.loss_backend("auto")
    table.add_row("loss backend (auto)", f"{backend} ({why.removeprefix('auto: ')})")
    table.add_row("netem seeding", _tri(p.netem_seed, "supported", "not supported"))
    table.add_row("TCP congestion controls", ", ".join(p.tcp_congestion_controls) or "?")
    for name, version in sorted(p.versions.items()):
        table.add_row(name, version)
    Console().print(table)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Release every ledger whose run is no longer alive."""
    from testbed.ledger import leftovers

    if os.geteuid() != 0:
        raise TestbedError("testbed clean needs root; run it with sudo")
    stale = leftovers()
    for ledger in stale:
        removed = ledger.release()
        print(
            f"{ledger.run_id}: removed {len(removed)} leftovers"
            + (f" ({', '.join(removed[:6])}{'...' if len(removed) > 6 else ''})" if removed else "")
        )
    if not stale:
        print("nothing to clean")
    return 0


def _yes(value: bool, yes: str = "yes", no: str = "no") -> str:
    return yes if value else no


def _tri(value: bool | None, yes: str, no: str) -> str:
    return "unknown (run as root to probe)" if value is None else _yes(value, yes, no)
