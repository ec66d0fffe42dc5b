import FleetCore
import Foundation
import XCTest

/// fleetctl against a running fleetd: every verb, in table and JSON form, with exit codes.
final class ControlTests: XCTestCase {
    func json(_ r: CommandResult) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    func slots(_ fleet: FleetUnderTest) throws -> [String: [String: Any]] {
        let list = try fleet.status()["slots"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as? String ?? "", $0) })
    }

    func testEveryReadVerbInTableAndJSON() throws {
        let world = try FleetScenario(tag: "verbs", slots: 2)
        defer { world.cleanup() }
        let job = try world.standin.enqueue(user: world.user, kind: "IDEA_GRILL", product: world.product)
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        _ = try world.waitTerminal(job)
        try eventually("job recorded as done") {
            let jobs = try json(try fleet.ctl(["jobs", "--json"])) as? [[String: Any]]
            return jobs?.first?["outcome"] as? String == "done"
        }

        // status
        var r = try fleet.ctl(["status"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("fleet test "), r.stdout)
        XCTAssertTrue(r.stdout.contains("\nSLOT  STATE  ") || r.stdout.contains("\nSLOT   STATE"), r.stdout)
        XCTAssertEqual(
            r.stdout.split(separator: "\n").filter { $0.hasPrefix("s1 ") || $0.hasPrefix("s2 ") }.count, 2,
            r.stdout)
        r = try fleet.ctl(["status", "--json"])
        let status = try XCTUnwrap(try json(r) as? [String: Any])
        XCTAssertEqual((status["fleet"] as? [String: Any])?["configured_slots"] as? Int, 2)
        XCTAssertNotNil(status["quota"] as? [String: Any])
        for slot in status["slots"] as? [[String: Any]] ?? [] {
            for key in [
                "name", "desired", "state", "restarts", "quota_floor", "last_heartbeat", "instance_id",
            ] {
                XCTAssertNotNil(slot[key], "slot lacks \(key): \(slot)")
            }
            XCTAssertTrue(
                (slot["instance_id"] as? String ?? "").hasPrefix("test-\(slot["name"] as? String ?? "")-"))
        }

        // jobs
        r = try fleet.ctl(["jobs"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains(job[0]) && r.stdout.contains("done"), r.stdout)
        r = try fleet.ctl(["jobs", "--json"])
        XCTAssertEqual((try json(r) as? [[String: Any]])?.first?["outcome"] as? String, "done")

        // events
        r = try fleet.ctl(["events"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("job_claimed") && r.stdout.contains("job=\(job[0])"), r.stdout)
        r = try fleet.ctl(["events", "--json"])
        XCTAssertTrue(
            ((try json(r) as? [[String: Any]]) ?? []).contains { $0["kind"] as? String == "job_done" })

        // logs: the job's agent log and a slot's server log
        r = try fleet.ctl(["logs", job[0]])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.isEmpty)
        r = try fleet.ctl(["logs", "s1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try fleet.ctl(["logs", "nosuchjob"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no log"), r.stderr)
        r = try fleet.ctl(["logs", "../../etc/passwd"])
        XCTAssertEqual(r.status, 1)

        // health, version
        r = try fleet.ctl(["health"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stdout, "ok\n")
        r = try fleet.ctl(["health", "--json"])
        XCTAssertEqual((try json(r) as? [String: Any])?["ok"] as? Bool, true)
        r = try fleet.ctl(["version"])
        XCTAssertTrue(r.stdout.contains("fleetd   0.") && r.stdout.contains("fleetctl 0."), r.stdout)
        r = try fleet.ctl(["version", "--json"])
        XCTAssertNotNil((try json(r) as? [String: String])?["fleetd"])

        // help, completion, usage errors
        r = try fleet.ctl(["help", "drain"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("usage: fleetctl drain") && r.stdout.contains("examples:"), r.stdout)
        r = try fleet.ctl(["completion", "bash"])
        XCTAssertTrue(r.stdout.contains("complete -F _fleetctl fleetctl"))
        r = try fleet.ctl(["completion", "zsh"])
        XCTAssertTrue(r.stdout.contains("#compdef fleetctl"))
        XCTAssertTrue(
            r.stdout.contains("'restart:restart a slot'\\''s server connection"), "apostrophes survive")
        r = try fleet.ctl(["__slots"])
        XCTAssertEqual(r.stdout, "s1\ns2\n", "completion offers slot names only")
        r = try fleet.ctl(["frobnicate"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("unknown verb frobnicate"))
        r = try fleet.ctl(["scale", "9"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("2 slots are configured") && r.stderr.contains("hint:"), r.stderr)
        r = try fleet.ctl(["drain", "nosuchslot"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no slot nosuchslot"))

        // metrics over the same socket, as Prometheus or curl would read it
        let metrics = try runCommand(
            "/usr/bin/curl", ["-s", "--unix-socket", fleet.socket, "http://fleetd/metrics"])
        XCTAssertTrue(metrics.stdout.contains("fleet_slots{state=\"idle\"} 2"), metrics.stdout)
        XCTAssertTrue(metrics.stdout.contains("fleet_jobs_total{outcome=\"done\"} 1"), metrics.stdout)
        XCTAssertTrue(metrics.stdout.contains("fleet_quota_remaining_percent 100"), metrics.stdout)
    }

    /// drain on a busy slot lets its job finish and then parks it; undrain resumes.
    func testDrainLetsTheJobFinishThenParks() throws {
        let world = try FleetScenario(tag: "drain", slots: 1)
        defer { world.cleanup() }
        let job = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product,
            script: ["mode": "sleep", "seconds": 3])
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        try eventually("slot busy") { try slots(fleet)["s1"]?["state"] as? String == "busy" }

        let r = try fleet.ctl(["drain", "s1", "--wait"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("waiting for s1 (job \(job[0])"), r.stdout)
        XCTAssertTrue(r.stdout.contains("all drained"), r.stdout)
        XCTAssertEqual(try world.standin.jobs().first?["status"] as? String, "DONE")
        XCTAssertEqual(try slots(fleet)["s1"]?["state"] as? String, "drained")

        // Parked: a new job stays queued until undrain.
        let next = try world.standin.enqueue(user: world.user, kind: "IDEA_GRILL", product: world.product)
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(
            try world.standin.jobs().first { $0["id"] as? String == next[0] }?["status"] as? String, "QUEUED")
        XCTAssertEqual(try fleet.ctl(["undrain", "s1"]).status, 0)
        _ = try world.waitTerminal(next)
    }

    /// scale 1 from 3 with one busy slot drains the two idle ones first.
    func testScaleDownStopsIdleSlotsFirst() throws {
        let world = try FleetScenario(tag: "scale", slots: 3)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        try eventually("3 idle") {
            try slots(fleet).values.filter { $0["state"] as? String == "idle" }.count == 3
        }
        let job = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product,
            script: ["mode": "sleep", "seconds": 4])
        var busy = ""
        try eventually("one slot busy") {
            busy = try slots(fleet).first { $0.value["state"] as? String == "busy" }?.key ?? ""
            return !busy.isEmpty
        }

        var r = try fleet.ctl(["scale", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let result = try XCTUnwrap(try json(r) as? [String: Any])
        let draining = Set(result["draining"] as? [String] ?? [])
        XCTAssertEqual(draining, Set(world.slotNames).subtracting([busy]))
        try eventually("idle ones stopped, busy one still on its job") {
            let s = try slots(fleet)
            return draining.allSatisfy { s[$0]?["state"] as? String == "stopped" }
                && s[busy]?["state"] as? String == "busy"
        }
        _ = try world.waitTerminal(job)
        XCTAssertEqual(try world.standin.jobs().first?["status"] as? String, "DONE")

        // Persisted across a restart of fleetd.
        XCTAssertEqual(fleet.stop(), 0)
        try fleet.start()
        try eventually("scale persisted") {
            let status = try fleet.status()
            let idle = try slots(fleet).values.filter { $0["state"] as? String == "idle" }.count
            return (status["fleet"] as? [String: Any])?["desired_slots"] as? Int == 1 && idle == 1
        }
        r = try fleet.ctl(["scale", "3"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("started:"), r.stdout)
        try eventually("3 idle again") {
            try slots(fleet).values.filter { $0["state"] as? String == "idle" }.count == 3
        }
    }

    /// requeue stops the agent; the job is back in QUEUED once its lease lapses.
    func testRequeueStopsTheAgentAndTheLeaseLapses() throws {
        let world = try FleetScenario(tag: "requeue", slots: 1, lease: 3)
        defer { world.cleanup() }
        let job = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product,
            script: ["mode": "hang"])
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        var agentPid: Int32 = 0
        try eventually("agent running") {
            let slot = try slots(fleet)["s1"]
            return slot?["state"] as? String == "busy"
        }
        try eventually("agent pid recorded") {
            let jobs = try json(try fleet.ctl(["jobs", "--json"])) as? [[String: Any]]
            agentPid = Int32(jobs?.first?["agent_pid"] as? Int ?? 0)
            return agentPid > 0
        }
        // Drain first so that the slot does not claim the job again at once.
        XCTAssertEqual(try fleet.ctl(["drain", "s1"]).status, 0)
        let r = try fleet.ctl(["requeue", job[0]])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("lease lapses"), r.stdout)
        try eventually("agent gone") { kill(agentPid, 0) != 0 }
        try eventually("job back in QUEUED after the lease", timeout: 30) {
            // The stand-in requeues stale jobs when a worker polls; our slot is drained, so
            // sweep as another worker's poll would.
            try world.standin.admin(["sweep"])
            let row = try world.standin.jobs().first
            return row?["status"] as? String == "QUEUED" || (row?["retry_count"] as? Int ?? 0) >= 1
        }
        let records = try json(try fleet.ctl(["jobs", "--json"])) as? [[String: Any]]
        XCTAssertEqual(records?.first?["outcome"] as? String, "released")
        XCTAssertEqual(try fleet.ctl(["requeue", "nosuchjob"]).status, 1)
    }

    /// A stopped daemon: exit 4 within the timeout; a dead one: exit 3 and the offline view.
    func testFrozenAndDeadDaemon() throws {
        let world = try FleetScenario(tag: "frozen", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        let pid = fleet.process!.processIdentifier
        kill(pid, SIGSTOP)
        let started = Date()
        var r = try fleet.ctl(["status", "--timeout", "2"], timeout: 20)
        kill(pid, SIGCONT)
        XCTAssertEqual(r.status, 4, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 15)
        XCTAssertTrue(r.stderr.contains("did not answer") && r.stderr.contains("hint:"), r.stderr)

        XCTAssertEqual(fleet.stop(), 0)
        r = try fleet.ctl(["status"])
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stdout.contains("OFFLINE"), r.stdout)
        XCTAssertTrue(r.stdout.contains("s1"), r.stdout)
        r = try fleet.ctl(["status", "--json"])
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual((try json(r) as? [String: Any])?["offline"] as? Bool, true)
        XCTAssertEqual(try fleet.ctl(["health"]).status, 3)
    }

    /// Another non-root user is refused: by the directory's mode, and by the peer check
    /// when the modes are opened up.
    func testOtherUsersAreRefused() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to act as another user") }
        let world = try FleetScenario(tag: "peer", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        let socketDir = (fleet.socket as NSString).deletingLastPathComponent
        var st = stat()
        XCTAssertEqual(stat(socketDir, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        XCTAssertEqual(stat(fleet.socket, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)

        let asNobody = [
            "--reuid=65534", "--regid=65534", "--clear-groups", Paths.fleetctl, "--socket", fleet.socket,
        ]
        var r = try runCommand("/usr/bin/setpriv", asNobody + ["status"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("permission denied"), r.stderr)

        // Open the modes: now the daemon's peer check is what refuses.
        chmod(socketDir, 0o755)
        chmod(fleet.socket, 0o666)
        chmod(world.dir, 0o755)
        r = try runCommand("/usr/bin/setpriv", asNobody + ["status"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("uid 65534 may not use this socket"), r.stderr)
        XCTAssertEqual(try fleet.ctl(["status"]).status, 0)
    }

    /// 10,000 malformed or hostile requests leave the daemon answering, with its
    /// resident memory within a few MB of before.
    func testHostileRequestsDoNotHurtTheDaemon() throws {
        let world = try FleetScenario(tag: "hostile", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        let pid = fleet.process!.processIdentifier
        func rss() -> Int {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        func exchange(_ bytes: [UInt8], closeEarly: Bool = false) -> String {
            guard let fd = try? UnixSocket.connect(path: fleet.socket, timeout: 10) else { return "" }
            defer { close(fd) }
            UnixSocket.writeAll(fd, bytes)
            if closeEarly { return "" }
            shutdown(fd, Int32(SHUT_WR))
            var buffer: [UInt8] = []
            while UnixSocket.read(fd, into: &buffer) > 0 {}
            return String(decoding: buffer, as: UTF8.self)
        }
        let warm = exchange(Array("GET /v1/status HTTP/1.1\r\n\r\n".utf8))
        XCTAssertTrue(warm.hasPrefix("HTTP/1.1 200"))
        for _ in 0..<200 { _ = exchange(Array("GET /v1/status HTTP/1.1\r\n\r\n".utf8)) }
        let before = rss()

        let hostile: [[UInt8]] = [
            Array("garbage\r\n\r\n".utf8),
            Array("GET /v1/status HTTP/1.1\r\nX: \(String(repeating: "a", count: 40_000))\r\n\r\n".utf8),
            Array("POST /v1/drain HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"slo".utf8),
            Array("DELETE /v1/status HTTP/1.1\r\n\r\n".utf8),
            Array("POST /v1/scale HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"slots\":".utf8),
            Array("POST /v1/drain HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".utf8),
            (0..<300).map { _ in UInt8.random(in: 0...255) },
            Array("GET /\(String(repeating: "%", count: 5000)) HTTP/1.1\r\n\r\n".utf8),
            Array("GET /v1/logs?job=../../../etc/shadow HTTP/1.1\r\n\r\n".utf8),
        ]
        var statuses: [String: Int] = [:]
        for i in 0..<10_000 {
            let answer = exchange(hostile[i % hostile.count], closeEarly: i % 50 == 0)
            let code = String(answer.prefix(12))
            statuses[code, default: 0] += 1
        }
        XCTAssertNil(statuses["HTTP/1.1 200"], "\(statuses)")
        // Slow writers: connections that send half a request and stall are cut at the timeout.
        let slow = (0..<20).compactMap { _ in try? UnixSocket.connect(path: fleet.socket, timeout: 10) }
        for fd in slow { UnixSocket.writeAll(fd, Array("GET /v1/sta".utf8)) }
        let r = try fleet.ctl(["status", "--json"])
        XCTAssertEqual(r.status, 0, "daemon stopped answering: \(r.stderr)")
        slow.forEach { close($0) }

        let after = rss()
        XCTAssertLessThan(after - before, 8 * 1024, "RSS grew from \(before) kB to \(after) kB")
        XCTAssertEqual(try fleet.ctl(["health"]).status, 0)
    }

    /// The acting verbs in table and JSON form, with their exit codes.
    func testActionVerbsInTableAndJSON() throws {
        let world = try FleetScenario(tag: "actions", slots: 2)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        try eventually("2 idle") {
            try slots(fleet).values.filter { $0["state"] as? String == "idle" }.count == 2
        }

        var r = try fleet.ctl(["drain", "--all", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(Set((try json(r) as? [String: Any])?["slots"] as? [String] ?? []), ["s1", "s2"])
        try eventually("drained") {
            try slots(fleet).values.allSatisfy { $0["state"] as? String == "drained" }
        }
        r = try fleet.ctl(["undrain", "s1"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stdout, "undrained s1\n")
        r = try fleet.ctl(["undrain", "--all", "--json"])
        XCTAssertEqual((try json(r) as? [String: Any])?["ok"] as? Bool, true)
        r = try fleet.ctl(["drain"])
        XCTAssertEqual(r.status, 2, "drain needs slots or --all")
        r = try fleet.ctl(["restart", "s2", "--json"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(
            (try json(r) as? [String: Any])?["message"] as? String, "restarting after its current job")
        r = try fleet.ctl(["restart", "s2", "--now"])
        XCTAssertEqual(r.stdout, "s2: restarting now; its job is released\n")
        r = try fleet.ctl(["restart"])
        XCTAssertEqual(r.status, 2)
        r = try fleet.ctl(["scale", "1"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.hasPrefix("scaled to 1 slots"), r.stdout)
        r = try fleet.ctl(["scale", "-1"])
        XCTAssertEqual(r.status, 2)
        r = try fleet.ctl(["requeue", "nosuchjob", "--json"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no slot of this fleet is working on job nosuchjob"), r.stderr)

        let ids = try world.standin.enqueue(user: world.user, kind: "IDEA_GRILL", product: world.product)
        _ = try world.waitTerminal(ids)
        try eventually("log written") { (try fleet.ctl(["logs", ids[0]])).status == 0 }
        r = try fleet.ctl(["logs", ids[0], "--json"])
        let log = try XCTUnwrap(try json(r) as? [String: Any])
        XCTAssertEqual(log["job"] as? String, ids[0])
        XCTAssertFalse((log["data"] as? String ?? "").isEmpty)
    }

    /// With a read group, its members may read but not act; the modes are 0660 and 0750.
    func testReadGroupMayReadButNotAct() throws {
        guard getuid() == 0, getgrnam("nogroup") != nil else {
            throw XCTSkip("needs root and the group nogroup")
        }
        let world = try FleetScenario(tag: "readgrp", slots: 1)
        defer { world.cleanup() }
        chmod(world.dir, 0o755)
        let fleet = try world.fleet(world.config(extraFleet: "read_group = \"nogroup\""))
        try fleet.start()
        defer { fleet.stop() }
        let socketDir = (fleet.socket as NSString).deletingLastPathComponent
        var st = stat()
        XCTAssertEqual(stat(socketDir, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o750)
        XCTAssertEqual(stat(fleet.socket, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o660)
        XCTAssertEqual(st.st_gid, getgrnam("nogroup")!.pointee.gr_gid)

        let member = [
            "--reuid=65534", "--regid=\(getgrnam("nogroup")!.pointee.gr_gid)", "--init-groups",
            Paths.fleetctl, "--socket", fleet.socket,
        ]
        var r = try runCommand("/usr/bin/setpriv", member + ["status", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCommand("/usr/bin/setpriv", member + ["drain", "--all"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("may only read"), r.stderr)
        XCTAssertEqual(try fleet.ctl(["drain", "--all"]).status, 0)
    }
}
