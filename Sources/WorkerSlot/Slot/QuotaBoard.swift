#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import Synchronization

/// Who asks for a probe out of turn.
public enum ProbeTrigger: Sendable, Equatable {
    /// `fleetctl quota --probe`: refused inside `min_probe_gap`.
    case operatorRequest
    /// A slot whose reading predates a reset that has passed: deferred inside the gap.
    case slot
}

/// The answer to a probe request.
public enum ProbeTicket: Sendable, Equatable {
    /// The probe with this number (`completed >= probe`) answers the request.
    case queued(probe: Int)
    /// Too soon after the last probe; try again after this many seconds.
    case tooSoon(retryAfter: Double)
    /// No probe runs in this process.
    case unavailable
}

/// The fleet's latest quota reading, shared by every slot (one probe per fleet), with
/// what the probe is doing and how its last attempt ended.
public final class QuotaBoard: Sendable {
    /// Everything the board knows at one instant.
    public struct Snapshot: Sendable, Equatable {
        /// The last good reading; a failed probe keeps it (its age grows).
        public var reading: QuotaInfo?
        public var lastError: String?
        public var lastErrorAt: Date?
        /// When the last attempt ended, and whether it gave a reading.
        public var lastProbeAt: Date?
        public var lastProbeOK: Bool?
        public var nextProbeAt: Date?
        public var isProbing = false
        public var started = 0
        public var completed = 0
        public var failed = 0
        /// Bumped on every reading and every failure, so slots look at their gate again.
        public var generation = 0

        public init() {}
    }

    private let state = Mutex(Snapshot())
    private let changed = Mutex<[Signal]>([])
    private let handler = Mutex<(@Sendable (ProbeTrigger) -> ProbeTicket)?>(nil)

    public init() {}

    public var latest: QuotaInfo? { state.withLock { $0.reading } }
    public var snapshot: Snapshot { state.withLock { $0 } }

    /// Publishes a reading (a seed from the store, or `off`) and wakes the slots.
    public func publish(_ info: QuotaInfo) {
        state.withLock {
            $0.reading = info
            $0.generation += 1
        }
        notify()
    }

    /// Records a failure read back from the store (no wake-up: nothing changed).
    public func seedFailure(_ error: String, at date: Date) {
        state.withLock {
            $0.lastError = error
            $0.lastErrorAt = date
        }
    }

    /// A probe began.
    public func probeStarted(_ number: Int) {
        state.withLock {
            $0.isProbing = true
            $0.started = number
        }
    }

    /// A probe gave a reading: it replaces the last one, and the slots look again.
    public func probeSucceeded(_ number: Int, _ info: QuotaInfo) {
        state.withLock {
            $0.reading = info
            $0.isProbing = false
            $0.completed = number
            $0.lastProbeAt = info.checkedAt
            $0.lastProbeOK = true
            $0.generation += 1
        }
        notify()
    }

    /// A probe failed: the last reading stays, with its age; the slots look again
    /// (it may now be too old to trust).
    public func probeFailed(_ number: Int, error: String, at date: Date) {
        state.withLock {
            $0.isProbing = false
            $0.completed = number
            $0.failed += 1
            $0.lastProbeAt = date
            $0.lastProbeOK = false
            $0.lastError = error
            $0.lastErrorAt = date
            $0.generation += 1
        }
        notify()
    }

    /// When the next scheduled probe is due.
    public func setNextProbe(_ date: Date?) {
        state.withLock { $0.nextProbeAt = date }
    }

    /// Registers a signal fired on every new reading or failed probe.
    public func subscribe(_ signal: Signal) {
        changed.withLock { $0.append(signal) }
    }

    /// Removes a signal registered with `subscribe` (a closed connection's).
    public func unsubscribe(_ signal: Signal) {
        changed.withLock { $0.removeAll { $0 === signal } }
    }

    /// Installs what answers probe requests (fleetd's probe thread).
    public func setProbeHandler(_ body: @escaping @Sendable (ProbeTrigger) -> ProbeTicket) {
        handler.withLock { $0 = body }
    }

    /// Asks for a probe out of turn (rate-limited by the handler).
    @discardableResult
    public func requestProbe(_ trigger: ProbeTrigger) -> ProbeTicket {
        guard let body = handler.withLock({ $0 }) else { return .unavailable }
        return body(trigger)
    }

    private func notify() {
        changed.withLock { $0 }.forEach { $0.fire() }
    }
}
