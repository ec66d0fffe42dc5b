import Foundation
import XCTest

/// A whole test world: a stand-in server with users and tokens, per-slot clones of one
/// origin repository, token files, and a fleetd config pointing at all of it.
final class FleetScenario {
    let dir: String
    let standin: StandIn
    let slotNames: [String]
    let user = "alice"
    let product = "prod1"
    var httpServer: Process?
    var httpPort: Int?
    let transport: String

    /// Sets up `slots` slots named s1...sN, each with its own token, clone and worktree root.
    init(tag: String, slots: Int = 3, transport: String = "stdio", lease: Double = 30, poll: Double = 0.2)
        throws
    {
        dir = try shortTempDir(tag)
        self.transport = transport
        standin = StandIn(state: dir + "/standin.db", lease: lease, poll: poll)
        slotNames = (1...slots).map { "s\($0)" }

        XCTAssertTrue(
            FileManager.default.isExecutableFile(atPath: Paths.python),
            "fixtures venv missing at \(Paths.python): run scripts/setup-fixtures.sh")
        try standin.admin(["init"])
        try makeOriginRepo(at: dir + "/origin")
        try FileManager.default.createDirectory(atPath: dir + "/tokens", withIntermediateDirectories: true)
        for name in slotNames {
            let clone = dir + "/repos/\(name)"
            let r = try runCommand("/usr/bin/git", ["clone", "-q", dir + "/origin", clone])
            XCTAssertEqual(r.status, 0, r.stderr)
            let token = "tok-\(name)-\(UUID().uuidString)"
            try token.write(toFile: tokenFile(name), atomically: true, encoding: .utf8)
            try standin.admin([
                "add-token", "--user", user, "--token", token, "--name", name,
                "--worktree-root", worktreeRoot(name), "--repo-root", "\(product)=\(clone)",
            ])
        }
        if transport == "http" { try startHTTP() }
    }

    func tokenFile(_ slot: String) -> String { dir + "/tokens/\(slot)" }
    func worktreeRoot(_ slot: String) -> String { dir + "/worktrees/\(slot)" }
    func clone(_ slot: String) -> String { dir + "/repos/\(slot)" }
    var agentLog: String { dir + "/agent-runs.jsonl" }

    private func startHTTP() throws {
        let portFile = dir + "/http.port"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Paths.python)
        p.arguments = [
            Paths.standin, "serve-http", "--state", standin.state, "--port", "0", "--port-file", portFile,
            "--lease-seconds", "\(standin.lease)", "--poll-seconds", "\(standin.poll)",
        ]
        let log = dir + "/standin-http.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = p.standardError
        try p.run()
        httpServer = p
        try eventually("stand-in HTTP port file", timeout: 30) {
            guard let text = try? String(contentsOfFile: portFile, encoding: .utf8),
                let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
            else { return false }
            httpPort = port
            return true
        }
    }

    /// The fleetd config for this world; `extra` is appended verbatim.
    func config(
        agentCommand: [String]? = nil, slotsLine: String = "", extraFleet: String = "",
        extraScrum: String = "",
        extraAgent: String = "", rootsProduct: String? = nil
    ) -> String {
        let python = Paths.python
        let agent = agentCommand ?? [python, Paths.agent]
        func list(_ items: [String]) -> String {
            "[" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
        }
        let server: String
        if transport == "http" {
            server = "transport = \"http\"\nurl = \"http://127.0.0.1:\(httpPort!)/mcp\""
        } else {
            server =
                "transport = \"stdio\"\ncommand = "
                + list([
                    python, Paths.standin, "serve-stdio", "--state", standin.state,
                    "--lease-seconds", "\(standin.lease)", "--poll-seconds", "\(standin.poll)",
                ])
        }
        return """
            version = 1

            [fleet]
            name = "test"
            state_dir = "\(dir)/state"
            socket = "\(dir)/run/fleetd.sock"
            grace = "5s"
            kill_timeout = "2s"
            \(slotsLine)
            \(extraFleet)

            [scrum4me]
            \(server)
            wait_seconds = 2
            heartbeat_interval = "1s"
            lease_interval = "1s"
            request_timeout = "15s"
            backoff_min = "200ms"
            backoff_max = "2s"
            \(extraScrum)

            [agent]
            command = \(list(agent))
            timeout = "60s"
            env = { SCRIPTED_AGENT_LOG = "\(agentLog)" }
            \(extraAgent)

            [[slot]]
            name = "s{n}"
            count = \(slotNames.count)
            token_file = "\(dir)/tokens/s{n}"
            repo_roots = { "\(rootsProduct ?? product)" = "\(dir)/repos/s{n}" }
            worktree_root = "\(dir)/worktrees/s{n}"
            """
    }

    func fleet(_ config: String? = nil) throws -> FleetUnderTest {
        try FleetUnderTest(dir: dir, config: config ?? self.config())
    }

    /// Waits until every listed job is in a terminal state; returns the stand-in's rows.
    func waitTerminal(_ ids: [String], timeout: Double = 120) throws -> [[String: Any]] {
        var rows: [[String: Any]] = []
        try eventually("\(ids.count) jobs terminal", timeout: timeout, interval: 0.5) {
            rows = try standin.jobs().filter { ids.contains($0["id"] as? String ?? "") }
            return rows.count == ids.count
                && rows.allSatisfy {
                    ["DONE", "FAILED", "CANCELLED", "SKIPPED"].contains($0["status"] as? String ?? "")
                }
        }
        return rows
    }

    func cleanup() {
        if let p = httpServer, p.isRunning {
            p.terminate()
            p.waitUntilExit()
        }
        if ProcessInfo.processInfo.environment["FLEET_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: dir)
        }
    }
}
