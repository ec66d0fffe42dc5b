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

/// One worker slot: its own token, server connection, clone and worktree root.
///
/// A slot runs its loop on a dedicated thread (DESIGN.md, "A slot's loop", steps 1-7).
/// The supervisor changes what is wanted (`desired`) and reads what is (`status`);
/// the loop moves the actual state and records every change in the store.
public final class Slot: @unchecked Sendable {
    /// The slot's configuration and the fleet's, replaced on a config reload.
    private let settings: Mutex<(spec: SlotSpec, context: SlotContext)>
    public var spec: SlotSpec { settings.withLock { $0.spec } }
    var context: SlotContext { settings.withLock { $0.context } }
    let logger: Logger

    struct State {
        var desired: SlotDesire = .up
        var actual: SlotState = .stopped
        var instanceId: String?
        var job: JobRef?
        var lastError: String?
        var lastHeartbeat: Date?
        var restarts = 0
        var since = Date()
        var quotaFloor = 0
        var jobsDone = 0
        var jobsFailed = 0
        /// Stop the agent now and release its job (restart --now, requeue, shutdown).
        var abortJob = false
        var running = false
        /// Reconnect with a new instance id once the current job is done.
        var restartRequested = false
        /// Starts that failed within the failure window (for the failure budget).
        var failureTimes: [Double] = []
        var lastExit: String?
        /// Worktrees kept because they hold uncommitted work.
        var dirtyWorktrees: [String] = []
        /// Identifies the token the live connection uses (never the token itself).
        var tokenFingerprint: Int?
    }

    let state = Mutex(State())
    /// Wakes the loop from a sleep (standby, backoff, drained) when something changed.
    let wake = Signal()
    /// Cancels a pending `wait_for_job` (drain, stop).
    let waitCancel = Mutex(CancelFlag())
    /// The quota gate: standby reason and resume time, jobs in this window.
    let quotaGateState = Mutex(SlotGateState())
    /// Fired once when the loop has ended.
    public let finished = Signal()
    /// A connection opened during a job (the old one broke); the loop adopts it.
    let replacement = Mutex<Connection?>(nil)

    public init(spec: SlotSpec, context: SlotContext) {
        self.settings = Mutex((spec, context))
        self.logger = context.logger.with(("slot", spec.name))
        state.withLock { $0.quotaFloor = spec.minQuotaPct }
        context.quota.subscribe(wake)
    }

    // MARK: Control (any thread)

    /// Starts the loop thread.
    public func start() {
        let first = state.withLock { s -> Bool in
            guard !s.running else { return false }
            s.running = true
            s.desired = .up
            return true
        }
        guard first else { return }
        startThread { [self] in
            run()
            state.withLock { $0.running = false }
            finished.fire()
        }
    }

    /// Changes what is wanted; a pending long poll is cancelled when the slot should
    /// take no new job.
    public func setDesired(_ desired: SlotDesire) {
        state.withLock { $0.desired = desired }
        try? context.store.setSlotDesired(spec.name, desired)
        if desired != .up { waitCancel.withLock { $0 }.cancel() }
        wake.fire()
    }

    /// Restarts the slot: after its current job (or at once with `now`, releasing the
    /// job), with a new connection and instance id; clears the failure budget.
    public func restart(now: Bool) {
        state.withLock { s in
            s.restartRequested = true
            s.failureTimes = []
            if now && s.job != nil { s.abortJob = true }
            if s.desired == .drained { s.desired = .up }
        }
        waitCancel.withLock { $0 }.cancel()
        wake.fire()
        if !isRunning { start() }
    }

    /// Applies a reloaded config. Budgets and intervals apply at once; a changed token
    /// (rotated), server or roots take a reconnect after the current job.
    public func update(spec: SlotSpec, context: SlotContext) {
        let old = settings.withLock { s -> (SlotSpec, SlotContext) in
            defer { s = (spec, context) }
            return s
        }
        let rotated =
            (try? Secrets.read(spec.tokenFile)).map(tokenFingerprint)
            != state.withLock { $0.tokenFingerprint }
        let reconnect =
            rotated || old.0.repoRoots != spec.repoRoots || old.0.worktreeRoot != spec.worktreeRoot
            || old.0.runtime != spec.runtime || old.0.capabilities != spec.capabilities
            || old.1.config.scrum4me != context.config.scrum4me
        state.withLock { s in
            if reconnect && s.running { s.restartRequested = true }
        }
        if reconnect {
            logger.notice("config changed; reconnecting after the current job", ("token_rotated", rotated))
            if !isBusy { waitCancel.withLock { $0 }.cancel() }
            wake.fire()
        }
    }

    /// Refuses to run this slot (a shared token): `failed` with the reason, no thread.
    public func refuse(_ reason: String) {
        state.withLock { $0.desired = .down }
        transition(.failed, error: reason)
    }

    /// Stops the running agent at once; its job is released (its lease left to lapse).
    public func abortJob() {
        state.withLock { s in
            s.abortJob = true
            s.job?.releasing = true
        }
        wake.fire()
    }

    public var desired: SlotDesire { state.withLock { $0.desired } }
    public var isRunning: Bool { state.withLock { $0.running } }
    public var isBusy: Bool { state.withLock { $0.job != nil } }
    public var currentJob: JobRef? { state.withLock { $0.job } }

    /// The slot as `fleetctl status` shows it.
    public var status: SlotStatus {
        let gate = quotaGateState.withLock { $0 }
        return state.withLock { s in
            let standby = s.actual == .standby
            return SlotStatus(
                name: spec.name, desired: s.desired, state: s.actual, instanceId: s.instanceId,
                job: s.job, restarts: s.restarts, lastError: s.lastError, quotaFloor: s.quotaFloor,
                lastHeartbeat: s.lastHeartbeat, jobsDone: s.jobsDone, jobsFailed: s.jobsFailed,
                since: s.since, resumesAt: standby ? gate.resumesAt : nil,
                standbyReason: standby ? gate.reason : nil,
                dirtyWorktrees: s.dirtyWorktrees.isEmpty ? nil : s.dirtyWorktrees)
        }
    }

    /// Seeds counters from the store (after a restart of fleetd).
    public func restore(restarts: Int, done: Int, failed: Int) {
        state.withLock {
            $0.restarts = restarts
            $0.jobsDone = done
            $0.jobsFailed = failed
        }
    }

    // MARK: State changes (loop thread)

    func transition(_ next: SlotState, error: String? = nil) {
        let changed = state.withLock { s -> Bool in
            if let error { s.lastError = error }
            guard s.actual != next else { return false }
            s.actual = next
            s.since = Date()
            return true
        }
        guard changed else { return }
        try? context.store.setSlotState(spec.name, next, error: error)
        try? context.store.event(slot: spec.name, kind: "slot_\(next.rawValue)", detail: error)
        if next == .failed || next == .tokenRejected {
            logger.error("slot stopped claiming", ("state", next.rawValue), ("reason", error))
        } else {
            logger.info("slot state", ("state", next.rawValue))
        }
    }

    /// Sleeps up to `seconds`, waking early when the desired state changes.
    func nap(_ seconds: Double) {
        let wanted = desired
        let deadline = monotonicSeconds() + seconds
        while desired == wanted {
            let left = deadline - monotonicSeconds()
            if left <= 0 { return }
            wake.wait(seconds: min(left, 1))
        }
    }

    // MARK: The loop

    private func run() {
        prepareWorktrees()
        var backoff = Backoff(
            min: context.config.scrum4me.backoffMin, max: context.config.scrum4me.backoffMax)
        var connection: Connection?
        defer { connection?.close(killAfter: context.config.fleet.killTimeout) }

        while true {
            // A job may have replaced a broken connection (the old one is closed).
            if let fresh = replacement.withLock({ r in
                defer { r = nil }; return r
            }) {
                connection = fresh
            }
            let wanted = desired
            if wanted == .down { break }
            if state.withLock({ s in
                defer { s.restartRequested = false }; return s.restartRequested
            }) {
                connection?.close(killAfter: context.config.fleet.killTimeout)
                connection = nil
                backoff.reset()
                state.withLock { $0.lastError = nil }
                logger.notice("slot restarting")
            }
            if wanted == .drained {
                transition(.drained)
                wake.wait(seconds: 1)
                continue
            }

            // Connect (spawn the server, or reach the URL) and handshake.
            if connection == nil || connection?.isBroken == true {
                connection?.close(killAfter: context.config.fleet.killTimeout)
                connection = nil
                transition(.starting)
                do {
                    connection = try Connection.open(slot: self)
                    state.withLock { $0.instanceId = connection?.instanceId }
                    try? context.store.setSlotState(spec.name, .starting, instanceId: connection?.instanceId)
                } catch let error as Scrum4MeError where error.isTokenRejection {
                    connection = nil
                    rejectToken(error)
                    continue
                } catch {
                    let text = "\(error)"
                    failed(text.hasPrefix("connect") ? text : "connect: \(text)", &backoff)
                    continue
                }
            }
            guard let conn = connection else { continue }

            do {
                try cycle(conn)
                backoff.reset()
            } catch let error where error.isTokenRejection {
                // Stop talking with a token the server refuses (no heartbeats either).
                conn.close(killAfter: context.config.fleet.killTimeout)
                connection = nil
                rejectToken(error)
            } catch .tool(let failure) {
                // The server refused a call (a missing repo root, a validation error):
                // the connection is fine; back off so a persistent refusal is no loop.
                failed("server refused: \(failure)", &backoff)
            } catch .mcp(.rpc(let code, let message)) {
                failed("server error \(code): \(message)", &backoff)
            } catch {
                // A transport failure: rebuild the connection after a pause.
                conn.markBroken()
                if let exit = conn.server?.wait(seconds: 0.5) {
                    state.withLock { $0.lastExit = "\(exit)" }
                }
                failed("\(error)", &backoff)
            }
        }
        transition(.stopped)
    }

    /// A failed start or a lost server: back off with jitter, or give up for good once
    /// the failure budget is spent (one event, the last exit shown) until restarted.
    private func failed(_ reason: String, _ backoff: inout Backoff) {
        let fleet = context.config.fleet
        let now = monotonicSeconds()
        let (count, lastExit) = state.withLock { s -> (Int, String?) in
            s.restarts += 1
            s.failureTimes = s.failureTimes.filter { now - $0 < fleet.restartWindow } + [now]
            return (s.failureTimes.count, s.lastExit)
        }
        try? context.store.incrementRestarts(spec.name)
        let detail = lastExit.map { "\(reason) (server \($0))" } ?? reason
        if count >= fleet.restartBudget {
            transition(
                .failed,
                error: "gave up after \(count) failures in \(formatDuration(fleet.restartWindow)): \(detail)")
            while desired != .down && !state.withLock({ $0.restartRequested }) { wake.wait(seconds: 1) }
            return
        }
        let delay = backoff.next()
        transition(.backoff, error: detail)
        try? context.store.event(
            slot: spec.name, kind: "slot_restart_scheduled", detail: "in \(Int(delay * 1000))ms: \(detail)")
        logger.warning(
            "slot failed; backing off", ("error", detail), ("retry_in", formatDuration(delay)),
            ("failures", count))
        nap(delay)
    }

    /// A rejected token: say so and claim nothing until restarted.
    private func rejectToken(_ error: Scrum4MeError) {
        transition(.tokenRejected, error: "\(error)")
        while desired != .down && !state.withLock({ $0.restartRequested }) {
            wake.wait(seconds: 1)
        }
    }

    /// Steps 1-7 once: settings, heartbeat, quota gate, long poll, and a job if claimed.
    private func cycle(_ conn: Connection) throws(Scrum4MeError) {
        let serverFloor = try conn.api.workerSettings()
        let floor = max(spec.minQuotaPct, serverFloor)
        state.withLock { $0.quotaFloor = floor }

        try conn.heartbeat(context.quota.latest)
        if standByIfGated(floor: floor) { return }

        guard desired == .up else { return }
        transition(.idle)
        let cancel = CancelFlag()
        waitCancel.withLock { $0 = cancel }
        if desired != .up { return }  // a drain raced the new flag

        let result: WaitResult
        do {
            result = try conn.api.waitForJob(
                seconds: context.config.scrum4me.waitSeconds, product: spec.product, tier: spec.tier,
                cancel: cancel)
        } catch .mcp(.cancelled) {
            return
        }
        guard case .claimed(let claim) = result else { return }
        countJobStarted()
        if !runJob(claim, conn, answeredAt: realtimeNanoseconds()) {
            // Counted as a failure: backoff, then `failed` after the budget (health says so).
            throw .tool(.other("\(RunningAgent.didNotStart); not claiming until it can"))
        }
    }
}

/// An in-process fingerprint of a token, to notice a rotation without keeping it.
func tokenFingerprint(_ token: String) -> Int {
    var hasher = Hasher()
    hasher.combine(token)
    return hasher.finalize()
}
