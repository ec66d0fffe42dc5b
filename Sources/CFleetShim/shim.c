#define _GNU_SOURCE
#include "CFleetShim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
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
