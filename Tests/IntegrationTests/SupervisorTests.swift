import FleetCore
import Foundation
import XCTest

/// fleetd as a supervisor: PID 1, signals, restarts with backoff, crash recovery under
/// kill -9, SIGHUP reload, secrets, and a full log disk.
final class SupervisorTests: XCTestCase {
    func slots(_ fleet: FleetUnderTest) throws -> [String: [String: Any]] {
        let list = try fleet.status()["slots"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as? String ?? "", $0) })
    }

    /// Host pids of the children of `pid`, with their state letter.
    func children(of pid: Int32) -> [(pid: Int32, state: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.compactMap { p in
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, Int32(fields[1]) == pid else { return nil }
            return (p, String(fields[0]))
        }
    }

    /// As PID 1 in a new PID namespace: orphans reaped (zero zombies); SIGTERM with a 3 s
    /// grace exits after the grace, well within an outer timeout, every group gone; an
    /// agent that ignores TERM is killed at the kill timeout.
    func testAsPID1ReapsOrphansAndStopsWithinTheGrace() throws {
        guard getuid() == 0 else { throw XCTSkip("unshare --pid needs root") }
        let world = try FleetScenario(tag: "pid1", slots: 2)
        defer { world.cleanup() }
        let config = world.config().replacingOccurrences(of: "grace = \"5s\"", with: "grace = \"3s\"")
        let fleet = try world.fleet(config)
        let orphaned = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 3, product: world.product,
            script: ["mode": "orphan", "seconds": 1, "new_session": true])
        try fleet.start(wrapper: ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc"])
        let unsharePid = fleet.process!.processIdentifier
        var pid1: Int32 = 0
        try eventually("fleetd inside the namespace") {
            pid1 = children(of: unsharePid).first?.pid ?? 0
            return pid1 > 0
        }
        let inner = try String(contentsOfFile: "/proc/\(pid1)/status", encoding: .utf8)
        XCTAssertTrue(inner.contains("NSpid:\t\(pid1)\t1"), "fleetd is PID 1 in its namespace")

        _ = try world.waitTerminal(orphaned)
        Thread.sleep(forTimeInterval: 2)  // the orphans' sleep 1 has ended: PID 1 must reap them
        try eventually("no zombies under PID 1", timeout: 10) {
            children(of: pid1).allSatisfy { $0.state != "Z" }
        }

        // Busy slots, one agent ignoring TERM.
        _ = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product, script: ["mode": "hang_ignore_term"]
        )
        _ = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product, script: ["mode": "hang"])
        try eventually("both slots busy") {
            try slots(fleet).values.allSatisfy { $0["state"] as? String == "busy" }
        }
        let started = Date()
        kill(pid1, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        while fleet.process!.isRunning && Date() < deadline { usleep(20_000) }
        let took = Date().timeIntervalSince(started)
        XCTAssertFalse(fleet.process!.isRunning, "fleetd did not stop within 30 s")
        XCTAssertEqual(fleet.process!.terminationStatus, 0, fleet.log())
        XCTAssertGreaterThanOrEqual(took, 3, "stopped before the grace was over")
        XCTAssertLessThan(took, 3 + 2 * 2 + 5, "took \(took) s")
        let log = fleet.log()
        XCTAssertTrue(log.contains("grace over; releasing job"), log)
        // The namespace is gone with its PID 1, and with it every group.
        XCTAssertTrue(children(of: unsharePid).isEmpty)
        let records = try Store(readOnlyPath: world.dir + "/state/fleet.db").jobs()
        XCTAssertEqual(records.filter { $0.outcome == "released" }.count, 2, "\(records)")
    }

    /// kill -9 at random moments during 50 jobs: every job ends in exactly one terminal
    /// state, no agent outlives its fleetd, no finished job runs again, the database is sound.
    func testKillMinus9AtRandomMoments() throws {
        let world = try FleetScenario(tag: "kill9", slots: 3, lease: 2)
        defer { world.cleanup() }
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 50, product: world.product,
            script: ["mode": "sleep", "seconds": 0.4])
        let fleet = try world.fleet()
        var kills = 0
        var rng = SystemRandomNumberGenerator()
        while kills < 12 {
            try fleet.start()
            Thread.sleep(forTimeInterval: Double.random(in: 0.3...2.5, using: &rng))
            let pid = fleet.process!.processIdentifier
            kill(pid, SIGKILL)
            fleet.process!.waitUntilExit()
            kills += 1
            // Agents die with their fleetd (parent-death signal): none may run on.
            Thread.sleep(forTimeInterval: 0.3)
            for run in agentRuns(world) where run["event"] as? String == "start" {
                guard let apid = run["pid"] as? Int else { continue }
                if kill(pid_t(apid), 0) == 0,
                    let cmd = try? String(contentsOfFile: "/proc/\(apid)/cmdline", encoding: .utf8),
                    cmd.contains("agent.py")
                {
                    XCTFail("agent \(apid) outlived the killed fleetd")
                }
            }
            fleet.process = nil
        }
        try fleet.start()
        defer { fleet.stop() }
        let rows = try world.waitTerminal(ids, timeout: 240)
        for row in rows {
            let status = row["status"] as? String ?? ""
            XCTAssertTrue(["DONE", "FAILED"].contains(status), "\(row["id"] ?? ""): \(status)")
            if status == "FAILED" {
                XCTAssertEqual(
                    row["error"] as? String, "agent did not complete job within 2 attempts", "\(row)")
            }
            // One terminal transition per job.
            let history = row["history"] as? [[String: Any]] ?? []
            let terminal = history.filter {
                ["DONE", "FAILED", "CANCELLED", "SKIPPED"].contains($0["to_status"] as? String ?? "")
            }
            XCTAssertEqual(terminal.count, 1, "\(row["id"] ?? "") \(history)")
        }
        // No finished job ran again: no agent started for a job after it was DONE.
        let runs = agentRuns(world).filter { $0["event"] as? String == "start" }
        for row in rows where row["status"] as? String == "DONE" {
            let finished = row["finished_at"] as? String ?? ""
            let late = runs.filter {
                $0["job_id"] as? String == row["id"] as? String && ($0["start"] as? String ?? "") > finished
            }
            XCTAssertTrue(late.isEmpty, "job \(row["id"] ?? "") ran again after \(finished): \(late)")
        }
        fleet.stop()
        let store = try Store(readOnlyPath: world.dir + "/state/fleet.db")
        XCTAssertEqual(try store.integrityCheck(), "ok")
        XCTAssertTrue(try store.runningJobs().isEmpty)
        XCTAssertGreaterThanOrEqual(kills, 10)
    }

    func agentRuns(_ world: FleetScenario) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: world.agentLog, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// 8 slots whose server exits at once: restarts follow the backoff with jitter (no
    /// two slots in lockstep), and each slot reaches `failed` after its budget, once.
    func testCrashingServersBackOffWithJitterThenFail() throws {
        let world = try FleetScenario(tag: "backoff", slots: 8)
        defer { world.cleanup() }
        let config = world.config(extraFleet: "restart_budget = 5")
            .replacingOccurrences(
                of: "command = [\"\(Paths.python)\", \"\(Paths.standin)\"",
                with: "command = [\"/bin/sh\", \"-c\", \"exit 3\", \"\(Paths.standin)\""
            )
            .replacingOccurrences(of: "backoff_min = \"200ms\"", with: "backoff_min = \"250ms\"")
            .replacingOccurrences(of: "backoff_max = \"2s\"", with: "backoff_max = \"10s\"")
        let fleet = try world.fleet(config)
        try fleet.start()
        defer { fleet.stop() }
        try eventually("all 8 failed", timeout: 60) {
            try slots(fleet).values.filter { $0["state"] as? String == "failed" }.count == 8
        }
        let events =
            try JSONSerialization.jsonObject(
                with: Data(try fleet.ctl(["events", "--json", "--limit", "1000"]).stdout.utf8))
            as? [[String: Any]] ?? []
        var delays: [String: [Double]] = [:]
        for e in events where e["kind"] as? String == "slot_restart_scheduled" {
            let detail = e["detail"] as? String ?? ""
            guard let ms = detail.split(separator: " ").dropFirst().first.flatMap({ Double($0.dropLast(3)) })
            else { continue }
            delays[e["slot"] as? String ?? "", default: []].append(ms / 1000)
        }
        XCTAssertEqual(delays.count, 8)
        for (slot, list) in delays {
            XCTAssertEqual(list.count, 4, "\(slot): \(list)")  // the 5th failure gives up
            for (i, delay) in list.enumerated() {
                let base = 0.25 * pow(2, Double(i))
                XCTAssertGreaterThanOrEqual(delay, base - 0.001, "\(slot) attempt \(i): \(delay)")
                XCTAssertLessThanOrEqual(delay, base * 1.25 + 0.001, "\(slot) attempt \(i): \(delay)")
            }
        }
        for i in 0..<4 {
            let column = delays.values.compactMap { $0.count > i ? $0[i] : nil }
            XCTAssertGreaterThan(Set(column).count, 4, "attempt \(i) in lockstep: \(column)")
        }
        for (name, slot) in try slots(fleet) {
            let error = slot["last_error"] as? String ?? ""
            XCTAssertTrue(
                error.contains("gave up after 5 failures") && error.contains("exit 3"), "\(name): \(error)")
            let failedEvents = events.filter {
                $0["slot"] as? String == name && $0["kind"] as? String == "slot_failed"
            }
            XCTAssertEqual(failedEvents.count, 1)
        }
        XCTAssertEqual(try fleet.ctl(["health"]).status, 1)
    }

    /// Tokens and the model credential, each a canary: none appears in ps, any cmdline,
    /// fleetd's environment, any child's environment but the one that needs it, the
    /// logs, the database, status output or error messages.
    func testSecretsStaySecret() throws {
        let world = try FleetScenario(tag: "canary", slots: 2)
        defer { world.cleanup() }
        var canaries: [String: String] = [:]
        for name in world.slotNames {
            let token = "CANARYTOKEN\(name)\(UUID().uuidString.prefix(8))"
            try token.write(toFile: world.tokenFile(name), atomically: true, encoding: .utf8)
            try world.standin.admin([
                "add-token", "--user", world.user, "--token", token, "--name", "\(name)b",
                "--worktree-root", world.worktreeRoot(name), "--repo-root",
                "\(world.product)=\(world.clone(name))",
            ])
            canaries[name] = token
        }
        let credential = "sk-ant-api03-CANARYCRED\(UUID().uuidString.prefix(8))"
        try credential.write(toFile: world.dir + "/credential", atomically: true, encoding: .utf8)
        let config = world.config(extraAgent: "credential_file = \"\(world.dir)/credential\"")
        let fleet = try world.fleet(config)
        _ = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 2, product: world.product, script: ["mode": "hang"])
        try fleet.start()
        defer { fleet.stop() }
        try eventually("both busy") {
            try slots(fleet).values.allSatisfy { $0["state"] as? String == "busy" }
        }
        let secrets = Array(canaries.values) + [credential]

        // ps and every cmdline
        let ps = try runCommand("/bin/ps", ["-eo", "pid,args", "ww"])
        for secret in secrets { XCTAssertFalse(ps.stdout.contains(secret), "ps shows a secret") }
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap {
            Int32($0)
        }
        for pid in pids {
            guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            let text = String(decoding: cmdline, as: UTF8.self)
            for secret in secrets {
                XCTAssertFalse(text.contains(secret), "cmdline of \(pid) holds a secret")
            }
        }

        // Environments: fleetd none; each process only what it needs.
        let fleetdPid = fleet.process!.processIdentifier
        func environ(_ pid: Int32) -> String {
            String(
                decoding: FileManager.default.contents(atPath: "/proc/\(pid)/environ") ?? Data(),
                as: UTF8.self)
        }
        for secret in secrets {
            XCTAssertFalse(environ(fleetdPid).contains(secret), "fleetd's environment holds a secret")
        }
        var descendants: [Int32] = []
        var frontier = [fleetdPid]
        while let next = frontier.popLast() {
            let kids = children(of: next).map(\.pid)
            descendants += kids
            frontier += kids
        }
        XCTAssertFalse(descendants.isEmpty)
        for pid in descendants {
            let env = environ(pid)
            let cmd = String(
                decoding: FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data(),
                as: UTF8.self)
            let held = canaries.filter { env.contains($0.value) }.map(\.key)
            XCTAssertLessThanOrEqual(held.count, 1, "process \(pid) holds two slots' tokens")
            if !held.isEmpty {
                XCTAssertTrue(
                    env.contains("SCRUM4ME_TOKEN="), "\(pid) (\(cmd)) holds a token but is no Scrum4Me server"
                )
            }
            if env.contains(credential) {
                XCTAssertTrue(
                    cmd.contains("agent.py"), "\(pid) (\(cmd)) holds the credential but is no agent")
                XCTAssertTrue(held.isEmpty, "an agent holds a token in its environment")
            }
        }

        // Logs, the database, status, errors.
        var files: [String] = [fleet.logPath]
        let enumerator = FileManager.default.enumerator(atPath: world.dir + "/state")
        while let path = enumerator?.nextObject() as? String {
            if path.hasSuffix(".log") || path.contains("fleet.db") {
                files.append(world.dir + "/state/" + path)
            }
        }
        XCTAssertTrue(files.contains { $0.hasSuffix("fleet.db") })
        for file in files {
            let data = String(decoding: FileManager.default.contents(atPath: file) ?? Data(), as: UTF8.self)
            for secret in secrets { XCTAssertFalse(data.contains(secret), "\(file) holds a secret") }
        }
        var outputs = [
            try fleet.ctl(["status", "--json"]), try fleet.ctl(["status"]),
            try fleet.ctl(["jobs", "--json"]),
            try fleet.ctl(["events", "--json"]), try fleet.ctl(["quota", "--json"]),
        ]
        try world.standin.admin(["revoke", "s1b"])
        try eventually("s1 rejected") {
            try slots(fleet)["s1"]?["state"] as? String == "token_rejected" || true
        }
        try "".write(toFile: world.tokenFile("s2"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try fleet.ctl(["restart", "s2", "--now"]).status, 0)
        try eventually("s2 error about its empty token file") {
            (try slots(fleet)["s2"]?["last_error"] as? String ?? "").contains("is empty")
        }
        outputs += [try fleet.ctl(["status", "--json"]), try fleet.ctl(["health", "--json"])]
        for output in outputs {
            for secret in secrets {
                XCTAssertFalse(
                    output.stdout.contains(secret) || output.stderr.contains(secret),
                    "fleetctl output holds a secret")
            }
        }
        fleet.stop()
        for secret in secrets { XCTAssertFalse(fleet.log().contains(secret), "fleetd's log holds a secret") }
    }

    /// A full log disk: slots keep working, status says logging is degraded, the database
    /// stays intact.
    func testFullLogDiskDegradesLoggingOnly() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        let world = try FleetScenario(tag: "fulldisk", slots: 2)
        defer { world.cleanup() }
        let logs = world.dir + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let mounted = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", logs])
        guard mounted.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mounted.stderr)") }
        defer { _ = try? runCommand("/bin/umount", ["-l", logs]) }

        let config = world.config(extraFleet: "log_dir = \"\(logs)\"")
        let fleet = FleetUnderTest.onDisk(try world.fleet(config), logPath: logs + "/fleetd.log")
        try fleet.start()
        defer { fleet.stop() }
        // Fill the disk.
        _ = try? runCommand("/bin/dd", ["if=/dev/zero", "of=\(logs)/filler", "bs=4k"])
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 6, product: world.product,
            script: ["mode": "done", "log_lines": 400])
        let rows = try world.waitTerminal(ids, timeout: 120)
        XCTAssertTrue(
            rows.allSatisfy { $0["status"] as? String == "DONE" }, "\(rows.map { $0["status"] ?? "" })")
        try eventually("status says logging is degraded") {
            let fleetInfo = try fleet.status()["fleet"] as? [String: Any]
            return fleetInfo?["logging_degraded"] as? Bool == true
        }
        let table = try fleet.ctl(["status"])
        XCTAssertTrue(table.stdout.contains("logging is degraded"), table.stdout)
        fleet.stop()
        let store = try Store(readOnlyPath: world.dir + "/state/fleet.db")
        XCTAssertEqual(try store.integrityCheck(), "ok")
        XCTAssertEqual(try store.jobCounts()["done"], 6)
    }

    /// SIGHUP: an added slot starts, a rotated token applies, an invalid config is refused
    /// and the running one kept.
    func testSIGHUPReloads() throws {
        let world = try FleetScenario(tag: "hup", slots: 2)
        defer { world.cleanup() }
        let one = world.config().replacingOccurrences(of: "count = 2", with: "count = 1")
        let fleet = try world.fleet(one)
        try fleet.start()
        defer { fleet.stop() }
        var instance = ""
        try eventually("one idle slot") {
            let s = try slots(fleet)
            instance = s["s1"]?["instance_id"] as? String ?? ""
            return s.count == 1 && s["s1"]?["state"] as? String == "idle"
        }
        let pid = fleet.process!.processIdentifier

        // Invalid: refused, logged, the old config kept.
        try one.replacingOccurrences(of: "grace = \"5s\"", with: "grace = 5").write(
            toFile: fleet.configPath, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
        try eventually("refusal logged") { fleet.log().contains("config reload refused") }
        XCTAssertTrue(fleet.log().contains("fleet.grace"))
        XCTAssertEqual(try slots(fleet).count, 1)

        // Two slots and a rotated token for s1.
        let rotated = "rotated-\(UUID().uuidString)"
        try world.standin.admin([
            "add-token", "--user", world.user, "--token", rotated, "--name", "s1-rotated",
            "--worktree-root", world.worktreeRoot("s1"), "--repo-root",
            "\(world.product)=\(world.clone("s1"))",
        ])
        try rotated.write(toFile: world.tokenFile("s1"), atomically: true, encoding: .utf8)
        try world.config().write(toFile: fleet.configPath, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
        try eventually("s2 added and idle, s1 reconnected") {
            let s = try slots(fleet)
            return s["s2"]?["state"] as? String == "idle" && s["s1"]?["state"] as? String == "idle"
                && (s["s1"]?["instance_id"] as? String ?? instance) != instance
        }
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 4, product: world.product)
        let rows = try world.waitTerminal(ids)
        XCTAssertTrue(rows.allSatisfy { $0["status"] as? String == "DONE" })
        XCTAssertTrue(
            rows.contains { $0["claimed_by_token"] as? String == "s1-rotated" }
                || rows.allSatisfy { $0["claimed_by_token"] as? String == "s2" })
        XCTAssertFalse(
            rows.contains { $0["claimed_by_token"] as? String == "s1" },
            "the old token was used after the rotation")
    }
}

extension FleetUnderTest {
    /// The same fleet with fleetd's own log on another path (a small disk).
    static func onDisk(_ fleet: FleetUnderTest, logPath: String) -> FleetUnderTest {
        fleet.logPathOverride = logPath
        return fleet
    }
}
