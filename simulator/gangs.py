"""The one place a trace :class:`~simulator.job.Job` becomes a :class:`~scheduler.gang.Gang`."""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.simulator.job import Job
from phalanx.simulator.slowdown import SlowdownModel


@dataclass(frozen=True)
class GangFactory:
    """Turns jobs into gangs for one cluster.

    A job without a fixed pod count is split into pods of at most ``max_pod_gpus`` whole GPUs
    (the largest node), the usual one-pod-per-node layout of distributed training.
    ``oracle_estimates`` tells the scheduler each job's true run time (as SJF-oracle studies
    do); otherwise it knows only what the trace states.
    """

    max_pod_gpus: int
    slowdown: SlowdownModel
    oracle_estimates: bool = False

    def pod_sizes(self, job: Job) -> list[int]:
        """Whole GPUs per pod (one zero entry for a CPU-only or GPU-share pod)."""
        if job.gpus == 0:
            return [0]
        if job.pods is not None:
            return [job.gpus // job.pods] * job.pods
        full, rest = divmod(job.gpus, max(1, self.max_pod_gpus))
        return [self.max_pod_gpus] * full + ([rest] if rest else [])

    def gang(self, job: Job, name: str | None = None, submit_time_s: float | None = None) -> Gang:
        gang_name = name or job.name
        members = tuple(
            Member(
                f"{gang_name}-{i}",
                MemberRequest(
                    gpus=size,
                    gpu_milli=job.gpu_milli if size == 0 else 0,
                    cpu_milli=job.cpu_milli,
                    memory_mib=job.memory_mib,
                    gpu_products=job.gpu_products,
                ),
            )
            for i, size in enumerate(self.pod_sizes(job))
        )
        estimate = job.duration_s if self.oracle_estimates else job.runtime_estimate_s
        return Gang(
            name=gang_name,
            members=members,
            priority=job.priority,
            queue=job.tenant,
            tenant=job.tenant,
            comm_intensity=self.slowdown.intensity(job),
            submit_time_s=job.submit_time_s if submit_time_s is None else submit_time_s,
            runtime_estimate_s=estimate,
            job_class=job.job_class,
        )
