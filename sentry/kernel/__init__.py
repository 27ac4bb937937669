"""kernel: tasks, thread groups and the run loop.

``Kernel`` owns what a sandbox shares (MemoryFile, page cache, VFS, PID
table, platform); ``run.run_task`` is a task's whole life on its OS thread:
switch → dispatch → handler → switch, never touching trio on that path.
"""
