import FleetCore

/// What to do with a job that is still ours after its agent ended without reporting.
///
/// `failed` is not free: a failed task job cancels its siblings upstream (the
/// fail-cascade), and a failed job is never retried. Letting the lease lapse gives the
/// job another attempt (the server allows two) without the cascade. So:
///
/// | agent ending                     | task, sprint                 | other kinds |
/// |----------------------------------|------------------------------|-------------|
/// | exit != 0 (it failed, said why)  | report failed + stderr tail  | same        |
/// | killed by a signal (crash, OOM)  | lease lapses (retried)       | report failed |
/// | exit 0 without a report          | lease lapses (retried)       | report failed |
/// | job timeout (TERM, then KILL)    | report failed                | same        |
///
/// A sprint job whose agent failed while the fleet's quota is spent is reported with
/// `QUOTA_PAUSE:`, which pauses the sprint run instead of failing it.
enum FailurePolicy {
    enum Verdict: Equatable {
        case report(String)
        case release(String)
    }

    static let retriedKinds: Set<String> = ["TASK_IMPLEMENTATION", "SPRINT_IMPLEMENTATION"]

    static func verdict(
        kind: String, ending: Slot.AgentEnding, excerpt: String, timeout: Double, quotaExhausted: Bool
    ) -> Verdict {
        let retried = retriedKinds.contains(kind)
        let tail = excerpt.isEmpty ? "" : ": \(excerpt)"
        var error: String
        switch ending {
        case .timedOut:
            error = "agent timed out after \(formatDuration(timeout))"
        case .exited(.exited(0)):
            if retried {
                return .release("agent exited without reporting a status; the job is retried after its lease")
            }
            error = "agent exited without reporting a status"
        case .exited(.exited(let code)):
            error = "agent failed (exit \(code))\(tail)"
        case .exited(.signaled(let sig)):
            if retried && !quotaExhausted {
                return .release("agent killed by signal \(sig); the job is retried after its lease")
            }
            error = "agent killed by signal \(sig)\(tail)"
        case .aborted, .lostJob, .cancelled:
            return .release("interrupted by the fleet")
        }
        if kind == "SPRINT_IMPLEMENTATION" && (quotaExhausted || mentionsQuota(excerpt)) {
            error = "QUOTA_PAUSE: quota ran out during the sprint (\(error))"
        }
        return .report(String(error.prefix(2000)))
    }

    /// Claude Code's words when the account's limit is reached.
    static func mentionsQuota(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower.contains("usage limit") || lower.contains("rate limit") || lower.contains("quota")
    }
}
