"""loader: turns a path and argv/envp into a ready guest image.

``elf`` validates and parses ELF64 headers (stricter than a general
parser: every rejection is ENOEXEC with the reason); ``exec`` maps the
program, its PT_INTERP interpreter and a stack with argv, envp and auxv
into a MemoryManager, following ``#!`` lines. Randomization (PIE base,
mmap base, stack, brk, AT_RANDOM) comes from a caller-supplied
``random.Random`` so ``--seed`` makes a run reproducible.
"""
