"""System calls: the one declarative table and its handlers, by area.

``spec`` is the table's vocabulary (``supported``/``partial``/``error``
entries with argument kinds for strace); each area module (``memory``,
``process``, ``sched``, ``clone``, ``futex``, ``signals``, ``system``, ``time``,
``timer``, ``files``, ``splice``, ``poll``, ``net``, ``events``) ends with its
``ENTRIES``; ``table`` merges them into ``TABLE``, used for dispatch, for
strace decoding and for ``sentry syscalls``. Nothing outside the table
decides which calls exist.
"""
