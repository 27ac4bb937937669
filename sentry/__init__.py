"""Sentry: an application kernel in Python, in the line of gVisor.

Packages: ``sentry.kernel`` (tasks, the run loop), ``sentry.mm`` (guest
memory), ``sentry.fs`` (the VFS), ``sentry.syscalls`` (the system-call
table and handlers), ``sentry.cli`` (the command line). The platforms that
run guest code live in the top-level ``platforms`` package.
"""
