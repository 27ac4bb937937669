"""Linux x86-64 ABI facts shared by every layer: system call numbers,
constants and struct layouts. Pure data, imports nothing of the project."""
