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

/// Why a control call failed, mapped to `fleetctl`'s exit codes.
public enum FleetClientError: Error, CustomStringConvertible {
    /// Nobody listens on the socket (exit 3).
    case notRunning(path: String, reason: String)
    /// The daemon accepted but did not answer in time (exit 4).
    case timeout(path: String, seconds: Double)
    /// The answer could not be read.
    case badResponse(String)
    /// The socket exists but this user may not use it.
    case denied(path: String)
    /// The daemon answered with an error status.
    case server(status: Int, APIError)

    public var description: String {
        switch self {
        case .notRunning(let path, let reason): "fleetd is not running (\(path): \(reason))"
        case .timeout(let path, let seconds):
            "fleetd did not answer within \(formatDuration(seconds)) on \(path)"
        case .badResponse(let why): "unreadable answer from fleetd: \(why)"
        case .denied(let path): "permission denied on \(path)"
        case .server(_, let error): error.error
        }
    }
}

/// The control API's client: plain HTTP/1.1 over the Unix socket, no libcurl.
public struct FleetClient: Sendable {
    public var socketPath: String
    public var timeout: Double

    public init(socketPath: String, timeout: Double = 5) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// Sends one request and reads the whole answer, within `timeout` overall.
    public func send(_ method: String, _ path: String, body: Data? = nil) throws(FleetClientError)
        -> HTTPResponse
    {
        let deadline = monotonicSeconds() + timeout
        let fd: Int32
        do {
            fd = try UnixSocket.connect(path: socketPath, timeout: timeout)
        } catch {
            if error.errno == EAGAIN || error.errno == ETIMEDOUT {
                throw .timeout(path: socketPath, seconds: timeout)
            }
            if error.errno == EACCES || error.errno == EPERM { throw .denied(path: socketPath) }
            throw .notRunning(path: socketPath, reason: String(cString: strerror(error.errno)))
        }
        defer { close(fd) }

        var head = "\(method) \(path) HTTP/1.1\r\nHost: fleetd\r\nUser-Agent: fleetctl/\(fleetVersion)\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "Connection: close\r\n\r\n"
        // A daemon that refuses us may answer and close before reading the request:
        // a failed write is not the end, the answer may be waiting.
        let wrote = UnixSocket.writeAll(fd, Array(head.utf8) + Array(body ?? Data()))

        var buffer: [UInt8] = []
        while true {
            let left = deadline - monotonicSeconds()
            guard left > 0 else { throw .timeout(path: socketPath, seconds: timeout) }
            UnixSocket.setTimeouts(fd, seconds: left)
            let n = UnixSocket.read(fd, into: &buffer)
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw .timeout(path: socketPath, seconds: timeout)
                }
                if !wrote && buffer.isEmpty {
                    throw .badResponse("connection closed before the request was sent")
                }
                throw .badResponse(String(cString: strerror(errno)))
            }
            if let response = HTTPParser.parseResponse(buffer),
                n == 0 || response.header("content-length") != nil
            {
                return response
            }
            if n == 0 { throw .badResponse("connection closed mid-answer") }
        }
    }

    /// Calls the API and decodes the JSON answer, mapping error statuses.
    public func call<T: Decodable>(_ method: String, _ path: String, body: Data? = nil, as type: T.Type)
        throws(FleetClientError) -> (T, HTTPResponse)
    {
        let response = try send(method, path, body: body)
        let data = Data(response.body)
        guard (200..<300).contains(response.status) else {
            let error =
                (try? API.decoder().decode(APIError.self, from: data))
                ?? APIError(error: "HTTP \(response.status)")
            throw .server(status: response.status, error)
        }
        do {
            return (try API.decoder().decode(T.self, from: data), response)
        } catch {
            throw .badResponse("\(error)")
        }
    }

    /// Reads a streamed answer line by line until the daemon closes it or `onLine`
    /// returns false. Each read waits at most `timeout`: the daemon sends a blank line
    /// every second, so silence longer than that means it is dead or frozen.
    public func stream(_ path: String, onLine: (String) -> Bool) throws(FleetClientError) {
        let fd: Int32
        do {
            fd = try UnixSocket.connect(path: socketPath, timeout: timeout)
        } catch {
            if error.errno == EACCES || error.errno == EPERM { throw .denied(path: socketPath) }
            throw .notRunning(path: socketPath, reason: String(cString: strerror(error.errno)))
        }
        defer { close(fd) }
        let head =
            "GET \(path) HTTP/1.1\r\nHost: fleetd\r\nUser-Agent: fleetctl/\(fleetVersion)\r\nConnection: close\r\n\r\n"
        guard UnixSocket.writeAll(fd, Array(head.utf8)) else {
            throw .timeout(path: socketPath, seconds: timeout)
        }

        var buffer: [UInt8] = []
        var headerDone = false
        while true {
            let n = UnixSocket.read(fd, into: &buffer)
            if n < 0 { throw .timeout(path: socketPath, seconds: timeout) }
            if !headerDone {
                guard let end = HTTPParser.find(HTTPParser.crlfcrlf, in: buffer) else {
                    if n == 0 { throw .badResponse("connection closed before the answer") }
                    continue
                }
                let response = HTTPParser.parseResponse(Array(buffer[0..<(end + 4)]) + [])
                let status = response?.status ?? 0
                if status != 200 {
                    // An error answer has a Content-Length body: read it whole.
                    var rest = Array(buffer[(end + 4)...])
                    while UnixSocket.read(fd, into: &rest) > 0 {}
                    let error =
                        (try? API.decoder().decode(APIError.self, from: Data(rest)))
                        ?? APIError(error: "HTTP \(status)")
                    throw .server(status: status, error)
                }
                buffer.removeSubrange(0..<(end + 4))
                headerDone = true
            }
            while let newline = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                if line.isEmpty { continue }  // keep-alive
                if !onLine(line) { return }
            }
            if n == 0 { return }
        }
    }
}
