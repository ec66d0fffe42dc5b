#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import WorkerSlot

/// The control API: one route table; each handler returns a response.
struct Routes: Sendable {
    let supervisor: Supervisor

    typealias Handler = @Sendable (HTTPRequest, Peer) -> HTTPResponse

    /// (method, path, needs write access, handler)
    var table: [(String, String, Bool, Handler)] {
        [
            ("GET", "/v1/status", false, { _, _ in jsonResponse(supervisor.status()) }),
            ("GET", "/v1/health", false, { _, _ in health() }),
            ("GET", "/v1/version", false, { _, _ in jsonResponse(["version": fleetVersion]) }),
            ("GET", "/v1/jobs", false, { request, _ in jobs(request) }),
        ]
    }

    /// Dispatches a request: 404 for an unknown path, 405 for a wrong method, 403 for a
    /// reader asking to act.
    func handle(_ request: HTTPRequest, _ peer: Peer) -> HTTPResponse {
        let matches = table.filter { $0.1 == request.path }
        guard !matches.isEmpty else { return errorResponse(404, "no route \(request.path)") }
        guard let route = matches.first(where: { $0.0 == request.method }) else {
            var response = errorResponse(405, "\(request.method) not allowed on \(request.path)")
            response.headers.append(("Allow", matches.map(\.0).joined(separator: ", ")))
            return response
        }
        if route.2 && !peer.mayWrite {
            return errorResponse(403, "uid \(peer.uid) may only read", hint: "run fleetctl as the daemon's user or root")
        }
        let response = route.3(request, peer)
        let level: LogLevel = route.2 ? .notice : .debug
        supervisor.logger.log(level, "control request", [("method", request.method), ("path", request.path), ("status", response.status), ("uid", peer.uid)])
        return response
    }

    private func health() -> HTTPResponse {
        let status = supervisor.status()
        let bad = status.slots.filter { $0.state == .failed || $0.state == .tokenRejected }
        let body = HealthStatus(ok: bad.isEmpty, unhealthy: bad.map { "\($0.name): \($0.state.rawValue)" })
        return jsonResponse(body, status: bad.isEmpty ? 200 : 503)
    }

    private func jobs(_ request: HTTPRequest) -> HTTPResponse {
        let limit = request.query["limit"].flatMap(Int.init) ?? 100
        do {
            return jsonResponse(try supervisor.context.store.jobs(limit: max(1, min(limit, 10_000))))
        } catch {
            return errorResponse(500, "read jobs: \(error)")
        }
    }
}
