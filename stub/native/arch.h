/* Register layout shared by every platform: struct user_regs_struct from
 * <sys/user.h>, mirrored in arch.cdef (the tripwire below and
 * tests/test_layout.py keep the two in step). */
#ifndef SENTRY_ARCH_H
#define SENTRY_ARCH_H
#include <stddef.h>
#include <sys/user.h>

_Static_assert(sizeof(struct user_regs_struct) == 27 * 8, "user_regs_struct size");
_Static_assert(offsetof(struct user_regs_struct, orig_rax) == 15 * 8, "orig_rax offset");
_Static_assert(offsetof(struct user_regs_struct, fs_base) == 21 * 8, "fs_base offset");

/* Size of the XSAVE area of this CPU in standard format (CPUID 0xD.0 EBX
 * with all features XCR0 enables), at least 576 (legacy + header). */
int sentry_xsave_size(void);
/* Power-on FPU state: FCW 0x37f, MXCSR 0x1f80, XSTATE_BV x87|SSE. */
void sentry_fpstate_init(unsigned char *area, int size);
/* The CPU this thread runs on now. */
int sentry_host_cpu(void);
#endif
