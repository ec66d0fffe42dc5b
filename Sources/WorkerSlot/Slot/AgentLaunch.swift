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

    /// The prompt for a job kind: what to do with the payload.
    public static func prompt(kind: String, payloadPath: String) -> String {
        """
        You are a Scrum4Me worker. Your job (kind \(kind)) is described by the JSON file at \
        \(payloadPath) (also in $PAYLOAD_PATH). Carry it out in the current directory, then \
        report the outcome with the scrum4me MCP tool update_job_status (done or failed). \
        Never call wait_for_job or job_heartbeat: the fleet does that.
        """
    }

    /// Claude Code flags from the job's `config`.
    public static func flags(config: JSONValue?, mcpConfigPath: String, prompt: String) -> [String] {
        var args = ["-p", prompt, "--output-format", "stream-json", "--verbose",
                    "--mcp-config", mcpConfigPath, "--strict-mcp-config"]
        if let model = config?["model"]?.string, !model.isEmpty { args += ["--model", model] }
        if let budget = config?["thinking_budget"]?.int, let effort = effort(forThinkingBudget: budget) {
            args += ["--effort", effort]
        }
        if let mode = config?["permission_mode"]?.string, !mode.isEmpty { args += ["--permission-mode", mode] }
        if let turns = config?["max_turns"]?.int, turns > 0 { args += ["--max-turns", "\(turns)"] }
        var tools = config?["allowed_tools"]?.array?.compactMap(\.string)
            ?? config?["allowed_tools"]?.string.map { $0.split(separator: ",").map(String.init) } ?? []
        // The agent never gets the slot's own tools.
        tools.removeAll { $0.hasSuffix("wait_for_job") || $0.hasSuffix("job_heartbeat") }
        if !tools.isEmpty { args += ["--allowedTools", tools.joined(separator: ",")] }
        args += ["--disallowedTools", "mcp__scrum4me__wait_for_job,mcp__scrum4me__job_heartbeat"]
        return args
    }
}
