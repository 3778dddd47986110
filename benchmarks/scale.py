"""Start-up time and memory per training process, launcher exec (before) against fork
(after), and the largest k=8 fat-tree job that trains here.

    sudo .venv/bin/python benchmarks/scale.py [--sizes 5 16 60] [--largest 120 8]

Each size is one PS job (MLP [64] on digits, TCP, 30 iterations, seed 1) run twice,
`launcher: exec` then `launcher: fork`; the two runs differ in nothing else. Printed:

- startup_s (jobs.csv: launch to the first worker's ``ready``) and all_ready_s (launch
  to the last one's: the job cannot train before every worker is connected);
- USS and PSS per training process: each process's largest sample, taken every 0.25 s
  from /proc/PID/smaps_rollup while it ran, averaged over processes. With fork, the
  forkserver's own USS is printed too: it is paid once per run, not per process;
- the exec/fork ratios, from this one invocation (the machine is shared and noisy:
  compare ratios, not absolute seconds across days);
- the largest job on a k=8 fat-tree (128 hosts): --largest WORKERS SERVERS, with its
  mean iteration time, under each launcher.

A run that did not end ``ok``, or that its fidelity verdict does not trust (a CPU
saturated for long, as 128 exec'd interpreters starting at once do), prints its
status and no ratio; its absolute figures still show.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.results.verdict import ratio_cell, read_verdict
from testbed.runner import run_spec

ITERATIONS = 30


def spec(launcher: str, workers: int, servers: int) -> dict:
    """One PS job filling `workers + servers` hosts of the smallest fat-tree that fits."""
    k = 4 if workers + servers <= 16 else 8
    return {
        "name": f"scale-{launcher}-{workers + servers}",
        "seed": 1,
        "launcher": launcher,
        "topology": {"kind": "fat-tree", "k": k},
        "jobs": [
            {
                "name": "ps",
                "model": {"name": "mlp", "hidden": [64]},
                "dataset": "digits",
                "workers": workers,
                "servers": servers,
                "sync": "ps",
                "transport": "tcp",
                "iterations": ITERATIONS,
                "batch_size": 32,
                "eval_every": ITERATIONS,
            }
        ],
    }


class MemorySampler(threading.Thread):
    """Samples USS/PSS of every training process (and forkserver) until stopped."""

    def __init__(self, period_s: float = 0.25):
        super().__init__(daemon=True)
        self.period_s = period_s
        self.peak: dict[int, dict] = {}  # pid -> the sample with the largest USS
        self.kind: dict[int, str] = {}  # pid -> "training" | "forkserver"
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.period_s):
            for pid, kind in _our_processes().items():
                sample = _smaps(pid)
                if sample and sample["uss"] >= self.peak.get(pid, {"uss": -1})["uss"]:
                    self.peak[pid], self.kind[pid] = sample, kind

    def stop(self) -> dict:
        """Mean peak USS/PSS (MB) per training process; the forkserver's USS."""
        self.halt.set()
        self.join()
        train = [s for pid, s in self.peak.items() if self.kind[pid] == "training"]
        server = [s for pid, s in self.peak.items() if self.kind[pid] == "forkserver"]
        mean = lambda key: sum(s[key] for s in train) / len(train) if train else float("nan")  # noqa: E731
        return {
            "sampled": len(train),
            "uss_mb": mean("uss"),
            "pss_mb": mean("pss"),
            "forkserver_uss_mb": server[0]["uss"] if server else None,
        }


def _our_processes() -> dict[int, str]:
    """Training processes of either launcher, and forkservers, by pid."""
    argv = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
                argv[int(entry.name)].append((entry / "stat").read_bytes())
            except OSError:
                continue
    found = {}
    for pid, args in argv.items():
        module = args[2] if len(args) > 3 else b""
        if module == b"testbed.training":  # exec: python -m testbed.training ROLE.json
            found[pid] = "training"
        elif module == b"testbed.training.forkserver":
            ppid = int(args[-1].rsplit(b")", 1)[1].split()[1])
            is_child = argv.get(ppid, [b"", b"", b""])[2:3] == [b"testbed.training.forkserver"]
            found[pid] = "training" if is_child else "forkserver"
    return found


def _smaps(pid: int) -> dict | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {}
    for line in text.splitlines()[1:]:
        key, value, *_ = line.split()
        kb[key.rstrip(":")] = int(value)
    return {
        "uss": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024,
        "pss": kb.get("Pss", 0) / 1024,
    }


def measure(workdir: Path, launcher: str, workers: int, servers: int) -> dict:
    """Run one job and return its start-up, iteration time and memory figures."""
    sampler = MemorySampler()
    sampler.start()
    try:
        result = run_spec(spec(launcher, workers, servers), workdir / f"{launcher}-{workers}")
    finally:
        memory = sampler.stop()
    job = result.jobs.iloc[0]
    meta = json.loads((result.run_dir / "metadata.json").read_text())
    return {
        "processes": workers + servers,
        "launcher": launcher,
        "status": result.status,
        "verdict": read_verdict(result.run_dir),
        "startup_s": job["startup_s"],
        "all_ready_s": _all_ready_s(result.run_dir, job),
        "mean_iter_s": job["mean_iter_s"],
        "wall_s": meta.get("duration_s"),
        **memory,
    }


def _all_ready_s(run_dir: Path, job: pd.Series) -> float:
    """Launch to the last worker's ``ready`` record."""
    launched = job["startup_s"]  # first ready - launch
    times = []
    for path in (run_dir / "raw" / job["job"]).glob("worker*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["type"] == "ready":
                times.append(record["time"])
    return max(times) - min(times) + launched if times else float("nan")


def ratio(before: dict, after: dict, key: str) -> str:
    """before/after, only when both runs are usable (`testbed.results.verdict`)."""
    if not after[key]:
        return "-"
    return ratio_cell(before[key], after[key], before["verdict"], after["verdict"], digits=1)


def num(value, digits: int) -> str:
    """`value` with `digits` decimals, or "-" for a figure a failed run does not have."""
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 16, 60])
    parser.add_argument("--largest", type=int, nargs=2, default=[120, 8], metavar=("W", "S"))
    args = parser.parse_args()
    jobs = [(n - max(1, n // 16), max(1, n // 16)) for n in args.sizes]
    if args.largest[0]:  # --largest 0 0 skips it
        jobs.append(tuple(args.largest))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers, servers in jobs:
            pair = [measure(Path(tmp), launcher, workers, servers) for launcher in ("exec", "fork")]
            for row in pair:  # as it goes: a later crash loses nothing measured
                print({k: row[k] for k in ("processes", "launcher", "status", "startup_s")})
            rows.append(pair)
    table = Table(title=f"start-up and memory per training process ({ITERATIONS} iterations)")
    columns = (
        "processes (W+S)", "launcher", "status", "startup_s", "all_ready_s", "mean_iter_s",
        "wall_s", "USS MB", "PSS MB", "forkserver USS MB", "exec/fork startup_s",
        "exec/fork all_ready_s", "exec/fork USS",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for (workers, servers), pair in zip(jobs, rows):
        for row in pair:
            fs = row["forkserver_uss_mb"]
            table.add_row(
                f"{row['processes']} ({workers}+{servers})",
                row["launcher"],
                row["status"],
                num(row["startup_s"], 2),
                num(row["all_ready_s"], 2),
                num(row["mean_iter_s"], 4),
                num(row["wall_s"], 1),
                f"{row['uss_mb']:.1f} (n={row['sampled']})",
                f"{row['pss_mb']:.1f}",
                f"{fs:.0f}" if fs else "-",
                ratio(pair[0], row, "startup_s") if row is pair[1] else "",
                ratio(pair[0], row, "all_ready_s") if row is pair[1] else "",
                ratio(pair[0], row, "uss_mb") if row is pair[1] else "",
            )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
