#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import Synchronization
import WorkerSlot

/// The control API: one route table; each handler returns a response.
struct Routes: Sendable {
    let supervisor: Supervisor

    typealias Handler = @Sendable (HTTPRequest) throws(APIFailure) -> HTTPResponse

    /// A handler's refusal: status and message (and a hint where a fix is known).
    struct APIFailure: Error {
        var status: Int
        var message: String
        var hint: String?
    }

    struct Route {
        var method: String
        var path: String
        /// Changes something: only root and the daemon's user may call it.
        var mutates: Bool
        var handler: Handler
    }

    var table: [Route] {
        [
            Route(method: "GET", path: "/v1/status", mutates: false) { _ in jsonResponse(supervisor.status())
            },
            Route(method: "GET", path: "/v1/health", mutates: false) { _ in health() },
            Route(method: "GET", path: "/v1/version", mutates: false) { _ in
                jsonResponse(["version": fleetVersion])
            },
            Route(method: "GET", path: "/v1/jobs", mutates: false) { r throws(APIFailure) in try jobs(r) },
            Route(method: "GET", path: "/v1/events", mutates: false) { r throws(APIFailure) in try events(r)
            },
            Route(method: "GET", path: "/v1/logs", mutates: false) { r throws(APIFailure) in try logs(r) },
            Route(method: "GET", path: "/metrics", mutates: false) { _ in metrics() },
            Route(method: "GET", path: "/v1/quota", mutates: false) { _ in jsonResponse(quotaStatus()) },
            Route(method: "POST", path: "/v1/quota/probe", mutates: true) { _ throws(APIFailure) in
                try probeQuota()
            },
            Route(method: "POST", path: "/v1/drain", mutates: true) { r throws(APIFailure) in
                let names = try slotNames(try decode(SlotsRequest.self, r))
                supervisor.drain(names)
                return jsonResponse(
                    ActionResult(
                        ok: true, slots: names, message: "draining: running jobs finish, no new ones start"))
            },
            Route(method: "POST", path: "/v1/undrain", mutates: true) { r throws(APIFailure) in
                let names = try slotNames(try decode(SlotsRequest.self, r))
                supervisor.undrain(names)
                return jsonResponse(ActionResult(ok: true, slots: names))
            },
            Route(method: "POST", path: "/v1/restart", mutates: true) { r throws(APIFailure) in
                let request = try decode(RestartRequest.self, r)
                _ = try slotNames(SlotsRequest(slots: [request.slot], all: false))
                supervisor.restart(request.slot, now: request.now)
                let message =
                    request.now ? "restarting now; its job is released" : "restarting after its current job"
                return jsonResponse(ActionResult(ok: true, slots: [request.slot], message: message))
            },
            Route(method: "POST", path: "/v1/scale", mutates: true) { r throws(APIFailure) in
                let request = try decode(ScaleRequest.self, r)
                let configured = supervisor.slotNames.count
                guard (0...configured).contains(request.slots) else {
                    throw APIFailure(
                        status: 409,
                        message: "cannot scale to \(request.slots): \(configured) slots are configured",
                        hint: "add [[slot]] entries (or raise a template's count) and reload the config")
                }
                guard let result = supervisor.scale(to: request.slots) else {
                    throw APIFailure(status: 409, message: "the fleet is stopping; nothing starts now")
                }
                return jsonResponse(result)
            },
            Route(method: "POST", path: "/v1/requeue", mutates: true) { r throws(APIFailure) in
                let request = try decode(RequeueRequest.self, r)
                guard let result = supervisor.requeue(request.job) else {
                    throw APIFailure(
                        status: 404, message: "no slot of this fleet is working on job \(request.job)",
                        hint: "fleetctl status lists the jobs in progress")
                }
                return jsonResponse(result)
            },
        ]
    }

    /// Dispatches a request: 404 for an unknown path, 405 for a wrong method, 403 for a
    /// reader asking to act; logs mutations at notice, reads at debug.
    func handle(_ request: HTTPRequest, _ peer: Peer) -> HTTPResponse {
        let matches = table.filter { $0.path == request.path }
        guard !matches.isEmpty else { return errorResponse(404, "no route \(request.path)") }
        guard let route = matches.first(where: { $0.method == request.method }) else {
            var response = errorResponse(405, "\(request.method) not allowed on \(request.path)")
            response.headers.append(("Allow", matches.map(\.method).joined(separator: ", ")))
            return response
        }
        if route.mutates && !peer.mayWrite {
            return errorResponse(
                403, "uid \(peer.uid) may only read", hint: "run fleetctl as the daemon's user or root")
        }
        let response: HTTPResponse
        do {
            response = try route.handler(request)
        } catch {
            response = errorResponse(error.status, error.message, hint: error.hint)
        }
        supervisor.logger.log(
            route.mutates ? .notice : .debug, "control request",
            [
                ("method", request.method), ("path", request.path), ("status", response.status),
                ("uid", peer.uid),
            ])
        return response
    }

    private func decode<T: Decodable>(_ type: T.Type, _ request: HTTPRequest) throws(APIFailure) -> T {
        do {
            return try API.decoder().decode(T.self, from: Data(request.body))
        } catch {
            throw APIFailure(
                status: 400, message: "bad request body for \(request.path): expected JSON \(T.self)")
        }
    }

    private func slotNames(_ request: SlotsRequest) throws(APIFailure) -> [String] {
        if request.all { return supervisor.runningNames }
        guard !request.slots.isEmpty else {
            throw APIFailure(status: 400, message: "name a slot or pass all")
        }
        for name in request.slots where supervisor.slot(named: name) == nil {
            throw APIFailure(
                status: 404, message: "no slot \(name)",
                hint: "configured slots: \(supervisor.slotNames.joined(separator: ", "))")
        }
        return request.slots
    }

    /// Followers at once: streams may take at most this many of the server's
    /// connections, so that status, health and drain always get through.
    static let maxStreams = 16
    private static let streams = Mutex(0)

    static func admitStream() throws(APIFailure) {
        let admitted = streams.withLock { n -> Bool in
            guard n < maxStreams else { return false }
            n += 1
            return true
        }
        if !admitted {
            throw APIFailure(status: 503, message: "too many followers (\(maxStreams)); try again later")
        }
    }

    static func endStream() { streams.withLock { $0 -= 1 } }

    /// `limit` from the query, clamped to 1...10,000 (never trusted as given).
    private func queryLimit(_ request: HTTPRequest, default value: Int) -> Int {
        max(1, min(request.query["limit"].flatMap(Int.init) ?? value, 10_000))
    }

    private func health() -> HTTPResponse {
        let status = supervisor.status()
        let bad = status.slots.filter { $0.state == .failed || $0.state == .tokenRejected }
        let body = HealthStatus(ok: bad.isEmpty, unhealthy: bad.map { "\($0.name): \($0.state.rawValue)" })
        return jsonResponse(body, status: bad.isEmpty ? 200 : 503)
    }

    private func jobs(_ request: HTTPRequest) throws(APIFailure) -> HTTPResponse {
        do {
            return jsonResponse(try supervisor.context.store.jobs(limit: queryLimit(request, default: 100)))
        } catch {
            throw APIFailure(status: 500, message: "read jobs: \(error)")
        }
    }

    /// Events after `after` (an id); with `follow`, a stream of NDJSON lines and a blank
    /// keep-alive line every second, so a client notices a dead daemon.
    private func events(_ request: HTTPRequest) throws(APIFailure) -> HTTPResponse {
        let store = supervisor.context.store
        var after = request.query["after"].flatMap(Int64.init) ?? 0
        if request.query["follow"] == nil {
            do {
                return jsonResponse(
                    try store.latestEvents(after: after, limit: queryLimit(request, default: 100)))
            } catch {
                throw APIFailure(status: 500, message: "read events: \(error)")
            }
        }
        // A new follower first gets the last few events, then the live ones.
        if after == 0, let first = try? store.latestEvents(limit: queryLimit(request, default: 10)).first?.id
        {
            after = first - 1
        }
        let start = after
        try Routes.admitStream()
        return HTTPResponse(streaming: "application/x-ndjson") { write in
            defer { Routes.endStream() }
            var cursor = start
            let pause = Signal()
            var quiet = 0.0
            while true {
                let batch = (try? store.events(after: cursor, limit: 500)) ?? []
                for event in batch {
                    guard var line = try? API.encoder().encode(event) else { continue }
                    line.append(10)
                    guard write(Array(line)) else { return }
                    cursor = event.id
                }
                if batch.isEmpty {
                    quiet += 0.2
                    if quiet >= 1 {
                        quiet = 0
                        guard write([10]) else { return }
                    }
                    pause.wait(seconds: 0.2)
                }
            }
        }
    }

    /// A slot's server log or a job's agent log: the tail, or a stream with `follow`.
    private func logs(_ request: HTTPRequest) throws(APIFailure) -> HTTPResponse {
        let context = supervisor.context
        let path: String
        if let slot = request.query["slot"] {
            guard supervisor.slot(named: slot) != nil else {
                throw APIFailure(status: 404, message: "no slot \(slot)")
            }
            path = "\(context.serverLogDir)/\(slot).log"
        } else if let job = request.query["job"] {
            // Job ids name files: accept nothing that could leave the directory.
            guard !job.isEmpty, job.count <= 128,
                job.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
            else {
                throw APIFailure(status: 400, message: "not a job id")
            }
            path = "\(context.jobLogDir)/\(job).log"
        } else {
            throw APIFailure(status: 400, message: "name a slot or a job")
        }
        guard let tail = LogTail(path: path) else {
            throw APIFailure(status: 404, message: "no log yet at \(path)")
        }
        let bytes = max(0, min(request.query["bytes"].flatMap(Int.init) ?? 65536, 16 << 20))
        if request.query["follow"] == nil {
            return HTTPResponse(
                status: 200, headers: [("Content-Type", "text/plain; charset=utf-8")], body: tail.last(bytes))
        }
        try Routes.admitStream()
        return HTTPResponse(streaming: "application/x-ndjson") { write in
            defer { Routes.endStream() }
            tail.follow(from: bytes, write: write)
        }
    }

    /// Prometheus text format: slots by state, jobs by outcome, quota, restarts.
    private func metrics() -> HTTPResponse {
        let status = supervisor.status()
        var out = ""
        func metric(_ name: String, _ help: String, _ type: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in samples {
                let number = value == value.rounded() ? String(Int64(value)) : String(value)
                out += "\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(number)\n"
            }
        }
        let byState = Dictionary(grouping: status.slots, by: \.state)
        metric(
            "fleet_slots", "Configured slots by actual state.", "gauge",
            SlotState.allCases.map { ("state=\"\($0.rawValue)\"", Double(byState[$0]?.count ?? 0)) })
        let counts = (try? supervisor.context.store.jobCounts()) ?? [:]
        metric(
            "fleet_jobs_total", "Jobs this fleet claimed, by outcome.", "counter",
            counts.keys.sorted().map { ("outcome=\"\($0)\"", Double(counts[$0]!)) })
        metric(
            "fleet_slot_restarts_total", "Restarts of each slot's server connection.", "counter",
            status.slots.map { ("slot=\"\($0.name)\"", Double($0.restarts)) })
        if let quota = status.quota {
            metric(
                "fleet_quota_remaining_percent", "Latest quota reading, percent remaining.", "gauge",
                [("", Double(quota.pct))])
            metric(
                "fleet_quota_probe_age_seconds", "Age of the latest quota reading.", "gauge",
                [("", max(0, Date().timeIntervalSince(quota.checkedAt)).rounded())])
        }
        metric(
            "fleet_log_write_failures_total", "Log lines fleetd could not write (full disk).", "counter",
            [("", Double(supervisor.logger.failedWrites))])
        return HTTPResponse(
            status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(out.utf8))
    }
}
