"""Platforms: the host mechanisms that run guest code (ptrace, vmexec, kvm)
behind the one interface of ``platforms.base``. See that module."""
