#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A config error: where (file, line, key path), what was found, and what is wanted.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int?
    public var key: String?
    public var message: String

    public init(path: String, line: Int?, key: String?, message: String) {
        self.path = path
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var place = path
        if let line { place += ":\(line)" }
        if let key { return "\(place): \(key): \(message)" }
        return "\(place): \(message)"
    }
}

/// How a slot reaches its Scrum4Me server.
public enum Transport: String, Sendable, Equatable {
    case stdio, http
}

/// The whole validated configuration of a fleet.
public struct FleetConfig: Sendable, Equatable {
    public var path: String
    public var fleet: FleetSection
    public var scrum4me: Scrum4MeSection
    public var quota: QuotaSection
    public var agent: AgentSection
    public var slots: [SlotSpec]
}

/// `[fleet]`: the daemon itself.
public struct FleetSection: Sendable, Equatable {
    public var name = "fleet"
    public var stateDir: String
    public var socket: String
    /// Job and server logs (default `<state_dir>/logs`); may sit on its own file system.
    public var logDir: String = ""
    /// Drain time on SIGTERM before agents are stopped.
    public var grace: Double = 30
    /// Time between TERM and KILL for a process group.
    public var killTimeout: Double = 10
    /// How many configured slots run (`fleetctl scale` changes it).
    public var slots: Int?
    public var logLevel: LogLevel = .info
    public var logFormat: LogFormat = .logfmt
    /// Failures within `restartWindow` after which a slot gives up (`failed`).
    public var restartBudget = 5
    public var restartWindow: Double = 600
    /// A group whose members may read (status, jobs, events) but not act.
    public var readGroup: String?
}

/// `[scrum4me]`: the server each slot talks to.
public struct Scrum4MeSection: Sendable, Equatable {
    public var transport: Transport = .stdio
    /// The stdio server's command line (argv).
    public var command: [String] = []
    /// KEY=VALUE lines added to the stdio server's environment (secrets live here).
    public var envFile: String?
    /// Non-secret environment for the stdio server.
    public var env: [String: String] = [:]
    /// The Streamable HTTP endpoint.
    public var url: String?
    /// `wait_for_job` long-poll length, 1-600.
    public var waitSeconds: Int = 300
    /// `worker_heartbeat` cadence.
    public var heartbeatInterval: Double = 60
    /// `job_heartbeat` (lease renewal) cadence.
    public var leaseInterval: Double = 60
    /// Timeout for calls other than `wait_for_job`.
    public var requestTimeout: Double = 30
    /// Reconnect backoff bounds.
    public var backoffMin: Double = 1
    public var backoffMax: Double = 300
}

/// `[quota]`: the shared probe and the slots' budgets.
public struct QuotaSection: Sendable, Equatable {
    /// `off` (report 100), `anthropic` or `command`.
    public var probe = "off"
    /// The Messages API root (a proxy, or a stand-in in tests).
    public var baseURL = "https://api.anthropic.com"
    /// The model of the one-token probe call.
    public var model = "claude-haiku-4-5"
    /// The probe's credential; `[agent] credential_file` when unset.
    public var credentialFile: String?
    /// `probe = "command"`: argv of a program printing `{"pct":N,"reset_at_iso":"..."}`.
    public var command: [String] = []
    /// One probe per interval for the whole fleet.
    public var interval: Double = 300
    /// Past this age a reading opens no gate (fail safe); 3 x `interval` when unset.
    public var maxAge: Double = 900
    /// Longest standby before a slot looks again.
    public var sleepCap: Double = 3600
    /// Least time between a probe and an on-demand one.
    public var minProbeGap: Double = 30
    /// Jobs a slot may start per quota window; nil means no cap.
    public var jobsPerWindow: Int?
}

/// `[agent]`: the program run per job.
public struct AgentSection: Sendable, Equatable {
    public var command: [String] = ["claude"]
    public var timeout: Double = 7200
    /// Per-job output cap in bytes.
    public var logCap: Int = 10 << 20
    /// Environment added to every agent (non-secret).
    public var env: [String: String] = [:]
    /// Extra arguments after the generated flags.
    public var args: [String] = []
    /// The fleet's model credential (a subscription OAuth token or an API key).
    public var credentialFile: String?
    /// `auto` (by prefix), `oauth` or `api_key`.
    public var credentialKind = "auto"
    /// GitHub token for pushes (`GH_TOKEN`), where agents push.
    public var githubTokenFile: String?
    /// Operator prompts: `<KIND>.md` (or `default.md`) override the built-in ones.
    public var promptDir: String?
    /// Per-agent limits (setrlimit): address space bytes, open files, CPU seconds; 0 = none.
    public var memoryLimit: UInt64 = 0
    public var openFiles: UInt64 = 0
    public var cpuLimit: UInt64 = 0
    /// The user agents run as when fleetd runs as root.
    public var user: String?
    /// Job logs kept: at most this many, none older than `logMaxAge`.
    public var logRetention = 500
    public var logMaxAge: Double = 14 * 86400
}

/// One configured slot, after template expansion.
public struct SlotSpec: Sendable, Equatable {
    public var name: String
    public var tokenFile: String
    /// product id -> the slot's clone.
    public var repoRoots: [String: String] = [:]
    /// product id -> URL to clone from when the clone is missing at slot start.
    public var repoURLs: [String: String] = [:]
    public var worktreeRoot: String?
    public var minQuotaPct: Int = 0
    public var tier: String?
    public var product: String?
    public var runtime: String?
    public var capabilities: [String] = []
}
