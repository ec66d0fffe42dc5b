#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `GET /v1/quota`: the fleet's reading, its age, the probe's schedule and last error,
/// and each slot's floor and gate.
public struct QuotaStatus: Codable, Sendable, Equatable {
    /// `anthropic`, `command` or `off`.
    public var probe: String
    public var reading: QuotaInfo?
    public var ageSeconds: Double?
    /// True when no slot may claim on this reading: none yet, or older than `max_age`.
    public var stale: Bool
    public var intervalSeconds: Double
    public var maxAgeSeconds: Double
    public var minProbeGapSeconds: Double
    public var jobsPerWindow: Int?
    public var probing: Bool
    /// When the last attempt ended, and whether it gave a reading.
    public var lastProbeAt: Date?
    public var lastProbeOk: Bool?
    public var nextProbeAt: Date?
    public var lastError: String?
    public var lastErrorAt: Date?
    public var probesStarted: Int
    public var probesCompleted: Int
    public var probesFailed: Int
    public var slots: [SlotQuota]

    public init(
        probe: String, reading: QuotaInfo?, ageSeconds: Double?, stale: Bool, intervalSeconds: Double,
        maxAgeSeconds: Double, minProbeGapSeconds: Double, jobsPerWindow: Int?, probing: Bool,
        lastProbeAt: Date?, lastProbeOk: Bool?, nextProbeAt: Date?, lastError: String?, lastErrorAt: Date?,
        probesStarted: Int, probesCompleted: Int, probesFailed: Int, slots: [SlotQuota]
    ) {
        self.probe = probe
        self.reading = reading
        self.ageSeconds = ageSeconds
        self.stale = stale
        self.intervalSeconds = intervalSeconds
        self.maxAgeSeconds = maxAgeSeconds
        self.minProbeGapSeconds = minProbeGapSeconds
        self.jobsPerWindow = jobsPerWindow
        self.probing = probing
        self.lastProbeAt = lastProbeAt
        self.lastProbeOk = lastProbeOk
        self.nextProbeAt = nextProbeAt
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
        self.probesStarted = probesStarted
        self.probesCompleted = probesCompleted
        self.probesFailed = probesFailed
        self.slots = slots
    }
}

/// One slot's quota budget and gate.
public struct SlotQuota: Codable, Sendable, Equatable {
    public var name: String
    /// The larger of the slot's and the user's server-side `min_quota_pct`.
    public var floor: Int
    /// `open`, `standby` (standing by now), `shut` (stands by at its next look) or
    /// `stopped` (not running).
    public var gate: String
    public var state: SlotState
    public var resumesAt: Date?
    public var reason: String?
    /// Jobs started in the current quota window (for `jobs_per_window`).
    public var jobsInWindow: Int

    public init(
        name: String, floor: Int, gate: String, state: SlotState, resumesAt: Date?, reason: String?,
        jobsInWindow: Int
    ) {
        self.name = name
        self.floor = floor
        self.gate = gate
        self.state = state
        self.resumesAt = resumesAt
        self.reason = reason
        self.jobsInWindow = jobsInWindow
    }
}

/// `POST /v1/quota/probe`: accepted; wait for `probes_completed >= probe` in
/// `GET /v1/quota`.
public struct ProbeAccepted: Codable, Sendable, Equatable {
    public var probe: Int
    public var message: String

    public init(probe: Int, message: String) {
        self.probe = probe
        self.message = message
    }
}
