"""How many bytes a job's model puts on the network per iteration (for policies that
rank jobs by communication cost, e.g. MLNET's smallest-first)."""

from __future__ import annotations

from testbed.spec.schema import JobSpec


def parameter_count(job: JobSpec) -> int:
    """Entries of the job's flat parameter vector (builds the model once, on the CPU)."""
    from testbed.training import datasets, models  # torch: only when a policy needs it

    model = models.build(job.model, datasets.load(job.dataset, 0), seed=0)
    return sum(p.numel() for p in model.parameters())


def iteration_bytes(job: JobSpec) -> int:
    """Gradient bytes all workers push per iteration: float32 model x workers."""
    return 4 * parameter_count(job) * job.workers
