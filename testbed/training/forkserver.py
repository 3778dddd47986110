"""One start-up per run: a process that imports torch and loads the datasets once,
then forks every worker and server of the run into its Mininet host.

``python -m testbed.training.forkserver DATASETS_JSON`` is started by the harness
(`testbed.jobs.forkserver`) in the root namespace, in a session of its own. It talks
JSON lines: requests on stdin, replies on stdout, its own log on stderr.

    <- {"ready": PID, "time": T}                          preloading done
    -> {"spawn": TAG, "config": ROLE.json, "log": LOG, "netns": HOST_PID, "env": {...}}
    <- {"spawned": TAG, "pid": CHILD}                     or {"spawned": TAG, "error": ...}
    <- {"exited": CHILD, "code": N, "time": T}            N < 0: killed by signal -N
    EOF on stdin: kill what is left, reap it, exit.

Why fork rather than exec: the exec path costs every process ~1.7 s of CPU to import
torch (27-32 s in the TCG guest) and ~120 MB of memory of its own. A forked child
shares the parent's pages copy-on-write and starts in milliseconds.

What a forked child must not inherit, and how each is handled:

- **Threads.** Only the forking thread exists in the child; a lock another thread held
  stays locked forever. This process is single-threaded: torch is told to use one
  intra-op thread before any tensor op (OMP_NUM_THREADS=1 too, so libgomp never builds
  a pool), nothing here starts a thread, and `_fork_child` refuses to fork if
  ``/proc/self/task`` shows more than one.
- **RNG state.** Each child re-seeds exactly as a fresh process did
  (`testbed.training.loop.run` calls ``torch.manual_seed(seed)``, every numpy generator
  is built from an explicit seed), so results equal the exec path's. The unseeded
  global generators (`random`, numpy's legacy one) are re-seeded from the OS, as a fresh
  interpreter's are, so that no two children share a hidden stream.
- **Open files and sockets.** The child's stdin becomes /dev/null and stdout/stderr its
  own log, which closes its copies of the control pipes; the parent opens no other file
  or socket. The child enters its host's network namespace (and mount namespace, when
  the host has its own) with ``setns`` before any socket exists.
- **Process group and lifetime.** The child calls ``setsid``, so its pid is its process
  group, as the ledger and teardown expect; it asks for SIGKILL when this process dies
  (``PR_SET_PDEATHSIG``), so a killed forkserver cannot leave children behind.
- **Signal handlers.** SIGINT, SIGTERM and SIGCHLD get the dispositions a fresh
  interpreter has; the SIGCHLD wake-up pipe this process reaps by is closed.
- **Shared pages.** ``gc.freeze()`` before the first fork moves every preloaded object
  out of the collector's reach, so collections in a child do not write to (and so
  copy) the parent's pages.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import random
import select
import signal
import sys
import time
import traceback

import numpy as np
import torch

# Preloaded, so that no child pays for these imports.
import torch.distributed  # noqa: F401  (gloo transport)

from testbed.training import datasets
from testbed.training import loop as training_loop
from testbed.training.role import RoleConfig

CLONE_NEWNS = 0x00020000  # mount namespace
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
SETUP_TIMEOUT_S = 10  # a child's setsid, setns and log redirection take milliseconds

_libc = ctypes.CDLL(None, use_errno=True)


def main(argv: list[str]) -> int:
    """Preload, announce readiness, then serve spawn requests until stdin closes."""
    torch.set_num_threads(1)  # before any tensor op: no intra-op pool to fork over
    for name, seed in json.loads(argv[1]) if len(argv) > 1 else []:
        datasets.load(name, seed)  # cached: every child reads the same arrays
    gc.freeze()
    # Reap each child the moment it exits, so that exit times order a job's failures:
    # SIGCHLD writes a byte to `wakeup`, which wakes the select below.
    wakeup, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    _reply({"ready": os.getpid(), "time": time.time()})
    children: set[int] = set()
    requests = sys.stdin.buffer
    while True:
        readable, _, _ = select.select([requests, wakeup], [], [], 1.0)
        if wakeup in readable:
            os.read(wakeup, 4096)
        _reap(children, block=False)
        if requests in readable:
            # One request at a time: the harness waits for each reply before it sends
            # the next, so no second line can sit unseen in the reader's buffer.
            line = requests.readline()
            if not line:
                break
            _reply(_spawn(json.loads(line), children, (wakeup, wakeup_w)))
    for pid in children:
        _kill_group(pid)
    _reap(children, block=True)
    return 0


def _spawn(request: dict, children: set[int], private_fds: tuple[int, ...]) -> dict:
    """Fork one child; reply only once it has its own session and namespaces, so that
    the harness never holds a pid whose process group does not exist yet."""
    tag = request["spawn"]
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return {"spawned": tag, "error": f"forkserver has {threads} threads; refusing to fork"}
    sys.stdout.flush()
    sys.stderr.flush()
    setup_r, setup_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        for fd in (*private_fds, setup_r):
            os.close(fd)
        _child(request, setup_w)  # never returns
    os.close(setup_w)
    children.add(pid)
    with os.fdopen(setup_r, "rb") as setup:
        ready, _, _ = select.select([setup], [], [], SETUP_TIMEOUT_S)
        outcome = setup.read().decode(errors="replace") if ready else "setup timed out"
    if outcome != "ok":
        _kill_group(pid)  # its exit is reaped and reported like any other
        return {"spawned": tag, "error": outcome or "child died during setup"}
    return {"spawned": tag, "pid": pid}


def _child(request: dict, setup_w: int) -> None:
    """Become one training process: set up (reported on `setup_w`), then train."""
    code = 1
    try:
        try:
            _setup(request)
        except BaseException as exc:
            os.write(setup_w, f"{type(exc).__name__}: {exc}".encode())
            raise
        os.write(setup_w, b"ok")
        os.close(setup_w)
        cfg = RoleConfig.load(request["config"])
        _libc.prctl(PR_SET_NAME, f"{cfg.role}{cfg.rank}@{cfg.host}"[:15].encode(), 0, 0, 0)
        training_loop.run(cfg)
        code = 0
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never run the forkserver's loop, atexit or finalizers


def _setup(request: dict) -> None:
    """Own session, death with the parent, fresh signals and RNGs, own log, the host's
    namespaces: everything before the first line of training code."""
    parent = os.getppid()
    os.setsid()
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != parent:  # the forkserver died before PDEATHSIG was set
        raise OSError("forkserver gone")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _redirect(request["log"])
    enter_namespaces(int(request["netns"]))
    os.environ.update(request.get("env", {}))
    random.seed()
    np.random.seed()


def enter_namespaces(pid: int) -> None:
    """Join the network namespace of process `pid`, and its mount namespace if it differs
    from ours (``mnexec -n`` gives every Mininet host one), keeping the working directory.

    Joining a mount namespace moves the caller to its root directory. The harness's
    paths are relative to where the user started it (the default run directory is
    ``results/<name>/<UTC>``), so without the chdir back a forked server could not open
    its role file. ``mnexec -a`` (the exec launcher) does the same chdir."""
    cwd = os.getcwd()
    for kind, flag in (("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS)):
        target = f"/proc/{pid}/ns/{kind}"
        if kind == "mnt" and os.stat(target).st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino:
            continue
        fd = os.open(target, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, flag), f"setns {target}")
        finally:
            os.close(fd)
    os.chdir(cwd)


def _redirect(log_path: str) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def _reap(children: set[int], block: bool) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _reply({"exited": pid, "code": os.waitstatus_to_exitcode(status), "time": time.time()})


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reply(message: dict) -> None:
    try:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the harness is gone; carry on reaping
        pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
