/* timeit: wall time of commands, started with posix_spawn and waited for, no shell.
 *
 *   timeit RUNS WARMUP CMD [ARGS...] [--- CMD [ARGS...]]...
 *
 * One sample runs every command in turn (so "s6-svstat dir1 --- s6-svstat dir2 ..."
 * is one sample over all the services). Prints one line per sample: nanoseconds.
 * Output of the commands goes to /dev/null; a command that exits non-zero stops it
 * with status 1 (its stderr is kept).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: timeit RUNS WARMUP CMD [ARGS...] [--- CMD ...]...\n");
        return 2;
    }
    int runs = atoi(argv[1]), warmup = atoi(argv[2]);
    char **cmds[256];
    int ncmds = 0;
    cmds[ncmds++] = &argv[3];
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "---") == 0) {
            argv[i] = NULL;
            if (i + 1 < argc && ncmds < 256) cmds[ncmds++] = &argv[i + 1];
        }
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    for (int r = 0; r < warmup + runs; r++) {
        long long t0 = now_ns();
        for (int c = 0; c < ncmds; c++) {
            pid_t pid;
            if (posix_spawnp(&pid, cmds[c][0], &fa, NULL, cmds[c], environ) != 0) {
                perror(cmds[c][0]);
                return 1;
            }
            int st;
            if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "timeit: %s failed (status %d)\n", cmds[c][0], st);
                return 1;
            }
        }
        long long dt = now_ns() - t0;
        if (r >= warmup) printf("%lld\n", dt);
    }
    return 0;
}
