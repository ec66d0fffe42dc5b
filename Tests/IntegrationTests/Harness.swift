import Foundation
import XCTest

/// Where the repository, the built products and the fixtures' Python live.
enum Paths {
    static let repo: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The directory holding the built `fleetd` and `fleetctl` (next to the test bundle).
    static let products: URL = {
        if let dir = ProcessInfo.processInfo.environment["FLEET_BIN_DIR"] {
            return URL(fileURLWithPath: dir)
        }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("fleetd").path) {
                return url
            }
        }
        return repo.appendingPathComponent(".build/debug")
    }()

    static var fleetd: String { products.appendingPathComponent("fleetd").path }
    static var fleetctl: String { products.appendingPathComponent("fleetctl").path }

    static var python: String {
        let venv =
            ProcessInfo.processInfo.environment["FLEET_VENV"]
            ?? repo.appendingPathComponent(".venv-fixtures").path
        return venv + "/bin/python"
    }

    static var standin: String {
        repo.appendingPathComponent("Tests/Support/scrum4me-standin/standin.py").path
    }
    static var agent: String { repo.appendingPathComponent("Tests/Support/scripted-agent/agent.py").path }
}

/// A finished command: exit code and output.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion (with a timeout), capturing its output.
@discardableResult
func runCommand(
    _ path: String, _ args: [String], env: [String: String]? = nil, cwd: String? = nil, timeout: Double = 60
) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = args
    if let env { process.environment = env }
    if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
        throw NSError(
            domain: "harness", code: 1,
            userInfo: [NSLocalizedDescriptionKey: "\(path) \(args.prefix(3)) timed out after \(timeout)s"])
    }
    try out.close()
    try err.close()
    return CommandResult(
        status: process.terminationStatus,
        stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}

/// Waits until `condition` holds, polling; fails the test with `message` on timeout.
func eventually(
    _ message: String, timeout: Double = 60, interval: Double = 0.1, _ condition: () throws -> Bool
) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        Thread.sleep(forTimeInterval: interval)
    }
    XCTFail("timed out after \(timeout)s: \(message)")
    throw NSError(domain: "harness", code: 2, userInfo: [NSLocalizedDescriptionKey: message])
}

/// The stand-in Scrum4Me server's state and admin CLI.
struct StandIn {
    let state: String
    let lease: Double
    let poll: Double

    @discardableResult
    func admin(_ args: [String]) throws -> Any {
        let result = try runCommand(Paths.python, [Paths.standin, "admin", "--state", state] + args)
        guard result.status == 0 else {
            throw NSError(
                domain: "standin", code: Int(result.status),
                userInfo: [NSLocalizedDescriptionKey: "admin \(args): \(result.stderr)"])
        }
        let data = Data(result.stdout.utf8)
        return (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) ?? result.stdout
    }

    func jobs() throws -> [[String: Any]] {
        (try admin(["jobs"]) as? [[String: Any]]) ?? []
    }

    /// Queues jobs and returns their ids.
    func enqueue(
        user: String, kind: String, count: Int = 1, product: String? = nil, script: [String: Any]? = nil
    ) throws -> [String] {
        var args = ["enqueue", "--user", user, "--kind", kind, "--count", "\(count)"]
        if let product { args += ["--product", product] }
        if let script {
            let data = try JSONSerialization.data(withJSONObject: script)
            args += ["--script", String(decoding: data, as: UTF8.self)]
        }
        let out = try admin(args)
        if let ids = out as? [String] { return ids }
        if let obj = out as? [String: Any], let ids = obj["job_ids"] as? [String] ?? obj["ids"] as? [String] {
            return ids
        }
        return []
    }
}

/// A running fleetd under test, its config and its files.
final class FleetUnderTest {
    let dir: String
    let configPath: String
    let socket: String
    let stateDir: String
    var process: Process?
    var logPathOverride: String?
    var logPath: String { logPathOverride ?? defaultLogPath }
    private let defaultLogPath: String

    init(dir: String, config: String) throws {
        self.dir = dir
        self.configPath = dir + "/fleet.toml"
        self.socket = dir + "/run/fleetd.sock"
        self.stateDir = dir + "/state"
        self.defaultLogPath = dir + "/fleetd.log"
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts fleetd (behind `wrapper`, e.g. unshare, when given) and waits until it serves.
    func start(extraEnv: [String: String] = [:], wrapper: [String] = []) throws {
        let p = Process()
        if wrapper.isEmpty {
            p.executableURL = URL(fileURLWithPath: Paths.fleetd)
            p.arguments = ["--config", configPath, "--log-level", "debug"]
        } else {
            p.executableURL = URL(fileURLWithPath: wrapper[0])
            p.arguments =
                Array(wrapper.dropFirst()) + [Paths.fleetd, "--config", configPath, "--log-level", "debug"]
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extraEnv { env[k] = v }
        p.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logHandle.seekToEndOfFile()
        p.standardError = logHandle
        p.standardOutput = logHandle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        try eventually("fleetd answers on \(socket)", timeout: 30) {
            guard p.isRunning else {
                throw NSError(
                    domain: "fleetd", code: 1,
                    userInfo: [NSLocalizedDescriptionKey: "fleetd exited: \(self.log())"])
            }
            return (try? ctl(["status", "--json"]))?.status == 0
        }
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func ctl(_ args: [String], timeout: Double = 30) throws -> CommandResult {
        try runCommand(Paths.fleetctl, ["--socket", socket, "--config", configPath] + args, timeout: timeout)
    }

    func status() throws -> [String: Any] {
        let r = try ctl(["status", "--json"])
        guard let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            throw NSError(
                domain: "fleetctl", code: 1,
                userInfo: [NSLocalizedDescriptionKey: "status: \(r.stdout) \(r.stderr)"])
        }
        return obj
    }

    /// SIGTERM and wait; returns fleetd's exit status.
    @discardableResult
    func stop(timeout: Double = 60) -> Int32 {
        guard let p = process else { return 0 }
        if p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        process = nil
        return p.terminationStatus
    }

    deinit { stop() }
}

/// A temporary directory with a short path (the socket path limit is 108 bytes).
func shortTempDir(_ tag: String) throws -> String {
    let dir = "/tmp/fl-\(tag)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// A git repository with one commit, cloned once per slot.
func makeOriginRepo(at path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    let git = "/usr/bin/git"
    try runCommand(git, ["init", "-q", "-b", "main", path])
    try "# demo\n".write(toFile: path + "/README.md", atomically: true, encoding: .utf8)
    try runCommand(git, ["-C", path, "add", "."])
    let r = try runCommand(
        git, ["-C", path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init"])
    XCTAssertEqual(r.status, 0, r.stderr)
}
