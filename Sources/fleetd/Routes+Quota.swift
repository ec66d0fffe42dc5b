#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import WorkerSlot

extension Routes {
    /// `GET /v1/quota`: the reading and its age, the probe's schedule and last error,
    /// and each configured slot's floor and gate.
    func quotaStatus() -> QuotaStatus {
        let quota = supervisor.config.quota
        let board = supervisor.context.quota.snapshot
        let now = Date()
        let age = board.reading.map { max(0, now.timeIntervalSince($0.checkedAt)) }
        let isProbing = quota.probe != "off"
        let stale = isProbing && (age.map { $0 > quota.maxAge } ?? true)
        let slots = supervisor.slotNames.compactMap { supervisor.slot(named: $0)?.quota }
        return QuotaStatus(
            probe: quota.probe, reading: board.reading, ageSeconds: age.map { ($0 * 10).rounded() / 10 },
            stale: stale,
            intervalSeconds: quota.interval, maxAgeSeconds: quota.maxAge,
            minProbeGapSeconds: quota.minProbeGap,
            jobsPerWindow: quota.jobsPerWindow, probing: board.isProbing, lastProbeAt: board.lastProbeAt,
            lastProbeOk: board.lastProbeOK, nextProbeAt: board.nextProbeAt, lastError: board.lastError,
            lastErrorAt: board.lastErrorAt, probesStarted: board.started, probesCompleted: board.completed,
            probesFailed: board.failed, slots: slots)
    }

    /// `POST /v1/quota/probe`: a probe out of turn, answered at once (202) with the
    /// probe's number to wait for; 429 inside `min_probe_gap` of the last one.
    func probeQuota() throws(APIFailure) -> HTTPResponse {
        switch supervisor.context.quota.requestProbe(.operatorRequest) {
        case .queued(let number):
            let body = ProbeAccepted(
                probe: number, message: "probe \(number) queued; GET /v1/quota shows it when done")
            return jsonResponse(body, status: 202)
        case .tooSoon(let retryAfter):
            let seconds = Int(retryAfter.rounded(.up))
            var response = errorResponse(
                429,
                "rate-limited: the last probe started less than min_probe_gap"
                    + " (\(formatDuration(supervisor.config.quota.minProbeGap))) ago",
                hint: "try again in \(seconds)s, or read the current reading with fleetctl quota")
            response.headers.append(("Retry-After", "\(seconds)"))
            return response
        case .unavailable:
            throw APIFailure(status: 503, message: "no quota probe is running")
        }
    }
}
