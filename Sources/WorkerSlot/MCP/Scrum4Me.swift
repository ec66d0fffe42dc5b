#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// A job the server handed us: its id, kind and whole payload.
public struct Claim: Sendable {
    public var jobId: String
    public var kind: String
    public var payload: JSONValue
    public var worktreePath: String? { payload["worktree_path"]?.string }
    public var branch: String? { payload["branch_name"]?.string }
}

/// What `wait_for_job` answered.
public enum WaitResult: Sendable {
    case claimed(Claim)
    case timeout
}

/// A tool failure the slot acts on, classified from the message's code or text.
public enum ToolFailure: Error, Equatable, CustomStringConvertible {
    /// The token is invalid, expired or revoked.
    case tokenRejected(String)
    /// The job was cancelled (a cascade): drop it.
    case jobCancelled(String)
    /// The job is already DONE/FAILED/...: a repeated report, not an error.
    case alreadyTerminal(state: String)
    /// The job is not ours (claimed by another token, or requeued).
    case permissionDenied(String)
    /// Anything else the tool refused.
    case other(String)

    init(_ result: ToolResult) {
        let text = result.text
        let lower = text.lowercased()
        if let range = text.firstRange(of: "already in terminal state: ") {
            let state = text[range.upperBound...].prefix { $0.isLetter || $0 == "_" }
            self = .alreadyTerminal(state: String(state))
            return
        }
        switch result.errorCode {
        case "JOB_CANCELLED": self = .jobCancelled(text)
        case "PERMISSION_DENIED": self = .permissionDenied(text)
        case "UNAUTHORIZED", "UNAUTHENTICATED", "TOKEN_INVALID", "TOKEN_REVOKED": self = .tokenRejected(text)
        default:
            if lower.contains("token")
                && (lower.contains("invalid") || lower.contains("revoked") || lower.contains("expired"))
            {
                self = .tokenRejected(text)
            } else {
                self = .other(text)
            }
        }
    }

    /// True for a refusal that says the job belongs to another token.
    public var isPermissionDenied: Bool {
        if case .permissionDenied = self { return true }
        return false
    }

    /// True for a refusal that means the job was cancelled.
    public var isCancellation: Bool {
        if case .jobCancelled = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .tokenRejected(let t), .jobCancelled(let t), .permissionDenied(let t), .other(let t): t
        case .alreadyTerminal(let state): "Job is already in terminal state: \(state)"
        }
    }
}

/// Either an MCP transport failure or a tool's refusal.
public enum Scrum4MeError: Error, CustomStringConvertible {
    case mcp(MCPError)
    case tool(ToolFailure)

    public var description: String {
        switch self {
        case .mcp(let e): "\(e)"
        case .tool(let f): "\(f)"
        }
    }

    /// True when the server refused the slot's token.
    public var isTokenRejection: Bool {
        switch self {
        case .mcp(.unauthorized), .tool(.tokenRejected): true
        default: false
        }
    }
}

/// The worker tools of the Scrum4Me protocol, typed.
public struct Scrum4Me: Sendable {
    public let client: MCPClient
    public let timeout: Double

    public init(client: MCPClient, timeout: Double) {
        self.client = client
        self.timeout = timeout
    }

    func tool(_ name: String, _ args: [String: JSONValue], timeout: Double? = nil, cancel: CancelFlag? = nil)
        throws(Scrum4MeError) -> JSONValue
    {
        let result: ToolResult
        do {
            result = try client.callTool(
                name, arguments: args, timeout: timeout ?? self.timeout, cancel: cancel)
        } catch {
            throw .mcp(error)
        }
        if result.isError { throw .tool(ToolFailure(result)) }
        return result.object ?? .object([:])
    }

    /// The user's `min_quota_pct` (server default 20).
    public func workerSettings() throws(Scrum4MeError) -> Int {
        try tool("get_worker_settings", [:])["min_quota_pct"]?.int ?? 20
    }

    public func workerHeartbeat(pct: Int, checkedAt: Date?) throws(Scrum4MeError) {
        var args: [String: JSONValue] = ["last_quota_pct": .number(Double(max(0, min(100, pct))))]
        if let checkedAt { args["last_quota_check_at"] = .string(Timestamp.iso8601(checkedAt)) }
        _ = try tool("worker_heartbeat", args)
    }

    /// Long-polls for a job; the transport timeout allows for the server's own wait.
    public func waitForJob(seconds: Int, product: String?, tier: String?, cancel: CancelFlag)
        throws(Scrum4MeError) -> WaitResult
    {
        var args: [String: JSONValue] = ["wait_seconds": .number(Double(seconds))]
        if let product { args["product_id"] = .string(product) }
        if let tier { args["capability"] = .string(tier) }
        let answer = try tool("wait_for_job", args, timeout: Double(seconds) + timeout, cancel: cancel)
        if answer["status"]?.string == "timeout" { return .timeout }
        guard let id = answer["job_id"]?.string, let kind = answer["kind"]?.string else {
            throw .mcp(.protocolError("wait_for_job answer has no job_id or kind"))
        }
        return .claimed(Claim(jobId: id, kind: kind, payload: answer))
    }

    /// Renews a job's lease; returns the answer (with `sprint_run_status`).
    public func jobHeartbeat(jobId: String) throws(Scrum4MeError) -> JSONValue {
        try tool("job_heartbeat", ["job_id": .string(jobId)])
    }

    public func updateJobStatus(
        jobId: String, status: String, branch: String? = nil, summary: String? = nil, error: String? = nil
    ) throws(Scrum4MeError) -> JSONValue {
        var args: [String: JSONValue] = ["job_id": .string(jobId), "status": .string(status)]
        if let branch { args["branch"] = .string(branch) }
        if let summary { args["summary"] = .string(String(summary.prefix(4000))) }
        if let error { args["error"] = .string(String(error.prefix(2000))) }
        return try tool("update_job_status", args)
    }

    /// The job's server-side status (`QUEUED`, `CLAIMED`, `RUNNING`, `DONE`, ...).
    public func jobStatus(jobId: String) throws(Scrum4MeError) -> String {
        try tool("get_job_status", ["job_id": .string(jobId)])["status"]?.string ?? "UNKNOWN"
    }
}
