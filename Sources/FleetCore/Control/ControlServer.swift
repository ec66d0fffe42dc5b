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
import Synchronization

/// Who is on the other end of a control connection.
public struct Peer: Sendable {
    public var uid: uid_t
    public var pid: pid_t
    /// Root and the daemon's own user may change things; others may only read.
    public var mayWrite: Bool
}

/// Why the control socket could not be served.
public enum ControlServerError: Error, CustomStringConvertible {
    /// Another daemon answers on the socket.
    case socketInUse(String)
    /// Something that is not a socket sits at the path.
    case notASocket(String)
    case system(SystemError)

    public var description: String {
        switch self {
        case .socketInUse(let path):
            "another fleetd is already answering on \(path); stop it first (fleetctl --socket \(path) status)"
        case .notASocket(let path):
            "\(path) exists and is not a socket; remove it or set fleet.socket to another path"
        case .system(let error): "\(error)"
        }
    }
}

/// The HTTP/1.1 server on the control socket: one request per connection, bounded in
/// size, count and time, so that no client (slow, hostile or broken) can stall it.
public final class ControlServer: @unchecked Sendable {
    public typealias Handler = @Sendable (HTTPRequest, Peer) -> HTTPResponse

    public let path: String
    private let handler: Handler
    private let logger: Logger
    private let limits: HTTPLimits
    private let timeout: Double
    private let maxConnections: Int
    private let readGroup: gid_t?
    private let active = Mutex(0)
    private let listenFD = Mutex<Int32>(-1)

    public init(
        path: String, logger: Logger, limits: HTTPLimits = HTTPLimits(), timeout: Double = 5,
        maxConnections: Int = 64, readGroup: gid_t? = nil, handler: @escaping Handler
    ) {
        self.path = path
        self.logger = logger
        self.limits = limits
        self.timeout = timeout
        self.maxConnections = maxConnections
        self.readGroup = readGroup
        self.handler = handler
    }

    /// Binds the socket (replacing a stale one) and starts accepting on a thread.
    public func start() throws(ControlServerError) {
        let dir = directoryOf(path)
        let dirMode: mode_t = readGroup == nil ? 0o700 : 0o750
        try makeDirectory(dir, mode: dirMode)
        try removeStaleSocket()

        let fd: Int32
        do {
            fd = try UnixSocket.listen(path: path, mode: readGroup == nil ? 0o600 : 0o660)
        } catch {
            throw .system(error)
        }
        if let group = readGroup {
            // Readers reach the socket through its directory: both belong to the group.
            _ = chown(dir, getuid(), group)
            _ = chmod(dir, dirMode)
            _ = chown(path, getuid(), group)
        }
        listenFD.withLock { $0 = fd }
        startThread { [self] in acceptLoop(fd) }
    }

    /// Stops accepting and removes the socket file.
    public func stop() {
        let fd = listenFD.withLock { fd -> Int32 in
            defer { fd = -1 }
            return fd
        }
        guard fd >= 0 else { return }
        unlink(path)
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func makeDirectory(_ dir: String, mode: mode_t) throws(ControlServerError) {
        var st = stat()
        if stat(dir, &st) == 0 { return }
        // Create missing parents with the same restrictive mode.
        let parent = directoryOf(dir)
        if parent != dir && parent != "/" && parent != "." { try makeDirectory(parent, mode: mode) }
        if mkdir(dir, mode) != 0 && errno != EEXIST { throw .system(lastError("mkdir \(dir)")) }
    }

    private func removeStaleSocket() throws(ControlServerError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw .notASocket(path) }
        if let fd = try? UnixSocket.connect(path: path, timeout: 1) {
            close(fd)
            throw .socketInUse(path)
        }
        unlink(path)
    }

    private func acceptLoop(_ fd: Int32) {
        while true {
            let conn = fleet_accept_cloexec(fd)
            if conn < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if errno == EMFILE || errno == ENFILE {
                    logger.warning("control accept failed", ("error", String(cString: strerror(errno))))
                    usleep(100_000)
                    continue
                }
                return  // closed by stop()
            }
            let admitted = active.withLock { n -> Bool in
                guard n < maxConnections else { return false }
                n += 1
                return true
            }
            guard admitted else {
                send(conn, errorResponse(503, "too many connections"))
                close(conn)
                continue
            }
            startThread { [self] in
                serve(conn)
                close(conn)
                active.withLock { $0 -= 1 }
            }
        }
    }

    private func send(_ conn: Int32, _ response: HTTPResponse) {
        var response = response
        response.headers.append(("Fleet-Version", fleetVersion))
        guard UnixSocket.writeAll(conn, response.serialized()), let stream = response.stream else { return }
        // A long-lived stream: writes must not stall forever on a frozen client.
        UnixSocket.setTimeouts(conn, seconds: timeout)
        stream { bytes in UnixSocket.writeAll(conn, bytes) }
    }

    private func serve(_ conn: Int32) {
        UnixSocket.setTimeouts(conn, seconds: timeout)
        var uid: uid_t = 0
        var pid: pid_t = 0
        guard fleet_peer_uid(conn, &uid, &pid) == 0 else { return }
        let mayWrite = uid == 0 || uid == getuid()
        if !mayWrite && !(readGroup.map { isMember(uid: uid, of: $0) } ?? false) {
            send(conn, errorResponse(403, "uid \(uid) may not use this socket"))
            return
        }
        let peer = Peer(uid: uid, pid: pid, mayWrite: mayWrite)

        let deadline = monotonicSeconds() + timeout
        var buffer: [UInt8] = []
        while true {
            do {
                if let request = try HTTPParser.parseRequest(buffer, limits: limits) {
                    send(conn, handler(request, peer))
                    return
                }
            } catch {
                send(conn, errorResponse(error.status, error.message))
                return
            }
            guard monotonicSeconds() < deadline else {
                send(conn, errorResponse(408, "request not complete within \(Int(timeout)) s"))
                return
            }
            let n = UnixSocket.read(conn, into: &buffer)
            if n == 0 {
                if !buffer.isEmpty {
                    send(conn, errorResponse(400, "request truncated"))
                }
                return
            }
            if n < 0 {
                send(conn, errorResponse(408, "request not complete within \(Int(timeout)) s"))
                return
            }
        }
    }
}

/// True when the user `uid` belongs to group `gid` (primary or supplementary).
func isMember(uid: uid_t, of gid: gid_t) -> Bool {
    guard let pw = getpwuid(uid) else { return false }
    if pw.pointee.pw_gid == gid { return true }
    var count: Int32 = 64
    var groups = [gid_t](repeating: 0, count: Int(count))
    #if canImport(Glibc)
    guard getgrouplist(pw.pointee.pw_name, pw.pointee.pw_gid, &groups, &count) >= 0 else { return false }
    return groups.prefix(Int(count)).contains(gid)
    #else
    var ints = groups.map { Int32(bitPattern: $0) }
    guard getgrouplist(pw.pointee.pw_name, Int32(bitPattern: pw.pointee.pw_gid), &ints, &count) >= 0 else {
        return false
    }
    return ints.prefix(Int(count)).contains(Int32(bitPattern: gid))
    #endif
}

/// A JSON error answer.
public func errorResponse(_ status: Int, _ message: String, hint: String? = nil) -> HTTPResponse {
    let body = (try? API.encoder().encode(APIError(error: message, hint: hint))) ?? Data()
    return HTTPResponse(
        status: status, headers: [("Content-Type", "application/json")],
        body: Array(body))
}

/// A JSON answer.
public func jsonResponse<T: Encodable>(_ value: T, status: Int = 200) -> HTTPResponse {
    do {
        var body = try API.encoder(pretty: true).encode(value)
        body.append(10)
        return HTTPResponse(
            status: status, headers: [("Content-Type", "application/json")], body: Array(body))
    } catch {
        return errorResponse(500, "encode response: \(error)")
    }
}
