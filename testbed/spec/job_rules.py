"""Spec rules of one job: its hosts, class, command or built-in keys, aggregation,
placement and failure handling (the whole-spec rules are in `testbed.spec.rules`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from testbed.errors import SpecError
from testbed.spec.paths import resolve
from testbed.spec.schema import BUILTIN_ONLY, MAX_TREE_COUNT, MODEL_DATASETS, Experiment, JobSpec

PYTHON = "{python}"  # stands for the project's interpreter in a command


def check_job(exp: Experiment, i: int, job: JobSpec, source: str, hosts: list[str]) -> None:
    """Raise `SpecError` for the first rule job `i` of `exp` breaks."""
    if job.is_command:
        _check_command_job(exp, job, f"jobs.{i}", source)
    elif job.env or job.workdir is not None:
        key = "env" if job.env else "workdir"
        raise SpecError(source, f"jobs.{i}.{key}", getattr(job, key), "expected only with command")
    else:
        _check_job(job, f"jobs.{i}", source, hosts)
    _check_hosts_fit(job, f"jobs.{i}", source, hosts)
    check_class(exp, job.priority, f"jobs.{i}.priority", source)
    _check_on_failure(job, f"jobs.{i}", source)


def check_class(exp: Experiment, priority: int | None, path: str, source: str) -> None:
    """A priority class (of a job or a traffic entry) must be one the switches have."""
    if priority is not None and priority >= exp.controller.priority_classes:
        raise SpecError(
            source,
            path,
            priority,
            f"expected a class below controller.priority_classes "
            f"({exp.controller.priority_classes})",
        )


def _check_job(job: JobSpec, path: str, source: str, hosts: list[str]) -> None:
    if job.sync == "ps" and job.servers < 1:
        raise SpecError(source, f"{path}.servers", job.servers, "expected >= 1 for sync: ps")
    if job.sync == "allreduce" and job.servers:
        raise SpecError(source, f"{path}.servers", job.servers, "expected 0 for sync: allreduce")
    if job.sync == "allreduce" and job.workers < 2:
        raise SpecError(source, f"{path}.workers", job.workers, "expected >= 2 for sync: allreduce")
    if job.transport.kind == "gloo" and job.sync != "allreduce":
        raise SpecError(source, f"{path}.sync", job.sync, "expected allreduce for transport gloo")
    _check_aggregation(job, path, source)
    _check_drop_at(job, path, source)
    allowed = MODEL_DATASETS[job.model.name]
    if job.dataset not in allowed:
        raise SpecError(
            source,
            f"{path}.dataset",
            job.dataset,
            f"expected {' or '.join(allowed)} for model {job.model.name}",
        )


def _check_hosts_fit(job: JobSpec, path: str, source: str, hosts: list[str]) -> None:
    if job.roles > len(hosts):
        raise SpecError(
            source,
            f"{path}.workers",
            job.workers,
            f"expected workers + servers <= {len(hosts)} hosts in the topology",
        )
    if isinstance(job.placement, tuple):
        _check_explicit_placement(job, path, source, hosts)


def _check_command_job(exp: Experiment, job: JobSpec, path: str, source: str) -> None:
    """A command job: no built-in keys, and a program that exists (before any build)."""
    for key in BUILTIN_ONLY:
        given = key in job.model_fields_set and (key != "servers" or job.servers)
        if given:
            raise SpecError(
                source,
                f"{path}.{key}",
                _shown(job, key),
                "not allowed with command (your program does its own training)",
            )
    if exp.controller.priority == "smallest-first":
        raise SpecError(
            source,
            "controller.priority",
            "smallest-first",
            f"expected none, fixed or las with command job {job.name} "
            "(smallest-first ranks built-in models by size)",
        )
    workdir = command_workdir(job, source)
    if not workdir.is_dir():
        raise SpecError(source, f"{path}.workdir", job.workdir, "expected an existing directory")
    argv = expand_command(job.command)
    if _program(argv[0], workdir) is None:
        raise SpecError(
            source,
            f"{path}.command.0",
            job.command[0],
            "expected a program on the PATH or an executable file at that path",
        )
    if argv[0] == sys.executable and len(argv) > 1 and argv[1].endswith(".py"):
        if not (workdir / argv[1]).is_file():
            raise SpecError(
                source, f"{path}.command.1", argv[1], f"expected a Python file in {workdir}"
            )


def _shown(job: JobSpec, key: str) -> object:
    """A built-in key's value as the user wrote it (a model or transport by its tag)."""
    if key == "model":
        return job.model.name
    if key == "transport":
        return job.transport.kind
    return getattr(job, key)


def expand_command(command: tuple[str, ...]) -> list[str]:
    """`command` with {python} replaced by the interpreter that runs the harness."""
    return [arg.replace(PYTHON, sys.executable) for arg in command]


def command_workdir(job: JobSpec, source: str) -> Path:
    """The directory a command job runs in (default: the spec file's)."""
    return resolve(job.workdir or ".", source)


def _program(name: str, workdir: Path) -> str | None:
    if "/" not in name:
        return shutil.which(name)
    path = workdir / name
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _check_on_failure(job: JobSpec, path: str, source: str) -> None:
    """`continue` needs a server that can drop a worker: a plain PS job (no trees, whose
    aggregators would take their subtree with them; not gloo, which has no server)."""
    if job.on_failure == "fail":
        if job.worker_timeout_s is not None:
            raise SpecError(
                source, f"{path}.worker_timeout_s", job.worker_timeout_s,
                "expected only with on_failure: continue",
            )  # fmt: skip
        return
    why = (
        "a command job" if job.is_command
        else "sync allreduce" if job.sync == "allreduce"
        else "gloo" if job.transport.kind == "gloo"
        else f"aggregation {job.aggregation_name}" if job.aggregation_name != "none"
        else "one worker" if job.workers < 2
        else None
    )  # fmt: skip
    if why:
        raise SpecError(
            source, f"{path}.on_failure", "continue",
            f"expected fail for {why} (continue is for sync ps over tcp or blt, no "
            "aggregation, 2 or more workers)",
        )  # fmt: skip


def _check_drop_at(job: JobSpec, path: str, source: str) -> None:
    """A reduced message needs a sender that knows what it may leave out: the parameter
    server's push and pull may lose entries; the ring's agreement bitmaps and a tree's
    counts must arrive whole, and only their receiver knows it."""
    if getattr(job.transport, "drop_at", "receiver") == "receiver":
        return
    if job.sync != "ps" or job.aggregation != "none":
        raise SpecError(source, f"{path}.transport.drop_at", "sender",
                        "expected receiver unless sync: ps without aggregation")  # fmt: skip


def _check_aggregation(job: JobSpec, path: str, source: str) -> None:
    if job.aggregation == "none":
        return
    if job.sync != "ps":
        raise SpecError(
            source,
            f"{path}.aggregation",
            job.aggregation_name,
            "expected none for sync: allreduce (aggregation trees carry parameter-server traffic)",
        )
    fanin = getattr(job.aggregation, "fanin", None)
    if fanin is not None and fanin < 2:
        raise SpecError(source, f"{path}.aggregation.fanin", fanin, "expected an integer >= 2")
    if job.workers > MAX_TREE_COUNT:
        raise SpecError(
            source,
            f"{path}.workers",
            job.workers,
            f"expected <= {MAX_TREE_COUNT} with aggregation (per-entry counts travel as one byte)",
        )


def _check_explicit_placement(job: JobSpec, path: str, source: str, hosts: list[str]) -> None:
    known = set(hosts)
    for j, host in enumerate(job.placement):
        if host not in known:
            raise SpecError(
                source,
                f"{path}.placement.{j}",
                host,
                f"expected a host of the topology (h1..h{len(hosts)})",
            )
        if host in job.placement[:j]:
            raise SpecError(source, f"{path}.placement.{j}", host, "expected each host once")
    if len(job.placement) != job.roles:
        raise SpecError(
            source,
            f"{path}.placement",
            list(job.placement),
            f"expected {job.roles} hosts (servers first, then workers)",
        )
