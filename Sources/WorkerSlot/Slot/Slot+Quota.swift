#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// A slot's side of the quota gate: why and until when it stands by, and the jobs it
/// started in the current quota window.
struct SlotGateState {
    var resumesAt: Date?
    var reason: String?
    var window = JobWindow()
    /// The last standby logged, so that a wake-up by a new reading is not logged again.
    var logged: String?
}

extension Slot {
    /// Step 3: stands by while the gate is shut, heartbeats going on (the connection's
    /// ticker, and a new cycle on every new reading); true when it stood by, and the
    /// caller starts the cycle over (settings, heartbeat, gate).
    func standByIfGated(floor: Int) -> Bool {
        let wanted = desired
        guard wanted == .up else { return false }  // draining or stopping: no claim anyway
        let board = context.quota.snapshot
        let decision = gateDecision(floor: floor, now: Date(), board: board)
        guard case .standby(let until, let reason, let wantsFreshReading) = decision else {
            quotaGateState.withLock {
                $0.resumesAt = nil
                $0.reason = nil
                $0.logged = nil
            }
            return false
        }

        let isNew = quotaGateState.withLock { g -> Bool in
            g.resumesAt = until
            g.reason = reason
            defer { g.logged = reason }
            return g.logged != reason
        }
        transition(.standby)
        if isNew {
            logger.info(
                "standing by", ("floor", floor), ("reason", reason), ("until", Timestamp.iso8601(until)))
            try? context.store.event(
                slot: spec.name, kind: "slot_standby_reason",
                detail: "\(reason); resumes \(Timestamp.iso8601(until))")
        }
        if wantsFreshReading { context.quota.requestProbe(.slot) }

        // Until the time, a new reading (or a failed probe), or a change asked of us. The
        // conditions are checked, not the wake-ups: a fire left over from earlier is no news.
        while desired == wanted && !state.withLock({ $0.restartRequested })
            && context.quota.snapshot.generation == board.generation
        {
            let left = until.timeIntervalSinceNow
            if left <= 0 { break }
            wake.wait(seconds: min(left, 1))
        }
        return true
    }

    /// Counts a claimed job against `jobs_per_window`.
    func countJobStarted() {
        let resetsAt = context.quota.latest?.resetsAt
        let length = context.config.quota.sleepCap
        quotaGateState.withLock { $0.window.record(at: Date(), resetsAt: resetsAt, length: length) }
    }

    /// What the gate says for this slot now.
    func gateDecision(floor: Int, now: Date, board: QuotaBoard.Snapshot? = nil) -> GateDecision {
        let board = board ?? context.quota.snapshot
        let window = quotaGateState.withLock { $0.window }
        return QuotaGate.decide(
            reading: board.reading, lastError: board.lastProbeOK == false ? board.lastError : nil,
            floor: floor,
            jobsInWindow: window.count(at: now), windowEnd: window.end,
            policy: QuotaPolicy(context.config.quota), now: now)
    }

    /// The slot's floor and gate as `GET /v1/quota` shows them.
    public var quota: SlotQuota {
        let now = Date()
        let (state, floor, running) = state.withLock { ($0.actual, $0.quotaFloor, $0.running) }
        let gate = quotaGateState.withLock { $0 }
        let jobs = gate.window.count(at: now)
        guard running else {
            return SlotQuota(
                name: spec.name, floor: floor, gate: "stopped", state: state, resumesAt: nil, reason: nil,
                jobsInWindow: jobs)
        }
        if state == .standby {
            return SlotQuota(
                name: spec.name, floor: floor, gate: "standby", state: state, resumesAt: gate.resumesAt,
                reason: gate.reason, jobsInWindow: jobs)
        }
        switch gateDecision(floor: floor, now: now) {
        case .open:
            return SlotQuota(
                name: spec.name, floor: floor, gate: "open", state: state, resumesAt: nil, reason: nil,
                jobsInWindow: jobs)
        case .standby(let until, let reason, _):
            return SlotQuota(
                name: spec.name, floor: floor, gate: "shut", state: state, resumesAt: until, reason: reason,
                jobsInWindow: jobs)
        }
    }
}
