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
    let startedAt = Date()
    /// The config in force and the slots it names (removed slots stay until stopped).
    private let live: Mutex<(context: SlotContext, slots: [Slot])>
    var context: SlotContext { live.withLock { $0.context } }
    private var slots: [Slot] { live.withLock { $0.slots } }
    private let desiredCount = Mutex(0)
    /// Slots a reload removed that may still be finishing their job.
    private let removedNames = Mutex<Set<String>>([])
    private let stopping = Atomic<Bool>(false)
    /// Keeps a Mac awake while any slot is busy (a no-op elsewhere).
    private let sleepGuard: SleepGuard

    init(context: SlotContext) {
        self.live = Mutex((context, context.config.slots.map { Slot(spec: $0, context: context) }))
        self.sleepGuard = SleepGuard(logger: context.logger)
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
        if lastConfigValue == configured,
            let scaled = (try? store.meta("scale")).flatMap({ $0.flatMap(Int.init) })
        {
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
        // Payload and MCP config files of interrupted jobs (the latter hold the token).
        let slotsDir = config.fleet.stateDir + "/slots"
        for slot in (try? FileManager.default.contentsOfDirectory(atPath: slotsDir)) ?? [] {
            let dir = "\(slotsDir)/\(slot)"
            for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            where (file.hasPrefix("payload-") || file.hasPrefix("mcp-")) && file.hasSuffix(".json") {
                unlink("\(dir)/\(file)")
            }
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
        let rows = Dictionary(
            ((try? context.store.slots()) ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for slot in slots {
            let c = counts[slot.spec.name] ?? [:]
            slot.restore(
                restarts: rows[slot.spec.name]?.restarts ?? 0, done: c["done"] ?? 0, failed: c["failed"] ?? 0)
        }
        let n = resolveScale()
        desiredCount.withLock { $0 = n }
        let refused = slotsSharingAToken()
        for (index, slot) in slots.enumerated() {
            if let other = refused[slot.spec.name] {
                slot.refuse("its token is the same as slot \(other)'s; each slot needs its own token")
            } else if index < n {
                slot.start()
            } else {
                slot.setDesired(.down)
                try? context.store.setSlotState(slot.spec.name, .stopped)
            }
        }
        logger.notice("fleet started", ("slots", n), ("configured", slots.count))
        sleepGuard.watch { [weak self] in self?.slots.contains { $0.isBusy } ?? false }
    }

    /// SIGHUP: applies a validated config. Added slots start, removed ones drain and
    /// go, changed budgets and rotated tokens apply (a reconnect after the current job).
    /// The state directory, socket and quota probe keep their start-up values.
    func reload(_ config: FleetConfig) {
        let old = context
        var next = old
        next.config = config
        // What only a restart changes: keep the running values, say so.
        for (key, changed) in [
            ("fleet.state_dir", config.fleet.stateDir != old.config.fleet.stateDir),
            ("fleet.socket", config.fleet.socket != old.config.fleet.socket),
        ] where changed {
            logger.warning("config key needs a restart to apply", ("key", key))
        }
        next.config.fleet.stateDir = old.config.fleet.stateDir
        next.config.fleet.socket = old.config.fleet.socket
        let context = next

        var added: [Slot] = []
        var readded: [Slot] = []
        var removed: [Slot] = []
        let earlierRemoved = removedNames.withLock { $0 }
        live.withLock { live in
            live.context = context
            for spec in config.slots {
                if let slot = live.slots.first(where: { $0.spec.name == spec.name }) {
                    slot.update(spec: spec, context: context)
                    // Removed by an earlier reload (maybe still finishing its job): back.
                    if earlierRemoved.contains(spec.name) { readded.append(slot) }
                } else {
                    let slot = Slot(spec: spec, context: context)
                    live.slots.append(slot)
                    added.append(slot)
                }
            }
            let names = Set(config.slots.map(\.name))
            removed = live.slots.filter {
                !names.contains($0.spec.name) && !earlierRemoved.contains($0.spec.name)
            }
        }
        removedNames.withLock { names in
            names.subtract(readded.map(\.spec.name))
            names.formUnion(removed.map(\.spec.name))
        }
        let floors = Dictionary(uniqueKeysWithValues: config.slots.map { ($0.name, $0.minQuotaPct) })
        try? context.store.syncSlots(config.slots.map(\.name), floors: floors)
        for slot in removed {
            slot.setDesired(.down)
            logger.notice("slot removed from the config; stopping after its job", ("slot", slot.spec.name))
        }
        // The same checks as at start: no token shared with another slot.
        let refused = slotsSharingAToken()
        var startedCount = 0
        for slot in added + readded {
            if let other = refused[slot.spec.name] {
                slot.refuse("its token is the same as slot \(other)'s; each slot needs its own token")
                continue
            }
            slot.setDesired(.up)
            slot.start()
            startedCount += 1
            logger.notice("slot added by the config", ("slot", slot.spec.name))
        }
        desiredCount.withLock { $0 = max(0, $0 + startedCount - removed.count) }
        // Forget removed slots once they have stopped, unless a later reload brought them back.
        let gone = removed
        startThread { [self] in
            for slot in gone where slot.isRunning { slot.finished.wait(seconds: 86400) }
            let forget = removedNames.withLock { names -> Set<String> in
                let forget = Set(gone.map(\.spec.name)).intersection(names)
                names.subtract(forget)
                return forget
            }
            live.withLock { live in
                live.slots.removeAll { s in forget.contains(s.spec.name) && gone.contains { $0 === s } }
            }
        }
        try? context.store.event(
            slot: nil, kind: "config_reloaded",
            detail: "added \(added.count), removed \(removed.count)")
        logger.notice(
            "config reloaded", ("slots", config.slots.count), ("added", added.count),
            ("removed", removed.count))
    }

    /// Deletes finished jobs' logs beyond the retention count and age. Logs of running
    /// jobs are never touched (no file is deleted while still open).
    func pruneJobLogs() {
        let agent = config.agent
        let dir = context.jobLogDir
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        let running = Set(slots.compactMap { $0.currentJob?.id })
        var logs: [(path: String, modified: Date)] = []
        for name in names where name.hasSuffix(".log") && !running.contains(String(name.dropLast(4))) {
            let path = "\(dir)/\(name)"
            let modified =
                (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
                ?? Date()
            logs.append((path, modified))
        }
        logs.sort { $0.modified > $1.modified }
        let cutoff = Date().addingTimeInterval(-agent.logMaxAge)
        var removed = 0
        for (index, log) in logs.enumerated() where index >= agent.logRetention || log.modified < cutoff {
            if (try? FileManager.default.removeItem(atPath: log.path)) != nil { removed += 1 }
        }
        if removed > 0 {
            logger.info("pruned job logs", ("removed", removed), ("kept", logs.count - removed))
        }
    }

    /// Starts the periodic housekeeping (log retention).
    func startHousekeeping(every seconds: Double = 600) {
        startThread { [self] in
            let tick = Signal()
            while !stopping.load(ordering: .relaxed) {
                pruneJobLogs()
                tick.wait(seconds: seconds)
            }
        }
    }

    /// The last step of a shutdown: TERM, then KILL, every process still ours (orphans
    /// re-parented to us as PID 1 or subreaper), until none is left or the time is up.
    func stopDescendants(killAfter: Double) {
        #if os(Linux)
        let me = getpid()
        func children() -> [pid_t] {
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else {
                return []
            }
            return entries.compactMap { Int32($0) }.filter { pid in
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                    let close = stat.lastIndex(of: ")")
                else { return false }
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                return fields.count > 2 && fields[0] != "Z" && Int32(fields[1]) == me
            }
        }
        var left = children()
        guard !left.isEmpty else { return }
        logger.warning("stopping leftover processes", ("count", left.count))
        for pid in left { _ = kill(-pid, SIGTERM); _ = kill(pid, SIGTERM) }
        let deadline = monotonicSeconds() + killAfter
        while !left.isEmpty && monotonicSeconds() < deadline {
            usleep(50_000)
            left = children()
        }
        for pid in left { _ = kill(-pid, SIGKILL); _ = kill(pid, SIGKILL) }
        let reaped = monotonicSeconds() + 2
        while !children().isEmpty && monotonicSeconds() < reaped { usleep(20_000) }
        #endif
    }

    /// True once a shutdown has begun: nothing starts any more.
    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Every configured slot's name, in config order.
    var slotNames: [String] { slots.map(\.spec.name) }

    /// The running slots' names (the ones `drain --all` means).
    var runningNames: [String] { slots.filter { $0.isRunning && $0.desired != .down }.map(\.spec.name) }

    /// Slots whose token file holds the same token as an earlier slot's (by content:
    /// two files may hold one token). Two slots on one token could finish each other's
    /// jobs, so the later one never starts.
    private func slotsSharingAToken() -> [String: String] {
        var seen: [String: String] = [:]
        var refused: [String: String] = [:]
        for slot in slots {
            guard let token = try? Secrets.read(slot.spec.tokenFile) else { continue }
            if let first = seen[token] {
                refused[slot.spec.name] = first
            } else {
                seen[token] = slot.spec.name
            }
        }
        return refused
    }

    /// Drains slots: no new job; the current one finishes; heartbeats go on.
    func drain(_ names: [String]) {
        for name in names { slot(named: name)?.setDesired(.drained) }
    }

    /// Lets drained slots claim again.
    func undrain(_ names: [String]) {
        for name in names {
            guard let slot = slot(named: name), slot.desired == .drained else { continue }
            slot.setDesired(.up)
        }
    }

    /// Restarts a slot after its job, or at once (releasing the job) with `now`.
    func restart(_ name: String, now: Bool) {
        guard !stopping.load(ordering: .relaxed) else { return }
        slot(named: name)?.restart(now: now)
    }

    /// Runs `n` of the configured slots, persisted until the config's `slots` changes.
    /// Up starts slots in config order; down drains idle slots first (reverse config
    /// order), then busy ones, which finish their job (DESIGN.md, decisions 4 and 5).
    func scale(to n: Int) -> ScaleResult? {
        guard !isStopping else { return nil }
        let result = desiredCount.withLock { count -> ScaleResult in
            count = n
            var started: [String] = []
            var draining: [String] = []
            let wanted = slots.filter { $0.desired != .down }
            if wanted.count < n {
                for slot in slots where slot.desired == .down {
                    guard started.count < n - wanted.count else { break }
                    slot.setDesired(.up)
                    slot.start()
                    started.append(slot.spec.name)
                }
            } else if wanted.count > n {
                let idle = wanted.reversed().filter { !$0.isBusy }
                let busy = wanted.reversed().filter { $0.isBusy }
                for slot in (idle + busy).prefix(wanted.count - n) {
                    slot.setDesired(.down)
                    draining.append(slot.spec.name)
                }
            }
            return ScaleResult(desired: n, started: started, draining: draining)
        }
        try? context.store.setMeta("scale", "\(n)")
        try? context.store.event(slot: nil, kind: "fleet_scaled", detail: "\(n)")
        logger.notice(
            "fleet scaled", ("slots", n), ("started", result.started.joined(separator: ",")),
            ("draining", result.draining.joined(separator: ",")))
        return result
    }

    /// Stops working on a job this fleet holds and gives it back: the agent is stopped
    /// and the lease left to lapse (DESIGN.md, decision 1).
    func requeue(_ jobId: String) -> RequeueResult? {
        guard let slot = slots.first(where: { $0.currentJob?.id == jobId }), let job = slot.currentJob else {
            return nil
        }
        slot.abortJob()
        try? context.store.event(slot: slot.spec.name, job: jobId, kind: "job_requeue_requested")
        return RequeueResult(
            job: jobId, slot: slot.spec.name, leaseUntil: job.leaseUntil,
            message: "agent stopped; the server requeues the job when its lease lapses"
                + (job.leaseUntil.map { " (at \(Timestamp.iso8601($0)))" } ?? " (within about 5 minutes)")
                + "; this uses one of its retries")
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
            logger.warning(
                "grace over; releasing job", ("slot", slot.spec.name), ("job", slot.currentJob?.id))
            slot.abortJob()
        }
        // Each slot's loop stops its agent (TERM, then KILL) and its server, then ends.
        let hardDeadline = monotonicSeconds() + config.fleet.killTimeout * 2 + 5
        for slot in slots where slot.isRunning {
            _ = slot.finished.wait(seconds: max(0.1, hardDeadline - monotonicSeconds()))
        }
        stopDescendants(killAfter: config.fleet.killTimeout)
        sleepGuard.release()
        logger.notice("fleet stopped")
    }

    /// The whole fleet as `fleetctl status` shows it.
    func status() -> FleetStatus {
        let statuses = slots.map(\.status)
        let running = slots.filter(\.isRunning).count
        let counts = (try? context.store.jobCounts()) ?? [:]
        var info = FleetInfo(
            name: config.fleet.name, version: fleetVersion, pid: getpid(), startedAt: startedAt,
            desiredSlots: desiredCount.withLock { $0 }, runningSlots: running,
            configuredSlots: slots.count, jobsDone: counts["done"] ?? 0, jobsFailed: counts["failed"] ?? 0)
        info.loggingDegraded = LogHealth.isDegraded
        info.logWriteFailures = LogHealth.failedWrites
        return FleetStatus(fleet: info, quota: context.quota.latest, slots: statuses)
    }
}
