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

/// Unix-domain stream sockets: the seam every control-socket syscall goes through.
public enum UnixSocket {
    #if os(Linux)
    static let streamType = Int32(SOCK_STREAM.rawValue)
    #else
    static let streamType = SOCK_STREAM
    #endif

    /// The longest socket path the platform takes (108 bytes on Linux, 104 on Darwin).
    public static var maxPathLength: Int {
        MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
    }

    static func address(_ path: String) throws(SystemError) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= maxPathLength else {
            throw SystemError(
                "socket path \(path) is \(bytes.count) bytes, over \(maxPathLength)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        #if os(macOS)
        addr.sun_len = UInt8(MemoryLayout<sockaddr_un>.size)
        #endif
        return addr
    }

    static func newSocket() throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, streamType, 0)
        guard fd >= 0 else { throw lastError("socket") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        #if os(macOS)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        return fd
    }

    /// Connects to `path`; throws with errno (ENOENT, ECONNREFUSED) when nobody listens.
    public static func connect(path: String, timeout: Double) throws(SystemError) -> Int32 {
        var addr = try address(path)
        let fd = try newSocket()
        setTimeouts(fd, seconds: timeout)
        let rc = withUnsafePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                posixConnect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let err = errno
            close(fd)
            throw SystemError("connect \(path)", errno: err)
        }
        return fd
    }

    /// Binds and listens on `path` with `mode` (created under a umask: no chmod race).
    public static func listen(path: String, mode: mode_t, backlog: Int32 = 64) throws(SystemError) -> Int32 {
        var addr = try address(path)
        let fd = try newSocket()
        let old = umask(~mode & 0o777)
        let rc = withUnsafePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        let err = errno
        umask(old)
        guard rc == 0 else {
            close(fd)
            throw SystemError("bind \(path)", errno: err)
        }
        guard posixListen(fd, backlog) == 0 else {
            let err = errno
            close(fd)
            throw SystemError("listen \(path)", errno: err)
        }
        return fd
    }

    /// Send and receive timeouts, so that a stalled peer cannot hold a thread forever.
    public static func setTimeouts(_ fd: Int32, seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: .init((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes all of `data`; false when the peer went away or timed out.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ data: [UInt8]) -> Bool {
        var offset = 0
        while offset < data.count {
            let n = data.withUnsafeBytes { buf in
                #if os(Linux)
                send(fd, buf.baseAddress! + offset, buf.count - offset, Int32(MSG_NOSIGNAL))
                #else
                send(fd, buf.baseAddress! + offset, buf.count - offset, 0)
                #endif
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads up to `max` bytes; 0 at end of stream, -1 on error or timeout.
    public static func read(_ fd: Int32, into buffer: inout [UInt8], max: Int = 65536) -> Int {
        var chunk = [UInt8](repeating: 0, count: max)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, max, 0) }
            if n < 0 && errno == EINTR { continue }
            if n > 0 { buffer.append(contentsOf: chunk[0..<n]) }
            return n
        }
    }
}

private func posixConnect(_ fd: Int32, _ addr: UnsafePointer<sockaddr>, _ len: socklen_t) -> Int32 {
    while true {
        let rc = connect(fd, addr, len)
        if rc != 0 && errno == EINTR { continue }
        return rc
    }
}

private func posixListen(_ fd: Int32, _ backlog: Int32) -> Int32 {
    listen(fd, backlog)
}
