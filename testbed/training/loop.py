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

from testbed.training import datasets, models
from testbed.training.ps import PSServer, PSWorker, shard_bounds
from testbed.training.role import RecordWriter, RoleConfig
from testbed.transports import MessageStats, make_transport


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


def run_server(cfg: RoleConfig, records: RecordWriter) -> None:
    """Serve one shard of the parameters for `iterations` synchronous steps."""
    spec = cfg.spec
    _, model = _setup(cfg)
    flat = parameters_to_vector(model.parameters()).detach().numpy()
    lo, hi = shard_bounds(len(flat), spec.servers)[cfg.rank]
    server = PSServer(make_transport(spec.transport), cfg.ip, cfg.port, spec.workers,
                      flat[lo:hi], spec.lr, spec.momentum)
    try:
        server.accept()
        for it in range(spec.iterations):
            for src, st in enumerate(server.step(it)):
                _message(records, spec, it, f"worker{src}", f"server{cfg.rank}", "push", st)
    finally:
        server.close()


def run_worker(cfg: RoleConfig, records: RecordWriter) -> None:
    """Train: compute a gradient on the local shard, exchange, repeat."""
    spec = cfg.spec
    data, model = _setup(cfg)
    loss_fn = nn.CrossEntropyLoss()
    sampler = datasets.BatchSampler(data.shard(cfg.rank, spec.workers), spec.batch_size,
                                    cfg.seed * 1000 + cfg.rank)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    params = parameters_to_vector(model.parameters()).detach().numpy().copy()
    sync = PSWorker(make_transport(spec.transport), cfg.servers, cfg.rank)
    records.write("ready", job=spec.name, rank=cfg.rank)  # connected; training starts now
    try:
        for it in range(spec.iterations):
            t0 = time.perf_counter()
            batch = torch.from_numpy(sampler.next())
            model.zero_grad(set_to_none=False)
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
            t1 = time.perf_counter()
            pulls = sync.step(it, grad, params)
            vector_to_parameters(torch.from_numpy(params), model.parameters())
            t2 = time.perf_counter()
            last = it == spec.iterations - 1
            evaluate = cfg.rank == 0 and ((it + 1) % spec.eval_every == 0 or last)
            for i, st in enumerate(pulls):
                _message(records, spec, it, f"server{i}", f"worker{cfg.rank}", "pull", st)
            records.write(
                "iteration", job=spec.name, rank=cfg.rank, iteration=it,
                iter_s=t2 - t0, compute_s=t1 - t0, comm_s=t2 - t1,
                bytes_sent=int(grad.nbytes), train_loss=float(loss.item()),
                test_accuracy=accuracy(model, data) if evaluate else None,
            )
    finally:
        sync.close()


def accuracy(model: nn.Module, data: datasets.Dataset) -> float:
    """Fraction of the test set classified correctly."""
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.x_test)).argmax(dim=1).numpy()
    model.train()
    return float(np.mean(predicted == data.y_test))


def _message(records: RecordWriter, spec, iteration: int, src: str, dst: str, kind: str,
             st: MessageStats) -> None:
    records.write(
        "message", job=spec.name, iteration=iteration, src=src, dst=dst, kind=kind,
        bytes=st.nbytes, fct_s=st.fct_s, delivered_fraction=st.delivered_fraction,
        retransmitted_bytes=st.retransmitted_bytes, transport=spec.transport.kind,
    )
