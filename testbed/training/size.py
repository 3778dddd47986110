"""How many bytes a job's model puts on the network (for policies that rank jobs by
communication cost, e.g. MLNET's smallest-first)."""

from __future__ import annotations

from testbed.spec.schema import JobSpec


def parameter_count(job: JobSpec) -> int:
    """Entries of the job's flat parameter vector (builds the model once, on the CPU)."""
    from testbed.training import datasets, models  # torch: only when a policy needs it

    model = models.build(job.model, datasets.load(job.dataset, 0), seed=0)
    return sum(p.numel() for p in model.parameters())


def model_bytes(job: JobSpec) -> int:
    """Bytes of one float32 copy of the job's parameters (or gradient)."""
    return 4 * parameter_count(job)


def copies_per_iteration(job: JobSpec) -> int:
    """Model-sized messages a job's workers send in all per iteration.

    ps: each worker pushes its gradient and gets the parameters back, in shards that
    add up to one model each way; an aggregation tree moves the same 2 per worker,
    over different links. allreduce (ring, and gloo's): each worker sends 2 (W-1)
    chunks of 1/W of the model. Headers, retransmissions and the ring's agreement
    bitmaps are left out: they do not change how jobs rank."""
    if job.sync == "ps":
        return 2 * job.workers
    return 2 * (job.workers - 1)


def total_bytes(job: JobSpec) -> int:
    """Model bytes the whole job will send: model x messages per iteration x iterations."""
    return model_bytes(job) * copies_per_iteration(job) * job.iterations
