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

/// The `command` probe: runs the operator's program (the old `worker-quota-probe.sh`
/// or anything printing its JSON) and reads what it prints.
///
/// The program starts through the fleet's one reaper (never `Foundation.Process`), in
/// its own session, with the given environment only; the credential, where there is
/// one, is in that environment, never in its argv.
public struct CommandProbe: Sendable {
    public var command: [String]
    public var environment: [String: String]
    public var timeout: Double
    /// Output beyond this is cut off (the JSON is one short line).
    static let outputCap = 64 << 10

    public init(command: [String], environment: [String: String], timeout: Double = 30) {
        self.command = command
        self.environment = environment
        self.timeout = timeout
    }

    /// Runs the program to its end (TERM, then KILL, past the timeout) and parses its
    /// standard output.
    public func measure() throws(QuotaProbeError) -> QuotaMeasure {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard fleet_pipe_cloexec(&out) == 0 else {
            throw .command("pipe: \(String(cString: strerror(errno)))")
        }
        guard fleet_pipe_cloexec(&err) == 0 else {
            out.forEach(Posix.close)
            throw .command("pipe: \(String(cString: strerror(errno)))")
        }
        let request = SpawnRequest(
            executable: command[0], arguments: Array(command.dropFirst()), environment: environment,
            stdout: out[1], stderr: err[1])
        let child: Child
        do {
            child = try Reaper.shared.spawn(request)
        } catch {
            (out + err).forEach(Posix.close)
            throw .command("\(error)")
        }
        Posix.close(out[1])
        Posix.close(err[1])

        let deadline = monotonicSeconds() + timeout
        let (stdout, stderr, complete) = Self.drain(out[0], err[0], until: deadline)
        Posix.close(out[0])
        Posix.close(err[0])
        guard complete, let status = child.wait(seconds: max(0, deadline - monotonicSeconds())) else {
            child.stop(killAfter: 2)
            throw .command("\(command[0]) did not finish within \(formatDuration(timeout)); stopped")
        }

        guard status == .exited(0) else {
            let lastLine = String(decoding: stderr, as: UTF8.self).split(whereSeparator: \.isNewline).last
            throw .command(
                "\(command[0]) ended with \(status)" + (lastLine.map { ": \($0.prefix(200))" } ?? ""))
        }
        return try QuotaCommandOutput.parse(String(decoding: stdout, as: UTF8.self))
    }

    /// Reads both pipes until both are closed or the deadline passes; true when both
    /// ended (the program closed them, usually by exiting).
    static func drain(_ outFD: Int32, _ errFD: Int32, until deadline: Double) -> ([UInt8], [UInt8], Bool) {
        var buffers: [[UInt8]] = [[], []]
        var fds = [
            pollfd(fd: outFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: errFD, events: Int16(POLLIN), revents: 0),
        ]
        var open = [true, true]
        var chunk = [UInt8](repeating: 0, count: 4096)
        while open.contains(true) {
            let left = deadline - monotonicSeconds()
            if left <= 0 { return (buffers[0], buffers[1], false) }
            for i in 0..<2 { fds[i].fd = open[i] ? [outFD, errFD][i] : -1 }
            let ready = poll(&fds, 2, Int32(min(left, 1) * 1000) + 1)
            if ready < 0 && errno != EINTR { break }
            guard ready > 0 else { continue }
            for i in 0..<2 where open[i] && fds[i].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress!, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    open[i] = false
                } else if buffers[i].count < outputCap {
                    buffers[i].append(contentsOf: chunk[0..<min(n, outputCap - buffers[i].count)])
                }
            }
        }
        return (buffers[0], buffers[1], true)
    }
}
