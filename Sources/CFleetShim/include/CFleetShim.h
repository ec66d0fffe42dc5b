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

/// What an agent's process gets before its program starts (Linux: a parent-death
/// signal; everywhere: resource limits and, when fleetd is root, another user).
typedef struct {
    int pdeathsig;                 /* 0: none (Linux only) */
    unsigned long long mem_bytes;  /* RLIMIT_AS; 0: unchanged */
    unsigned long long open_files; /* RLIMIT_NOFILE; 0: unchanged */
    unsigned long long cpu_seconds;/* RLIMIT_CPU; 0: unchanged */
    int set_user;                  /* 1: switch to uid/gid (with no supplementary groups) */
    uid_t uid;
    gid_t gid;
} fleet_child_setup;

/// Like fleet_spawn, but applies `setup` in the child before exec: fork and exec,
/// because posix_spawn cannot set a parent-death signal, limits or a user. Returns 0
/// and sets *pid, or an errno value (also one the child met before exec).
int fleet_spawn_setup(const char *path, char *const argv[], char *const envp[], const char *cwd,
                      int fd_in, int fd_out, int fd_err, const fleet_child_setup *setup, pid_t *pid);

/// Caps glibc's malloc arenas (Linux; no-op elsewhere): fleetd runs many short-lived
/// threads, and one arena per thread would keep each one's high-water mark.
void fleet_limit_malloc_arenas(int arenas);

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
