#ifndef CFLEETSHIM_H
#define CFLEETSHIM_H

#include <sys/types.h>

/// How a spawned child is detached from fleetd's terminal and signals.
enum {
    FLEET_SPAWN_SETSID = 1,   /* new session (and so new process group) */
    FLEET_SPAWN_SETPGROUP = 2 /* new process group in fleetd's session */
};

/// Starts `path` with posix_spawn: empty signal mask, default dispositions, the given
/// descriptors as 0, 1 and 2, every other descriptor closed, `cwd` as working
/// directory (NULL keeps ours). Returns 0 and sets *pid, or an errno value.
int fleet_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
                int fd_in, int fd_out, int fd_err, int flags, pid_t *pid);

/// Peer credentials of a connected Unix socket. Returns 0 or an errno value.
int fleet_peer_uid(int fd, uid_t *uid, pid_t *pid);

/// Makes this process a subreaper for orphaned descendants (Linux; no-op elsewhere).
int fleet_set_child_subreaper(void);

/// Decodes a wait status: 1 and *code when exited, 2 and *code=signal when signalled.
int fleet_wait_status(int status, int *code);

/// accept(2) with close-on-exec set atomically where the platform allows.
int fleet_accept_cloexec(int fd);

/// Creates a pipe whose both ends are close-on-exec.
int fleet_pipe_cloexec(int fds[2]);

/// Sets a resource limit on another process (Linux prlimit); ENOSYS elsewhere.
int fleet_prlimit(pid_t pid, int resource, unsigned long long soft,
                  unsigned long long hard);

#endif
