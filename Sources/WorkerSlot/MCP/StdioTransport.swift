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
import Synchronization

/// MCP over a child's stdin and stdout, one JSON message a line.
///
/// A reader thread routes each response to the caller waiting on its id, so that
/// several calls (a long `wait_for_job` and a `worker_heartbeat`) share one server.
public final class StdioTransport: MCPTransport, @unchecked Sendable {
    /// The server process.
    public let child: Child
    private let input: Int32
    private let writeLock = Mutex(())

    private final class Waiter: Sendable {
        let signal = Signal()
        let response = Mutex<JSONValue?>(nil)
    }

    private struct State {
        var waiters: [Int: Waiter] = [:]
        var closedReason: String?
        var inputClosed = false
    }

    private let state = Mutex(State())

    /// Starts the server; its stderr goes to `logFD`.
    public init(request: SpawnRequest, logFD: Int32?) throws(SystemError) {
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        guard fleet_pipe_cloexec(&toChild) == 0 else { throw lastError("pipe") }
        guard fleet_pipe_cloexec(&fromChild) == 0 else {
            Posix.close(toChild[0]); Posix.close(toChild[1])
            throw lastError("pipe")
        }
        var spawn = request
        spawn.stdin = toChild[0]
        spawn.stdout = fromChild[1]
        spawn.stderr = logFD
        do {
            child = try Reaper.shared.spawn(spawn)
        } catch {
            for fd in toChild + fromChild { Posix.close(fd) }
            throw error
        }
        Posix.close(toChild[0])
        Posix.close(fromChild[1])
        input = toChild[1]
        let output = fromChild[0]
        startThread { [self] in readLoop(output) }
    }

    public func setProtocolVersion(_ version: String) {}

    public func request(_ message: JSONValue, id: Int, timeout: Double, cancel: CancelFlag?) throws(MCPError)
        -> JSONValue
    {
        let waiter = Waiter()
        if let reason = state.withLock({ s -> String? in
            if let reason = s.closedReason { return reason }
            s.waiters[id] = waiter
            return nil
        }) {
            throw .serverExited(reason)
        }
        try send(message)

        let deadline = monotonicSeconds() + timeout
        cancel?.attach(waiter.signal)
        while true {
            if waiter.response.withLock({ $0 }) != nil || state.withLock({ $0.closedReason }) != nil { break }
            let left = deadline - monotonicSeconds()
            if left <= 0 || cancel?.isCancelled == true {
                state.withLock { _ = $0.waiters.removeValue(forKey: id) }
                // Tell the server to stop working on it (it may already have answered).
                try? notify([
                    "jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": [
                        "requestId": .number(Double(id)), "reason": left <= 0 ? "timeout" : "cancelled",
                    ],
                ])
                if cancel?.isCancelled == true && left > 0 { throw .cancelled }
                throw .timeout
            }
            // Woken by the answer, a cancel, or a closed channel; no polling while idle.
            waiter.signal.wait(seconds: left)
        }
        guard let response = waiter.response.withLock({ $0 }) else {
            throw .serverExited(state.withLock { $0.closedReason } ?? "closed")
        }
        return response
    }

    public func notify(_ message: JSONValue) throws(MCPError) {
        try send(message)
    }

    private func send(_ message: JSONValue) throws(MCPError) {
        var line = Array(message.encoded())
        line.append(10)
        let ok = writeLock.withLock { _ in Posix.writeAll(input, line) }
        if !ok { throw .serverExited("stdin closed") }
    }

    private func readLoop(_ fd: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var reason = "server closed its output"
        reading: while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            buffer.append(contentsOf: chunk[0..<n])
            while let newline = buffer.firstIndex(of: 10) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.allSatisfy({ $0 == 32 || $0 == 13 }) { continue }
                guard handle(line) else {
                    reason = "server wrote a line that is not JSON-RPC"
                    break reading
                }
            }
            if buffer.count > 64 << 20 {
                reason = "server wrote a line over 64 MiB"
                break
            }
        }
        Posix.close(fd)
        // A broken channel fails every pending call; the slot rebuilds the connection.
        let waiters = state.withLock { s -> [Waiter] in
            s.closedReason = reason
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        waiters.forEach { $0.signal.fire() }
        child.signalGroup(SIGTERM)
    }

    /// Routes one message; false when it is not JSON at all.
    private func handle(_ line: [UInt8]) -> Bool {
        guard let message = try? JSONValue.decode(Data(line)), message.object != nil else { return false }
        // Requests from the server (ping) get an empty answer; notifications are ignored.
        if message["method"] != nil {
            if let id = message["id"], message["method"]?.string == "ping" {
                try? send(["jsonrpc": "2.0", "id": id, "result": [:]])
            } else if let id = message["id"] {
                try? send([
                    "jsonrpc": "2.0", "id": id, "error": ["code": -32601, "message": "method not found"],
                ])
            }
            return true
        }
        guard let id = message["id"]?.int else { return true }
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.response.withLock { $0 = message }
        waiter?.signal.fire()
        return true
    }

    /// Closes the server's stdin: a well-behaved server removes its presence and exits.
    public func close() {
        let first = state.withLock { s -> Bool in
            if s.closedReason == nil { s.closedReason = "closed by the slot" }
            defer { s.inputClosed = true }
            return !s.inputClosed
        }
        if first { Posix.close(input) }
    }
}
