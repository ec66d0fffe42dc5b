#define _GNU_SOURCE
#include "CFleetShim.h"

#include <errno.h>
#if defined(__linux__)
#include <malloc.h>
#endif
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <grp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

int fleet_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
                int fd_in, int fd_out, int fd_err, int flags, pid_t *pid) {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    int rc = posix_spawnattr_init(&attr);
    if (rc != 0) return rc;
    rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) {
        posix_spawnattr_destroy(&attr);
        return rc;
    }

    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    short spawn_flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (flags & FLEET_SPAWN_SETSID) {
        spawn_flags |= POSIX_SPAWN_SETSID;
    } else if (flags & FLEET_SPAWN_SETPGROUP) {
        spawn_flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
#if defined(__APPLE__)
    /* Darwin: close every descriptor not named in the file actions. */
    spawn_flags |= POSIX_SPAWN_CLOEXEC_DEFAULT;
#endif
    posix_spawnattr_setflags(&attr, spawn_flags);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);

    posix_spawn_file_actions_adddup2(&actions, fd_in, 0);
    posix_spawn_file_actions_adddup2(&actions, fd_out, 1);
    posix_spawn_file_actions_adddup2(&actions, fd_err, 2);
#if defined(__linux__)
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
    if (cwd != NULL) {
        posix_spawn_file_actions_addchdir_np(&actions, cwd);
    }

    rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
}

int fleet_peer_uid(int fd, uid_t *uid, pid_t *pid) {
#if defined(__linux__)
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return errno;
    *uid = cred.uid;
    *pid = cred.pid;
    return 0;
#else
    gid_t gid;
    if (getpeereid(fd, uid, &gid) != 0) return errno;
    *pid = 0;
    return 0;
#endif
}

int fleet_set_child_subreaper(void) {
#if defined(__linux__)
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) return errno;
#endif
    return 0;
}

int fleet_wait_status(int status, int *code) {
    if (WIFEXITED(status)) {
        *code = WEXITSTATUS(status);
        return 1;
    }
    if (WIFSIGNALED(status)) {
        *code = WTERMSIG(status);
        return 2;
    }
    *code = 0;
    return 0;
}

int fleet_accept_cloexec(int fd) {
#if defined(__linux__)
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
#else
    int c = accept(fd, NULL, NULL);
    if (c >= 0) fcntl(c, F_SETFD, FD_CLOEXEC);
    return c;
#endif
}

int fleet_pipe_cloexec(int fds[2]) {
#if defined(__linux__)
    return pipe2(fds, O_CLOEXEC);
#else
    if (pipe(fds) != 0) return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
#endif
}

int fleet_prlimit(pid_t pid, int resource, unsigned long long soft, unsigned long long hard) {
#if defined(__linux__)
    struct rlimit lim = {.rlim_cur = soft, .rlim_max = hard};
    if (prlimit(pid, resource, &lim, NULL) != 0) return errno;
    return 0;
#else
    (void)pid; (void)resource; (void)soft; (void)hard;
    return ENOSYS;
#endif
}

/* Reports errno to the parent through the close-on-exec pipe and exits. */
static void child_fail(int fd) {
    int err = errno;
    ssize_t unused = write(fd, &err, sizeof(err));
    (void)unused;
    _exit(127);
}

static int apply_limit(int resource, unsigned long long value) {
    if (value == 0) return 0;
    struct rlimit lim = {.rlim_cur = value, .rlim_max = value};
    return setrlimit(resource, &lim);
}

int fleet_spawn_setup(const char *path, char *const argv[], char *const envp[], const char *cwd,
                      int fd_in, int fd_out, int fd_err, const fleet_child_setup *setup, pid_t *pid) {
    int report[2];
#if defined(__linux__)
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
#else
    if (pipe(report) != 0) return errno;
    fcntl(report[0], F_SETFD, FD_CLOEXEC);
    fcntl(report[1], F_SETFD, FD_CLOEXEC);
#endif
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return err;
    }
    if (child == 0) {
        /* Only async-signal-safe calls from here to exec. */
        sigset_t empty;
        sigemptyset(&empty);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        if (setsid() < 0) child_fail(report[1]);
#if defined(__linux__)
        if (setup->pdeathsig != 0) {
            if (prctl(PR_SET_PDEATHSIG, setup->pdeathsig) != 0) child_fail(report[1]);
            if (getppid() != parent) _exit(127); /* fleetd died before the prctl */
        }
#else
        (void)parent;
#endif
        if (apply_limit(RLIMIT_AS, setup->mem_bytes) != 0) child_fail(report[1]);
        if (apply_limit(RLIMIT_NOFILE, setup->open_files) != 0) child_fail(report[1]);
        if (apply_limit(RLIMIT_CPU, setup->cpu_seconds) != 0) child_fail(report[1]);
        if (dup2(fd_in, 0) < 0 || dup2(fd_out, 1) < 0 || dup2(fd_err, 2) < 0) child_fail(report[1]);
        if (cwd != NULL && chdir(cwd) != 0) child_fail(report[1]);
        if (setup->set_user) {
            if (setgroups(0, NULL) != 0) child_fail(report[1]);
            if (setgid(setup->gid) != 0) child_fail(report[1]);
            if (setuid(setup->uid) != 0) child_fail(report[1]);
        }
        /* Close everything above 2 but the report pipe (close-on-exec). */
#if defined(__linux__)
        if (report[1] > 3) close_range(3, (unsigned)report[1] - 1, 0);
        close_range((unsigned)report[1] + 1, ~0U, 0);
#else
        int top = getdtablesize();
        for (int fd = 3; fd < top; fd++) {
            if (fd != report[1]) close(fd);
        }
#endif
        execve(path, argv, envp);
        child_fail(report[1]);
    }

    close(report[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == sizeof(child_errno)) {
        /* The child failed before exec and exited: the reaper collects it. */
        return child_errno != 0 ? child_errno : ECHILD;
    }
    *pid = child;
    return 0;
}

void fleet_limit_malloc_arenas(int arenas) {
#if defined(__linux__)
    mallopt(M_ARENA_MAX, arenas);
#else
    (void)arenas;
#endif
}
