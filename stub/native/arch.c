#define _GNU_SOURCE
#include "arch.h"
#include <cpuid.h>
#include <sched.h>
#include <string.h>
#include <stdint.h>

int sentry_xsave_size(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(0xd, 0, &a, &b, &c, &d) || b < 576) return 576 + 64;
    return (int)b;
}

void sentry_fpstate_init(unsigned char *area, int size) {
    memset(area, 0, size);
    uint16_t fcw = 0x37f;
    uint32_t mxcsr = 0x1f80, mxcsr_mask = 0xffff;
    memcpy(area + 0, &fcw, 2);
    memcpy(area + 24, &mxcsr, 4);
    memcpy(area + 28, &mxcsr_mask, 4);
    if (size >= 576 + 8) {
        uint64_t xstate_bv = 3;
        memcpy(area + 512, &xstate_bv, 8);
    }
}

int sentry_host_cpu(void) { return sched_getcpu(); }
