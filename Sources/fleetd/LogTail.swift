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

/// Reads the end of a log file, and follows it as it grows.
struct LogTail: Sendable {
    let path: String

    /// Nil when the file does not exist.
    init?(path: String) {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        self.path = path
    }

    /// The last `count` bytes.
    func last(_ count: Int) -> [UInt8] {
        let fd = Posix.open(path, O_RDONLY)
        guard fd >= 0 else { return [] }
        defer { Posix.close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        let start = max(0, Int(size) - max(0, count))
        return read(fd, from: start, max: Int(size) - start)
    }

    /// Streams the file from `count` bytes before its end as NDJSON `{"data":...}`
    /// lines, with a blank keep-alive line every second; ends when `write` fails.
    func follow(from count: Int, write: ([UInt8]) -> Bool) {
        let fd = Posix.open(path, O_RDONLY)
        guard fd >= 0 else { return }
        defer { Posix.close(fd) }
        var offset = max(0, Int(lseek(fd, 0, SEEK_END)) - max(0, count))
        var quiet = 0.0
        let pause = Signal()
        while true {
            let chunk = read(fd, from: offset, max: 32768)
            if chunk.isEmpty {
                quiet += 0.2
                if quiet >= 1 {
                    quiet = 0
                    guard write([10]) else { return }
                }
                pause.wait(seconds: 0.2)
                continue
            }
            offset += chunk.count
            let line = "{\"data\":" + jsonString(String(decoding: chunk, as: UTF8.self)) + "}\n"
            guard write(Array(line.utf8)) else { return }
        }
    }

    private func read(_ fd: Int32, from offset: Int, max: Int) -> [UInt8] {
        guard max > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, max, off_t(offset)) }
        return n > 0 ? Array(buffer[0..<n]) : []
    }
}
