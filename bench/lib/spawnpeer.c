/* The per-job overhead's peer: the bare cost of starting a program with posix_spawn.
 *
 *   spawnpeer N STAMP_AGENT   prints, per run, the ns from just before posix_spawn to
 *                             the stamp agent's first instruction (it appends its
 *                             CLOCK_REALTIME to $STAMP_FILE), then "true <ns>" lines:
 *                             posix_spawn + waitpid of /bin/true, whole.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: spawnpeer N STAMP_AGENT (STAMP_FILE in the environment)\n");
        return 2;
    }
    int n = atoi(argv[1]);
    const char *stamp_file = getenv("STAMP_FILE");
    if (!stamp_file) return 2;
    for (int i = 0; i < n; i++) {
        unlink(stamp_file);
        char *child_argv[] = {argv[2], NULL};
        pid_t pid;
        long long t0 = now_ns(CLOCK_REALTIME);
        if (posix_spawn(&pid, argv[2], NULL, NULL, child_argv, environ) != 0) return 1;
        int st;
        waitpid(pid, &st, 0);
        FILE *f = fopen(stamp_file, "r");
        long long t1 = 0;
        if (!f || fscanf(f, "%lld", &t1) != 1) return 1;
        fclose(f);
        printf("stamp %lld\n", t1 - t0);
    }
    for (int i = 0; i < n; i++) {
        char *child_argv[] = {"/bin/true", NULL};
        pid_t pid;
        long long t0 = now_ns(CLOCK_MONOTONIC);
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, child_argv, environ) != 0) return 1;
        int st;
        waitpid(pid, &st, 0);
        printf("true %lld\n", now_ns(CLOCK_MONOTONIC) - t0);
    }
    return 0;
}
