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
import FleetCore

/// What every slot of a fleet shares: config, store, log, quota board and paths.
public struct SlotContext: Sendable {
    public var config: FleetConfig
    public var store: Store
    public var logger: Logger
    public var quota: QuotaBoard
    /// Environment fleetd was started with (PATH, LANG, ...), the base for children.
    public var baseEnvironment: [String: String]

    public init(
        config: FleetConfig, store: Store, logger: Logger, quota: QuotaBoard,
        baseEnvironment: [String: String]
    ) {
        self.config = config
        self.store = store
        self.logger = logger
        self.quota = quota
        self.baseEnvironment = baseEnvironment
    }

    /// The slot's private directory (its HOME, payloads, MCP configs): 0700.
    public func slotDir(_ name: String) -> String { "\(config.fleet.stateDir)/slots/\(name)" }

    /// Per-job agent logs.
    public var jobLogDir: String { "\(config.fleet.logDir)/jobs" }

    /// Per-slot server logs.
    public var serverLogDir: String { "\(config.fleet.logDir)/slots" }

    /// The environment variables every child may see: nothing secret, nothing of ours.
    public var childBaseEnvironment: [String: String] {
        var env: [String: String] = [:]
        for key in ["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM"] {
            if let value = baseEnvironment[key] { env[key] = value }
        }
        if env["PATH"] == nil { env["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        return env
    }
}

/// Creates a directory and its parents with `mode` for the ones it creates.
func makeDirectories(_ path: String, mode: Int = 0o700) throws {
    try FileManager.default.createDirectory(
        atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
}

/// Writes `data` to `path` readable by the owner only, atomically (temp + rename).
///
/// The file is 0600 from its creation (it may hold the slot's token) and is not
/// fsync'ed: these files (a job's payload and MCP config) live only as long as the job,
/// and a crash releases the job anyway. `FileManager.createFile` fsync'ed a file of its
/// own and chmod'ed after writing: two fsyncs on every job's path to its agent (bench/).
func writePrivateFile(_ path: String, _ data: Data) throws {
    let temp = path + ".tmp"
    let fd = Posix.open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600)
    guard fd >= 0 else { throw SecretError(path: path, reason: "cannot be written (errno \(errno))") }
    let written = fchmod(fd, 0o600) == 0 && data.withUnsafeBytes { Posix.writeAll(fd, $0) }
    Posix.close(fd)
    guard written else {
        unlink(temp)
        throw SecretError(path: path, reason: "cannot be written (errno \(errno))")
    }
    guard rename(temp, path) == 0 else { throw lastError("rename \(temp)") }
}
