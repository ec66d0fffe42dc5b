#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// The gate's settings, from `[quota]`.
public struct QuotaPolicy: Sendable, Equatable {
    /// False with `probe = "off"`: every reading is 100% and never stale.
    public var isProbing: Bool
    public var interval: Double
    public var maxAge: Double
    public var sleepCap: Double
    public var jobsPerWindow: Int?

    /// A standby below the floor lasts until the reset plus this (as upstream does).
    public static let resetMargin: Double = 5

    public init(
        isProbing: Bool, interval: Double, maxAge: Double, sleepCap: Double, jobsPerWindow: Int? = nil
    ) {
        self.isProbing = isProbing
        self.interval = interval
        self.maxAge = maxAge
        self.sleepCap = sleepCap
        self.jobsPerWindow = jobsPerWindow
    }

    public init(_ quota: QuotaSection) {
        self.init(
            isProbing: quota.probe != "off", interval: quota.interval, maxAge: quota.maxAge,
            sleepCap: quota.sleepCap, jobsPerWindow: quota.jobsPerWindow)
    }
}

/// What the gate says before a slot may call `wait_for_job`.
public enum GateDecision: Sendable, Equatable {
    case open
    /// Stand by until `until` (or a new reading), still heartbeating. With
    /// `wantsFreshReading`, the reading predates a reset that has passed: ask for a probe.
    case standby(until: Date, reason: String, wantsFreshReading: Bool)
}

/// The quota gate of a slot's loop (DESIGN.md, "A slot's loop", step 3), as a pure
/// function of the fleet's reading, the slot's floor and its jobs in this window.
///
/// Fail safe: no reading, or one older than `max_age`, shuts the gate; a reading below
/// the floor shuts it until the reset plus 5 s (never longer than `sleep_cap`); a
/// reading whose reset has passed is not trusted below the floor, a new one is asked for.
public enum QuotaGate {
    public static func decide(
        reading: QuotaInfo?, lastError: String?, floor: Int, jobsInWindow: Int, windowEnd: Date?,
        policy: QuotaPolicy, now: Date
    ) -> GateDecision {
        let recheck = now.addingTimeInterval(min(policy.interval, policy.sleepCap))
        let failure = lastError.map { "; last probe error: \($0)" } ?? ""

        if policy.isProbing {
            guard let reading else {
                return .standby(
                    until: recheck, reason: "no quota reading yet\(failure)", wantsFreshReading: false)
            }
            let age = now.timeIntervalSince(reading.checkedAt)
            if age > policy.maxAge {
                let reason =
                    "quota reading is \(formatDuration(age)) old"
                    + " (max_age \(formatDuration(policy.maxAge)))\(failure)"
                return .standby(until: recheck, reason: reason, wantsFreshReading: false)
            }
            if reading.pct < floor {
                let below = "quota \(reading.pct)% < floor \(floor)%"
                guard let reset = reading.resetsAt else {
                    return .standby(
                        until: recheck, reason: "\(below); no reset time known", wantsFreshReading: false)
                }
                let resume = reset.addingTimeInterval(QuotaPolicy.resetMargin)
                if resume <= now {
                    let reason =
                        "\(below) before the reset at \(Timestamp.iso8601(reset)); waiting for a new reading"
                    return .standby(until: recheck, reason: reason, wantsFreshReading: true)
                }
                let until = min(resume, now.addingTimeInterval(policy.sleepCap))
                return .standby(
                    until: until, reason: "\(below) until the reset at \(Timestamp.iso8601(reset))",
                    wantsFreshReading: false)
            }
        }

        if let cap = policy.jobsPerWindow, jobsInWindow >= cap {
            let end = (windowEnd ?? now).addingTimeInterval(QuotaPolicy.resetMargin)
            let until = min(max(end, now.addingTimeInterval(1)), now.addingTimeInterval(policy.sleepCap))
            return .standby(
                until: until,
                reason: "\(jobsInWindow) jobs started this quota window (jobs_per_window \(cap))",
                wantsFreshReading: false)
        }
        return .open
    }
}

/// The jobs a slot started in the current quota window (for `jobs_per_window`).
///
/// A window ends at the reset time the reading named when its first job started (or
/// one `length` later when no reset was known); the next job after that starts a new
/// window. Kept in memory: a restarted fleetd counts afresh.
public struct JobWindow: Sendable, Equatable {
    public private(set) var end: Date?
    public private(set) var started = 0

    public init() {}

    /// Counts a job started at `now` under a reading that resets at `resetsAt`.
    public mutating func record(at now: Date, resetsAt: Date?, length: Double) {
        if end == nil || now >= end! {
            started = 0
            if let resetsAt, resetsAt > now {
                end = resetsAt
            } else {
                end = now.addingTimeInterval(length)
            }
        }
        started += 1
    }

    /// Jobs started in the window that is open at `now`.
    public func count(at now: Date) -> Int {
        guard let end, now < end else { return 0 }
        return started
    }
}
