import Foundation
import XCTest

/// The scripted Messages API (Tests/Support/fake-anthropic) as a process on 127.0.0.1:
/// its script rewritten by the test, its request log read back.
final class FakeAnthropic {
    let script: String
    let log: String
    let process: Process
    let url: String

    static var path: String {
        Paths.repo.appendingPathComponent("Tests/Support/fake-anthropic/fake_anthropic.py").path
    }

    init(dir: String) throws {
        script = dir + "/anthropic-script.json"
        log = dir + "/anthropic-requests.jsonl"
        let portFile = dir + "/anthropic.port"
        process = Process()
        process.executableURL = URL(fileURLWithPath: Paths.python)
        process.arguments = [
            Self.path, "serve", "--script", script, "--log", log, "--port", "0", "--port-file", portFile,
        ]
        let output = dir + "/fake-anthropic.log"
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = process.standardError
        try process.run()
        var port = 0
        try eventually("fake-anthropic port file", timeout: 30) {
            let text = (try? String(contentsOfFile: portFile, encoding: .utf8)) ?? ""
            port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            return port > 0
        }
        url = "http://127.0.0.1:\(port)"
    }

    /// Replaces the script (atomically: the server reads it on every request).
    func setScript(_ value: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: value)
        let temp = script + ".tmp"
        try data.write(to: URL(fileURLWithPath: temp))
        _ = rename(temp, script)
    }

    /// The requests served so far (one JSON object each).
    func requests() -> [[String: Any]] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// A subscription answer's headers: 5-hour and 7-day windows, used fractions, resets.
    static func unified(
        fiveHourUsed: Double, fiveHourReset: Date, sevenDayUsed: Double = 0.1,
        sevenDayReset: Date = Date().addingTimeInterval(5 * 86400), status: String = "allowed"
    ) -> [String: String] {
        [
            "anthropic-ratelimit-unified-status": status,
            "anthropic-ratelimit-unified-5h-utilization": "\(fiveHourUsed)",
            "anthropic-ratelimit-unified-5h-reset": "\(Int(fiveHourReset.timeIntervalSince1970))",
            "anthropic-ratelimit-unified-7d-utilization": "\(sevenDayUsed)",
            "anthropic-ratelimit-unified-7d-reset": "\(Int(sevenDayReset.timeIntervalSince1970))",
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
        ]
    }
}

/// The shared quota probe end to end: the built fleetd and fleetctl, the stand-in
/// Scrum4Me server over HTTP, the scripted Messages API and the scripted agent.
final class QuotaTests: XCTestCase {
    static let oauthToken = "sk-ant-oat01-fleet-test-token"

    /// The config with a `[quota]` section, the model credential, and one `[[slot]]`
    /// per slot with its own floor (default 0).
    func config(_ world: FleetScenario, quota: String, floors: [String: Int] = [:]) throws -> String {
        let credential = world.dir + "/tokens/claude"
        try Self.oauthToken.write(toFile: credential, atomically: true, encoding: .utf8)
        let base = world.config(
            extraScrum: "\n[quota]\n" + quota, extraAgent: "credential_file = \"\(credential)\"")
        let head = base.components(separatedBy: "\n[[slot]]")[0]
        let slots = world.slotNames.map { name in
            """

            [[slot]]
            name = "\(name)"
            token_file = "\(world.tokenFile(name))"
            repo_roots = { "\(world.product)" = "\(world.clone(name))" }
            worktree_root = "\(world.worktreeRoot(name))"
            min_quota_pct = \(floors[name] ?? 0)
            """
        }
        return head + slots.joined()
    }

    func quota(_ fleet: FleetUnderTest) throws -> [String: Any] {
        let r = try fleet.ctl(["quota", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    func slots(_ fleet: FleetUnderTest) throws -> [String: [String: Any]] {
        let list = try fleet.status()["slots"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as? String ?? "", $0) })
    }

    func calls(_ world: FleetScenario, tool: String) throws -> [[String: Any]] {
        (try world.standin.admin(["calls", "--tool", tool]) as? [[String: Any]]) ?? []
    }

    static func date(_ any: Any?) -> Date? {
        guard let text = any as? String else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }

    /// 12 slots, 3 short intervals: the Messages API sees one probe per interval (plus
    /// the start-up one), not one per slot, and every slot heartbeats the one reading.
    func testTwelveSlotsShareOneProbePerInterval() throws {
        let world = try FleetScenario(tag: "quota12", slots: 12, transport: "http")
        defer { world.cleanup() }
        let fake = try FakeAnthropic(dir: world.dir)
        defer { fake.stop() }
        try fake.setScript([
            "credential": Self.oauthToken,
            "phases": [
                [
                    "headers": FakeAnthropic.unified(
                        fiveHourUsed: 0.2, fiveHourReset: Date().addingTimeInterval(3600))
                ]
            ],
        ])
        let interval = 2.0
        let fleet = try world.fleet(
            try config(
                world,
                quota: """
                    probe = "anthropic"
                    base_url = "\(fake.url)"
                    interval = "2s"
                    max_age = "30s"
                    """))
        let started = Date()
        try fleet.start()
        defer { fleet.stop() }

        try eventually("12 slots idle", timeout: 120, interval: 0.5) {
            let s = try slots(fleet)
            return s.count == 12 && s.values.allSatisfy { $0["state"] as? String == "idle" }
        }
        // Three more intervals after the start-up probe.
        try eventually("4 probes completed", timeout: 60, interval: 0.2) {
            (try quota(fleet)["probes_completed"] as? Int ?? 0) >= 4
        }
        let elapsed = Date().timeIntervalSince(started)
        let status = try quota(fleet)
        let served = fake.requests()

        // One probe per interval whatever the slot count: at most the start-up probe,
        // one per interval elapsed, and one in flight.
        let bound = 1 + Int((elapsed / interval).rounded(.down)) + 1
        XCTAssertGreaterThanOrEqual(served.count, 4)
        XCTAssertLessThanOrEqual(served.count, bound, "\(served.count) probes in \(elapsed) s for 12 slots")
        let probesStarted = status["probes_started"] as? Int ?? 0
        XCTAssertTrue(
            (probesStarted - 1...probesStarted + 1).contains(served.count),
            "fleetd started \(probesStarted), API served \(served.count)")
        for r in served {
            XCTAssertEqual(r["auth"] as? String, "bearer")
            XCTAssertEqual(r["anthropic_beta"] as? String, "oauth-2025-04-20")
            XCTAssertEqual(r["anthropic_version"] as? String, "2023-06-01")
            XCTAssertEqual(r["max_tokens"] as? Int, 1)
            XCTAssertEqual(r["credential_ok"] as? Bool, true)
            XCTAssertEqual(r["status"] as? Int, 200)
        }

        // The reading: 80% left; every slot's presence shows it.
        let reading = status["reading"] as? [String: Any] ?? [:]
        XCTAssertEqual(reading["pct"] as? Int, 80)
        XCTAssertEqual(reading["source"] as? String, "anthropic")
        XCTAssertEqual(status["stale"] as? Bool, false)
        try eventually("12 workers report 80%", timeout: 30) {
            let workers = (try world.standin.admin(["workers"]) as? [[String: Any]]) ?? []
            return workers.filter { $0["last_quota_pct"] as? Int == 80 }.count >= 12
        }

        // The table for people, and the readings in SQLite.
        let table = try fleet.ctl(["quota"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("quota 80% remaining"), table.stdout)
        XCTAssertEqual(
            table.stdout.split(separator: "\n").filter { $0.hasPrefix("s") && $0.contains(" open ") }.count,
            12, table.stdout)
        XCTAssertFalse(fleet.log().contains(Self.oauthToken), "the credential appeared in fleetd's log")
        XCTAssertEqual(fleet.stop(), 0)
    }

    /// Reading at 35%: floor-20 slots claim, floor-50 slots stand by (heartbeating) and
    /// resume after the scripted reset.
    func testFloorsStandByUntilTheReset() throws {
        let world = try FleetScenario(tag: "quota35", slots: 4, transport: "http")
        defer { world.cleanup() }
        let fake = try FakeAnthropic(dir: world.dir)
        defer { fake.stop() }
        let farReset = Date().addingTimeInterval(3600)
        try fake.setScript([
            "phases": [["headers": FakeAnthropic.unified(fiveHourUsed: 0.65, fiveHourReset: farReset)]]
        ])
        let fleet = try world.fleet(
            try config(
                world,
                quota: """
                    probe = "anthropic"
                    base_url = "\(fake.url)"
                    interval = "2s"
                    min_probe_gap = "1s"
                    sleep_cap = "2h"
                    """, floors: ["s1": 20, "s2": 20, "s3": 50, "s4": 50]))
        let low = ["s1", "s2"], high = ["s3", "s4"]
        let jobs = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 4, product: world.product)
        try fleet.start()
        defer { fleet.stop() }

        // Floor 20 claims everything; floor 50 stands by until the reset plus 5 s.
        let rows = try world.waitTerminal(jobs, timeout: 120)
        for row in rows {
            XCTAssertEqual(row["status"] as? String, "DONE")
            XCTAssertTrue(
                low.contains(row["claimed_by_token"] as? String ?? ""),
                "\(row["claimed_by_token"] ?? "-") claimed below its floor")
        }
        try eventually("s3 and s4 stand by", timeout: 60) {
            let s = try slots(fleet)
            return high.allSatisfy { s[$0]?["state"] as? String == "standby" }
        }
        let s = try slots(fleet)
        for name in high {
            let resumes = Self.date(s[name]?["resumes_at"])
            XCTAssertEqual(
                resumes?.timeIntervalSince1970 ?? 0, farReset.timeIntervalSince1970.rounded(.down) + 5,
                accuracy: 1, name)
            XCTAssertTrue(
                (s[name]?["standby_reason"] as? String ?? "").contains("quota 35% < floor 50%"),
                "\(s[name] ?? [:])")
            XCTAssertEqual(s[name]?["quota_floor"] as? Int, 50)
        }
        for name in low { XCTAssertNotEqual(s[name]?["state"] as? String, "standby") }

        // Standing by, they heartbeat the fleet's reading and never poll for a job.
        let before = try calls(world, tool: "worker_heartbeat").filter {
            high.contains($0["token_name"] as? String ?? "")
        }.count
        try eventually("heartbeats from the standing-by slots", timeout: 30) {
            try calls(world, tool: "worker_heartbeat").filter {
                high.contains($0["token_name"] as? String ?? "")
            }.count >= before + 4
        }
        let workers = (try world.standin.admin(["workers"]) as? [[String: Any]]) ?? []
        for name in high {
            XCTAssertEqual(
                workers.first { $0["token_name"] as? String == name }?["last_quota_pct"] as? Int, 35, name)
        }
        XCTAssertEqual(
            try calls(world, tool: "wait_for_job").filter { high.contains($0["token_name"] as? String ?? "") }
                .count, 0)

        // Seen from a shell.
        let table = try fleet.ctl(["status"])
        XCTAssertTrue(table.stdout.contains("s3: standby until "), table.stdout)
        XCTAssertTrue(table.stdout.contains("RESUMES"), table.stdout)
        let q = try quota(fleet)
        let gates = Dictionary(
            uniqueKeysWithValues: (q["slots"] as? [[String: Any]] ?? []).map {
                ($0["name"] as? String ?? "", $0)
            })
        XCTAssertEqual(gates["s1"]?["gate"] as? String, "open")
        XCTAssertEqual(gates["s1"]?["floor"] as? Int, 20)
        XCTAssertEqual(gates["s3"]?["gate"] as? String, "standby")
        XCTAssertEqual(gates["s3"]?["floor"] as? Int, 50)

        // The reset comes close; after it the API shows 90% left.
        let reset = Date().addingTimeInterval(4)
        try fake.setScript([
            "phases": [
                [
                    "until": reset.timeIntervalSince1970,
                    "headers": FakeAnthropic.unified(fiveHourUsed: 0.65, fiveHourReset: reset),
                ],
                [
                    "headers": FakeAnthropic.unified(
                        fiveHourUsed: 0.1, fiveHourReset: reset.addingTimeInterval(5 * 3600))
                ],
            ]
        ])
        try eventually("s3 and s4 poll for jobs again", timeout: 90, interval: 0.5) {
            let polled = Set(
                try calls(world, tool: "wait_for_job").compactMap { $0["token_name"] as? String })
            return high.allSatisfy { polled.contains($0) }
        }
        for call in try calls(world, tool: "wait_for_job")
        where high.contains(call["token_name"] as? String ?? "") {
            let at = try XCTUnwrap(Self.date(call["at"]))
            XCTAssertGreaterThanOrEqual(
                at.timeIntervalSince(reset), 0, "a floor-50 slot polled before the reset")
        }
        let more = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 4, product: world.product)
        for row in try world.waitTerminal(more, timeout: 120) {
            XCTAssertEqual(row["status"] as? String, "DONE")
        }
        XCTAssertEqual(fleet.stop(), 0)
    }

    /// The old probe script's JSON, printed by a command, is used as is; the credential
    /// reaches it in its environment, never in its argv. On-demand probes are
    /// rate-limited.
    func testCommandProbeAndOnDemandProbes() throws {
        let world = try FleetScenario(tag: "quotacmd", slots: 1, transport: "http")
        defer { world.cleanup() }
        let reset = "2030-01-01T00:00:00Z"
        let script = world.dir + "/worker-quota-probe.sh"
        try """
        #!/bin/sh
        # Prints what scrum4me-docker's bin/worker-quota-probe.sh prints.
        [ -n "$CLAUDE_CODE_OAUTH_TOKEN" ] && echo seen > "\(world.dir)/probe-credential-seen"
        echo "$0 $*" >> "\(world.dir)/probe-argv"
        echo "probing anthropic..." >&2
        echo '{"remaining":35000,"limit":100000,"pct":35,"reset_at_iso":"\(reset)"}'
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let fleet = try world.fleet(
            try config(
                world,
                quota: """
                    probe = "command"
                    command = ["/bin/sh", "\(script)", "--json"]
                    interval = "1h"
                    min_probe_gap = "10s"
                    """, floors: ["s1": 20]))
        try fleet.start()
        defer { fleet.stop() }

        try eventually("s1 idle on the command's reading", timeout: 60) {
            (try slots(fleet))["s1"]?["state"] as? String == "idle"
        }
        let q = try quota(fleet)
        let reading = q["reading"] as? [String: Any] ?? [:]
        XCTAssertEqual(reading["pct"] as? Int, 35)
        XCTAssertEqual(reading["source"] as? String, "command")
        XCTAssertEqual(reading["resets_at"] as? String, reset)
        XCTAssertEqual(q["probe"] as? String, "command")
        try eventually("the worker reports 35%", timeout: 30) {
            let workers = (try world.standin.admin(["workers"]) as? [[String: Any]]) ?? []
            return workers.first?["last_quota_pct"] as? Int == 35
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: world.dir + "/probe-credential-seen"))
        let argv = try String(contentsOfFile: world.dir + "/probe-argv", encoding: .utf8)
        XCTAssertTrue(argv.contains("--json"), argv)
        XCTAssertFalse(argv.contains(Self.oauthToken), argv)

        // On demand: refused inside min_probe_gap, then taken and waited for.
        var probed = CommandResult(status: -1, stdout: "", stderr: "")
        var refused = 0
        try eventually("an on-demand probe once min_probe_gap has passed", timeout: 60, interval: 0.5) {
            probed = try fleet.ctl(["quota", "--probe"])
            if probed.status == 1 && probed.stderr.contains("rate-limited") { refused += 1 }
            return probed.status == 0
        }
        XCTAssertGreaterThan(refused, 0, "no on-demand probe was refused inside min_probe_gap")
        XCTAssertTrue(probed.stdout.contains("quota 35% remaining"), probed.stdout)
        XCTAssertEqual(try quota(fleet)["probes_completed"] as? Int, 2)
        let again = try fleet.ctl(["quota", "--probe"])
        XCTAssertEqual(again.status, 1, again.stdout)
        XCTAssertTrue(
            again.stderr.contains("rate-limited") && again.stderr.contains("try again in"), again.stderr)
        XCTAssertEqual(fleet.stop(), 0)
    }

    /// `jobs_per_window`: a slot starts at most that many jobs per quota window, then
    /// stands by (here the probe is off: a window is one `sleep_cap` long).
    func testJobsPerWindowCapsASlot() throws {
        let world = try FleetScenario(tag: "quotacap", slots: 1, transport: "http")
        defer { world.cleanup() }
        let fleet = try world.fleet(
            try config(
                world,
                quota: """
                    probe = "off"
                    sleep_cap = "1h"
                    jobs_per_window = 2
                    """))
        let jobs = try world.standin.enqueue(
            user: world.user, kind: "IDEA_GRILL", count: 3, product: world.product)
        try fleet.start()
        defer { fleet.stop() }

        try eventually("s1 stands by after two jobs", timeout: 120, interval: 0.3) {
            let s1 = (try slots(fleet))["s1"] ?? [:]
            return s1["state"] as? String == "standby" && s1["jobs_done"] as? Int == 2
        }
        let s1 = (try slots(fleet))["s1"] ?? [:]
        XCTAssertTrue(
            (s1["standby_reason"] as? String ?? "").contains(
                "2 jobs started this quota window (jobs_per_window 2)"), "\(s1)")
        let statuses = try world.standin.jobs().filter { jobs.contains($0["id"] as? String ?? "") }.map {
            $0["status"] as? String ?? ""
        }
        XCTAssertEqual(statuses.filter { $0 == "DONE" }.count, 2, "\(statuses)")
        XCTAssertEqual(statuses.filter { $0 == "QUEUED" }.count, 1, "\(statuses)")
        let gate = (try quota(fleet)["slots"] as? [[String: Any]])?.first ?? [:]
        XCTAssertEqual(gate["jobs_in_window"] as? Int, 2)
        XCTAssertEqual(gate["gate"] as? String, "standby")
        XCTAssertEqual(fleet.stop(), 0)
    }

    /// A failing probe keeps the last reading with its age; past max_age the slots stop
    /// claiming and status says why; a good reading opens the gate again.
    func testStaleReadingStopsClaimsFailSafe() throws {
        let world = try FleetScenario(tag: "quotastale", slots: 1, transport: "http")
        defer { world.cleanup() }
        let fake = try FakeAnthropic(dir: world.dir)
        defer { fake.stop() }
        let good: [String: Any] = [
            "phases": [
                [
                    "headers": FakeAnthropic.unified(
                        fiveHourUsed: 0.1, fiveHourReset: Date().addingTimeInterval(3600))
                ]
            ]
        ]
        try fake.setScript(good)
        let fleet = try world.fleet(
            try config(
                world,
                quota: """
                    probe = "anthropic"
                    base_url = "\(fake.url)"
                    interval = "1s"
                    max_age = "3s"
                    """))
        try fleet.start()
        defer { fleet.stop() }
        try eventually("s1 idle", timeout: 60) { (try slots(fleet))["s1"]?["state"] as? String == "idle" }

        try fake.setScript([
            "phases": [
                [
                    "status": 529,
                    "body": [
                        "type": "error", "error": ["type": "overloaded_error", "message": "Overloaded"],
                    ],
                ]
            ]
        ])
        try eventually("s1 stands by on a stale reading", timeout: 60, interval: 0.3) {
            let s1 = (try slots(fleet))["s1"] ?? [:]
            return s1["state"] as? String == "standby"
                && (s1["standby_reason"] as? String ?? "").contains("max_age 3s")
        }
        let s1 = (try slots(fleet))["s1"] ?? [:]
        XCTAssertTrue(
            (s1["standby_reason"] as? String ?? "").contains("HTTP 529: overloaded_error: Overloaded"),
            "\(s1)")
        let q = try quota(fleet)
        XCTAssertEqual(q["stale"] as? Bool, true)
        XCTAssertEqual(q["last_probe_ok"] as? Bool, false)
        XCTAssertEqual((q["reading"] as? [String: Any])?["pct"] as? Int, 90, "the last reading is kept")
        XCTAssertGreaterThan(q["age_seconds"] as? Double ?? 0, 3)
        XCTAssertTrue((q["last_error"] as? String ?? "").contains("529"))
        let table = try fleet.ctl(["quota"])
        XCTAssertTrue(table.stdout.contains("STALE"), table.stdout)

        try fake.setScript(good)
        try eventually("s1 idle again", timeout: 60) {
            (try slots(fleet))["s1"]?["state"] as? String == "idle"
        }
        XCTAssertEqual(fleet.stop(), 0)
    }
}
