#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FleetCore
import Synchronization
import WorkerSlot

/// Owns the slots: starts the wanted ones, scales, drains, and shuts down in order.
final class Supervisor: @unchecked Sendable {
    let context: SlotContext
    let startedAt = Date()
    private let slots: [Slot]
    private let desiredCount = Mutex(0)
    private let stopping = Atomic<Bool>(false)

    init(context: SlotContext) {
        self.context = context
        self.slots = context.config.slots.map { Slot(spec: $0, context: context) }
    }

    var config: FleetConfig { context.config }
    var logger: Logger { context.logger }

    func slot(named name: String) -> Slot? { slots.first { $0.spec.name == name } }

    /// How many configured slots run: the persisted scale while the config's `slots`
    /// value is unchanged (DESIGN.md, decision 4), else the config's value.
    func resolveScale() -> Int {
        let configured = config.fleet.slots ?? slots.count
        let store = context.store
        let lastConfigValue = (try? store.meta("config_slots")).flatMap { $0.flatMap(Int.init) }
        if lastConfigValue == configured, let scaled = (try? store.meta("scale")).flatMap({ $0.flatMap(Int.init) }) {
            return min(scaled, slots.count)
        }
        try? store.setMeta("config_slots", "\(configured)")
        try? store.setMeta("scale", nil)
        return configured
    }

    /// Crash recovery: stop leftovers of a previous fleetd and release its jobs.
    func reconcile() {
        let store = context.store
        let killAfter = config.fleet.killTimeout
        for row in (try? store.slots()) ?? [] {
            for identity in [row.agent, row.server].compactMap({ $0 }) where identity.isAlive {
                logger.warning("stopping leftover process", ("slot", row.name), ("pid", identity.pid))
                stopGroup(identity, killAfter: killAfter)
            }
            try? store.setServerProcess(row.name, nil)
        }
        for job in (try? store.runningJobs()) ?? [] {
            logger.notice("releasing interrupted job", ("slot", job.slot), ("job", job.id))
            try? store.finishJob(
                slot: job.slot, jobId: job.id, outcome: "released",
                error: "interrupted by a fleetd restart; the server requeues it when its lease lapses",
                at: Date(), nextState: .stopped)
        }
    }

    private func stopGroup(_ identity: ProcessIdentity, killAfter: Double) {
        _ = kill(-identity.pid, SIGTERM)
        _ = kill(identity.pid, SIGTERM)
        let deadline = monotonicSeconds() + killAfter
        while identity.isAlive && monotonicSeconds() < deadline { usleep(50_000) }
        if identity.isAlive {
            _ = kill(-identity.pid, SIGKILL)
            _ = kill(identity.pid, SIGKILL)
        }
    }

    /// Starts the slots the scale asks for.
    func start() {
        let floors = Dictionary(uniqueKeysWithValues: slots.map { ($0.spec.name, $0.spec.minQuotaPct) })
        try? context.store.syncSlots(slots.map(\.spec.name), floors: floors)
        let counts = (try? context.store.jobCountsBySlot()) ?? [:]
        let rows = Dictionary(((try? context.store.slots()) ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for slot in slots {
            let c = counts[slot.spec.name] ?? [:]
            slot.restore(restarts: rows[slot.spec.name]?.restarts ?? 0, done: c["done"] ?? 0, failed: c["failed"] ?? 0)
        }
        let n = resolveScale()
        desiredCount.withLock { $0 = n }
        for (index, slot) in slots.enumerated() {
            if index < n {
                slot.start()
            } else {
                try? context.store.setSlotState(slot.spec.name, .stopped)
                try? context.store.setSlotDesired(slot.spec.name, .down)
            }
        }
        logger.notice("fleet started", ("slots", n), ("configured", slots.count))
    }

    /// Drains a slot (or all): no new job; the current one finishes.
    func drain(_ names: [String]) {
        for name in names { slot(named: name)?.setDesired(.drained) }
    }

    func undrain(_ names: [String]) {
        for name in names {
            guard let slot = slot(named: name), slot.desired == .drained else { continue }
            slot.setDesired(.up)
        }
    }

    /// Shutdown: drain everything, wait up to the grace, stop agents, close servers.
    /// A second call (a second signal) skips the waiting.
    func shutdown(escalate: Signal) {
        stopping.store(true, ordering: .relaxed)
        logger.notice("shutting down", ("grace", formatDuration(config.fleet.grace)))
        for slot in slots { slot.setDesired(.down) }

        let deadline = monotonicSeconds() + config.fleet.grace
        while slots.contains(where: { $0.isBusy }) && monotonicSeconds() < deadline {
            if escalate.wait(seconds: 0.1) {
                logger.warning("second signal: stopping agents now")
                break
            }
        }
        for slot in slots where slot.isBusy {
            logger.warning("grace over; releasing job", ("slot", slot.spec.name), ("job", slot.currentJob?.id))
            slot.abortJob()
        }
        // Each slot's loop stops its agent (TERM, then KILL) and its server, then ends.
        let hardDeadline = monotonicSeconds() + config.fleet.killTimeout * 2 + 5
        for slot in slots where slot.isRunning {
            _ = slot.finished.wait(seconds: max(0.1, hardDeadline - monotonicSeconds()))
        }
        logger.notice("fleet stopped")
    }

    /// The whole fleet as `fleetctl status` shows it.
    func status() -> FleetStatus {
        let statuses = slots.map(\.status)
        let running = slots.filter(\.isRunning).count
        let counts = (try? context.store.jobCounts()) ?? [:]
        let info = FleetInfo(
            name: config.fleet.name, version: fleetVersion, pid: getpid(), startedAt: startedAt,
            desiredSlots: desiredCount.withLock { $0 }, runningSlots: running,
            configuredSlots: slots.count, jobsDone: counts["done"] ?? 0, jobsFailed: counts["failed"] ?? 0)
        return FleetStatus(fleet: info, quota: context.quota.latest, slots: statuses)
    }
}
