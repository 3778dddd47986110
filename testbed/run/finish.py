"""Finish: stop what ran, tear the network down, then write the tables, the fidelity
verdict and the final metadata. Each step is guarded: one that fails is noted in the
run's error and the next still runs, and whatever fits on disk is kept."""

from __future__ import annotations

import json
import logging
import time
import traceback

from controllers.cookies import TIERS
from testbed.faults.runner import FaultRunner
from testbed.network.counters import job_tier_bytes
from testbed.results.fidelity import assess
from testbed.results.metadata import Metadata, now_utc
from testbed.results.tables import write_tables
from testbed.run.build import Testbed
from testbed.run.signals import describe, no_sigint
from testbed.run.start import Work

log = logging.getLogger("testbed")


def stop(work: Work, testbed: Testbed, meta: Metadata) -> list[dict]:
    """Stop the work, read the switches' per-job counters, tear the testbed down;
    return the link report."""
    with no_sigint():  # each step guarded: the network must come down
        steps = [
            ("jobs", work.jobs and work.jobs.stop_all),
            ("traffic", work.traffic and work.traffic.stop_all),
            ("faults", work.faults and (lambda: _finish_faults(work.faults, meta))),
            ("forkserver", work.forkserver and work.forkserver.stop),
            # the network came up and jobs ran on it:
            ("tier counters", work.jobs and (lambda: save_tier_bytes(testbed))),
        ]  # fmt: skip
        for what, step in steps:
            if step:
                testbed.attempt(what, step)
    return testbed.close()


def save_tier_bytes(testbed: Testbed) -> None:
    """raw/tiers.json: the bytes each job put on each tier (the controller's per-job
    counters); a failure is logged, the run goes on to teardown."""
    try:
        tiers = sorted({link.tier for link in testbed.topo.link_info}, key=TIERS.index)
        jobs = [job.name for job in testbed.exp.jobs]
        counted = job_tier_bytes(testbed.topo.switch_info, jobs, tiers, testbed.network)
        doc = {"tiers": tiers, "jobs": counted}
        testbed.paths.tier_bytes.write_text(json.dumps(doc, indent=1) + "\n")
    except Exception:
        log.error("per-job tier bytes not read\n%s", traceback.format_exc())


def finish(
    testbed: Testbed, links: list[dict], meta: Metadata, status: str, error: str
) -> tuple[dict, dict | None, str, str]:
    """The teardown's record, the tables, the fidelity verdict and the final metadata,
    after teardown. A teardown step that failed fails the run. On a full disk, whatever
    fits is kept and the error says what did not."""
    meta.data["teardown_s"] = testbed.teardown_s  # written with the final metadata
    meta.data["teardown_profile"] = testbed.network.teardown_profile
    if testbed.teardown_errors:
        status = "interrupted" if status == "interrupted" else "failed"
        error = "; ".join(filter(None, [error, *testbed.teardown_errors]))
    run_dir, frames, fidelity = testbed.run_dir, {}, None
    try:
        frames = write_tables(run_dir)
        fidelity = assess(run_dir, links, frames["param_divergence"])
    except Exception as exc:  # a full disk, or records it left half-written
        log.error("tables not written\n%s", traceback.format_exc())
        error = "; ".join(filter(None, [error, f"tables not written: {describe(exc)}"]))
        status = "interrupted" if status == "interrupted" else "failed"
    try:
        meta.update(status=status, error=error, ended_utc=now_utc(), links=links,
                    fidelity=fidelity, duration_s=round(time.time() - testbed.t0, 3))  # fmt: skip
    except OSError as exc:
        log.error("metadata.json not updated: %s", exc.strerror)
    log.info("run %s: %s %s", run_dir, status, error)
    return frames, fidelity, status, error


def _finish_faults(faults: FaultRunner, meta: Metadata) -> None:
    """faults.csv, and the controller's deaths and restarts in metadata.json."""
    faults.finish()
    if faults.controller_events:
        meta.update(controller_deaths=faults.controller_events)
