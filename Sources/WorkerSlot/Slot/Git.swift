#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFleetShim
import FleetCore

/// git as a child process (never in fleetd's own process), with a timeout.
struct Git {
    var environment: [String: String]
    var timeout: Double = 120

    struct Result {
        var status: ExitStatus
        var output: String
        var ok: Bool { status.isSuccess }
    }

    /// Runs `git ARGS` in `cwd`; stdout and stderr together, up to 1 MiB.
    func run(_ args: [String], in cwd: String? = nil) throws -> Result {
        var fds: [Int32] = [0, 0]
        guard fleet_pipe_cloexec(&fds) == 0 else { throw lastError("pipe") }
        let request = SpawnRequest(
            executable: "git", arguments: ["-c", "safe.directory=*"] + args, environment: environment,
            directory: cwd, stdout: fds[1], stderr: fds[1])
        let child: Child
        do {
            child = try Reaper.shared.spawn(request)
        } catch {
            Posix.close(fds[0])
            Posix.close(fds[1])
            throw error
        }
        Posix.close(fds[1])

        // Read on this thread; a git that hangs is stopped at the timeout.
        let reader = fds[0]
        let deadline = monotonicSeconds() + timeout
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        var pfd = pollfd(fd: reader, events: Int16(POLLIN), revents: 0)
        while monotonicSeconds() < deadline {
            let ready = poll(&pfd, 1, 200)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { continue }
            let n = chunk.withUnsafeMutableBytes { read(reader, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if output.count < 1 << 20 { output.append(contentsOf: chunk[0..<n]) }
        }
        Posix.close(reader)
        let status = child.wait(seconds: max(0.1, deadline - monotonicSeconds())) ?? child.stop(killAfter: 2)
        return Result(status: status, output: String(decoding: output, as: UTF8.self))
    }
}

extension Slot {
    var git: Git {
        var env = context.childBaseEnvironment
        env["HOME"] = context.slotDir(spec.name) + "/home"
        env["GIT_TERMINAL_PROMPT"] = "0"
        return Git(environment: env)
    }

    /// At slot start: clone missing repositories from their URLs, prune stale worktree
    /// registrations, remove clean leftover worktrees and flag dirty ones (never
    /// deleting work).
    func prepareWorktrees() {
        for (product, root) in spec.repoRoots.sorted(by: { $0.key < $1.key }) {
            if !FileManager.default.fileExists(atPath: root + "/.git")
                && !FileManager.default.fileExists(atPath: root + "/HEAD")
            {
                guard let url = spec.repoURLs[product] else {
                    logger.warning(
                        "repository missing and no URL to clone it from", ("product", product), ("path", root)
                    )
                    continue
                }
                try? makeDirectories(directoryOf(root), mode: 0o755)
                let result = try? git.run(["clone", "--quiet", url, root])
                if result?.ok == true {
                    logger.notice("cloned repository", ("product", product), ("path", root))
                } else {
                    logger.error("clone failed", ("product", product), ("output", result?.output.suffix(300)))
                }
            }
            _ = try? git.run(["worktree", "prune"], in: root)
        }
        guard let root = spec.worktreeRoot,
            let entries = try? FileManager.default.contentsOfDirectory(atPath: root)
        else { return }
        for entry in entries.sorted() {
            cleanUpWorktree("\(root)/\(entry)")
        }
    }

    /// After a job's agent has exited: remove its worktree if clean (the branch stays),
    /// keep and flag it if it holds uncommitted work.
    func cleanUpWorktree(_ path: String) {
        guard FileManager.default.fileExists(atPath: path + "/.git") else { return }
        guard let status = try? git.run(["status", "--porcelain"], in: path), status.ok else { return }
        if !status.output.isEmpty {
            state.withLock { s in if !s.dirtyWorktrees.contains(path) { s.dirtyWorktrees.append(path) } }
            logger.warning("keeping dirty worktree", ("path", path))
            return
        }
        // Remove it from its main repository (git refuses to remove the worktree it runs in).
        guard
            let common = try? git.run(["rev-parse", "--path-format=absolute", "--git-common-dir"], in: path),
            common.ok
        else { return }
        let repo = directoryOf(common.output.trimmingCharacters(in: " \n"))
        let removed = try? git.run(["worktree", "remove", path], in: repo)
        if removed?.ok == true {
            state.withLock { $0.dirtyWorktrees.removeAll { $0 == path } }
            logger.debug("removed worktree", ("path", path))
        }
    }
}
