"""Phalanx: gang scheduling and topology-aware GPU placement for Kubernetes.

Every part installs under this one namespace (``phalanx.topology``, ``phalanx.scheduler``,
``phalanx.policies``, ``phalanx.simulator``, ``phalanx.extender``, ``phalanx.bench``); the source
keeps them as top-level folders, mapped here by the build's package-dir table.
"""
