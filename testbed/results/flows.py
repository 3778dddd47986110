"""flows.csv and traffic.csv, from ``raw/traffic/`` alone (like the other tables).

flows.csv: one row per background flow (entry, src, dst, size_bytes, start_s, fct_s,
sent_bytes, completed). traffic.csv: one row per traffic entry. For a flows entry:
`offered_load`, the bytes of the flows it started over its window divided by what
its hosts' access links carry in that window, `delivered_load` the same for the
flows that completed, and FCT percentiles. For iperf3: bytes sent and received,
receiver throughput, retransmits (tcp) or lost percent (udp).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.layout import RunPaths
from testbed.results.read import read_json, read_jsonl, run_start

FLOW_COLUMNS = "entry src dst size_bytes start_s fct_s sent_bytes completed error".split()
# FCT buckets of the issue and of pFabric/PIAS: small, medium, large flows.
BUCKETS = ((0, 100e3, "<100kB"), (100e3, 10e6, "100kB-10MB"), (10e6, np.inf, ">10MB"))


def flows_table(run_dir: Path) -> pd.DataFrame:
    """Every background flow of the run, by start time."""
    t0 = run_start(run_dir)
    rows = [r for r in _records(run_dir) if r.get("type") == "flow"]
    df = pd.DataFrame(rows, columns=[*FLOW_COLUMNS, "start"])
    df["start_s"] = df["start"] - t0
    return df[FLOW_COLUMNS].sort_values(["entry", "start_s"], ignore_index=True)


def _records(run_dir: Path) -> list[dict]:
    records = []
    for path in _flow_files(run_dir):
        records += read_jsonl(path)
    return records


def _flow_files(run_dir: Path) -> list[Path]:
    traffic = RunPaths(run_dir).traffic
    return sorted(traffic.glob(RunPaths(run_dir).flow_records().name))


def _windows(run_dir: Path) -> dict[int, tuple[float, float | None]]:
    """Each flows entry's generation window (Unix times; end None: until stopped)."""
    windows = {}
    for path in _flow_files(run_dir):
        for r in read_jsonl(path):
            if r.get("type") == "window":
                windows[int(path.stem.split("-")[1])] = (r["start"], r["end"])
    return windows


def traffic_table(run_dir: Path, flows: pd.DataFrame) -> pd.DataFrame:
    """One row per traffic entry of raw/traffic/plan.json."""
    plan_path = RunPaths(run_dir).traffic_plan
    if not plan_path.exists():
        return pd.DataFrame()
    plan = json.loads(plan_path.read_text())
    windows = _windows(run_dir)
    ended = _run_end(run_dir)
    rows = []
    for entry in plan:
        row = {k: entry.get(k) for k in ("entry", "kind", "start_s", "duration_s", "priority")}
        row["hosts"] = " ".join(entry["hosts"])
        if entry["kind"] == "flows":
            mine = flows[flows["entry"] == entry["entry"]]
            window = windows.get(entry["entry"])
            row["window_start_s"] = round(window[0] - run_start(run_dir), 3) if window else None
            row.update(flows_summary(mine, entry, window, ended))
        else:
            row.update(iperf3_summary(run_dir, entry))
        rows.append(row)
    return pd.DataFrame(rows)


def flows_summary(flows: pd.DataFrame, entry: dict, window, ended: float | None) -> dict:
    """Offered and delivered load, flow counts and FCT percentiles of one entry."""
    out = {"load": entry["load"], "distribution": entry["distribution"], "flows": len(flows)}
    out["completed"] = int(flows["completed"].fillna(False).astype(bool).sum())
    if window is None:
        return out
    start, end = window
    end = end if end is not None else ended
    if end is None or end <= start:
        return out
    window_s = end - start
    capacity_bytes = entry["access_mbps"] * 1e6 / 8 * window_s
    done = flows[flows["completed"].fillna(False).astype(bool)]
    out["window_s"] = round(window_s, 3)
    out["offered_load"] = flows["size_bytes"].sum() / capacity_bytes
    out["delivered_load"] = done["size_bytes"].sum() / capacity_bytes
    out["fct_p50_s"] = done["fct_s"].median() if len(done) else None
    out["fct_p99_s"] = done["fct_s"].quantile(0.99) if len(done) else None
    return out


def fct_by_bucket(flows: pd.DataFrame) -> pd.DataFrame:
    """Completed flows' FCT p50 and p99 per size bucket (rows: bucket, flows, p50, p99)."""
    done = flows[flows["completed"].fillna(False).astype(bool)]
    rows = []
    for lo, hi, name in BUCKETS:
        fct = done[(done["size_bytes"] >= lo) & (done["size_bytes"] < hi)]["fct_s"]
        rows.append({"bucket": name, "flows": len(fct),
                     "fct_p50_s": fct.median() if len(fct) else None,
                     "fct_p99_s": fct.quantile(0.99) if len(fct) else None})  # fmt: skip
    return pd.DataFrame(rows)


def iperf3_summary(run_dir: Path, entry: dict) -> dict:
    """Bytes, receiver throughput and losses from the client's (and server's) JSON."""
    i = entry["entry"]
    client = read_json(RunPaths(run_dir).traffic_file(f"iperf3-{i}-client"))
    server = read_json(RunPaths(run_dir).traffic_file(f"iperf3-{i}-server"))
    out = {"src": entry["src"], "dst": entry["dst"], "proto": entry["proto"],
           "rate_mbps": entry["rate_mbps"], "parallel": entry["parallel"]}  # fmt: skip
    end = client.get("end", {})
    sent = end.get("sum_sent") or end.get("sum") or {}
    received = end.get("sum_received") or {}
    if not received.get("bytes"):  # a client stopped by signal: the server's view
        received = server.get("end", {}).get("sum_received") or server.get("end", {}).get("sum", {})
    out["sent_bytes"] = sent.get("bytes")
    out["received_bytes"] = received.get("bytes")
    seconds = received.get("seconds") or 0
    out["throughput_mbps"] = received["bytes"] * 8 / seconds / 1e6 if seconds else None
    out["retransmits"] = sent.get("retransmits")
    out["lost_percent"] = received.get("lost_percent") if entry["proto"] == "udp" else None
    out["error"] = client.get("error", "") if client else "no iperf3 report"
    return out


def _run_end(run_dir: Path) -> float | None:
    """When an untimed entry's window closed: when the harness stopped the traffic."""
    path = RunPaths(run_dir).traffic_stopped
    return json.loads(path.read_text())["stopped_unix"] if path.exists() else None


def write_traffic_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Write flows.csv and traffic.csv if the run had traffic; return them."""
    if not RunPaths(run_dir).traffic_plan.exists():
        return {}
    flows = flows_table(run_dir)
    frames = {"flows": flows, "traffic": traffic_table(run_dir, flows)}
    for name, frame in frames.items():
        frame.to_csv(RunPaths(run_dir).table(name), index=False)
    return frames
