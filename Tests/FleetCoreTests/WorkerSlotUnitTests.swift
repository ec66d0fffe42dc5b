import FleetCore
import Foundation
import Testing

@testable import WorkerSlot

@Suite struct AgentLaunchTests {
    @Test(
        arguments: [
            (0, nil), (-5, nil), (1, "medium"), (6000, "medium"), (6001, "high"), (12000, "high"),
            (12001, "xhigh"), (24000, "xhigh"), (24001, "max"), (100_000, "max"),
        ] as [(Int, String?)])
    func thinkingBudgetMapsToEffort(budget: Int, effort: String?) {
        #expect(AgentLaunch.effort(forThinkingBudget: budget) == effort)
    }

    @Test func configBecomesFlagsAndHidesTheSlotsTools() {
        let config: JSONValue = [
            "model": "claude-sonnet-4-5", "thinking_budget": 10000, "permission_mode": "acceptEdits",
            "allowed_tools": ["Bash", "mcp__scrum4me__wait_for_job", "mcp__scrum4me__update_job_status"],
            "max_turns": 30,
        ]
        let args = AgentLaunch.flags(config: config, mcpConfigPath: "/s/mcp.json", prompt: "go")
        func value(_ flag: String) -> String? { args.firstIndex(of: flag).map { args[$0 + 1] } }
        #expect(value("-p") == "go")
        #expect(value("--output-format") == "stream-json")
        #expect(args.contains("--verbose"))
        #expect(value("--model") == "claude-sonnet-4-5")
        #expect(value("--effort") == "high")
        #expect(value("--permission-mode") == "acceptEdits")
        #expect(value("--max-turns") == "30")
        #expect(value("--allowedTools") == "Bash,mcp__scrum4me__update_job_status")
        #expect(value("--disallowedTools")?.contains("mcp__scrum4me__job_heartbeat") == true)
        #expect(value("--mcp-config") == "/s/mcp.json")
    }

    @Test func noBudgetNoEffortFlag() {
        let args = AgentLaunch.flags(config: ["thinking_budget": 0], mcpConfigPath: "m", prompt: "p")
        #expect(!args.contains("--effort"))
    }

    @Test func promptsComeFromTheOperatorsDirectoryFirst() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "prompts-\(UUID().uuidString)"
        ).path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let builtIn = AgentLaunch.prompt(
            kind: "IDEA_GRILL", jobId: "j1", payloadPath: "/p.json", promptDir: dir)
        #expect(builtIn.contains("/p.json") && builtIn.contains("j1"))
        try "grill {job_id} from {payload_path} ({kind})".write(
            toFile: dir + "/IDEA_GRILL.md", atomically: true, encoding: .utf8)
        #expect(
            AgentLaunch.prompt(kind: "IDEA_GRILL", jobId: "j1", payloadPath: "/p.json", promptDir: dir)
                == "grill j1 from /p.json (IDEA_GRILL)")
        try "default for {kind}".write(toFile: dir + "/default.md", atomically: true, encoding: .utf8)
        #expect(
            AgentLaunch.prompt(kind: "DEPLOY", jobId: "j", payloadPath: "p", promptDir: dir)
                == "default for DEPLOY")
    }
}

@Suite struct FailurePolicyTests {
    typealias V = FailurePolicy.Verdict

    @Test func tasksAreRetriedAfterACrashButFailedOnAnError() {
        let crash = FailurePolicy.verdict(
            kind: "TASK_IMPLEMENTATION", ending: .exited(.signaled(9)), excerpt: "", timeout: 60,
            quotaExhausted: false)
        guard case .release = crash else { Issue.record("crash of a task: \(crash)"); return }
        let silent = FailurePolicy.verdict(
            kind: "TASK_IMPLEMENTATION", ending: .exited(.exited(0)), excerpt: "", timeout: 60,
            quotaExhausted: false)
        guard case .release = silent else { Issue.record("silent task: \(silent)"); return }
        let failed = FailurePolicy.verdict(
            kind: "TASK_IMPLEMENTATION", ending: .exited(.exited(2)), excerpt: "tests red", timeout: 60,
            quotaExhausted: false)
        #expect(failed == .report("agent failed (exit 2): tests red"))
    }

    @Test func otherKindsAreReportedFailed() {
        #expect(
            FailurePolicy.verdict(
                kind: "IDEA_GRILL", ending: .exited(.exited(0)), excerpt: "", timeout: 60,
                quotaExhausted: false)
                == .report("agent exited without reporting a status"))
        #expect(
            FailurePolicy.verdict(
                kind: "IDEA_GRILL", ending: .exited(.signaled(11)), excerpt: "boom", timeout: 60,
                quotaExhausted: false)
                == .report("agent killed by signal 11: boom"))
        #expect(
            FailurePolicy.verdict(
                kind: "PR_REVIEW", ending: .timedOut, excerpt: "", timeout: 7200, quotaExhausted: false)
                == .report("agent timed out after 2h"))
    }

    @Test func aSprintOutOfQuotaPausesInsteadOfFailing() {
        let byReading = FailurePolicy.verdict(
            kind: "SPRINT_IMPLEMENTATION", ending: .exited(.exited(1)), excerpt: "", timeout: 60,
            quotaExhausted: true)
        guard case .report(let error) = byReading else { Issue.record("\(byReading)"); return }
        #expect(error.hasPrefix("QUOTA_PAUSE: "))
        let byMessage = FailurePolicy.verdict(
            kind: "SPRINT_IMPLEMENTATION", ending: .exited(.exited(1)), excerpt: "Claude usage limit reached",
            timeout: 60, quotaExhausted: false)
        guard case .report(let error2) = byMessage else { Issue.record("\(byMessage)"); return }
        #expect(error2.hasPrefix("QUOTA_PAUSE: "))
        let task = FailurePolicy.verdict(
            kind: "TASK_IMPLEMENTATION", ending: .exited(.exited(1)), excerpt: "usage limit", timeout: 60,
            quotaExhausted: true)
        #expect(task == .report("agent failed (exit 1): usage limit"))
    }

    @Test func fleetInterruptionsAreReleased() {
        for ending in [Slot.AgentEnding.aborted, .lostJob("x"), .cancelled("y")] {
            guard
                case .release = FailurePolicy.verdict(
                    kind: "IDEA_GRILL", ending: ending, excerpt: "", timeout: 1, quotaExhausted: false)
            else {
                Issue.record("\(ending) not released")
                continue
            }
        }
    }
}

@Suite struct ToolFailureTests {
    @Test(arguments: [
        ("JOB_CANCELLED: cascade from job x", "cancelled"),
        ("PERMISSION_DENIED: This job was not claimed by your token", "denied"),
        ("Job is already in terminal state: DONE", "terminal DONE"),
        ("Job is already in terminal state: done", "terminal done"),
        ("UNAUTHORIZED: token invalid or revoked", "token"),
        ("Invalid API token", "token"),
        ("Token has been revoked", "token"),
        ("VALIDATION_ERROR: skipped needs an error", "other"),
        ("no repo root for product p1", "other"),
    ])
    func classifiesMessages(text: String, kind: String) {
        let failure = ToolFailure(ToolResult(isError: true, text: text, object: nil))
        switch failure {
        case .jobCancelled: #expect(kind == "cancelled")
        case .permissionDenied: #expect(kind == "denied")
        case .alreadyTerminal(let state): #expect(kind == "terminal \(state)")
        case .tokenRejected: #expect(kind == "token")
        case .other: #expect(kind == "other")
        }
    }
}

@Suite struct SSETests {
    @Test func findsTheResponseAmongEventsSplitAnyhow() throws {
        let body = """
            event: message\r
            data: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\r
            \r
            event: message\r
            data: {"jsonrpc":"2.0",\r
            data: "id":7,"result":{"ok":true}}\r
            \r

            """
        let response = try HTTPTransport.response(inSSE: Data(body.utf8), id: 7)
        #expect(response["result"]?["ok"]?.bool == true)
    }

    @Test func aStreamWithoutTheResponseIsAProtocolError() {
        #expect(throws: MCPError.self) {
            try HTTPTransport.response(
                inSSE: Data("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n".utf8), id: 2)
        }
    }
}

@Suite struct BackoffTests {
    @Test func doublesWithJitterUpToTheCap() {
        var b = Backoff(min: 1, max: 300)
        let delays = (0..<12).map { _ in b.next(random: 0) }
        #expect(delays.prefix(9) == [1, 2, 4, 8, 16, 32, 64, 128, 256])
        #expect(delays.suffix(3).allSatisfy { $0 == 300 })
        var c = Backoff(min: 4, max: 300)
        #expect(c.next(random: 1) == 5)
        #expect(c.next(random: 0.5) == 9)
        c.reset()
        #expect(c.next(random: 0) == 4)
    }

    @Test func neverUnderTheBase() {
        var b = Backoff(min: 1, max: 8)
        for expected in [1.0, 2, 4, 8, 8] {
            let delay = b.next()
            #expect(delay >= expected && delay < expected * 1.25)
        }
    }

    @Test func jitterSpreadsSlotsApart() {
        let first = (0..<8).map { _ in Backoff(min: 1, max: 300) }.map { b -> Double in
            var b = b; return b.next()
        }
        #expect(Set(first).count > 1)
    }
}
