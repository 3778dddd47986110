"""The two process roles of a job: a training worker and a parameter-server shard.

Both are started by the harness inside a Mininet host (``python -m
testbed.training ROLE.json``) and append their measurements to a JSONL records
file: one ``iteration`` record per worker iteration, one ``message`` record per
message received.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from testbed.layout import snapshot_path
from testbed.spec.schema import DEFAULT_WORKER_TIMEOUT_S
from testbed.training import datasets, models
from testbed.training.messages import Message
from testbed.training.ps import PSServer, PSWorker, shard_bounds
from testbed.training.role import RecordWriter, RoleConfig
from testbed.training.tree import TreeServer, TreeWorker
from testbed.transports import make_transport


def run(cfg: RoleConfig) -> None:
    """Run the role `cfg` describes to completion."""
    torch.set_num_threads(1)  # 2 cores are shared by every host process and OVS
    torch.manual_seed(cfg.seed)
    records = RecordWriter(cfg.records)
    try:
        (run_server if cfg.role == "server" else run_worker)(cfg, records)
    finally:
        records.close()


def _setup(cfg: RoleConfig) -> tuple[datasets.Dataset, nn.Module]:
    spec = cfg.spec
    data = datasets.load(spec.dataset, cfg.seed)
    return data, models.build(spec.model, data, cfg.seed)


def fair_share(cfg: RoleConfig) -> float:
    """blt's per-channel rate: the link (or `rate_mbps`) split over the widest fan-in/out
    (with trees: the widest in-degree of any node)."""
    spec = cfg.spec
    base = getattr(spec.transport, "rate_mbps", None) or cfg.link_mbps
    if spec.sync == "ps":
        return base / max(cfg.fan_in or spec.workers, spec.servers)
    return base


def counted(cfg: RoleConfig) -> bool:
    """Whether entries can go missing, so aggregated sums must carry per-entry counts."""
    t = cfg.spec.transport
    return t.loses_entries or t.drop_fraction > 0


def run_server(cfg: RoleConfig, records: RecordWriter) -> None:
    """Serve one shard of the parameters for `iterations` synchronous steps."""
    spec = cfg.spec
    _, model = _setup(cfg)
    flat = parameters_to_vector(model.parameters()).detach().numpy()
    lo, hi = shard_bounds(len(flat), spec.servers)[cfg.rank]
    server = _server(cfg, flat[lo:hi])
    try:
        server.accept()
        lost = 0
        for it in range(spec.iterations):
            for msg in server.step(it):
                _message(records, spec, it, msg)
            lost = _report_lost(records, cfg, server, it, lost)
            if cfg.tree:  # what the per-entry counts added up to at the root
                c = server.counts
                records.write(
                    "aggregate",
                    job=spec.name,
                    iteration=it,
                    count_mean=float(c.mean()),
                    count_min=float(c.min()),
                    count_max=float(c.max()),
                )
    finally:
        server.close()


def _report_lost(records: RecordWriter, cfg: RoleConfig, server, it: int, reported: int) -> int:
    """Record the workers the server dropped since `reported` (on_failure: continue)
    and, for such jobs, how many are still live; return how many are reported now."""
    name = cfg.spec.name
    for gone in getattr(server, "lost", [])[reported:]:
        records.write(
            "worker_lost", job=name, server=cfg.rank, worker=gone.rank,
            iteration=gone.iteration, reason=gone.reason,
        )  # fmt: skip
    if cfg.spec.on_failure == "continue":  # iterations.csv's live_workers
        records.write("step", job=name, server=cfg.rank, iteration=it,
                      live_workers=server.live_workers)  # fmt: skip
    return len(getattr(server, "lost", []))


def _server(cfg: RoleConfig, shard: np.ndarray) -> PSServer | TreeServer:
    spec = cfg.spec
    if cfg.tree:
        return TreeServer(
            make_transport(spec.transport, cfg.link_mbps, role_seed(cfg)),
            cfg.ip,
            cfg.port,
            cfg.tree[0],
            shard,
            spec.lr,
            spec.momentum,
            counted(cfg),
            spec.transport.fill,
            share_mbps=fair_share(cfg),
        )
    return PSServer(
        make_transport(spec.transport, cfg.link_mbps, role_seed(cfg)),
        cfg.ip,
        cfg.port,
        spec.workers,
        shard,
        spec.lr,
        spec.momentum,
        spec.transport.fill,
        share_mbps=fair_share(cfg),
        rank=cfg.rank,
        worker_timeout_s=worker_timeout(spec),
    )


def role_seed(cfg: RoleConfig) -> int:
    """This process's own seed (its drops, its batches): the run's, and its role and rank."""
    return cfg.seed * 1000 + cfg.rank + (500 if cfg.role == "server" else 0)


def worker_timeout(spec) -> float | None:
    """How long a server waits for a silent worker; None: never drops one."""
    if spec.on_failure != "continue":
        return None
    return spec.worker_timeout_s or DEFAULT_WORKER_TIMEOUT_S


def make_sync(cfg: RoleConfig):
    """The worker's side of the job's sync scheme over its transport."""
    spec = cfg.spec
    t = spec.transport
    seed = role_seed(cfg)
    if t.kind == "gloo":
        from testbed.training.gloo import GlooAllreduce  # imports torch.distributed

        return GlooAllreduce(
            cfg.workers[0],
            cfg.rank,
            spec.workers,
            spec.lr,
            spec.momentum,
            t.drop_fraction,
            seed,
            t.fill,
        )
    transport = make_transport(t, cfg.link_mbps, seed)
    if spec.sync == "allreduce":
        from testbed.training.ring import RingAllreduce

        return RingAllreduce(
            transport,
            cfg.workers,
            cfg.rank,
            spec.lr,
            spec.momentum,
            t.fill,
            t.drop_fraction,
            seed,
            share_mbps=fair_share(cfg),
            lossy=t.loses_entries,
        )
    if cfg.tree:
        return TreeWorker(
            transport,
            cfg.ip,
            cfg.rank,
            cfg.tree,
            counted(cfg),
            t.fill,
            t.drop_fraction,
            seed,
            share_mbps=fair_share(cfg),
        )
    return PSWorker(
        transport,
        cfg.servers,
        cfg.rank,
        t.drop_fraction,
        seed,
        shares=[fair_share(cfg)] * len(cfg.servers),
    )


def run_worker(cfg: RoleConfig, records: RecordWriter) -> None:
    """Train: compute a gradient on the local shard, exchange, repeat."""
    spec = cfg.spec
    data, model = _setup(cfg)
    loss_fn = models.loss_function(data)
    sampler = datasets.BatchSampler(
        data.shard(cfg.rank, spec.workers), spec.batch_size, cfg.seed * 1000 + cfg.rank
    )
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    params = parameters_to_vector(model.parameters()).detach().numpy().copy()
    sync = make_sync(cfg)
    records.write("ready", job=spec.name, rank=cfg.rank)  # connected; training starts now
    wire = WireCounter(f"{cfg.host}-eth0")
    set_compute_s = compute_target_s(spec.compute_ms, cfg.seed, cfg.rank)
    try:
        for it in range(spec.iterations):
            t0 = time.perf_counter()
            batch = torch.from_numpy(sampler.next())
            model.zero_grad(set_to_none=False)
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
            if set_compute_s is not None:  # the rest of the set compute time, waited out
                time.sleep(max(0.0, t0 + set_compute_s - time.perf_counter()))
            t1 = time.perf_counter()
            received = sync.exchange(it, grad, params)
            vector_to_parameters(torch.from_numpy(params), model.parameters())
            t2 = time.perf_counter()
            last = it == spec.iterations - 1
            evaluating = (it + 1) % spec.eval_every == 0 or last
            if evaluating:  # every worker: param_divergence compares the replicas
                _snapshot(cfg, it, params)
            evaluate = cfg.rank == 0 and evaluating
            for msg in received:
                _message(records, spec, it, msg)
            records.write(
                "iteration",
                job=spec.name,
                rank=cfg.rank,
                iteration=it,
                iter_s=t2 - t0,
                compute_s=t1 - t0,
                compute_set_s=set_compute_s,
                comm_s=t2 - t1,
                bytes_sent=wire.since_last(),
                train_loss=float(loss.item()),
                test_accuracy=accuracy(model, data) if evaluate else None,
            )
    finally:
        sync.close()


def compute_target_s(compute_ms, seed: int, rank: int) -> float | None:
    """A worker's set compute time per iteration (`jobs[].compute_ms`): the value, or
    for [low, high] its own uniform draw, from the run's seed and its rank (arms of a
    study with one seed get the same draws)."""
    if compute_ms is None:
        return None
    if isinstance(compute_ms, (int, float)):
        return compute_ms / 1000
    low, high = compute_ms
    return float(np.random.default_rng([seed, rank]).uniform(low, high)) / 1000


class WireCounter:
    """What this host's interface sent, Ethernet frames as its link carries them
    (payload, headers, retransmissions, the ACKs of what it receives), between one
    reading and the next; read in the process's own network namespace."""

    def __init__(self, interface: str):
        self.interface = interface
        self.last = tx_bytes(interface)

    def since_last(self) -> int | None:
        """Bytes sent since the last call (None where the interface is not ours)."""
        now = tx_bytes(self.interface)
        sent = None if now is None or self.last is None else now - self.last
        self.last = now
        return sent


def tx_bytes(interface: str) -> int | None:
    """The transmit byte counter of `interface` in this network namespace."""
    with open("/proc/self/net/dev") as fh:
        for line in fh:
            name, sep, fields = line.partition(":")
            if sep and name.strip() == interface:
                return int(fields.split()[8])
    return None


def _snapshot(cfg: RoleConfig, iteration: int, params: np.ndarray) -> None:
    path = snapshot_path(cfg.records, iteration)
    path.parent.mkdir(exist_ok=True)
    np.save(path, params)


def accuracy(model: nn.Module, data: datasets.Dataset) -> float:
    """Test accuracy: the right class, or for ratings the right rounded rating."""
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(data.x_test))
    model.train()
    if data.regression:
        predicted = out.round().clamp(1, 5).numpy()
    else:
        predicted = out.argmax(dim=1).numpy()
    return float(np.mean(predicted == data.y_test))


def _message(records: RecordWriter, spec, iteration: int, msg: Message) -> None:
    st = msg.stats
    records.write(
        "message",
        job=spec.name,
        iteration=iteration,
        src=msg.src,
        dst=msg.dst,
        kind=msg.kind,
        bytes=st.nbytes,
        fct_s=st.fct_s,
        delivered_fraction=st.delivered_fraction,
        retransmitted_bytes=st.retransmitted_bytes,
        transport=spec.transport.kind,
    )
