"""Command line: ``testbed check | run | report | profile | schema | doctor | clean``.

Exit codes: 0 success, 1 run failed or a run-time error, 2 bad input (spec or
arguments), 130 interrupted. Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from testbed.errors import NO_VALUE, SpecError, TestbedError
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

    _run_parser(sub.add_parser("run", help="run an experiment or a study (root)"))
    _report_parser(
        sub.add_parser("report", help="plots and report.md for a run or study directory")
    )
    _profile_parser(sub.add_parser("profile", help="a job's loss bound, by APNet's method (root)"))
    schema = sub.add_parser("schema", help="print the spec's JSON Schema")
    schema.set_defaults(func=cmd_schema)
    doctor = sub.add_parser("doctor", help="report what this machine offers")
    doctor.add_argument(
        "--cluster",
        metavar="SPEC",
        help="instead, check every server of SPEC's cluster: ssh, sudo, Mininet, OVS, clock",
    )
    doctor.set_defaults(func=cmd_doctor)
    clean = sub.add_parser("clean", help="remove leftovers of crashed runs of ours")
    clean.set_defaults(func=cmd_clean)
    return parser


def _run_parser(run: argparse.ArgumentParser) -> None:
    _spec_arguments(run, required=False)
    run.add_argument(
        "--sweep",
        dest="sweeps",
        action="append",
        default=[],
        metavar="KEY=[V1,V2]",
        help="sweep a spec key (repeatable; makes a study)",
    )
    run.add_argument(
        "--resume", metavar="STUDY_DIR", help="run what is missing or not ok in a study directory"
    )
    run.add_argument(
        "--retry-untrustworthy",
        action="store_true",
        help="with --resume: also run again the ok runs their fidelity verdict does not trust",
    )
    run.add_argument("--out", help="run or study directory (default results/<name>/...)")
    run.set_defaults(func=cmd_run)


def _report_parser(report: argparse.ArgumentParser) -> None:
    report.add_argument("dirs", nargs="+", metavar="DIR")
    report.add_argument("--compare", action="store_true", help="overlay several run directories")
    report.add_argument("--out", help="where --compare writes (default results/compare-<UTC>)")
    report.add_argument(
        "--include-untrustworthy",
        action="store_true",
        help="a study: count ok runs the fidelity verdict does not trust, marked",
    )
    report.set_defaults(func=cmd_report)


def _profile_parser(profile: argparse.ArgumentParser) -> None:
    _spec_arguments(profile)
    profile.add_argument("--job", help="the job to profile (default: the first)")
    profile.add_argument(
        "--drops",
        default="0,0.01,0.02,0.05,0.1,0.2",
        help="drop fractions, comma-separated (default %(default)s)",
    )
    profile.add_argument("--repeats", type=int, default=3)
    profile.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="accuracy loss tolerated, absolute (default %(default)s)",
    )
    profile.add_argument("--out", help="study directory (default results/<name>/profile-<UTC>)")
    profile.set_defaults(func=cmd_profile)


def _spec_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("spec", nargs=None if required else "?")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a spec key (repeatable)")  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    """Print the resolved spec as YAML (a study: the first run's, then every run)."""
    from testbed.spec.study import Study, label, load_spec

    loaded = load_spec(args.spec, args.overrides)
    if isinstance(loaded, Study):
        study = loaded
        exp = study.runs[0].experiment
        print(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False), end="")
        print(f"# {len(study.runs)} runs:")
        for run in study.runs:
            values = ", ".join(f"{k}={label(v)}" for k, v in run.values.items())
            print(f"#   {run.name} seed={run.seed} {values}")
        return 0
    print(yaml.safe_dump(loaded.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the experiment (or study); print the summary and, last, its directory."""
    # Started as a background job (`cmd &`), we inherit SIGINT ignored; Ctrl-C and
    # `kill -INT` must still stop the run (the running testbed takes SIGTERM too).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.resume:
        if args.spec or args.sweeps or args.overrides or args.out:
            raise SpecError(
                "--resume", "", args.resume, "expected no spec, --set, --sweep or --out with it"
            )
        return _study(args, None)
    if args.retry_untrustworthy:
        raise SpecError("--retry-untrustworthy", "", NO_VALUE, "expected --resume DIR with it")
    if not args.spec:
        raise SpecError("testbed run", "", NO_VALUE, "expected a spec file or --resume DIR")
    from testbed.spec.study import Study, load_spec

    exp = load_spec(args.spec, args.overrides, args.sweeps)
    if isinstance(exp, Study):
        return _study(args, exp)
    _need_root("testbed run")
    from testbed.results.summary import faults_table, summary_table, traffic_tables
    from testbed.runner import run_experiment

    result = run_experiment(exp, args.spec, out=args.out)
    out = Console()
    if len(result.jobs):
        out.print(summary_table(result.jobs))
    for table in traffic_tables(result.run_dir) + faults_table(result.run_dir):
        out.print(table)
    if result.fidelity and not result.fidelity["trustworthy"]:
        reasons = "; ".join(result.fidelity["reasons"])
        print(f"not trustworthy as a network measurement: {reasons}", file=sys.stderr)
    if result.status != "ok":
        print(f"run {result.status}: {result.error}", file=sys.stderr)
    print(result.run_dir)
    return {"ok": 0, "interrupted": EXIT_INTERRUPTED}.get(result.status, EXIT_FAILED)


def _study(args: argparse.Namespace, study) -> int:
    """Run a study (or resume one); print its directory last."""
    from testbed.study.runner import create_study_dir, load_resumable, run_study

    if study is None:
        study_dir = Path(args.resume)
        study = load_resumable(study_dir)
    _need_root("testbed run")
    if not args.resume:
        study_dir = create_study_dir(study.runs[0].experiment.name, args.out)
    result = run_study(study, study_dir, retry_untrustworthy=args.retry_untrustworthy)
    not_ok = result.runs.drop_duplicates("run").query("run_status != 'ok'")
    if len(not_ok):
        listed = ", ".join(f"{r.run} {r.run_status}" for r in not_ok.itertuples())
        print(f"study {result.status}: {listed}", file=sys.stderr)
    print(result.study_dir)
    return {"ok": 0, "interrupted": EXIT_INTERRUPTED}.get(result.status, EXIT_FAILED)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the PNGs and report.md of a run or study directory (or of a comparison)."""
    from testbed.report import compare_report, report

    if args.compare:
        from testbed.results.rundir import utc_stamp

        out = Path(args.out) if args.out else Path("results") / f"compare-{utc_stamp()}"
        print(compare_report([Path(d) for d in args.dirs], out))
        return 0
    if len(args.dirs) > 1 or args.out:
        raise SpecError("testbed report", "", args.dirs, "expected one DIR (or --compare DIR...)")
    print(report(Path(args.dirs[0]), args.include_untrustworthy))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """APNet §2.2: final accuracy against drop fraction, and the loss bound."""
    from testbed.profile import plan_profile, run_profile

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in cmd_run
    plan = plan_profile(args)
    _need_root("testbed profile")
    return run_profile(plan)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of a spec file (sweep, zip and repeats included)."""
    from testbed.spec.export import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=2))
    return 0


# What running needs beyond analysis: Mininet (a distro package) and the `run` extra.
HARNESS_MODULES = {"mininet": "Mininet", "torch": "torch", "os_ken": "os-ken"}


def _need_root(what: str) -> None:
    """Running builds networks: root, and the harness's modules (analysis needs neither)."""
    missing = [name for mod, name in HARNESS_MODULES.items() if not importlib.util.find_spec(mod)]
    if missing:
        raise TestbedError(
            f"{what} needs {', '.join(missing)}, which this Python ({sys.executable}) lacks; "
            "in a clone, `sudo make bootstrap` installs them into .venv"
        )
    if os.geteuid() != 0:
        raise TestbedError(
            f"{what} needs root (it creates namespaces and OVS bridges); run it with sudo"
        )


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the machine report (or, with --cluster, the servers' report)."""
    from testbed.platform import probe

    if args.cluster:
        return _doctor_cluster(args.cluster)

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
    for label, ports in (("k=4 fat-tree", 80), ("k=8 fat-tree", 640)):
        plane, why = p.ports("auto", p.datapath("auto"), ports)
        table.add_row(f"switch ports (auto), {label}", f"{plane} ({why.removeprefix('auto: ')})")
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


def _doctor_cluster(spec: str) -> int:
    """One row per server; exit 1 if any server cannot take part."""
    from testbed.errors import SpecError
    from testbed.network.cluster import check_servers, controller_address

    exp = load_experiment(spec)
    if exp.cluster is None:
        raise SpecError(spec, "cluster", None, "expected a cluster section with servers")
    servers = list(exp.cluster.servers)
    checks = check_servers(servers)
    table = Table(title=f"mlnet-testbed doctor --cluster {spec}", title_justify="left")
    columns = ("server", "address", "ssh", "sudo", "Mininet", "OVS", "project", "clock offset")
    for column in (*columns, "ok"):
        table.add_column(column)
    for c in checks:
        offset = (
            f"{c.clock_offset_s * 1e3:+.1f} ms (±{c.clock_error_s * 1e3:.1f})"
            if c.clock_offset_s is not None
            else "?"
        )
        where = f"{c.address or '?'}" + (" (this machine)" if c.local else "")
        table.add_row(
            c.server, where, _yes(c.ssh), _yes(c.sudo), c.mininet or "-", c.ovs or "-",
            _yes(c.project), offset, _yes(not c.problems, "ok", "NO"),
        )  # fmt: skip
    console = Console()
    console.print(table)
    for c in checks:
        for problem in c.problems:
            console.print(f"{c.server}: {problem}", markup=False, highlight=False)
    if any(c.problems for c in checks):
        return 1
    console.print(f"controller address: {controller_address(servers)}", highlight=False)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Release every ledger whose run is no longer alive."""
    from testbed.ledger import leftovers, summarize_removed

    if os.geteuid() != 0:
        raise TestbedError("testbed clean needs root; run it with sudo")
    stale = leftovers()
    for ledger in stale:
        removed = ledger.release()
        print(
            f"{ledger.run_id}: removed {len(removed)} leftovers"
            + (f": {summarize_removed(removed)}" if removed else "")
        )
    if not stale:
        print("nothing to clean")
    return 0


def _yes(value: bool, yes: str = "yes", no: str = "no") -> str:
    return yes if value else no


def _tri(value: bool | None, yes: str, no: str) -> str:
    return "unknown (run as root to probe)" if value is None else _yes(value, yes, no)
