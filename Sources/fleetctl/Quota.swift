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

/// `fleetctl quota [--probe] [--json]`: the fleet's reading, its age, the next probe,
/// the last error, and each slot's floor and gate.
enum Quota {
    /// How long `--probe` waits for its reading at least (a probe may take 30 s).
    static let probeWait = 45.0

    static func run(_ options: GlobalOptions, _ args: [String]) -> Exit {
        var probe = false
        for arg in args {
            switch arg {
            case "--probe": probe = true
            default: CLI.usageError("quota: unknown argument \(arg)")
            }
        }
        do {
            if probe { return try probeAndShow(options) }
            let (status, _) = try CLI.call("GET", "/v1/quota", body: nil, options, as: QuotaStatus.self)
            show(status, options)
            return .ok
        } catch {
            return CLI.report(error)
        }
    }

    /// Asks for a probe, waits until it has ended, shows the result; fails when it
    /// failed (the last reading is still shown, with its age).
    static func probeAndShow(_ options: GlobalOptions) throws(FleetClientError) -> Exit {
        let (accepted, _) = try CLI.call(
            "POST", "/v1/quota/probe", body: Data("{}".utf8), options, as: ProbeAccepted.self)
        let deadline = monotonicSeconds() + max(options.timeout, probeWait)
        while true {
            let (status, _) = try CLI.call("GET", "/v1/quota", body: nil, options, as: QuotaStatus.self)
            if status.probesCompleted >= accepted.probe {
                show(status, options)
                if status.lastProbeOk == false {
                    writeErr(
                        "fleetctl: probe \(accepted.probe) failed: \(status.lastError ?? "unknown error")\n")
                    return .failed
                }
                return .ok
            }
            guard monotonicSeconds() < deadline else {
                writeErr(
                    "fleetctl: probe \(accepted.probe) did not finish within"
                        + " \(formatDuration(max(options.timeout, probeWait)))\n"
                )
                return .timeout
            }
            usleep(200_000)
        }
    }

    static func show(_ status: QuotaStatus, _ options: GlobalOptions) {
        if options.json {
            CLI.printJSON(status)
        } else {
            print(render(status))
        }
    }

    static func render(_ q: QuotaStatus, now: Date = Date()) -> String {
        var lines: [String] = []
        if let r = q.reading {
            let reset = r.resetsAt.map { ", resets \(Timestamp.iso8601($0))" } ?? ""
            lines.append(
                "quota \(r.pct)% remaining, checked \(age(r.checkedAt, now: now) ?? "-") ago"
                    + " (\(r.source))\(reset)"
            )
            if let detail = r.detail { lines.append("  \(detail)") }
        } else {
            lines.append("quota: no reading yet")
        }

        var probe = "probe \(q.probe)"
        if q.probe != "off" {
            probe +=
                ": every \(formatDuration(q.intervalSeconds)), max_age \(formatDuration(q.maxAgeSeconds))"
            probe += ", min_probe_gap \(formatDuration(q.minProbeGapSeconds))"
            if q.probing {
                probe += ", probing now"
            } else if let next = q.nextProbeAt {
                probe += ", next \(Timestamp.iso8601(next))"
            }
        }
        probe += "; \(q.probesCompleted) probes, \(q.probesFailed) failed"
        if let cap = q.jobsPerWindow { probe += "; jobs_per_window \(cap)" }
        lines.append(probe)
        if let error = q.lastError, let at = q.lastErrorAt {
            lines.append("last error \(Timestamp.iso8601(at)) (\(age(at, now: now) ?? "-") ago): \(error)")
        }

        var table = Table(header: ["SLOT", "FLOOR", "GATE", "STATE", "RESUMES", "JOBS", "REASON"])
        for s in q.slots {
            table.add([
                s.name, "\(s.floor)", s.gate, s.state.rawValue, s.resumesAt.map(Timestamp.iso8601),
                "\(s.jobsInWindow)", s.reason,
            ])
        }
        lines.append(table.render())
        if q.stale {
            lines.append(
                "STALE: no slot claims a job until a fresh reading arrives"
                    + " (max_age \(formatDuration(q.maxAgeSeconds)))"
            )
        }
        return lines.joined(separator: "\n")
    }
}
