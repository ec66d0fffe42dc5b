#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFleetShim
import Dispatch
import Synchronization

/// How a child process ended.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// True for a clean `exit(0)`.
    public var isSuccess: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): "exit \(code)"
        case .signaled(let sig): "signal \(sig)"
        }
    }

    init(waitStatus: Int32) {
        var code: Int32 = 0
        if fleet_wait_status(waitStatus, &code) == 2 {
            self = .signaled(code)
        } else {
            self = .exited(code)
        }
    }
}

/// A child started through `Reaper.spawn`: its pid and, once reaped, how it ended.
public final class Child: @unchecked Sendable {
    /// The child's pid, also its process group id (it leads a new group or session).
    public let pid: pid_t
    private let group = DispatchGroup()
    private let status = Mutex<ExitStatus?>(nil)

    init(pid: pid_t) {
        self.pid = pid
        group.enter()
    }

    /// How the child ended, or nil while it runs.
    public var exitStatus: ExitStatus? { status.withLock { $0 } }

    /// Waits for the child to be reaped; nil when `seconds` passed first.
    @discardableResult
    public func wait(seconds: Double) -> ExitStatus? {
        guard group.wait(timeout: .now() + max(0, seconds)) == .success else { return nil }
        return exitStatus
    }

    /// Waits until the child is reaped.
    @discardableResult
    public func wait() -> ExitStatus {
        group.wait()
        return exitStatus!
    }

    /// Sends `signal` to the child's whole process group.
    public func signalGroup(_ signal: Int32) {
        if exitStatus == nil || signal == SIGKILL || signal == SIGTERM {
            _ = kill(-pid, signal)
        }
    }

    /// TERM to the group, then KILL after `killAfter` seconds; returns how it ended.
    @discardableResult
    public func stop(killAfter: Double) -> ExitStatus {
        signalGroup(SIGTERM)
        if let status = wait(seconds: killAfter) {
            _ = kill(-pid, SIGKILL)  // leftovers of the group that outlived the leader
            return status
        }
        signalGroup(SIGKILL)
        return wait()
    }

    func finish(_ exit: ExitStatus) {
        status.withLock { $0 = exit }
        group.leave()
    }
}

/// What an agent gets before its program runs: a parent-death signal (Linux), resource
/// limits, and another user when fleetd runs as root (DESIGN.md, decision 9).
public struct ChildSetup: Sendable, Equatable {
    public var parentDeathSignal: Int32 = 0
    public var memoryBytes: UInt64 = 0
    public var openFiles: UInt64 = 0
    public var cpuSeconds: UInt64 = 0
    public var user: (uid: uid_t, gid: gid_t)?

    public init(
        parentDeathSignal: Int32 = 0, memoryBytes: UInt64 = 0, openFiles: UInt64 = 0,
        cpuSeconds: UInt64 = 0, user: (uid: uid_t, gid: gid_t)? = nil
    ) {
        self.parentDeathSignal = parentDeathSignal
        self.memoryBytes = memoryBytes
        self.openFiles = openFiles
        self.cpuSeconds = cpuSeconds
        self.user = user
    }

    public static func == (a: ChildSetup, b: ChildSetup) -> Bool {
        a.parentDeathSignal == b.parentDeathSignal && a.memoryBytes == b.memoryBytes
            && a.openFiles == b.openFiles && a.cpuSeconds == b.cpuSeconds
            && a.user?.uid == b.user?.uid && a.user?.gid == b.user?.gid
    }
}

/// What to start: a program, its arguments, its whole environment and its descriptors.
public struct SpawnRequest: Sendable {
    /// The program; searched in the environment's PATH when it has no slash.
    public var executable: String
    /// Arguments after argv[0].
    public var arguments: [String]
    /// The child's entire environment (nothing is inherited).
    public var environment: [String: String]
    /// Working directory; nil keeps fleetd's.
    public var directory: String?
    /// Descriptors for the child's 0, 1 and 2; nil means /dev/null.
    public var stdin: Int32?
    public var stdout: Int32?
    public var stderr: Int32?
    /// Set for agents: fork and exec with a parent-death signal, limits, a user.
    public var setup: ChildSetup?

    public init(
        executable: String, arguments: [String] = [], environment: [String: String] = [:],
        directory: String? = nil, stdin: Int32? = nil, stdout: Int32? = nil,
        stderr: Int32? = nil, setup: ChildSetup? = nil
    ) {
        self.setup = setup
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.directory = directory
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// The one owner of `waitpid` in this process.
///
/// Every child starts through `spawn`, in a new session, with a clean signal mask and
/// only descriptors 0-2. A SIGCHLD source reaps with `waitpid(-1, WNOHANG)` in a loop
/// (signals coalesce), so exit statuses are never lost and orphans re-parented to us
/// (as PID 1, or as a Linux subreaper) never linger as zombies.
public final class Reaper: @unchecked Sendable {
    /// The process-wide reaper.
    public static let shared = Reaper()

    private struct Table {
        var children: [pid_t: Child] = [:]
        var orphansReaped = 0
    }

    private let table = Mutex(Table())
    private let queue = DispatchQueue(label: "fleet.reaper")
    private var source: DispatchSourceSignal?
    private let started = Mutex(false)

    /// Number of reaped processes that were not ours (orphans of our children).
    public var orphansReaped: Int { table.withLock { $0.orphansReaped } }

    /// Installs the SIGCHLD source; with `subreaper`, orphaned descendants come to us.
    public func start(subreaper: Bool = true) {
        let first = started.withLock { was in
            defer { was = true }
            return !was
        }
        guard first else { return }
        if subreaper { _ = fleet_set_child_subreaper() }
        let source = DispatchSource.makeSignalSource(signal: SIGCHLD, queue: queue)
        source.setEventHandler { [weak self] in self?.reap() }
        source.resume()
        self.source = source
        // A child may have exited before the source existed.
        queue.async { [weak self] in self?.reap() }
    }

    /// Starts a child; the reaper records its exit.
    public func spawn(_ request: SpawnRequest) throws(SystemError) -> Child {
        let path = try resolve(request.executable, path: request.environment["PATH"])
        let argv = [path] + request.arguments
        let envp = request.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }

        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard devnull >= 0 else { throw lastError("open /dev/null") }
        defer { close(devnull) }

        // Hold the table while spawning so an instant exit finds its entry.
        return try table.withLock { table throws(SystemError) -> Child in
            var pid: pid_t = 0
            let rc = withCStrings(argv) { cargv in
                withCStrings(envp) { cenvp in
                    guard let setup = request.setup else {
                        return fleet_spawn(
                            path, cargv, cenvp, request.directory,
                            request.stdin ?? devnull, request.stdout ?? devnull,
                            request.stderr ?? devnull, Int32(FLEET_SPAWN_SETSID), &pid)
                    }
                    var c = fleet_child_setup(
                        pdeathsig: setup.parentDeathSignal, mem_bytes: setup.memoryBytes,
                        open_files: setup.openFiles, cpu_seconds: setup.cpuSeconds,
                        set_user: setup.user == nil ? 0 : 1, uid: setup.user?.uid ?? 0,
                        gid: setup.user?.gid ?? 0)
                    return fleet_spawn_setup(
                        path, cargv, cenvp, request.directory, request.stdin ?? devnull,
                        request.stdout ?? devnull, request.stderr ?? devnull, &c, &pid)
                }
            }
            guard rc == 0 else { throw SystemError("spawn \(path)", errno: rc) }
            let child = Child(pid: pid)
            table.children[pid] = child
            return child
        }
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid < 0 && errno == EINTR { continue }
            guard pid > 0 else { return }
            let exit = ExitStatus(waitStatus: status)
            let child = table.withLock { table -> Child? in
                if let child = table.children.removeValue(forKey: pid) { return child }
                table.orphansReaped += 1
                return nil
            }
            child?.finish(exit)
        }
    }

    private func resolve(_ executable: String, path: String?) throws(SystemError) -> String {
        if executable.contains("/") { return executable }
        let dirs = (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":")
        for dir in dirs {
            let candidate = "\(dir)/\(executable)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw SystemError("find \(executable) in PATH", errno: ENOENT)
    }
}

/// Calls `body` with a NULL-terminated C array of the strings.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
