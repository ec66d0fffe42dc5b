#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// How to start the agent for one job: argv, environment, MCP configuration.
///
/// The job's `config` becomes Claude Code flags; the agent gets its own Scrum4Me server
/// entry with the slot's token and a distinct instance id (DESIGN.md, decision 7).
public struct AgentLaunch: Sendable {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var directory: String
    /// The MCP configuration file's content (holds the token: written 0600, removed after).
    public var mcpConfig: JSONValue
    /// Parent-death signal, limits, user.
    public var setup: ChildSetup

    /// `thinking_budget` to `--effort`: 0 leaves the flag out.
    public static func effort(forThinkingBudget budget: Int) -> String? {
        switch budget {
        case ...0: nil
        case ...6000: "medium"
        case ...12000: "high"
        case ...24000: "xhigh"
        default: "max"
        }
    }

    /// The prompt for a job: `<prompt_dir>/<KIND>.md`, else `<prompt_dir>/default.md`,
    /// else the built-in text for the kind. `{payload_path}`, `{kind}` and `{job_id}`
    /// are filled in.
    public static func prompt(kind: String, jobId: String, payloadPath: String, promptDir: String?) -> String
    {
        var template = builtInPrompts[kind] ?? defaultPrompt
        if let dir = promptDir {
            for name in ["\(kind).md", "default.md"] {
                if let data = FileManager.default.contents(atPath: "\(dir)/\(name)") {
                    template = String(decoding: data, as: UTF8.self)
                    break
                }
            }
        }
        return template.replacing("{payload_path}", with: payloadPath)
            .replacing("{kind}", with: kind).replacing("{job_id}", with: jobId)
    }

    static let defaultPrompt = """
        You are a Scrum4Me worker. Your job {job_id} (kind {kind}) is described by the JSON \
        file at {payload_path} (also in $PAYLOAD_PATH). Carry it out in the current \
        directory, then report the outcome with the scrum4me MCP tool update_job_status \
        (done with a summary, or failed with the reason). Never call wait_for_job or \
        job_heartbeat: the fleet does that.
        """

    static let builtInPrompts: [String: String] = [
        "TASK_IMPLEMENTATION": """
        You are a Scrum4Me worker implementing one task. Read the job at {payload_path}: \
        the task, its plan, the worktree (your current directory) and branch. Implement \
        it, run the project's checks, commit on the branch, call verify_task_against_plan, \
        then update_job_status(job_id {job_id}, done, branch, summary). If you cannot \
        finish, report failed with the reason. Never call wait_for_job or job_heartbeat.
        """,
        "SPRINT_IMPLEMENTATION": """
        You are a Scrum4Me worker running a sprint. The job at {payload_path} lists the \
        task executions; work through them in order in the current worktree, committing \
        each, reporting progress with the task tools. When done, update_job_status(job_id \
        {job_id}, done). If quota runs out, stop and report failed with an error starting \
        QUOTA_PAUSE:. Never call wait_for_job or job_heartbeat.
        """,
        "PR_REVIEW": """
        You are a Scrum4Me reviewer. Review the pull request described in {payload_path} \
        and report your findings as the summary of update_job_status(job_id {job_id}, \
        done). Never call wait_for_job or job_heartbeat.
        """,
    ]

    /// Claude Code flags from the job's `config`.
    public static func flags(config: JSONValue?, mcpConfigPath: String, prompt: String) -> [String] {
        var args = [
            "-p", prompt, "--output-format", "stream-json", "--verbose",
            "--mcp-config", mcpConfigPath, "--strict-mcp-config",
        ]
        if let model = config?["model"]?.string, !model.isEmpty { args += ["--model", model] }
        if let budget = config?["thinking_budget"]?.int, let effort = effort(forThinkingBudget: budget) {
            args += ["--effort", effort]
        }
        if let mode = config?["permission_mode"]?.string, !mode.isEmpty {
            args += ["--permission-mode", mode]
        }
        if let turns = config?["max_turns"]?.int, turns > 0 { args += ["--max-turns", "\(turns)"] }
        var tools =
            config?["allowed_tools"]?.array?.compactMap(\.string)
            ?? config?["allowed_tools"]?.string.map { $0.split(separator: ",").map(String.init) } ?? []
        // The agent never gets the slot's own tools.
        tools.removeAll { $0.hasSuffix("wait_for_job") || $0.hasSuffix("job_heartbeat") }
        if !tools.isEmpty { args += ["--allowedTools", tools.joined(separator: ",")] }
        args += ["--disallowedTools", "mcp__scrum4me__wait_for_job,mcp__scrum4me__job_heartbeat"]
        return args
    }
}
