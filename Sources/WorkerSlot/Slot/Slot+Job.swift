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
import CFleetShim
import FleetCore

/// How a job ended, as this fleet records it.
enum JobOutcome: String {
    case done, failed, cancelled, skipped, released
}

extension Slot {
    /// Step 5 and 6: record the claim, run the agent with lease renewal, settle the job.
    /// `answeredAt` is when the claim answer arrived (realtime ns), for the per-job
    /// overhead benchmark: it is logged with the agent's spawn.
    /// Returns false when the agent could not even start (a full disk, a missing program):
    /// the loop then backs off instead of claiming job after job it cannot run.
    @discardableResult
    func runJob(_ claim: Claim, _ conn: Connection, answeredAt: UInt64) -> Bool {
        let now = Date()
        let ref = JobRef(
            id: claim.jobId, kind: claim.kind, since: now,
            leaseUntil: claim.payload["lease_until"]?.string.flatMap(Timestamp.parse))
        state.withLock {
            $0.job = ref
            $0.abortJob = false
        }
        do {
            try context.store.recordClaim(
                slot: spec.name, jobId: claim.jobId, kind: claim.kind, worktree: claim.worktreePath,
                branch: claim.branch, at: now)
        } catch {
            logger.error("cannot record claim", ("job", claim.jobId), ("error", error))
        }
        state.withLock { s in
            s.actual = .busy
            s.since = now
        }
        let log = logger.with(("job", claim.jobId))
        log.notice("job claimed", ("kind", claim.kind))

        let (outcome, detail) = execute(claim, conn, log, answeredAt: answeredAt)
        // Only now that the agent has exited (incident 7): clean or flag its worktree.
        if let worktree = claim.worktreePath { cleanUpWorktree(worktree) }

        let next: SlotState = desired == .up ? .idle : (desired == .drained ? .drained : .stopped)
        try? context.store.finishJob(
            slot: spec.name, jobId: claim.jobId, outcome: outcome.rawValue, error: detail, at: Date(),
            nextState: next)
        state.withLock { s in
            s.job = nil
            s.abortJob = false
            s.actual = next
            s.since = Date()
            if outcome == .done { s.jobsDone += 1 }
            if outcome == .failed { s.jobsFailed += 1 }
        }
        log.notice(
            "job finished", ("outcome", outcome.rawValue), ("detail", detail.map { String($0.prefix(200)) }))
        return !(detail?.hasPrefix(RunningAgent.didNotStart) ?? false)
    }

    private func execute(_ claim: Claim, _ conn: Connection, _ log: Logger, answeredAt: UInt64) -> (
        JobOutcome, String?
    ) {
        // The payload file and the agent's MCP config live in the slot's private dir.
        let dir = context.slotDir(spec.name)
        let payloadPath = "\(dir)/payload-\(claim.jobId).json"
        let mcpPath = "\(dir)/mcp-\(claim.jobId).json"
        defer {
            unlink(payloadPath)
            unlink(mcpPath)
        }

        let agent: RunningAgent
        do {
            try writePrivateFile(payloadPath, claim.payload.encoded())
            let launch = try agentLaunch(claim, conn, payloadPath: payloadPath, mcpPath: mcpPath)
            try writePrivateFile(mcpPath, launch.mcpConfig.encoded())
            if let user = launch.setup.user {
                // The agent's own files belong to the agent's user (still 0600).
                for path in [payloadPath, mcpPath, context.slotDir(spec.name) + "/home"] {
                    _ = chown(path, user.uid, user.gid)
                }
            }
            agent = try RunningAgent.start(
                launch, logPath: "\(context.jobLogDir)/\(claim.jobId).log", cap: context.config.agent.logCap)
        } catch {
            // The agent never started: the job can be retried elsewhere, so let it lapse.
            log.error("agent did not start", ("error", error))
            return (.released, "\(RunningAgent.didNotStart): \(error)")
        }
        try? context.store.recordAgent(
            slot: spec.name, jobId: claim.jobId, process: ProcessIdentity.of(pid: agent.child.pid))
        log.info("agent started", ("pid", agent.child.pid), ("claim_answer_ns", answeredAt))

        var conn = conn
        let ending = superviseAgent(agent, claim, &conn, log)
        // What the agent left running in its process group (background jobs) goes with it.
        agent.child.signalGroup(SIGTERM)
        agent.finishOutput()
        agent.child.signalGroup(SIGKILL)
        return settle(claim, conn, agent, ending, log)
    }

    /// Why the agent is no longer running.
    enum AgentEnding {
        case exited(ExitStatus)
        case timedOut
        case aborted
        case lostJob(String)
        /// Cancelled on the server (a cascade) while the agent worked: drop it.
        case cancelled(String)
    }

    /// Waits for the agent while renewing the lease; stops it on timeout, abort, or a
    /// lease the server refuses.
    private func superviseAgent(
        _ agent: RunningAgent, _ claim: Claim, _ conn: inout Connection, _ log: Logger
    ) -> AgentEnding {
        let started = monotonicSeconds()
        let leaseInterval = context.config.scrum4me.leaseInterval
        var nextRenewal = started
        let killAfter = context.config.fleet.killTimeout
        var renewing = true
        // Renewal retries back off (never a tight loop), from 1 s up to the interval.
        var retry = Backoff(min: min(1, leaseInterval), max: max(leaseInterval, 1))
        // The claim's lease, parsed once when the job was recorded.
        var leaseDeadline = deadline(of: currentJob?.leaseUntil, fallback: started + leaseInterval * 5)
        // Renew at least three times per lease, whatever `lease_interval` says, and keep
        // a margin of one renewal period before the lease's end.
        var period = min(leaseInterval, max(0.1, (leaseDeadline - started) / 3))
        nextRenewal = started + period

        while true {
            if let status = agent.child.wait(seconds: 0.2) { return .exited(status) }
            let now = monotonicSeconds()

            if state.withLock({ $0.abortJob }) {
                log.notice("stopping agent: job released")
                agent.child.stop(killAfter: killAfter)
                return .aborted
            }
            if now - started > context.config.agent.timeout {
                log.warning("agent timed out", ("timeout", formatDuration(context.config.agent.timeout)))
                agent.child.stop(killAfter: killAfter)
                return .timedOut
            }
            // A lease we could not renew in time: the server may already hand the job to
            // another worker, so this agent must stop (never two agents on one job).
            // Stop a renewal interval before the end: the server requeues the job the
            // moment the lease passes, and another worker may claim it at once.
            if renewing, now > leaseDeadline - period {
                log.warning("lease expired without renewal; stopping agent")
                agent.child.stop(killAfter: killAfter)
                return .lostJob("lease expired while the server could not be reached")
            }
            guard now >= nextRenewal, renewing else { continue }
            nextRenewal = now + period
            do {
                let lease = try conn.api.jobHeartbeat(jobId: claim.jobId)
                retry.reset()
                let until = lease["lease_until"]?.string.flatMap(Timestamp.parse)
                leaseDeadline = deadline(of: until, fallback: now + leaseInterval * 5)
                period = min(leaseInterval, max(0.1, (leaseDeadline - now) / 3))
                if let until { state.withLock { $0.job?.leaseUntil = until } }
                if let sprint = lease["sprint_run_status"]?.string, sprint != "RUNNING" {
                    log.notice("sprint run no longer running", ("sprint_status", sprint))
                    agent.child.stop(killAfter: killAfter)
                    return .lostJob("sprint run \(sprint)")
                }
            } catch .tool(let failure) {
                // Refused. Finished by the agent's own report: it exits on its own. No
                // longer ours (cancelled, requeued, another token's): stop working on it.
                // Anything else may be transient: retry, bounded by the lease.
                let serverState = try? conn.api.jobStatus(jobId: claim.jobId)
                if let serverState, ["DONE", "FAILED", "SKIPPED"].contains(serverState) {
                    renewing = false
                    continue
                }
                if serverState == "CANCELLED" || failure.isCancellation {
                    log.warning("job cancelled; stopping agent", ("reason", failure))
                    agent.child.stop(killAfter: killAfter)
                    return .cancelled("\(failure)")
                }
                let ours = serverState == "CLAIMED" || serverState == "RUNNING"
                if !ours || failure.isPermissionDenied {
                    log.warning(
                        "lease refused; stopping agent", ("reason", failure), ("server_state", serverState))
                    agent.child.stop(killAfter: killAfter)
                    return .lostJob("\(failure)")
                }
                let delay = retry.next()
                log.warning(
                    "lease renewal refused; retrying", ("reason", failure),
                    ("retry_in", formatDuration(delay)))
                nextRenewal = now + delay
            } catch {
                // Transport trouble (the server died, a reset): keep the agent and
                // reconnect with backoff, so the lease does not lapse under a working agent.
                let delay = retry.next()
                log.warning("lease renewal failed", ("error", error), ("retry_in", formatDuration(delay)))
                conn.markBroken()
                nextRenewal = now + delay
                do {
                    let fresh = try Connection.open(slot: self)
                    conn.close(killAfter: killAfter)
                    conn = fresh
                    replacement.withLock { $0 = fresh }
                    state.withLock { $0.instanceId = fresh.instanceId }
                } catch {
                    log.warning("reconnect during a job failed", ("error", error))
                }
            }
        }
    }

    /// The monotonic time of the server's `lease_until`, or `fallback`.
    private func deadline(of until: Date?, fallback: Double) -> Double {
        // A lease that looks already over right after the server set it means the clocks
        // disagree: then trust our own count, never stop an agent for a skewed clock.
        guard let until, until.timeIntervalSinceNow > 0 else {
            return fallback
        }
        return monotonicSeconds() + until.timeIntervalSinceNow
    }

    /// Step 6: ask the server, report what the agent did not, record the outcome.
    private func settle(
        _ claim: Claim, _ conn: Connection, _ agent: RunningAgent, _ ending: AgentEnding, _ log: Logger
    ) -> (JobOutcome, String?) {
        switch ending {
        case .aborted:
            return (.released, "released by the fleet; the server requeues it when its lease lapses")
        case .lostJob(let why):
            return (.released, why)
        case .cancelled(let why):
            return (.cancelled, why)
        default:
            break
        }

        let serverStatus: String
        do {
            serverStatus = try conn.api.jobStatus(jobId: claim.jobId)
        } catch {
            log.warning("cannot read job status", ("error", error))
            return (.released, "job status unknown after the agent exited: \(error)")
        }
        if let outcome = JobOutcome(serverState: serverStatus) {
            return (outcome, outcome == .done ? nil : "server reports \(serverStatus)")
        }

        // Still ours and not terminal: report it, or let the lease lapse, per policy.
        let verdict = FailurePolicy.verdict(
            kind: claim.kind, ending: ending, excerpt: agent.errorExcerpt(),
            timeout: context.config.agent.timeout, quotaExhausted: quotaExhausted())
        guard case .report(let error) = verdict else {
            if case .release(let why) = verdict {
                log.notice("letting the lease lapse", ("reason", why))
                return (.released, why)
            }
            return (.released, nil)
        }
        do {
            _ = try conn.api.updateJobStatus(jobId: claim.jobId, status: "failed", error: error)
            return (.failed, error)
        } catch .tool(.jobCancelled(let why)) {
            return (.cancelled, why)
        } catch .tool(.alreadyTerminal(let state)) {
            return (JobOutcome(serverState: state) ?? .done, nil)
        } catch {
            log.warning("cannot report failure", ("error", error))
            return (.released, "cannot report the failure: \(error)")
        }
    }

    /// True when the fleet's latest reading is below this slot's floor (or empty).
    private func quotaExhausted() -> Bool {
        guard let reading = context.quota.latest else { return false }
        return reading.pct <= 0 || reading.pct < state.withLock { $0.quotaFloor }
    }

    private func agentLaunch(_ claim: Claim, _ conn: Connection, payloadPath: String, mcpPath: String) throws
        -> AgentLaunch
    {
        let config = context.config
        let jobInstance = "\(conn.instanceId)-job-\(claim.jobId.prefix(8))"
        let token = try Secrets.read(spec.tokenFile)
        let home = context.slotDir(spec.name) + "/home"

        var server: JSONValue
        switch config.scrum4me.transport {
        case .stdio:
            var env = try Connection.serverEnvironment(
                slot: self, token: token, instanceId: jobInstance, home: home)
            env["PATH"] = context.childBaseEnvironment["PATH"]
            server = [
                "command": .string(config.scrum4me.command[0]),
                "args": .array(config.scrum4me.command.dropFirst().map { .string($0) }),
                "env": .object(env.mapValues { .string($0) }),
            ]
        case .http:
            server = [
                "type": "http", "url": .string(config.scrum4me.url!),
                "headers": [
                    "Authorization": .string("Bearer \(token)"),
                    "X-Scrum4Me-Worker-Instance": .string(jobInstance),
                ],
            ]
        }

        var directory = context.slotDir(spec.name) + "/work"
        if let worktree = claim.worktreePath, FileManager.default.fileExists(atPath: worktree) {
            directory = worktree
        }
        try makeDirectories(directory)

        var env = context.childBaseEnvironment
        env["HOME"] = home
        env["CLAUDE_CONFIG_DIR"] = home + "/.claude"
        for (key, value) in config.agent.env { env[key] = value }
        if let file = config.agent.credentialFile {
            let credential = try Secrets.read(file)
            env[credentialVariable(for: credential, kind: config.agent.credentialKind)] = credential
        }
        if let file = config.agent.githubTokenFile { env["GH_TOKEN"] = try Secrets.read(file) }
        env["PAYLOAD_PATH"] = payloadPath
        env["SCRUM4ME_JOB_ID"] = claim.jobId

        let prompt = AgentLaunch.prompt(
            kind: claim.kind, jobId: claim.jobId, payloadPath: payloadPath, promptDir: config.agent.promptDir)
        let args = AgentLaunch.flags(config: claim.payload["config"], mcpConfigPath: mcpPath, prompt: prompt)
        // Linux: the agent dies with the slot's thread (a crashed fleetd), so it can
        // never run on while its lease lapses and the job runs again elsewhere.
        var setup = ChildSetup(
            memoryBytes: config.agent.memoryLimit, openFiles: config.agent.openFiles,
            cpuSeconds: config.agent.cpuLimit)
        #if os(Linux)
        setup.parentDeathSignal = SIGKILL
        #endif
        if let name = config.agent.user, getuid() == 0 {
            guard let pw = getpwnam(name) else {
                throw SecretError(path: "agent.user", reason: "no user named \(name)")
            }
            setup.user = (pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
        return AgentLaunch(
            executable: config.agent.command[0],
            arguments: Array(config.agent.command.dropFirst()) + args + config.agent.args,
            environment: env, directory: directory,
            mcpConfig: ["mcpServers": ["scrum4me": server]], setup: setup)
    }
}

extension JobOutcome {
    /// The outcome for a terminal server state; nil while the job is still live.
    init?(serverState: String) {
        switch serverState.uppercased() {
        case "DONE": self = .done
        case "FAILED": self = .failed
        case "CANCELLED": self = .cancelled
        case "SKIPPED": self = .skipped
        default: return nil
        }
    }
}
