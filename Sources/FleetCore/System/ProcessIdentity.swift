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

/// A process named by pid and start time, so that a recycled pid is never mistaken
/// for the process we started.
public struct ProcessIdentity: Codable, Equatable, Sendable {
    public var pid: Int32
    /// Opaque start time (clock ticks since boot on Linux, microseconds on Darwin).
    public var startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The identity of a running pid, or nil when there is no such process.
    public static func of(pid: Int32) -> ProcessIdentity? {
        guard let start = processStartTime(pid) else { return nil }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// True when a process with this pid runs and started at the recorded time.
    public var isAlive: Bool {
        ProcessIdentity.of(pid: pid) == self
    }
}

/// The start time of `pid`, or nil when it does not exist (or is a zombie).
public func processStartTime(_ pid: Int32) -> UInt64? {
    #if os(Linux)
    // Read with open/read: String(contentsOfFile:) on a /proc file (st_size 0) leaked its
    // read buffer in FoundationEssentials, a few hundred bytes per call, one call per job
    // (bench/memory.sh, valgrind massif).
    let fd = Posix.open("/proc/\(pid)/stat", O_RDONLY)
    guard fd >= 0 else { return nil }
    var buffer = [UInt8](repeating: 0, count: 1024)
    var count = 0
    while count < buffer.count {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        count += n
    }
    Posix.close(fd)
    guard count > 0 else { return nil }
    let text = String(decoding: buffer[..<count], as: UTF8.self)
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    guard let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // fields[0] is field 3 (state); starttime is field 22.
    guard fields.count > 19, fields[0] != "Z" else { return nil }
    return UInt64(fields[19])
    #else
    var info = kinfo_proc()
    var size = MemoryLayout<kinfo_proc>.stride
    var mib: [Int32] = [CTL_KERN, KERN_PROC, KERN_PROC_PID, pid]
    guard sysctl(&mib, 4, &info, &size, nil, 0) == 0, size > 0 else { return nil }
    if info.kp_proc.p_stat == SZOMB { return nil }
    let tv = info.kp_proc.p_starttime
    return UInt64(tv.tv_sec) * 1_000_000 + UInt64(tv.tv_usec)
    #endif
}
