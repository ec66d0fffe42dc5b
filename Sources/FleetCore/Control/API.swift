#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The control API's version, sent in every response's `Fleet-Version` header.
public let fleetVersion = "0.1.0"

/// JSON coders shared by `fleetd` and `fleetctl`: snake_case keys, ISO-8601 dates.
public enum API {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting =
            pretty
            ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// `GET /v1/status`: the fleet, its quota reading and every configured slot.
public struct FleetStatus: Codable, Sendable, Equatable {
    public var fleet: FleetInfo
    public var quota: QuotaInfo?
    public var slots: [SlotStatus]
    /// True when read from the database because the daemon did not answer.
    public var offline: Bool?

    public init(fleet: FleetInfo, quota: QuotaInfo?, slots: [SlotStatus], offline: Bool? = nil) {
        self.fleet = fleet
        self.quota = quota
        self.slots = slots
        self.offline = offline
    }
}

/// The daemon itself.
public struct FleetInfo: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var pid: Int32
    public var startedAt: Date
    public var desiredSlots: Int
    public var runningSlots: Int
    public var configuredSlots: Int
    public var jobsDone: Int
    public var jobsFailed: Int
    /// Log writes failed recently (a full disk): supervision goes on, logs are partial.
    public var loggingDegraded: Bool?
    public var logWriteFailures: Int?

    public init(
        name: String, version: String, pid: Int32, startedAt: Date, desiredSlots: Int,
        runningSlots: Int, configuredSlots: Int, jobsDone: Int, jobsFailed: Int
    ) {
        self.name = name
        self.version = version
        self.pid = pid
        self.startedAt = startedAt
        self.desiredSlots = desiredSlots
        self.runningSlots = runningSlots
        self.configuredSlots = configuredSlots
        self.jobsDone = jobsDone
        self.jobsFailed = jobsFailed
    }
}

/// The fleet's latest quota reading.
public struct QuotaInfo: Codable, Sendable, Equatable {
    /// Percent remaining, 0-100.
    public var pct: Int
    public var resetsAt: Date?
    public var checkedAt: Date
    /// Where it came from: `anthropic`, `command`, `off`.
    public var source: String
    /// What was read, per window (`5h 35% left, 7d 80% left; status allowed`).
    public var detail: String?

    public init(pct: Int, resetsAt: Date?, checkedAt: Date, source: String, detail: String? = nil) {
        self.pct = pct
        self.resetsAt = resetsAt
        self.checkedAt = checkedAt
        self.source = source
        self.detail = detail
    }
}

/// The job a slot holds.
public struct JobRef: Codable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var since: Date
    /// The lease as the server last renewed it.
    public var leaseUntil: Date?
    /// True once the fleet released it (requeue, restart --now): the agent is stopping.
    public var releasing: Bool?

    public init(id: String, kind: String, since: Date, leaseUntil: Date? = nil) {
        self.id = id
        self.kind = kind
        self.since = since
        self.leaseUntil = leaseUntil
    }
}

/// One configured slot: what is wanted of it and what it does.
public struct SlotStatus: Codable, Sendable, Equatable {
    public var name: String
    public var desired: SlotDesire
    public var state: SlotState
    public var instanceId: String?
    public var job: JobRef?
    public var restarts: Int
    public var lastError: String?
    public var quotaFloor: Int
    public var lastHeartbeat: Date?
    public var jobsDone: Int
    public var jobsFailed: Int
    public var since: Date?
    /// In `standby`: when the slot looks at the quota again.
    public var resumesAt: Date?
    /// In `standby`: why (below the floor, a stale reading, the jobs cap).
    public var standbyReason: String?
    /// Worktrees kept because they hold uncommitted work (never deleted by the fleet).
    public var dirtyWorktrees: [String]?

    public init(
        name: String, desired: SlotDesire, state: SlotState, instanceId: String? = nil,
        job: JobRef? = nil, restarts: Int = 0, lastError: String? = nil, quotaFloor: Int = 0,
        lastHeartbeat: Date? = nil, jobsDone: Int = 0, jobsFailed: Int = 0, since: Date? = nil,
        resumesAt: Date? = nil, standbyReason: String? = nil, dirtyWorktrees: [String]? = nil
    ) {
        self.dirtyWorktrees = dirtyWorktrees
        self.name = name
        self.desired = desired
        self.state = state
        self.instanceId = instanceId
        self.job = job
        self.restarts = restarts
        self.lastError = lastError
        self.quotaFloor = quotaFloor
        self.lastHeartbeat = lastHeartbeat
        self.jobsDone = jobsDone
        self.jobsFailed = jobsFailed
        self.since = since
        self.resumesAt = resumesAt
        self.standbyReason = standbyReason
    }
}

/// A job this fleet claimed, as recorded in the database.
public struct JobRecord: Codable, Sendable, Equatable {
    public var id: String
    public var slot: String
    public var kind: String
    public var claimedAt: Date
    public var finishedAt: Date?
    /// `running`, `done`, `failed`, `cancelled`, `released`, `skipped`.
    public var outcome: String
    public var error: String?
    public var agentPid: Int32?

    public init(
        id: String, slot: String, kind: String, claimedAt: Date, finishedAt: Date? = nil,
        outcome: String, error: String? = nil, agentPid: Int32? = nil
    ) {
        self.id = id
        self.slot = slot
        self.kind = kind
        self.claimedAt = claimedAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.error = error
        self.agentPid = agentPid
    }
}

/// The body of every error answer.
public struct APIError: Codable, Sendable, Error, Equatable {
    public var error: String
    public var hint: String?

    public init(error: String, hint: String? = nil) {
        self.error = error
        self.hint = hint
    }
}

/// `GET /v1/health`: ok unless a slot is `failed` or `token_rejected`.
public struct HealthStatus: Codable, Sendable, Equatable {
    public var ok: Bool
    public var unhealthy: [String]

    public init(ok: Bool, unhealthy: [String]) {
        self.ok = ok
        self.unhealthy = unhealthy
    }
}

/// `POST /v1/drain`, `/v1/undrain`: which slots (empty with `all`).
public struct SlotsRequest: Codable, Sendable {
    public var slots: [String]
    public var all: Bool

    public init(slots: [String], all: Bool) {
        self.slots = slots
        self.all = all
    }
}

/// `POST /v1/restart`.
public struct RestartRequest: Codable, Sendable {
    public var slot: String
    public var now: Bool

    public init(slot: String, now: Bool) {
        self.slot = slot
        self.now = now
    }
}

/// `POST /v1/scale`.
public struct ScaleRequest: Codable, Sendable {
    public var slots: Int

    public init(slots: Int) { self.slots = slots }
}

/// The answer to `scale`: what runs now and what was asked to stop.
public struct ScaleResult: Codable, Sendable {
    public var desired: Int
    public var started: [String]
    public var draining: [String]

    public init(desired: Int, started: [String], draining: [String]) {
        self.desired = desired
        self.started = started
        self.draining = draining
    }
}

/// `POST /v1/requeue`.
public struct RequeueRequest: Codable, Sendable {
    public var job: String

    public init(job: String) { self.job = job }
}

/// The answer to `requeue`: when the server will hand the job out again.
public struct RequeueResult: Codable, Sendable {
    public var job: String
    public var slot: String
    /// The lease's end as last renewed; the job is back in the queue soon after.
    public var leaseUntil: Date?
    public var message: String

    public init(job: String, slot: String, leaseUntil: Date?, message: String) {
        self.job = job
        self.slot = slot
        self.leaseUntil = leaseUntil
        self.message = message
    }
}

/// A generic acknowledgement with the affected slots.
public struct ActionResult: Codable, Sendable {
    public var ok: Bool
    public var slots: [String]
    public var message: String?

    public init(ok: Bool, slots: [String], message: String? = nil) {
        self.ok = ok
        self.slots = slots
        self.message = message
    }
}
