"""Sockets implemented entirely in the Sentry: AF_UNIX, and AF_INET/AF_INET6
over a loopback that exists only inside the sandbox (``--network=none``).

In a nutshell: a socket is an ``OpenFile`` (``socket.Socket``) whose data
never leaves the Sentry. Connection-oriented sockets (``conn.ConnSocket``:
unix stream/seqpacket, TCP) are pairs of endpoints that append ``Message``s
to each other's receive queue; datagram sockets (``dgram.DgramSocket``:
unix dgram, UDP) append to the queue of the socket an address names.
Names live in the sandbox's ``stack.Stack`` (abstract unix names, the
loopback's port table) or, for unix path names, in the VFS as socket nodes
(``addr.UnixFamily``). With ``--network=none`` (the default) no host
socket is ever created: the host sees no listening port, and any
destination outside 127.0.0.0/8 and ::1 is ENETUNREACH. With
``--network=host`` only, TCP and UDP sockets are instead host sockets the
Sentry owns and works for the guest (``hostinet.HostSocket``, over the
libc calls of ``hostcalls``); AF_UNIX stays as above in both.

Socket operations never block: one that would raises ``WouldBlock`` (an
EAGAIN that says what to wait for); the system-call layer
(``sentry.syscalls.net``) waits in the kernel's trio loop and retries,
unless the socket is O_NONBLOCK or the call says MSG_DONTWAIT.

Lock order: Stack.lock (all socket state of a sandbox) is a leaf;
subscriber callbacks (poll, epoll, waiting calls) run after it is released.
"""
