#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import Synchronization
import WorkerSlot

/// The fleet's one quota probe: a dedicated thread that takes a reading at start, once
/// per `interval` whatever the number of slots, and out of turn when asked (the
/// operator, rate-limited by `min_probe_gap`; a slot whose reading predates a reset).
///
/// One probe at a time: requests while one runs or waits are answered by that one.
/// Readings and failures go to the store; a failure keeps the last reading, which ages
/// until the slots stop trusting it (`max_age`).
final class QuotaProbe: Sendable {
    let config: FleetConfig
    let store: Store
    let board: QuotaBoard
    let logger: Logger
    private let source: QuotaSource

    private struct Schedule {
        /// A probe out of turn is due at this monotonic time.
        var demandAt: Double?
        /// When the last probe started (monotonic).
        var lastStart: Double?
        var started = 0
        var running = false
    }

    private let schedule = Mutex(Schedule())
    private let kick = Signal()

    /// - Parameter environment: what a probe command may see (fleetd's children's
    ///   allow-list; the credential is added per probe).
    init(
        config: FleetConfig, store: Store, board: QuotaBoard, logger: Logger,
        environment: [String: String]? = nil
    ) {
        self.config = config
        self.store = store
        self.board = board
        self.logger = logger.with(("probe", config.quota.probe))
        let base =
            environment
            ?? SlotContext(
                config: config, store: store, logger: logger, quota: board,
                baseEnvironment: ProcessInfo.processInfo.environment
            ).childBaseEnvironment
        self.source = QuotaSource(config: config, environment: base)
    }

    /// Seeds the board from the store, then starts the probe thread.
    func start() {
        seed()
        board.setProbeHandler { [self] trigger in request(trigger) }
        startThread { [self] in run() }
    }

    /// The last reading of the same source, with its real age (a restart does not make
    /// an old reading new), and the last failure.
    private func seed() {
        if let reading = try? store.latestQuota(), reading.source == config.quota.probe {
            board.publish(reading)
        }
        if let failure = try? store.latestQuotaFailure() {
            board.seedFailure(failure.error, at: failure.at)
        }
    }

    /// Asks for a probe out of turn; coalesces with one already running or due.
    private func request(_ trigger: ProbeTrigger) -> ProbeTicket {
        let gap = config.quota.minProbeGap
        let now = monotonicSeconds()
        let ticket = schedule.withLock { s -> ProbeTicket in
            if s.running { return .queued(probe: s.started) }
            if s.demandAt != nil { return .queued(probe: s.started + 1) }
            let earliest = (s.lastStart ?? -.infinity) + gap
            if now < earliest {
                if trigger == .operatorRequest { return .tooSoon(retryAfter: earliest - now) }
                s.demandAt = earliest
            } else {
                s.demandAt = now
            }
            return .queued(probe: s.started + 1)
        }
        kick.fire()
        return ticket
    }

    private func run() {
        let interval = config.quota.interval
        var nextTick = monotonicSeconds()  // the start-up probe
        while true {
            let now = monotonicSeconds()
            let demand = schedule.withLock { $0.demandAt }
            let due = min(nextTick, demand ?? .infinity)
            if now < due {
                board.setNextProbe(Date().addingTimeInterval(due - now))
                kick.wait(seconds: due - now)
                continue
            }

            let number = schedule.withLock { s -> Int in
                s.demandAt = nil
                s.lastStart = now
                s.started += 1
                s.running = true
                return s.started
            }
            probe(number)
            schedule.withLock { $0.running = false }

            // Missed ticks (a slow probe) are skipped, never bunched.
            if now >= nextTick {
                let end = monotonicSeconds()
                while nextTick <= end { nextTick += interval }
            }
        }
    }

    /// One probe: a reading published and stored, or a failure recorded.
    private func probe(_ number: Int) {
        board.probeStarted(number)
        let began = monotonicSeconds()
        let outcome: Result<QuotaMeasure, QuotaProbeError>
        do {
            outcome = .success(try source.measure())
        } catch {
            outcome = .failure(error)
        }
        let took = formatDuration(monotonicSeconds() - began)
        let now = Date()

        switch outcome {
        case .success(let measure):
            let reading = QuotaInfo(
                pct: measure.pct, resetsAt: measure.resetsAt, checkedAt: now, source: config.quota.probe,
                detail: measure.detail)
            let previous = board.latest?.pct
            do {
                try store.recordQuota(reading)
            } catch {
                logger.warning("quota reading not stored", ("error", error))
            }
            board.probeSucceeded(number, reading)
            let level: LogLevel = previous == reading.pct ? .debug : .info
            logger.log(
                level, "quota reading",
                [
                    ("pct", reading.pct), ("resets_at", reading.resetsAt.map(Timestamp.iso8601)),
                    ("detail", measure.detail), ("took", took), ("probe_number", number),
                ])
        case .failure(let error):
            do {
                try store.recordQuotaFailure(at: now, source: config.quota.probe, error: "\(error)")
            } catch {
                logger.warning("quota failure not stored", ("error", error))
            }
            board.probeFailed(number, error: "\(error)", at: now)
            let age = board.latest.map { formatDuration(now.timeIntervalSince($0.checkedAt)) }
            logger.warning(
                "quota probe failed", ("error", error), ("reading_age", age), ("took", took),
                ("probe_number", number))
        }
    }
}
