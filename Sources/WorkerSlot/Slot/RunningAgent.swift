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
import Dispatch
import Synchronization

/// An agent process and the threads that copy its output into a capped log file.
final class RunningAgent: @unchecked Sendable {
    let child: Child
    private let tail = Mutex<[UInt8]>([])
    private let pumps = DispatchGroupBox()
    static let tailLimit = 2048
    /// The start of the error recorded when an agent could not be started.
    static let didNotStart = "agent did not start"

    private init(child: Child) {
        self.child = child
    }

    /// Starts the agent in its own session; stdout and stderr go to `logPath` (up to
    /// `cap` bytes, the rest counted and dropped), stderr's tail is kept for errors.
    static func start(_ launch: AgentLaunch, logPath: String, cap: Int) throws -> RunningAgent {
        try? makeDirectories(directoryOf(logPath))
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard fleet_pipe_cloexec(&out) == 0 else { throw lastError("pipe") }
        guard fleet_pipe_cloexec(&err) == 0 else { throw lastError("pipe") }

        let request = SpawnRequest(
            executable: launch.executable, arguments: launch.arguments, environment: launch.environment,
            directory: launch.directory, stdout: out[1], stderr: err[1], setup: launch.setup)
        let child: Child
        do {
            child = try Reaper.shared.spawn(request)
        } catch {
            for fd in out + err { close(fd) }
            if logFD >= 0 { close(logFD) }
            throw error
        }
        close(out[1])
        close(err[1])

        let agent = RunningAgent(child: child)
        let sink = CappedSink(fd: logFD, cap: cap)
        agent.pump(out[0], sink, keepTail: false)
        agent.pump(err[0], sink, keepTail: true)
        return agent
    }

    private func pump(_ fd: Int32, _ sink: CappedSink, keepTail: Bool) {
        pumps.enter()
        startThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 16384)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                sink.write(buffer[0..<n])
                if keepTail {
                    tail.withLock { t in
                        t.append(contentsOf: buffer[0..<n])
                        if t.count > RunningAgent.tailLimit {
                            t.removeFirst(t.count - RunningAgent.tailLimit)
                        }
                    }
                }
            }
            close(fd)
            sink.release()
            pumps.leave()
        }
    }

    /// Waits (briefly) for the output threads: descendants may hold the pipes open.
    func finishOutput() {
        _ = pumps.wait(seconds: 2)
    }

    /// The last lines of the agent's stderr, for a failure report.
    func errorExcerpt() -> String {
        let text = String(decoding: tail.withLock { $0 }, as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline).suffix(8)
        return String(lines.joined(separator: "\n").suffix(1500))
    }
}

/// A log file shared by the agent's two output pipes, capped in size.
final class CappedSink: @unchecked Sendable {
    private let state: Mutex<(written: Int, dropped: Int, users: Int)>
    private let fd: Int32
    private let cap: Int

    init(fd: Int32, cap: Int) {
        self.fd = fd
        self.cap = cap
        self.state = Mutex((0, 0, 2))
    }

    func write(_ bytes: ArraySlice<UInt8>) {
        guard fd >= 0 else { return }
        let allowed = state.withLock { s -> Int in
            let room = max(0, cap - s.written)
            let n = min(room, bytes.count)
            s.written += n
            s.dropped += bytes.count - n
            return n
        }
        guard allowed > 0 else { return }
        // A full disk drops output, never blocks the agent.
        if !bytes.prefix(allowed).withUnsafeBytes({ Posix.writeAll(fd, $0) }) {
            LogHealth.recordFailure()
        }
    }

    /// Called by each pump when done; the last one notes the truncation and closes.
    func release() {
        let (last, dropped) = state.withLock { s -> (Bool, Int) in
            s.users -= 1
            return (s.users == 0, s.dropped)
        }
        guard last, fd >= 0 else { return }
        if dropped > 0 {
            let note = Array("\n[fleet: output capped at \(cap) bytes, \(dropped) bytes dropped]\n".utf8)
            _ = Posix.writeAll(fd, note)
        }
        close(fd)
    }
}

/// A DispatchGroup with a timed wait in seconds.
final class DispatchGroupBox: @unchecked Sendable {
    private let group = DispatchGroup()
    func enter() { group.enter() }
    func leave() { group.leave() }
    func wait(seconds: Double) -> Bool { group.wait(timeout: .now() + seconds) == .success }
}
