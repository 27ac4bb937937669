/* The initial stack: which auxv entries the loader gave (present or not,
 * and the values that must not differ from a native run), argv/envp, and
 * with "addresses" the addresses that --seed must make reproducible.
 * AT_HWCAP2 is left out: the sandbox hides HWCAP2_FSGSBASE (the platforms
 * own FS/GS base switching), often the host's only bit there. */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>

extern char **environ;

static const struct { unsigned long type; const char *name; } TYPES[] = {
    {AT_PHDR, "AT_PHDR"}, {AT_PHENT, "AT_PHENT"}, {AT_PHNUM, "AT_PHNUM"}, {AT_PAGESZ, "AT_PAGESZ"},
    {AT_BASE, "AT_BASE"}, {AT_ENTRY, "AT_ENTRY"}, {AT_RANDOM, "AT_RANDOM"}, {AT_UID, "AT_UID"},
    {AT_EUID, "AT_EUID"}, {AT_GID, "AT_GID"}, {AT_EGID, "AT_EGID"}, {AT_SECURE, "AT_SECURE"},
    {AT_HWCAP, "AT_HWCAP"}, {AT_CLKTCK, "AT_CLKTCK"},
    {AT_PLATFORM, "AT_PLATFORM"}, {AT_EXECFN, "AT_EXECFN"}, {AT_MINSIGSTKSZ, "AT_MINSIGSTKSZ"},
};

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "addresses")) {
        int local;
        void *m = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        printf("stack %p mmap %p main %p heap %p\n", (void *)&local, m, (void *)main, malloc(16));
        return 0;
    }
    for (unsigned i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        unsigned long v = getauxval(TYPES[i].type);
        printf("%s %s", TYPES[i].name, v ? "present" : "zero");
        switch (TYPES[i].type) {
        case AT_PHENT: case AT_PAGESZ: case AT_CLKTCK: case AT_SECURE: case AT_UID: case AT_EUID:
        case AT_GID: case AT_EGID:
            printf(" %lu", v);
            break;
        case AT_PLATFORM:
            printf(" %s", v ? (char *)v : "-");
            break;
        case AT_EXECFN:
            printf(" equals argv[0]: %d", v && !strcmp((char *)v, argv[0]));
            break;
        case AT_PHDR: {
            const Elf64_Phdr *ph = (const Elf64_Phdr *)v;
            int self = 0;
            for (unsigned long j = 0; j < getauxval(AT_PHNUM); j++) self |= ph[j].p_type == PT_PHDR || ph[j].p_type == PT_LOAD;
            printf(" readable phdrs: %d", self);
            break;
        }
        }
        printf("\n");
    }
    printf("argc %d argv[1] %s envp[0] set %d\n", argc, argc > 1 ? argv[1] : "-", environ[0] != 0);
    return 0;
}
