import Foundation
import Testing

@testable import FleetCore

/// `[quota]`: every key, its default, and an error naming key and value for each bad one.
@Suite struct QuotaConfigTests {
    static func config(_ quota: String, agent: String = "") -> String {
        """
        version = 1

        [scrum4me]
        command = ["server"]

        [quota]
        \(quota)

        [agent]
        command = ["claude"]
        \(agent)

        [[slot]]
        name = "a"
        token_file = "/t"
        """
    }

    @Test func defaults() throws {
        let q = try FleetConfig.parse(Self.config(""), path: "/etc/fleet/fleet.toml").quota
        #expect(q.probe == "off")
        #expect(q.baseURL == "https://api.anthropic.com")
        #expect(q.model == "claude-haiku-4-5")
        #expect(q.interval == 300)
        #expect(q.maxAge == 900)
        #expect(q.sleepCap == 3600)
        #expect(q.minProbeGap == 30)
        #expect(q.jobsPerWindow == nil)
    }

    @Test func everyKey() throws {
        let text = Self.config(
            """
            probe = "anthropic"
            base_url = "http://127.0.0.1:8080/"
            model = "claude-3-5-haiku-latest"
            credential_file = "secrets/claude"
            command = ["/opt/probe.sh", "--json"]
            interval = "2m"
            max_age = "10m"
            sleep_cap = "30m"
            min_probe_gap = "5s"
            jobs_per_window = 4
            """)
        let q = try FleetConfig.parse(text, path: "/etc/fleet/fleet.toml").quota
        #expect(q.probe == "anthropic")
        #expect(q.baseURL == "http://127.0.0.1:8080")
        #expect(q.model == "claude-3-5-haiku-latest")
        #expect(q.credentialFile == "/etc/fleet/secrets/claude")
        #expect(q.command == ["/opt/probe.sh", "--json"])
        #expect(q.interval == 120)
        #expect(q.maxAge == 600)
        #expect(q.sleepCap == 1800)
        #expect(q.minProbeGap == 5)
        #expect(q.jobsPerWindow == 4)
    }

    @Test func maxAgeDefaultsToThreeIntervals() throws {
        let q = try FleetConfig.parse(Self.config("interval = \"2s\""), path: "f").quota
        #expect(q.maxAge == 6)
    }

    @Test func anthropicTakesTheAgentsCredential() throws {
        let text = Self.config("probe = \"anthropic\"", agent: "credential_file = \"/run/secrets/claude\"")
        let config = try FleetConfig.parse(text, path: "f")
        #expect(config.quota.credentialFile == nil)
        #expect(config.agent.credentialFile == "/run/secrets/claude")
    }

    @Test(
        arguments: [
            ("probe = \"api\"", "quota.probe", "\"api\" is not one of off, anthropic, command"),
            ("probe = \"anthropic\"", "quota.credential_file", "is required with probe = \"anthropic\""),
            ("probe = \"command\"", "quota.command", "is required with probe = \"command\""),
            ("probe = \"command\"\ncommand = []", "quota.command", "is required"),
            (
                "base_url = \"api.anthropic.com\"", "quota.base_url",
                "\"api.anthropic.com\" is not an http:// or https:// URL"
            ),
            ("model = \"\"", "quota.model", "\"\" must name a model"),
            ("interval = \"often\"", "quota.interval", "\"often\" is not a duration"),
            ("interval = \"0s\"", "quota.interval", "\"0s\" must be longer than 0s"),
            (
                "interval = \"5m\"\nmax_age = \"5m\"", "quota.max_age",
                "\"5m\" must be longer than interval (5m)"
            ),
            ("sleep_cap = 3600", "quota.sleep_cap", "3600 is not a duration"),
            ("min_probe_gap = \"soon\"", "quota.min_probe_gap", "\"soon\" is not a duration"),
            ("jobs_per_window = 0", "quota.jobs_per_window", "0 must be at least 1"),
            ("jobs_per_window = \"3\"", "quota.jobs_per_window", "\"3\" is not an integer"),
            ("max_tokens = 1", "quota.max_tokens", "unknown key"),
        ] as [(String, String, String)])
    func rejects(_ quota: String, key: String, message: String) {
        do {
            _ = try FleetConfig.parse(Self.config(quota), path: "/x/fleet.toml")
            Issue.record("accepted \(quota)")
        } catch {
            #expect(error.key == key)
            #expect(error.message.contains(message), "\(error.message)")
            #expect(error.line != nil)
        }
    }
}

/// Readings and failed probes in the store.
@Suite struct QuotaStoreTests {
    @Test func readingsAndFailures() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fleet-quota-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(path: dir.appendingPathComponent("fleet.db").path)

        #expect(try store.latestQuota() == nil)
        #expect(try store.latestQuotaFailure() == nil)
        let checked = Date(timeIntervalSince1970: 1_796_400_000)
        let reading = QuotaInfo(
            pct: 35, resetsAt: checked.addingTimeInterval(600), checkedAt: checked, source: "anthropic",
            detail: "5h 35% left")
        try store.recordQuota(reading)
        try store.recordQuotaFailure(
            at: checked.addingTimeInterval(60), source: "anthropic", error: "HTTP 529: overloaded")

        // A failure keeps the reading as it was.
        #expect(try store.latestQuota() == reading)
        let failure = try #require(try store.latestQuotaFailure())
        #expect(failure.error == "HTTP 529: overloaded")
        #expect(failure.at == checked.addingTimeInterval(60))
    }
}
