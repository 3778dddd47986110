"""One experiment, start to finish: spec -> topology -> network -> controller -> jobs
-> results, with teardown of everything the run created however it ends.

The phases live in `testbed.run` (prepare, build, start, observe, finish); this
module calls them in order and turns how the run ended into its status:

  1. preflight (root, OVS, free names, platform features) — nothing created yet
  2. run directory, resolved spec, metadata, ledger
  3. the forkserver (it imports torch meanwhile), the controller process, then the
     Mininet network (switches connect at once)
  4. wait for "all switches programmed", check all-pairs reachability
  5. sample links into links.csv; launch jobs at their start offsets, follow them
  6. stop processes, forkserver, sampler, network; release the ledger; write CSVs and
     metadata
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from testbed.errors import TestbedError
from testbed.progress import RunProgress
from testbed.results.rundir import hand_over
from testbed.run.build import Testbed
from testbed.run.finish import finish, stop
from testbed.run.observe import observe
from testbed.run.prepare import prepare, prepare_run
from testbed.run.signals import Interrupted, describe, interrupt_pending
from testbed.run.start import plan_work, start
from testbed.spec import validate
from testbed.spec.schema import Experiment

log = logging.getLogger("testbed")

# Names scripts take from here (the phases' own modules hold them).
__all__ = ["RunResult", "Testbed", "bare_testbed", "interrupt_pending", "quiet",
           "run_experiment", "run_spec"]  # fmt: skip


@dataclass
class RunResult:
    run_dir: Path
    status: str
    error: str
    jobs: pd.DataFrame
    fidelity: dict | None = None


def run_experiment(
    exp: Experiment, source: str, out: str | None = None, progress: RunProgress | None = None
) -> RunResult:
    """Run `exp` (validated from `source`) and return where its results are."""
    progress = progress or RunProgress()
    testbed, meta = prepare_run(exp, source, out, progress)
    work = plan_work(exp, testbed.paths)
    links: list[dict] = []
    status, error = "failed", ""
    try:
        with progress:
            try:
                start(testbed, work, meta, progress, source)
                status, error = observe(testbed, work, progress)
            finally:
                links = stop(work, testbed, meta)
    except (KeyboardInterrupt, Interrupted):
        status, error = "interrupted", "interrupted by signal"
    except TestbedError as exc:
        error = str(exc)
    except OSError as exc:  # a full disk, a results directory made read-only meanwhile
        log.error("cannot write results\n%s", traceback.format_exc())
        error = f"cannot write results: {describe(exc)}"
    except Exception as exc:  # a bug: keep the traceback in the log, results on disk
        log.error("unexpected error\n%s", traceback.format_exc())
        error = f"unexpected {type(exc).__name__}: {exc} (traceback in logs/harness.log)"
    frames, fidelity, status, error = finish(testbed, links, meta, status, error)
    hand_over(testbed.run_dir)
    return RunResult(testbed.run_dir, status, error, frames.get("jobs", pd.DataFrame()), fidelity)


def quiet() -> RunProgress:
    """Progress that prints nothing (for scripts that print their own tables)."""
    return RunProgress(Console(stderr=True, quiet=True))


def run_spec(spec: dict, out: str | Path, source: str = "script") -> RunResult:
    """Validate a spec given as data and run it without terminal output.

    For benchmarks and scripts: an interrupted run has already torn itself down,
    and then KeyboardInterrupt stops the caller too.
    """
    exp = validate(spec, source)
    result = run_experiment(exp, source, out=str(out), progress=quiet())
    if result.status == "interrupted":
        raise KeyboardInterrupt
    return result


def bare_testbed(spec: dict, out: str | Path, source: str = "script") -> Testbed:
    """An unstarted `Testbed` for a spec given as data, for probing links without jobs:
    ``with bare_testbed(spec, out) as tb: ... tb.network ...``."""
    return prepare(validate(spec, source), source, out=str(out), progress=quiet())
