import FleetCore
import Foundation
import XCTest

/// The worker's side of each upstream incident on the protocol page, and every fault
/// the stand-in can inject: a clear slot state, no hang, no tight loop.
final class ProtocolTests: XCTestCase {
    func slot(_ fleet: FleetUnderTest, _ name: String = "s1") throws -> [String: Any] {
        (try fleet.status()["slots"] as? [[String: Any]] ?? []).first { $0["name"] as? String == name } ?? [:]
    }

    func calls(_ world: FleetScenario) throws -> [[String: Any]] {
        try world.standin.admin(["calls"]) as? [[String: Any]] ?? []
    }

    func job(_ world: FleetScenario, _ id: String) throws -> [String: Any] {
        try world.standin.jobs().first { $0["id"] as? String == id } ?? [:]
    }

    // 1. Presence is registered before the first tool call, and heartbeats arrive.
    func testIncident1PresenceAndHeartbeats() throws {
        let world = try FleetScenario(tag: "inc1", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        var instance = ""
        try eventually("slot idle with an instance id") {
            let s = try slot(fleet)
            instance = s["instance_id"] as? String ?? ""
            return s["state"] as? String == "idle" && !instance.isEmpty
        }
        try eventually("presence row with a heartbeat") {
            let workers = try world.standin.admin(["workers"]) as? [[String: Any]] ?? []
            return workers.contains {
                ($0["instance_id"] as? String) == instance && ($0["last_quota_pct"] as? Int) == 100
            }
        }
        let first = try calls(world).first { ($0["instance_id"] as? String) == instance }
        XCTAssertEqual(
            first?["method"] as? String ?? first?["tool"] as? String, "initialize", "\(first ?? [:])")
    }

    // 2. A missing repo root: the claim rolls back with a clear error; no hang, no loop.
    func testIncident2MissingRepoRootRollsBack() throws {
        let world = try FleetScenario(tag: "inc2", slots: 1)
        defer { world.cleanup() }
        let ids = try world.standin.enqueue(
            user: world.user, kind: "TASK_IMPLEMENTATION", product: world.product)
        let fleet = try world.fleet(
            world.config(extraFleet: "restart_budget = 100", rootsProduct: "otherproduct"))
        try fleet.start()
        defer { fleet.stop() }
        try eventually("slot shows the refusal") {
            (try slot(fleet)["last_error"] as? String ?? "").contains("SCRUM4ME_REPO_ROOT_\(world.product)")
        }
        XCTAssertEqual(try job(world, ids[0])["status"] as? String, "QUEUED")
        let before = try calls(world).filter { $0["tool"] as? String == "wait_for_job" }.count
        Thread.sleep(forTimeInterval: 4)
        let after = try calls(world).filter { $0["tool"] as? String == "wait_for_job" }.count
        XCTAssertLessThanOrEqual(after - before, 5, "wait_for_job retried \(after - before) times in 4 s")
        XCTAssertEqual(try fleet.ctl(["status"]).status, 0)
    }

    // 3. Two slots sharing one clone (or token): refused before anything runs.
    func testIncident3SharedCloneIsRefused() throws {
        let world = try FleetScenario(tag: "inc3", slots: 2)
        defer { world.cleanup() }
        let config = world.config().replacingOccurrences(
            of: "\"\(world.dir)/repos/s{n}\"", with: "\"\(world.dir)/repos/shared\"")
        let fleet = try world.fleet(config)
        let r = try runCommand(Paths.fleetd, ["--check-config", fleet.configPath])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(
            r.stderr.contains("slot s2.repo_roots") && r.stderr.contains("each slot needs its own clone"),
            r.stderr)

        // The same token in two files: the second slot never starts.
        try FileManager.default.copyItem(atPath: world.tokenFile("s1"), toPath: world.dir + "/tokens/s1-copy")
        try FileManager.default.removeItem(atPath: world.tokenFile("s2"))
        try FileManager.default.copyItem(atPath: world.tokenFile("s1"), toPath: world.tokenFile("s2"))
        let fleet2 = try world.fleet()
        try fleet2.start()
        defer { fleet2.stop() }
        try eventually("s2 refused") {
            let s2 = try slot(fleet2, "s2")
            return s2["state"] as? String == "failed"
                && (s2["last_error"] as? String ?? "").contains("same as slot s1")
        }
        XCTAssertEqual(try fleet2.ctl(["health"]).status, 1)
    }

    // 4. A restarted slot never reuses its instance id.
    func testIncident4RestartGetsANewInstanceId() throws {
        let world = try FleetScenario(tag: "inc4", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        var first = ""
        try eventually("idle") {
            first = try slot(fleet)["instance_id"] as? String ?? ""
            return try slot(fleet)["state"] as? String == "idle"
        }
        XCTAssertEqual(try fleet.ctl(["restart", "s1"]).status, 0)
        var second = ""
        try eventually("new instance id") {
            let s = try slot(fleet)
            second = s["instance_id"] as? String ?? ""
            return !second.isEmpty && second != first && s["state"] as? String == "idle"
        }
        XCTAssertTrue(second.hasPrefix("test-s1-"))
        try eventually("stand-in saw the new instance") {
            let workers = try world.standin.admin(["workers"]) as? [[String: Any]] ?? []
            return workers.contains { $0["instance_id"] as? String == second }
        }
    }

    // 5 and 7. A crashed first attempt leaves a worktree; the retry still succeeds, and
    // worktrees are cleaned only after the agent exits (dirty ones kept and flagged).
    func testIncidents5And7WorktreesAcrossRetries() throws {
        let world = try FleetScenario(tag: "inc5", slots: 1, lease: 2)
        defer { world.cleanup() }
        let retried = try world.standin.enqueue(
            user: world.user, kind: "TASK_IMPLEMENTATION", product: world.product,
            script: ["attempts": ["crash", "done"]])
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        let rows = try world.waitTerminal(retried, timeout: 90)
        XCTAssertEqual(rows.first?["status"] as? String, "DONE", "\(rows)")
        XCTAssertEqual(rows.first?["claim_count"] as? Int, 2)
        let worktree = rows.first?["worktree_path"] as? String ?? ""
        try eventually("clean worktree removed after the agent exited") {
            !FileManager.default.fileExists(atPath: worktree)
        }
        let branch = rows.first?["branch"] as? String ?? rows.first?["branch_name"] as? String ?? ""
        let log = try runCommand(
            "/usr/bin/git", ["-C", world.clone("s1"), "log", "--format=%s", "main..\(branch)"])
        XCTAssertFalse(log.stdout.isEmpty, "the commit survives the worktree's removal")

        let dirty = try world.standin.enqueue(
            user: world.user, kind: "TASK_IMPLEMENTATION", product: world.product,
            script: ["mode": "done", "leave_dirty": true])
        let dirtyRows = try world.waitTerminal(dirty)
        let dirtyPath = dirtyRows.first?["worktree_path"] as? String ?? "?"
        try eventually("dirty worktree flagged") {
            (try slot(fleet)["dirty_worktrees"] as? [String] ?? []).contains(dirtyPath)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dirtyPath + "/UNCOMMITTED.txt"))
    }

    // 6. A job that can never succeed ends FAILED once, without a requeue; the slot goes on.
    func testIncident6TerminalErrorsAreNotRetried() throws {
        let world = try FleetScenario(tag: "inc6", slots: 1)
        defer { world.cleanup() }
        let bad = try world.standin.enqueue(
            user: world.user, kind: "TASK_IMPLEMENTATION", product: world.product,
            script: ["mode": "fail", "message": "cannot compile: missing toolchain"])
        let good = try world.standin.enqueue(user: world.user, kind: "IDEA_GRILL", product: world.product)
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        let rows = try world.waitTerminal(bad + good)
        let badRow = rows.first { $0["id"] as? String == bad[0] } ?? [:]
        XCTAssertEqual(badRow["status"] as? String, "FAILED")
        XCTAssertEqual(badRow["claim_count"] as? Int, 1)
        XCTAssertTrue((badRow["error"] as? String ?? "").contains("missing toolchain"))
        XCTAssertEqual(rows.first { $0["id"] as? String == good[0] }?["status"] as? String, "DONE")
    }

    // 8. Cancelled by a cascade while the agent works: the agent is stopped, the job
    // recorded as cancelled, the slot moves on.
    func testIncident8CancelledWhileWorking() throws {
        let world = try FleetScenario(tag: "inc8", slots: 1)
        defer { world.cleanup() }
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product, script: ["mode": "hang"])
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        try eventually("busy") { try slot(fleet)["state"] as? String == "busy" }
        try world.standin.admin(["cancel", ids[0]])
        try eventually("slot idle again") { try slot(fleet)["state"] as? String == "idle" }
        let records =
            try JSONSerialization.jsonObject(with: Data(try fleet.ctl(["jobs", "--json"]).stdout.utf8))
            as? [[String: Any]]
        XCTAssertEqual(records?.first?["outcome"] as? String, "cancelled")
        if let pid = records?.first?["agent_pid"] as? Int {
            XCTAssertNotEqual(kill(pid_t(pid), 0), 0, "agent still running")
        }
    }

    // 9. A revoked token: token_rejected with the reason, no more claims, no tight loop.
    func testIncident9RevokedTokenStdio() throws {
        try revokedToken(transport: "stdio")
    }

    func testIncident9RevokedTokenHTTP() throws {
        try revokedToken(transport: "http")
    }

    private func revokedToken(transport: String) throws {
        let world = try FleetScenario(tag: "inc9\(transport)", slots: 1, transport: transport)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        try eventually("idle") { try slot(fleet)["state"] as? String == "idle" }
        try world.standin.admin(["revoke", "s1"])
        try eventually("token_rejected", timeout: 30) {
            try slot(fleet)["state"] as? String == "token_rejected"
        }
        let reason = try slot(fleet)["last_error"] as? String ?? ""
        XCTAssertTrue(reason.lowercased().contains("token") || reason.contains("401"), reason)
        let token = try String(contentsOfFile: world.tokenFile("s1"), encoding: .utf8)
        XCTAssertFalse(reason.contains(token.trimmingCharacters(in: .whitespacesAndNewlines)))
        let before = try calls(world).count
        Thread.sleep(forTimeInterval: 3)
        XCTAssertLessThanOrEqual(
            try calls(world).count - before, 1, "calls continued after the token was rejected")
        XCTAssertEqual(try fleet.ctl(["health"]).status, 1)
        let queued = try world.standin.enqueue(user: world.user, kind: "IDEA_GRILL", product: world.product)
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try job(world, queued[0])["status"] as? String, "QUEUED")
    }

    // Fault injection: each fault leaves the slot in a clear state, the daemon serving,
    // the request rate bounded; transient faults are recovered from.
    func testTransientFaultsOverHTTP() throws {
        try transientFaults(
            transport: "http",
            kinds: [
                ("http_500", "get_worker_settings", 3, nil), ("reset", "wait_for_job", 2, nil),
                ("malformed", "get_worker_settings", 2, nil),
                ("is_error", "wait_for_job", 2, nil), ("text_only", "*", 6, nil),
                ("sse_chunked", "*", 6, 0.05),
                ("stall", "get_worker_settings", 1, 30),
            ])
    }

    func testTransientFaultsOverStdio() throws {
        try transientFaults(
            transport: "stdio",
            kinds: [
                ("reset", "wait_for_job", 2, nil), ("malformed", "get_worker_settings", 2, nil),
                ("is_error", "wait_for_job", 2, nil), ("text_only", "*", 6, nil),
                ("stall", "get_worker_settings", 1, 30),
            ])
    }

    private func transientFaults(transport: String, kinds: [(String, String, Int, Double?)]) throws {
        let world = try FleetScenario(tag: "fault\(transport)", slots: 1, transport: transport)
        defer { world.cleanup() }
        let config = world.config(extraFleet: "restart_budget = 100", extraScrum: "")
            .replacingOccurrences(of: "request_timeout = \"15s\"", with: "request_timeout = \"3s\"")
        let fleet = try world.fleet(config)
        try fleet.start()
        defer { fleet.stop() }
        for (kind, tool, count, seconds) in kinds {
            try eventually("idle before \(kind)") { try slot(fleet)["state"] as? String == "idle" }
            var args = ["fault", "--tool", tool, "--kind", kind, "--count", "\(count)"]
            if let seconds { args += ["--seconds", "\(seconds)"] }
            try world.standin.admin(args)
            let ids = try world.standin.enqueue(user: world.user, kind: "IDEA_GRILL", product: world.product)
            let started = Date()
            let rows = try world.waitTerminal(ids, timeout: 90)
            XCTAssertEqual(rows.first?["status"] as? String, "DONE", "after \(kind): \(rows)")
            XCTAssertEqual(rows.first?["claim_count"] as? Int, 1, "after \(kind)")
            let window = max(1, Date().timeIntervalSince(started))
            let recent = try calls(world).filter {
                ($0["at"] as? String ?? "") >= ISO8601DateFormatter().string(from: started)
            }
            XCTAssertLessThan(
                Double(recent.count) / window, 20, "\(kind): \(recent.count) calls in \(Int(window)) s")
            XCTAssertEqual(try fleet.ctl(["status"]).status, 0, "daemon stopped answering after \(kind)")
            try world.standin.admin(["clear-faults"])
        }
    }

    // A persistent fault: backoff (no tight loop), then `failed` after the budget.
    func testPersistentServerErrorsEndInFailedWithBoundedRate() throws {
        let world = try FleetScenario(tag: "fault500", slots: 1, transport: "http")
        defer { world.cleanup() }
        try world.standin.admin(["fault", "--tool", "*", "--kind", "http_500", "--count", "-1"])
        try world.standin.admin(["fault", "--tool", "initialize", "--kind", "http_500", "--count", "-1"])
        let fleet = try world.fleet(world.config(extraFleet: "restart_budget = 4"))
        try fleet.start()
        defer { fleet.stop() }
        try eventually("failed after its budget", timeout: 60) {
            try slot(fleet)["state"] as? String == "failed"
        }
        let s = try slot(fleet)
        XCTAssertTrue((s["last_error"] as? String ?? "").contains("gave up after 4 failures"), "\(s)")
        let before = try calls(world).count
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(try calls(world).count, before, "a failed slot stopped calling")
        XCTAssertEqual(try fleet.ctl(["health"]).status, 1)
        let events = try fleet.ctl(["events", "--json"]).stdout
        XCTAssertEqual(
            events.components(separatedBy: "\"slot_failed\"").count - 1, 1, "one slot_failed event")

        // restart clears the budget.
        try world.standin.admin(["clear-faults"])
        XCTAssertEqual(try fleet.ctl(["restart", "s1"]).status, 0)
        try eventually("idle after restart") { try slot(fleet)["state"] as? String == "idle" }
        XCTAssertEqual(try fleet.ctl(["health"]).status, 0)
    }

    /// One refused lease renewal (a transient tool error) does not kill a working agent.
    func testATransientRenewalErrorKeepsTheAgent() throws {
        let world = try FleetScenario(tag: "renew1", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        try world.standin.admin(["fault", "--tool", "job_heartbeat", "--kind", "is_error", "--count", "1"])
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product,
            script: ["mode": "sleep", "seconds": 4])
        let rows = try world.waitTerminal(ids)
        XCTAssertEqual(rows.first?["status"] as? String, "DONE")
        XCTAssertEqual(rows.first?["claim_count"] as? Int, 1)
    }

    /// Renewals that keep failing: retries back off, and the agent is stopped once the lease
    /// has run out, so the job never runs twice at once (here: in two slots of one fleet).
    func testAnExpiredLeaseStopsTheAgent() throws {
        let world = try FleetScenario(tag: "renewx", slots: 2, lease: 3)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product,
            script: ["mode": "sleep", "seconds": 12])
        try eventually("busy") {
            (try fleet.status()["slots"] as? [[String: Any]] ?? []).contains {
                $0["state"] as? String == "busy"
            }
        }
        let faultAt = Date()
        try world.standin.admin(["fault", "--tool", "job_heartbeat", "--kind", "reset", "--count", "3"])
        let rows = try world.waitTerminal(ids, timeout: 120)
        XCTAssertTrue(["DONE", "FAILED"].contains(rows.first?["status"] as? String ?? ""), "\(rows)")
        // The runs of the job never overlap.
        let text = (try? String(contentsOfFile: world.agentLog, encoding: .utf8)) ?? ""
        var runs: [String: (start: String, end: String?)] = [:]
        for line in text.split(separator: "\n") {
            guard let e = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let pid = e["pid"].map({ "\($0)" })
            else { continue }
            if e["event"] as? String == "start" { runs[pid] = (e["start"] as? String ?? "", nil) }
            if e["event"] as? String == "end" { runs[pid]?.end = e["end"] as? String }
        }
        let ordered = runs.values.sorted { $0.start < $1.start }
        XCTAssertGreaterThanOrEqual(ordered.count, 2, "the job ran again after the lease ran out")
        for (a, b) in zip(ordered, ordered.dropFirst()) {
            XCTAssertNotNil(a.end, "a run with no end before the next started")
            XCTAssertLessThanOrEqual(a.end ?? "~", b.start, "runs overlap: \(a) and \(b)")
        }
        let renewals = try
            (world.standin.admin(["calls", "--tool", "job_heartbeat"]) as? [[String: Any]] ?? [])
            .filter { ($0["at"] as? String ?? "") >= ISO8601DateFormatter().string(from: faultAt) }
        XCTAssertLessThan(renewals.count, 30, "renewal retries without backoff: \(renewals.count)")
    }

    /// An agent that cannot start (a full disk, a missing program) does not burn through
    /// the queue: the slot backs off, then fails, and health says so.
    func testAnAgentThatCannotStartStopsTheSlotClaiming() throws {
        let world = try FleetScenario(tag: "nostart", slots: 1)
        defer { world.cleanup() }
        let ids = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 6, product: world.product)
        let fleet = try world.fleet(
            world.config(agentCommand: ["/nonexistent/agent"], extraFleet: "restart_budget = 3"))
        try fleet.start()
        defer { fleet.stop() }
        try eventually("slot failed", timeout: 60) {
            (try fleet.status()["slots"] as? [[String: Any]])?.first?["state"] as? String == "failed"
        }
        let error = (try fleet.status()["slots"] as? [[String: Any]])?.first?["last_error"] as? String ?? ""
        XCTAssertTrue(error.contains("agent did not start"), error)
        let claimed = try world.standin.jobs().filter { ids.contains($0["id"] as? String ?? "") }
            .reduce(0) { $0 + ($1["claim_count"] as? Int ?? 0) }
        XCTAssertLessThanOrEqual(claimed, 3, "claimed \(claimed) jobs it could not run")
        XCTAssertEqual(try fleet.ctl(["health"]).status, 1)
    }
}
