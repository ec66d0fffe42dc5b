/* stamp: the first act of a process is to record when it started.
 *
 * Appends "<CLOCK_REALTIME ns> <pid>\n" to $STAMP_FILE (else ./stamps) with one write.
 * Built two ways by bench/lib/common.bash:
 *   stamp-agent  exits 0 at once (the per-job overhead agent; ignores its arguments)
 *   stamp-exec   execvp(argv[1], argv+1): a wrapper that stamps a server's start
 *   stamp-wait   waits forever, ignoring its arguments: a supervised program
 * Statically linked when the toolchain can, so that dynamic loading adds nothing.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const char *path = getenv("STAMP_FILE");
    if (!path || !*path) path = "stamps";
    char line[64];
    int n = snprintf(line, sizeof line, "%lld %d\n",
                     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        (void)!write(fd, line, (size_t)n);
        close(fd);
    }
#if defined(STAMP_EXEC)
    if (argc > 1) execvp(argv[1], argv + 1);
    perror("stamp-exec: execvp");
    return 127;
#elif defined(STAMP_WAIT)
    (void)argc;
    (void)argv;
    for (;;) pause();
#else
    (void)argc;
    (void)argv;
    return 0;
#endif
}
