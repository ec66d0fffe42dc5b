import Foundation
import Testing

@testable import FleetCore

@Suite struct ConfigTests {
    static let valid = """
        version = 1

        [fleet]
        name = "nas"
        state_dir = "/var/lib/fleet"
        socket = "/run/fleet/fleetd.sock"
        grace = "30s"
        slots = 2

        [scrum4me]
        transport = "stdio"
        command = ["npx", "tsx", "/opt/scrum4me-mcp/src/index.ts"]
        wait_seconds = 300
        lease_interval = "250ms"

        [agent]
        command = ["claude"]
        timeout = "2h"

        [[slot]]
        name = "alpha"
        token_file = "/run/secrets/slot-alpha"
        repo_roots = { "cm8product01" = "/data/repos/alpha/webapp" }
        worktree_root = "/data/worktrees/alpha"
        min_quota_pct = 20
        tier = "HIGH_P"

        [[slot]]
        name = "sprint-{n}"
        count = 3
        token_file = "/run/secrets/sprint-{n}"
        min_quota_pct = 50
        """

    @Test func parsesTheDesignSketch() throws {
        let config = try FleetConfig.parse(Self.valid, path: "/etc/fleet/fleet.toml")
        #expect(config.fleet.name == "nas")
        #expect(config.fleet.grace == 30)
        #expect(config.fleet.slots == 2)
        #expect(config.scrum4me.command == ["npx", "tsx", "/opt/scrum4me-mcp/src/index.ts"])
        #expect(config.scrum4me.leaseInterval == 0.25)
        #expect(config.agent.timeout == 7200)
        #expect(config.slots.map(\.name) == ["alpha", "sprint-1", "sprint-2", "sprint-3"])
        #expect(config.slots[0].repoRoots == ["cm8product01": "/data/repos/alpha/webapp"])
        #expect(config.slots[2].tokenFile == "/run/secrets/sprint-2")
        #expect(config.slots[3].minQuotaPct == 50)
    }

    @Test func relativePathsAreAnchoredAtTheConfigFile() throws {
        let text = Self.valid.replacing("\"/run/secrets/slot-alpha\"", with: "\"secrets/alpha\"")
        let config = try FleetConfig.parse(text, path: "/etc/fleet/fleet.toml")
        #expect(config.slots[0].tokenFile == "/etc/fleet/secrets/alpha")
    }

    /// Each bad input names the key path and the value, with the line.
    @Test(
        arguments: [
            ("grace = \"30s\"", "grace = \"soon\"", "fleet.grace", "\"soon\" is not a duration", 7),
            (
                "transport = \"stdio\"", "transport = \"smoke\"", "scrum4me.transport",
                "\"smoke\" is not one of stdio, http", 11
            ),
            (
                "wait_seconds = 300", "wait_seconds = 900", "scrum4me.wait_seconds",
                "900 must be between 1 and 600", 13
            ),
            (
                "min_quota_pct = 20", "min_quota_pct = 120", "slot[0].min_quota_pct",
                "120 must be between 0 and 100", 25
            ),
            ("tier = \"HIGH_P\"", "tier = \"URGENT\"", "slot[0].tier", "\"URGENT\" is not one of", 26),
            ("slots = 2", "slots = 9", "fleet.slots", "9 is outside 0...4", 8),
            ("slots = 2", "slots = \"two\"", "fleet.slots", "\"two\" is not an integer", 8),
            ("name = \"nas\"", "name = \"nas box\"", "fleet.name", "\"nas box\" must be letters", 4),
            ("name = \"nas\"", "nmae = \"nas\"", "fleet.nmae", "unknown key", 4),
            ("count = 3", "count = 0", "slot[1].count", "0 must be between 1 and 256", 30),
            (
                "lease_interval = \"250ms\"", "lease_interval = \"0s\"", "scrum4me.lease_interval",
                "must be longer than 0", 14
            ),
            ("grace = \"30s\"", "grace = \"99999999999999999999s\"", "fleet.grace", "longer than a year", 7),
            (
                "timeout = \"2h\"", "timeout = \"2h\"\nopen_files = -1", "agent.open_files",
                "-1 must be 0 (no limit) or more", 19
            ),
            (
                "timeout = \"2h\"", "timeout = \"2h\"\nmemory_limit = \"99999999999T\"", "agent.memory_limit",
                "too large", 19
            ),
            (
                "timeout = \"2h\"", "timeout = \"2h\"\ncpu_limit = \"9999999999h\"", "agent.cpu_limit",
                "longer than a year", 19
            ),
            (
                "socket = \"/run/fleet/fleetd.sock\"",
                "socket = \"/run/\(String(repeating: "s", count: 120))\"", "fleet.socket",
                "too long for a Unix socket", 6
            ),
        ] as [(String, String, String, String, Int)])
    func rejectsBadValues(find: String, replace: String, key: String, message: String, line: Int) {
        let text = Self.valid.replacing(find, with: replace)
        #expect(text != Self.valid)
        do {
            _ = try FleetConfig.parse(text, path: "/x/fleet.toml")
            Issue.record("accepted \(replace)")
        } catch {
            #expect(error.key == key)
            #expect(error.message.contains(message), "\(error.message)")
            #expect(error.line == line)
            #expect(error.description.hasPrefix("/x/fleet.toml:\(line): \(key): "))
        }
    }

    @Test func rejectsAWrongVersionAndTOMLSyntax() {
        #expect(throws: ConfigError.self) { try FleetConfig.parse("version = 2\n", path: "f") }
        do {
            _ = try FleetConfig.parse("version = 1\n[fleet\n", path: "f.toml")
            Issue.record("accepted bad TOML")
        } catch {
            #expect(error.line == 2)
        }
    }

    @Test func duplicateTemplateNamesAreRejected() {
        let text = Self.valid + "\n[[slot]]\nname = \"sprint-2\"\ntoken_file = \"/t\"\n"
        #expect(throws: ConfigError.self) { try FleetConfig.parse(text, path: "f") }
    }

    @Test func transportNeedsItsEndpoint() {
        let text = Self.valid.replacing("transport = \"stdio\"", with: "transport = \"http\"")
        do {
            _ = try FleetConfig.parse(text, path: "f")
            Issue.record("http without url accepted")
        } catch {
            #expect(error.key == "scrum4me.url")
        }
    }

    @Test(arguments: [
        ("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1.5s", 1.5), ("1d", 86400.0),
    ])
    func parsesDurations(text: String, seconds: Double) {
        #expect(parseDuration(text) == seconds)
    }

    @Test(arguments: ["", "5", "s", "-1s", "5 m", "5mm", "1e3s"])
    func rejectsBadDurations(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test func environmentOverridesSectionKeys() throws {
        let env = [
            "FLEET_FLEET_GRACE": "45s", "FLEET_SCRUM4ME_WAIT_SECONDS": "120", "FLEET_FLEET_NAME": "pod-3",
            "FLEET_AGENT_COMMAND": "[\"/usr/bin/claude\", \"--debug\"]", "FLEET_SOCKET": "/ignored",
        ]
        let config = try FleetConfig.parse(Self.valid, path: "/etc/fleet/fleet.toml", environment: env)
        #expect(config.fleet.grace == 45)
        #expect(config.fleet.name == "pod-3")
        #expect(config.scrum4me.waitSeconds == 120)
        #expect(config.agent.command == ["/usr/bin/claude", "--debug"])
    }

    @Test func aBadOverrideNamesTheVariable() {
        do {
            _ = try FleetConfig.parse(Self.valid, path: "f", environment: ["FLEET_FLEET_GRACE": "soon"])
            Issue.record("accepted")
        } catch {
            #expect(error.key == "fleet.grace (from FLEET_FLEET_GRACE)")
            #expect(error.line == nil)
            #expect(error.message.contains("\"soon\""))
        }
    }

    @Test func twoSpellingsOfOneCloneAreOneClone() {
        let text = Self.valid.replacing(
            "[[slot]]\nname = \"sprint-{n}\"",
            with:
                "[[slot]]\nname = \"beta\"\ntoken_file = \"/t/beta\"\nrepo_roots = { \"p\" = \"/data/repos/alpha/./webapp/\" }\n\n[[slot]]\nname = \"sprint-{n}\""
        )
        do {
            _ = try FleetConfig.parse(text, path: "f")
            Issue.record("shared clone accepted")
        } catch {
            #expect(error.message.contains("each slot needs its own clone"), "\(error)")
        }
    }

    @Test func worktreesMayNotNestInClones() {
        let text = Self.valid.replacing(
            "worktree_root = \"/data/worktrees/alpha\"",
            with: "worktree_root = \"/data/repos/alpha/webapp/wt\"")
        #expect(throws: ConfigError.self) { try FleetConfig.parse(text, path: "f") }
    }

    @Test func misspelledOverridesAreErrors() {
        do {
            _ = try FleetConfig.parse(Self.valid, path: "f", environment: ["FLEET_FLEET_GRAC": "5s"])
            Issue.record("misspelled override ignored")
        } catch {
            #expect(error.key == "fleet.grac (from FLEET_FLEET_GRAC)")
        }
    }

    @Test func backoffBoundsAreOrdered() {
        let text = Self.valid.replacing(
            "wait_seconds = 300", with: "wait_seconds = 300\nbackoff_min = \"10m\"\nbackoff_max = \"1m\"")
        #expect(throws: ConfigError.self) { try FleetConfig.parse(text, path: "f") }
    }
}
