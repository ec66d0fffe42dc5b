#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFleetShim

/// Plain POSIX calls under names that methods called `open` or `close` cannot shadow.
public enum Posix {
    /// open(2) with close-on-exec; -1 on failure.
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o600) -> Int32 {
        #if canImport(Glibc)
        Glibc.open(path, flags | O_CLOEXEC, mode)
        #else
        Darwin.open(path, flags | O_CLOEXEC, mode)
        #endif
    }

    /// close(2), ignoring the result (the descriptor is gone either way).
    public static func close(_ fd: Int32) {
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #else
        _ = Darwin.close(fd)
        #endif
    }

    /// Writes every byte, retrying EINTR and short writes; false when the descriptor
    /// refuses more (a full disk, a closed pipe).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            #if canImport(Glibc)
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            #else
            let n = Darwin.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            #endif
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// `writeAll` for an array of bytes.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { writeAll(fd, $0) }
    }

    /// Caps malloc's arenas (glibc; a no-op elsewhere): many short-lived threads would
    /// otherwise each keep an arena's high-water mark.
    public static func limitMallocArenas(_ arenas: Int32) {
        fleet_limit_malloc_arenas(arenas)
    }
}
