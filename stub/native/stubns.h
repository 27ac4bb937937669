/* The namespaces the stubs of one sandbox share, as gVisor's stubs share
 * the sandbox's: its first stub is cloned into fresh user, pid, net, mount
 * and ipc namespaces; every later one is cloned into a fresh pid namespace
 * only and joins the first one's user, net, mount and ipc namespaces
 * (fds of /proc/PID/ns/{user,net,mnt,ipc}, in that order, held by
 * platforms/stubns.py) before its execve. Making a network namespace alone
 * costs ~0.5 ms here, all five ~1.1 ms: that is saved per stub. */
#ifndef SENTRY_STUBNS_H
#define SENTRY_STUBNS_H

#define SENTRY_STUB_NS_KINDS 4

/* clone() flags for a stub (without CLONE_VM and the like): every kind of
 * namespace fresh when `shared` is NULL, else a pid namespace only. */
int sentry_stub_clone_flags(const int *shared);
/* In the cloned stub, before execve: join the `shared` namespaces (NULL:
 * nothing to do); the user namespace first, which grants the rights to
 * join the others. 0, or -errno. */
int sentry_stub_join(const int *shared);
#endif
