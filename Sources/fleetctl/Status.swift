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

/// `fleetctl status`: the fleet, its quota and one line per slot.
enum Status {
    static func run(_ options: GlobalOptions, _ args: [String]) -> Exit {
        var watch: Double?
        var rest = args[...]
        while let arg = rest.popFirst() {
            switch arg {
            case "--watch", "-w":
                watch = 2
                if let next = rest.first, let seconds = Double(next), seconds > 0 {
                    watch = seconds
                    rest.removeFirst()
                }
            default: CLI.usageError("status: unknown argument \(arg)")
            }
        }
        if let watch { return Status.watch(options, every: watch) }
        do {
            let (status, _) = try CLI.call("GET", "/v1/status", body: nil, options, as: FleetStatus.self)
            show(status, options)
            return .ok
        } catch {
            let code = CLI.report(error)
            if code == .notRunning {
                if let offline = offlineStatus(options) {
                    show(offline, options)
                } else {
                    // No database either: say so, and keep --json parseable.
                    writeErr(
                        "fleetctl: no state database at \(stateDatabasePath(options)); nothing recorded yet\n"
                    )
                    if options.json {
                        let info = FleetInfo(
                            name: CLI.loadConfig(options)?.fleet.name ?? "-", version: "-", pid: 0,
                            startedAt: Date(timeIntervalSince1970: 0), desiredSlots: 0, runningSlots: 0,
                            configuredSlots: 0, jobsDone: 0, jobsFailed: 0)
                        CLI.printJSON(FleetStatus(fleet: info, quota: nil, slots: [], offline: true))
                    }
                }
            }
            return code
        }
    }

    /// A live view: clears the screen and redraws until interrupted or the daemon fails.
    static func watch(_ options: GlobalOptions, every seconds: Double) -> Exit {
        while true {
            do {
                let (status, _) = try CLI.call("GET", "/v1/status", body: nil, options, as: FleetStatus.self)
                if options.json {
                    CLI.printJSON(status)
                } else {
                    print(
                        "\u{1B}[H\u{1B}[2J" + render(status)
                            + "\n\n(every \(formatDuration(seconds)); Ctrl-C to stop)")
                }
                fflush(nil)
            } catch {
                return CLI.report(error)
            }
            usleep(UInt32(seconds * 1_000_000))
        }
    }

    static func show(_ status: FleetStatus, _ options: GlobalOptions) {
        if options.json {
            CLI.printJSON(status)
        } else {
            print(render(status))
        }
    }

    static func stateDatabasePath(_ options: GlobalOptions) -> String {
        (CLI.loadConfig(options)?.fleet.stateDir ?? DefaultPaths.stateDir) + "/fleet.db"
    }

    /// The last state from the database, read-only, when the daemon is down.
    static func offlineStatus(_ options: GlobalOptions) -> FleetStatus? {
        let path = stateDatabasePath(options)
        guard FileManager.default.fileExists(atPath: path), let store = try? Store(readOnlyPath: path) else {
            return nil
        }
        let rows = (try? store.slots()) ?? []
        let counts = (try? store.jobCounts()) ?? [:]
        let bySlot = (try? store.jobCountsBySlot()) ?? [:]
        let slots = rows.map { row in
            SlotStatus(
                name: row.name, desired: row.desired, state: row.state, instanceId: row.instanceId,
                job: row.jobId.map { JobRef(id: $0, kind: "-", since: row.since ?? Date()) },
                restarts: row.restarts, lastError: row.lastError, quotaFloor: row.quotaFloor,
                lastHeartbeat: row.lastHeartbeat, jobsDone: bySlot[row.name]?["done"] ?? 0,
                jobsFailed: bySlot[row.name]?["failed"] ?? 0, since: row.since)
        }
        let info = FleetInfo(
            name: CLI.loadConfig(options)?.fleet.name ?? "-", version: "-", pid: 0,
            startedAt: Date(timeIntervalSince1970: 0), desiredSlots: 0, runningSlots: 0,
            configuredSlots: rows.count, jobsDone: counts["done"] ?? 0, jobsFailed: counts["failed"] ?? 0)
        return FleetStatus(fleet: info, quota: try? store.latestQuota(), slots: slots, offline: true)
    }

    static func render(_ status: FleetStatus) -> String {
        var lines: [String] = []
        let f = status.fleet
        if status.offline == true {
            lines.append("OFFLINE: fleetd is not running; last recorded state from the database")
        } else {
            let slots = "slots \(f.runningSlots)/\(f.desiredSlots) of \(f.configuredSlots)"
            let jobs = "jobs done \(f.jobsDone) failed \(f.jobsFailed)"
            lines.append(
                "fleet \(f.name)  version \(f.version)  pid \(f.pid)  up \(age(f.startedAt) ?? "-")  \(slots)  \(jobs)"
            )
        }
        if let q = status.quota {
            let reset = q.resetsAt.map { "  resets \(Timestamp.iso8601($0))" } ?? ""
            lines.append("quota \(q.pct)% remaining (\(q.source), \(age(q.checkedAt) ?? "-") ago)\(reset)")
        }
        var table = Table(header: [
            "SLOT", "STATE", "DESIRED", "JOB", "KIND", "FOR", "RESUMES", "DONE", "FAILED", "RESTARTS",
            "HEARTBEAT", "ERROR",
        ])
        for s in status.slots {
            table.add([
                s.name, s.state.rawValue, s.desired.rawValue, s.job?.id, s.job?.kind,
                age(s.job?.since ?? s.since), s.resumesAt.map(Timestamp.iso8601), "\(s.jobsDone)",
                "\(s.jobsFailed)", "\(s.restarts)",
                age(s.lastHeartbeat).map { "\($0) ago" }, s.lastError.map { String($0.prefix(60)) },
            ])
        }
        lines.append(table.render())
        // Warnings after the table, so that the table stays parseable.
        if f.loggingDegraded == true {
            lines.append(
                "warning: logging is degraded (\(f.logWriteFailures ?? 0) writes failed; is the log disk full?)"
            )
        }
        for s in status.slots {
            for path in s.dirtyWorktrees ?? [] {
                lines.append("warning: \(s.name) keeps a dirty worktree with uncommitted work: \(path)")
            }
        }
        for s in status.slots where s.state == .standby {
            let until = s.resumesAt.map(Timestamp.iso8601) ?? "-"
            lines.append("\(s.name): standby until \(until): \(s.standbyReason ?? "below its quota floor")")
        }
        return lines.joined(separator: "\n")
    }
}

/// `fleetctl jobs`: jobs this fleet claimed.
enum Jobs {
    static func run(_ options: GlobalOptions, _ args: [String]) -> Exit {
        do {
            var limit = 100
            if let i = args.firstIndex(of: "--limit"), i + 1 < args.count, let n = Int(args[i + 1]) {
                limit = n
            }
            let (jobs, _) = try CLI.call(
                "GET", "/v1/jobs?limit=\(limit)", body: nil, options, as: [JobRecord].self)
            if options.json {
                CLI.printJSON(jobs)
            } else {
                var table = Table(header: ["JOB", "SLOT", "KIND", "OUTCOME", "CLAIMED", "ERROR"])
                for j in jobs {
                    table.add([
                        j.id, j.slot, j.kind, j.outcome, age(j.claimedAt).map { "\($0) ago" },
                        j.error.map { String($0.prefix(60)) },
                    ])
                }
                print(table.render())
            }
            return .ok
        } catch {
            return CLI.report(error)
        }
    }
}

/// `fleetctl health`: for a container HEALTHCHECK.
enum Health {
    static func run(_ options: GlobalOptions, _ args: [String]) -> Exit {
        do {
            let response = try CLI.send("GET", "/v1/health", options)
            let health = try? API.decoder().decode(HealthStatus.self, from: Data(response.body))
            if options.json {
                print(String(decoding: response.body, as: UTF8.self), terminator: "")
            } else if let health {
                print(health.ok ? "ok" : "unhealthy: " + health.unhealthy.joined(separator: ", "))
            }
            return health?.ok == true ? .ok : .failed
        } catch {
            return CLI.report(error)
        }
    }
}

/// `fleetctl version`.
enum Version {
    static func run(_ options: GlobalOptions, _ args: [String]) -> Exit {
        var daemon: String?
        if let (v, _) = try? CLI.client(options).call("GET", "/v1/version", as: [String: String].self) {
            daemon = v["version"]
        }
        if options.json {
            CLI.printJSON(["fleetctl": fleetVersion, "fleetd": daemon ?? ""])
        } else {
            print("fleetctl \(fleetVersion)")
            print("fleetd   \(daemon ?? "not running")")
        }
        return .ok
    }
}
