import FleetCore
import Foundation
import XCTest

/// The streaming verbs, the live view, and the socket's guards.
final class ControlStreamTests: XCTestCase {
    /// Starts fleetctl in the background with its output in a file.
    func background(_ fleet: FleetUnderTest, _ args: [String]) throws -> (Process, String) {
        let out = fleet.dir + "/bg-\(UUID().uuidString.prefix(6)).out"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Paths.fleetctl)
        p.arguments = ["--socket", fleet.socket, "--config", fleet.configPath] + args
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return (p, out)
    }

    func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// events -f and logs -f stream live, and notice a frozen daemon within the timeout
    /// (exit 4) instead of hanging.
    func testStreamsFollowAndNoticeAFrozenDaemon() throws {
        let world = try FleetScenario(tag: "stream", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        try eventually("idle") {
            (try fleet.status()["slots"] as? [[String: Any]])?.first?["state"] as? String == "idle"
        }

        let (events, eventsOut) = try background(fleet, ["events", "-f", "--timeout", "3"])
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product,
            script: ["mode": "sleep", "seconds": 3, "log_lines": 3])
        try eventually("slot busy") {
            (try fleet.status()["slots"] as? [[String: Any]])?.first?["state"] as? String == "busy"
        }
        let (logs, logsOut) = try background(fleet, ["logs", ids[0], "-f", "--timeout", "3"])
        try eventually("the claim streamed") {
            read(eventsOut).contains("job_claimed") && read(eventsOut).contains(ids[0])
        }
        try eventually("the agent's log streamed") { read(logsOut).contains("filler line") }
        _ = try world.waitTerminal(ids)
        try eventually("the outcome streamed") { read(eventsOut).contains("job_done") }
        XCTAssertTrue(events.isRunning && logs.isRunning, "streams end only when stopped")

        // Frozen daemon: both streams give up within their timeout, with exit code 4.
        let pid = fleet.process!.processIdentifier
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        let stopped = Date()
        for p in [events, logs] {
            while p.isRunning && Date().timeIntervalSince(stopped) < 20 { usleep(50_000) }
            XCTAssertFalse(p.isRunning, "a stream hung on a frozen daemon")
            XCTAssertEqual(p.terminationStatus, 4)
        }
        XCTAssertLessThan(Date().timeIntervalSince(stopped), 15)
        XCTAssertTrue(read(eventsOut).contains("did not answer"), read(eventsOut))
    }

    /// status --watch redraws until interrupted, and exits 3 when the daemon goes away.
    func testStatusWatch() throws {
        let world = try FleetScenario(tag: "watch", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        let (watch, out) = try background(fleet, ["status", "--watch", "0.3"])
        try eventually("two frames") { read(out).components(separatedBy: "SLOT").count > 2 }
        XCTAssertTrue(read(out).contains("\u{1B}[2J"), "clears the screen between frames")
        XCTAssertEqual(fleet.stop(), 0)
        let deadline = Date().addingTimeInterval(10)
        while watch.isRunning && Date() < deadline { usleep(50_000) }
        XCTAssertFalse(watch.isRunning)
        XCTAssertEqual(watch.terminationStatus, 3)
    }

    /// A second daemon on the same socket (another state dir) refuses to start; so does
    /// one on the same state dir; a path that is not a socket is never replaced.
    func testSocketGuards() throws {
        let world = try FleetScenario(tag: "guards", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }

        var r = try runCommand(Paths.fleetd, ["--config", fleet.configPath], timeout: 20)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("another fleetd holds") && r.stderr.contains("fleetd.lock"), r.stderr)

        let other = world.config().replacingOccurrences(
            of: "state_dir = \"\(world.dir)/state\"", with: "state_dir = \"\(world.dir)/state2\"")
        try other.write(toFile: world.dir + "/other.toml", atomically: true, encoding: .utf8)
        r = try runCommand(Paths.fleetd, ["--config", world.dir + "/other.toml"], timeout: 20)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("another fleetd is already answering"), r.stderr)
        XCTAssertEqual(try fleet.ctl(["status"]).status, 0, "the first daemon still serves")

        let notSocket = world.config().replacingOccurrences(
            of: "socket = \"\(world.dir)/run/fleetd.sock\"", with: "socket = \"\(world.dir)/plain/file\""
        )
        .replacingOccurrences(
            of: "state_dir = \"\(world.dir)/state\"", with: "state_dir = \"\(world.dir)/state3\"")
        try FileManager.default.createDirectory(
            atPath: world.dir + "/plain", withIntermediateDirectories: true)
        try "precious".write(toFile: world.dir + "/plain/file", atomically: true, encoding: .utf8)
        try notSocket.write(toFile: world.dir + "/ns.toml", atomically: true, encoding: .utf8)
        r = try runCommand(Paths.fleetd, ["--config", world.dir + "/ns.toml"], timeout: 20)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("is not a socket"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: world.dir + "/plain/file", encoding: .utf8), "precious")
    }

    /// fleetctl warns once when the daemon's version differs from its own.
    func testVersionMismatchWarnsOnce() throws {
        let dir = try shortTempDir("ver")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/fake.sock"
        let status = """
            {"fleet":{"name":"old","version":"0.0.1","pid":1,"started_at":"2026-01-01T00:00:00Z","desired_slots":0,\
            "running_slots":0,"configured_slots":0,"jobs_done":0,"jobs_failed":0},"slots":[]}
            """
        let server = ControlServer(path: socket, logger: Logger(level: .error)) { _, _ in
            HTTPResponse(
                status: 200, headers: [("Content-Type", "application/json"), ("Fleet-Version", "0.0.1")],
                body: Array(status.utf8))
        }
        try server.start()
        defer { server.stop() }
        let r = try runCommand(Paths.fleetctl, ["--socket", socket, "status"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(
            r.stderr.components(separatedBy: "warning: fleetd is version 0.0.1").count - 1, 1, r.stderr)
    }
}
