import Foundation
import XCTest

/// The main job end to end: 3 slots, 12 mixed jobs, the built fleetd and fleetctl, the
/// stand-in Scrum4Me server on the official MCP SDK, the scripted agent and real git.
final class EndToEndTests: XCTestCase {
    func testTwelveJobsOverStdio() throws {
        try runTwelveJobs(transport: "stdio")
    }

    func testTwelveJobsOverHTTP() throws {
        try runTwelveJobs(transport: "http")
    }

    private func runTwelveJobs(transport: String) throws {
        let world = try FleetScenario(tag: "e2e-\(transport)", transport: transport)
        defer { world.cleanup() }
        var ids: [String] = []
        ids += try world.standin.enqueue(
            user: world.user, kind: "TASK_IMPLEMENTATION", count: 6, product: world.product)
        ids += try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 2, product: world.product)
        ids += try world.standin.enqueue(
            user: world.user, kind: "PR_REVIEW", count: 2, product: world.product)
        ids += try world.standin.enqueue(
            user: world.user, kind: "DOCS_AUDIT", count: 2, product: world.product)
        XCTAssertEqual(ids.count, 12)

        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }

        let rows = try world.waitTerminal(ids, timeout: 180)
        let tokens = Set(world.slotNames)
        for row in rows {
            let id = row["id"] as? String ?? "?"
            XCTAssertEqual(row["status"] as? String, "DONE", "job \(id): \(row["error"] ?? "")")
            XCTAssertEqual(row["claim_count"] as? Int, 1, "job \(id) claimed more than once")
            let slot = row["claimed_by_token"] as? String ?? ""
            XCTAssertTrue(tokens.contains(slot), "job \(id) claimed by \(slot)")
            guard row["kind"] as? String == "TASK_IMPLEMENTATION" else { continue }

            // The commit is on the job's branch, in the worktree of the slot that claimed it.
            let worktree = row["worktree_path"] as? String ?? ""
            let branch = row["branch"] as? String ?? row["branch_name"] as? String ?? ""
            XCTAssertTrue(
                worktree.hasPrefix(world.worktreeRoot(slot) + "/"),
                "job \(id) worktree \(worktree) not under slot \(slot)")
            let log = try runCommand(
                "/usr/bin/git", ["-C", world.clone(slot), "log", "--format=%s", "main..\(branch)"])
            XCTAssertEqual(log.status, 0, log.stderr)
            XCTAssertFalse(log.stdout.isEmpty, "no commit on \(branch) in \(world.clone(slot))")
        }

        // fleetctl sees three idle slots; the database has twelve finished jobs.
        try eventually("3 idle slots", timeout: 30) {
            let status = try fleet.status()
            let slots = status["slots"] as? [[String: Any]] ?? []
            return slots.count == 3 && slots.allSatisfy { $0["state"] as? String == "idle" }
        }
        let jobs = try fleet.ctl(["jobs", "--json"])
        XCTAssertEqual(jobs.status, 0)
        let records = try JSONSerialization.jsonObject(with: Data(jobs.stdout.utf8)) as? [[String: Any]] ?? []
        XCTAssertEqual(Set(records.map { $0["id"] as? String ?? "" }), Set(ids))
        XCTAssertTrue(records.allSatisfy { $0["outcome"] as? String == "done" }, "\(records)")
        for record in records {
            let row = rows.first { $0["id"] as? String == record["id"] as? String }
            XCTAssertEqual(record["slot"] as? String, row?["claimed_by_token"] as? String)
        }

        let table = try fleet.ctl(["status"])
        XCTAssertEqual(table.status, 0)
        XCTAssertTrue(table.stdout.contains("SLOT"), table.stdout)
        XCTAssertEqual(
            table.stdout.split(separator: "\n").filter { $0.contains(" idle ") }.count, 3, table.stdout)

        XCTAssertEqual(fleet.stop(), 0, "fleetd exit status")
    }

    /// A job whose agent fails ends FAILED with the agent's error; the slot goes on.
    func testFailingAgentFailsTheJobAndTheSlotGoesOn() throws {
        let world = try FleetScenario(tag: "fail", slots: 1)
        defer { world.cleanup() }
        let bad = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", product: world.product,
            script: ["mode": "fail", "message": "compiler exploded: E1234"])
        let good = try world.standin.enqueue(user: world.user, kind: "IDEA_GRILL", product: world.product)

        let fleet = try world.fleet()
        try fleet.start()
        defer { fleet.stop() }

        let rows = try world.waitTerminal(bad + good)
        let badRow = rows.first { $0["id"] as? String == bad[0] }
        let goodRow = rows.first { $0["id"] as? String == good[0] }
        XCTAssertEqual(badRow?["status"] as? String, "FAILED")
        XCTAssertTrue(
            (badRow?["error"] as? String ?? "").contains("compiler exploded: E1234"), "\(badRow ?? [:])")
        XCTAssertEqual(goodRow?["status"] as? String, "DONE")

        // The slot records the outcome just after the agent's own report.
        try eventually("slot counts one failed and one done job") {
            let slot = (try fleet.status()["slots"] as? [[String: Any]])?.first
            return slot?["jobs_failed"] as? Int == 1 && slot?["jobs_done"] as? Int == 1
                && slot?["state"] as? String == "idle"
        }
    }

    /// Bad config: a clear error naming the key and the value, and fleetd does not start.
    func testBadConfigIsRefusedWithKeyAndValue() throws {
        let world = try FleetScenario(tag: "badcfg", slots: 1)
        defer { world.cleanup() }
        let config = world.config().replacingOccurrences(of: "grace = \"5s\"", with: "grace = \"five\"")
        let fleet = try world.fleet(config)
        let r = try runCommand(Paths.fleetd, ["--config", fleet.configPath], timeout: 10)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("fleet.grace"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\"five\""), r.stderr)
        XCTAssertTrue(r.stderr.contains("fleet.toml:7"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: fleet.socket))

        let check = try runCommand(Paths.fleetd, ["--check-config", fleet.configPath], timeout: 10)
        XCTAssertEqual(check.status, 2)
        let ok = try runCommand(Paths.fleetd, ["--check-config", try world.fleet().configPath], timeout: 10)
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }
}
