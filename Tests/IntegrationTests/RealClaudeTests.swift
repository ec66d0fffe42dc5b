import Foundation
import XCTest

/// The real `claude` CLI (the binary the `claude-agent-sdk` wheel carries, installed by
/// scripts/setup-fixtures.sh) as the agent of one slot, against the scripted Messages API
/// (Tests/Support/scripted-model/model.py) on loopback and the stand-in Scrum4Me server.
///
/// The CLI reads the payload with Bash, commits in the job's worktree, loads the two MCP
/// tools, verifies and reports `done` over its own MCP connection: the job ends DONE by
/// the agent's report, not the slot's.
///
/// Network: where `unshare --net` works (root, as in CI), the scripted model and fleetd
/// (so the stand-in, the CLI and git too) run in a new network namespace whose only
/// interface is loopback: the CLI cannot reach any other host. Elsewhere they run in the
/// host's namespace, still aimed only at 127.0.0.1 and with non-essential traffic off.
/// `FLEET_TEST_NETNS=0` turns the namespace off.
///
/// Root: the CLI refuses `--permission-mode bypassPermissions` as root, and fleetd has no
/// `[agent] user` yet, so the job's config asks for `acceptEdits` and allows exactly the
/// tools the script uses (Bash and the two Scrum4Me tools): that works as root and as any
/// user, and is what a careful production config would allow.
final class RealClaudeTests: XCTestCase {
    /// The claude CLI inside the claude-agent-sdk wheel in the fixtures' venv.
    static func bundledClaude() throws -> String {
        let code = """
            import importlib.util, os
            s = importlib.util.find_spec("claude_agent_sdk")
            print(os.path.join(s.submodule_search_locations[0], "_bundled", "claude") if s else "")
            """
        let r = try runCommand(Paths.python, ["-c", code], timeout: 30)
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard r.status == 0, !path.isEmpty, FileManager.default.isExecutableFile(atPath: path) else {
            throw NSError(
                domain: "realclaude", code: 1,
                userInfo: [
                    NSLocalizedDescriptionKey:
                        "no claude CLI in the fixtures venv (\(Paths.python)): run scripts/setup-fixtures.sh (\(r.stderr))"
                ])
        }
        return path
    }

    /// True when this process may make a network namespace (`unshare --net`).
    static func canUnshareNet() -> Bool {
        if ProcessInfo.processInfo.environment["FLEET_TEST_NETNS"] == "0" { return false }
        guard
            let unshare = ["/usr/bin/unshare", "/bin/unshare"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            return false
        }
        return (try? runCommand(unshare, ["--net", "/bin/true"], timeout: 10))?.status == 0
    }

    func testRealClaudeFinishesATaskJobThroughItsOwnReport() throws {
        let started = Date()
        let claude = try Self.bundledClaude()
        let world = try FleetScenario(tag: "claude", slots: 1)
        defer { world.cleanup() }
        let dir = world.dir
        let slot = world.slotNames[0]

        // The fleet's model credential: a fake API key, in a file as in production.
        let apiKey = "sk-ant-api03-fleet-test-" + UUID().uuidString
        let keyFile = dir + "/tokens/model-credential"
        try apiKey.write(toFile: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile, 0o600)

        // One task job whose config works as root: acceptEdits, exactly the tools used.
        let jobConfig: [String: Any] = [
            "model": "claude-sonnet-4-5", "thinking_budget": 0, "permission_mode": "acceptEdits",
            "max_turns": 20,
            "allowed_tools": [
                "Bash", "mcp__scrum4me__verify_task_against_plan", "mcp__scrum4me__update_job_status",
            ],
        ]
        let configJSON = String(
            decoding: try JSONSerialization.data(withJSONObject: jobConfig), as: UTF8.self)
        let enqueued = try world.standin.admin([
            "enqueue", "--user", world.user, "--kind", "TASK_IMPLEMENTATION",
            "--product", world.product, "--config", configJSON,
        ])
        let jobId = try XCTUnwrap((enqueued as? [String])?.first, "enqueue: \(enqueued)")

        // fleetd's config: the real CLI, the credential file, the loopback model; no quota probe.
        let agentEnv = [
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:@MODEL_PORT@",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_BUG_COMMAND": "1",
        ]
        let envLine =
            "env = { "
            + agentEnv.sorted { $0.key < $1.key }.map { "\($0.key) = \"\($0.value)\"" }.joined(
                separator: ", ") + " }"
        let scriptedEnvLine = "env = { SCRIPTED_AGENT_LOG = \"\(world.agentLog)\" }"
        let base = world.config(
            agentCommand: [claude], extraScrum: "\n[quota]\nprobe = \"off\"",
            extraAgent: "credential_file = \"\(keyFile)\"")
        XCTAssertTrue(base.contains(scriptedEnvLine), "FleetScenario.config() changed its [agent] env line")
        let template = base.replacingOccurrences(of: scriptedEnvLine, with: envLine)
        let fleet = try world.fleet(template)
        try template.write(toFile: dir + "/fleet.toml.in", atomically: true, encoding: .utf8)

        // The scripted model and fleetd start together (in one loopback-only namespace
        // where possible): the model picks a port, the config gets it, fleetd starts.
        let netns = Self.canUnshareNet()
        let launcher = dir + "/launch.sh"
        try """
        #!/bin/sh
        # $1: python, $2: model.py, $3: fleetd, $4: dir, $5: netns|plain
        set -e
        py="$1"; model="$2"; fleetd="$3"; dir="$4"
        if [ "$5" = netns ]; then
            "$py" "$model" --loopback-up-only
            cat /proc/net/dev > "$dir/netdev.txt"
        fi
        # The model gets stdio only: Foundation's Process sees this launcher (then
        # fleetd) exit when every copy of an inherited descriptor is closed.
        "$py" -c 'import os, sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])' \\
            "$py" "$model" --port 0 --port-file "$dir/model.port" --log "$dir/model-requests.jsonl" \\
            --bodies "$dir/model-bodies" 2>>"$dir/model.log" </dev/null >/dev/null &
        echo $! > "$dir/model.pid"
        i=0
        while [ ! -s "$dir/model.port" ]; do
            i=$((i + 1))
            if [ $i -gt 300 ]; then echo "scripted model did not start: $(cat "$dir/model.log")" >&2; exit 96; fi
            sleep 0.05
        done
        sed "s/@MODEL_PORT@/$(cat "$dir/model.port")/g" "$dir/fleet.toml.in" > "$dir/fleet.toml"
        exec "$fleetd" --config "$dir/fleet.toml" --log-level debug
        """.write(toFile: launcher, atomically: true, encoding: .utf8)
        let model = Paths.repo.appendingPathComponent("Tests/Support/scripted-model/model.py").path
        var argv = ["/bin/sh", launcher, Paths.python, model, Paths.fleetd, dir, netns ? "netns" : "plain"]
        if netns { argv = ["/usr/bin/unshare", "--net"] + argv }
        if !FileManager.default.isExecutableFile(atPath: argv[0]) { argv[0] = "/bin/unshare" }
        print(
            "RealClaudeTests: network \(netns ? "namespace with loopback only" : "of the host (FLEET_TEST_NETNS=0, or no unshare --net here)"); claude at \(claude)"
        )

        try startFleet(fleet, argv: argv)
        defer {
            fleet.stop()
            stopModel(dir)
        }

        // The job ends DONE.
        let rows = try world.waitTerminal([jobId], timeout: 90)
        let row = try XCTUnwrap(rows.first)
        let agentLog = fleet.stateDir + "/logs/jobs/\(jobId).log"
        let diagnosis = {
            "\nfleetd log tail:\n\(String(fleet.log().suffix(3000)))\nagent log tail:\n\(String(((try? String(contentsOfFile: agentLog, encoding: .utf8)) ?? "").suffix(3000)))"
        }
        XCTAssertEqual(row["status"] as? String, "DONE", "job: \(row["error"] ?? "")\(diagnosis())")
        XCTAssertEqual(row["claim_count"] as? Int, 1)
        XCTAssertEqual(row["claimed_by_token"] as? String, slot)
        XCTAssertEqual(row["verify_result"] as? String, "ALIGNED")

        // Through the agent's own report, on its own MCP connection, with the slot's
        // token and the instance id <slot instance>-job-<8> (DESIGN.md, decision 7).
        let calls = try world.standin.admin(["calls"]) as? [[String: Any]] ?? []
        let claimCall = calls.first {
            $0["tool"] as? String == "wait_for_job" && $0["job_id"] as? String == jobId
        }
        let slotInstance = try XCTUnwrap(
            claimCall?["instance_id"] as? String, "no claiming wait_for_job call")
        XCTAssertTrue(slotInstance.hasPrefix("test-\(slot)-"), slotInstance)
        let agentInstance = "\(slotInstance)-job-\(jobId.prefix(8))"
        let reports = calls.filter {
            $0["tool"] as? String == "update_job_status" && $0["job_id"] as? String == jobId
        }
        XCTAssertEqual(reports.count, 1, "update_job_status calls: \(reports)")
        let report = try XCTUnwrap(reports.first)
        XCTAssertEqual(report["status"] as? String, "ok", "\(report)")
        XCTAssertEqual((report["args"] as? [String: Any])?["status"] as? String, "done")
        XCTAssertEqual((report["args"] as? [String: Any])?["branch"] as? String, row["branch"] as? String)
        XCTAssertEqual(report["instance_id"] as? String, agentInstance)
        XCTAssertEqual(report["token_name"] as? String, slot)
        XCTAssertEqual(report["transport"] as? String, "stdio")
        XCTAssertNotEqual(
            report["pid"] as? Int, claimCall?["pid"] as? Int,
            "the report came from the slot's own server process")
        let verify = calls.filter {
            $0["tool"] as? String == "verify_task_against_plan" && $0["job_id"] as? String == jobId
        }
        XCTAssertEqual(verify.map { $0["instance_id"] as? String }, [agentInstance])
        XCTAssertFalse(
            calls.contains {
                ["wait_for_job", "job_heartbeat"].contains($0["tool"] as? String)
                    && $0["instance_id"] as? String == agentInstance
            },
            "the agent called a slot-only tool")

        // The commit is on the job's branch, in the slot's clone (the worktree's repo).
        let branch = try XCTUnwrap(row["branch"] as? String)
        XCTAssertTrue(
            (row["worktree_path"] as? String ?? "").hasPrefix(world.worktreeRoot(slot) + "/"),
            "\(row["worktree_path"] ?? "")")
        let log = try runCommand(
            "/usr/bin/git", ["-C", world.clone(slot), "log", "--format=%s", "main..\(branch)"])
        XCTAssertEqual(log.status, 0, log.stderr)
        XCTAssertEqual(
            log.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "Scripted change for job \(jobId)")
        let files = try runCommand(
            "/usr/bin/git", ["-C", world.clone(slot), "show", "--name-only", "--format=", branch])
        XCTAssertEqual(
            files.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
            "scripted-model-\(jobId.prefix(8)).txt")

        // fleetd recorded the job as done, by this slot.
        try eventually("fleetd records the job as done", timeout: 30) {
            let r = try fleet.ctl(["jobs", "--json"])
            let records =
                try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
            return records.count == 1 && records[0]["id"] as? String == jobId
                && records[0]["outcome"] as? String == "done" && records[0]["slot"] as? String == slot
        }
        try eventually("the slot is idle with one job done", timeout: 30) {
            let s = (try fleet.status()["slots"] as? [[String: Any]])?.first
            return s?["state"] as? String == "idle" && s?["jobs_done"] as? Int == 1
                && s?["jobs_failed"] as? Int == 0
        }

        // The CLI's own account of the run (stream-json in the job's log).
        let agentOutput = (try? String(contentsOfFile: agentLog, encoding: .utf8)) ?? ""
        XCTAssertTrue(
            agentOutput.contains("\"type\":\"result\"") && agentOutput.contains("\"subtype\":\"success\""),
            "agent log: \(agentOutput.suffix(2000))")
        XCTAssertTrue(
            agentOutput.contains("\"permission_denials\":[]"), "agent log: \(agentOutput.suffix(2000))")

        // What the model saw: the credential in x-api-key, the job's model, the MCP tools
        // (never the slot's wait_for_job/job_heartbeat), the whole script in order.
        let requests = try String(contentsOfFile: dir + "/model-requests.jsonl", encoding: .utf8)
            .split(separator: "\n").compactMap {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        let messages = requests.filter { $0["path"] as? String == "/v1/messages" }
        XCTAssertFalse(messages.isEmpty)
        let keyHash = try Self.sha256Hex(apiKey)
        for request in messages {
            let headers = request["headers"] as? [String: Any] ?? [:]
            XCTAssertEqual(request["credential_header"] as? String, "x-api-key", "\(headers)")
            XCTAssertEqual(
                (headers["x-api-key"] as? [String: Any])?["sha256"] as? String, keyHash,
                "the credential is not fleetd's")
            XCTAssertNil(headers["authorization"], "an OAuth header besides the API key")
            XCTAssertEqual(request["model"] as? String, "claude-sonnet-4-5")
            let names = (request["tools"] as? [String] ?? []) + (request["mcp_names"] as? [String] ?? [])
            XCTAssertFalse(
                names.contains { $0.hasSuffix("__wait_for_job") || $0.hasSuffix("__job_heartbeat") },
                "the agent was offered a slot-only tool: \(names)")
        }
        let main = messages.filter { ($0["tools"] as? [String] ?? []).contains("Bash") }
        let steps = main.map { $0["step"] as? String ?? "?" }
        // (a retried request repeats a step; the stand-in's call log above counts the reports)
        let distinct = steps.filter { $0 != "toolsearch" }.reduce(into: [String]()) {
            if $0.last != $1 { $0.append($1) }
        }
        XCTAssertEqual(distinct, ["payload", "commit", "verify", "report", "final"], "\(steps)")
        XCTAssertTrue(
            main.contains {
                ($0["mcp_names"] as? [String] ?? []).contains("mcp__scrum4me__update_job_status")
            })
        let unknown = requests.filter { $0["step"] as? String == "unknown" }.map {
            "\($0["method"] ?? "") \($0["path"] ?? "")"
        }
        if !unknown.isEmpty { print("RealClaudeTests: the CLI also called \(unknown) (answered 404)") }

        if netns {
            let netdev = (try? String(contentsOfFile: dir + "/netdev.txt", encoding: .utf8)) ?? ""
            let interfaces = netdev.split(separator: "\n").dropFirst(2).compactMap {
                $0.split(separator: ":").first?.trimmingCharacters(in: .whitespaces)
            }
            XCTAssertEqual(interfaces, ["lo"], "the namespace has more than loopback: \(netdev)")
        }
        XCTAssertEqual(fleet.stop(), 0, "fleetd exit status")
        print(
            "RealClaudeTests: \(messages.count) Messages API requests, \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
        )
    }

    /// Starts fleetd with `argv` (a launcher that ends in `exec fleetd`) and waits until it answers.
    private func startFleet(_ fleet: FleetUnderTest, argv: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.environment = ProcessInfo.processInfo.environment
        _ = FileManager.default.createFile(atPath: fleet.logPath, contents: nil)
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: fleet.logPath))
        p.standardError = logHandle
        p.standardOutput = logHandle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        fleet.process = p
        try eventually("fleetd answers on \(fleet.socket)", timeout: 30) {
            guard p.isRunning else {
                throw NSError(
                    domain: "fleetd", code: 1,
                    userInfo: [NSLocalizedDescriptionKey: "fleetd exited: \(fleet.log())"])
            }
            return (try? fleet.ctl(["status", "--json"]))?.status == 0
        }
    }

    /// Hex SHA-256 of a string, by the fixtures' python (no CryptoKit on Linux).
    static func sha256Hex(_ s: String) throws -> String {
        let code = "import hashlib, sys; print(hashlib.sha256(sys.stdin.read().encode()).hexdigest())"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sha-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: file) }
        _ = FileManager.default.createFile(
            atPath: file, contents: Data(s.utf8), attributes: [.posixPermissions: 0o600])
        let r = try runCommand(
            "/bin/sh", ["-c", "exec \"$0\" -c \"$1\" < \"$2\"", Paths.python, code, file], timeout: 30)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops the scripted model by its pid (it outlives the launcher, which became fleetd).
    private func stopModel(_ dir: String) {
        guard let text = try? String(contentsOfFile: dir + "/model.pid", encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        else { return }
        guard kill(pid, SIGTERM) == 0 else { return }
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0 && Date() < deadline {
            var status: Int32 = 0
            // Ours only if fleetd exited and left it to us; harmless otherwise.
            _ = waitpid(pid, &status, WNOHANG)
            usleep(20_000)
        }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }
}
