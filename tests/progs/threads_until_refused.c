/* Creates threads (each waits to read a pipe) until pthread_create fails or
 * argv[1] exist, then lets them all go and joins them: a refusal must be
 * an error the program sees (EAGAIN), never the death of the process.
 * Prints how many were made and how the next one failed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int gate[2];

static void *waiter(void *arg) {
    char c;
    (void)arg;
    read(gate[0], &c, 1);
    return NULL;
}

int main(int argc, char **argv) {
    int want = argc > 1 ? atoi(argv[1]) : 1100;
    pthread_t *threads = calloc(want, sizeof *threads);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    if (pipe(gate)) return 1;
    int made = 0, err = 0;
    while (made < want && !(err = pthread_create(&threads[made], &attr, waiter, NULL))) made++;
    printf("made %d threads, then: %s\n", made, err ? strerrorname_np(err) : "none refused");
    fflush(stdout);
    close(gate[1]); /* every waiter sees end-of-file at once */
    for (int i = 0; i < made; i++) pthread_join(threads[i], NULL);
    printf("all joined\n");
    return 0;
}
