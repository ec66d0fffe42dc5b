#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FleetCore

/// The lock that keeps a second fleetd off the same state directory.
struct InstanceLock: Sendable {
    let fd: Int32

    struct Held: Error, CustomStringConvertible {
        let path: String
        var description: String {
            "another fleetd holds \(path): only one daemon may use a state directory; "
                + "stop it first (fleetctl status shows it)"
        }
    }

    /// Takes the lock, or fails at once when another process holds it.
    static func acquire(path: String) throws -> InstanceLock {
        let fd = Posix.open(path, O_RDWR | O_CREAT, 0o600)
        guard fd >= 0 else { throw lastError("open \(path)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let err = errno
            Posix.close(fd)
            if err == EWOULDBLOCK { throw Held(path: path) }
            throw SystemError("lock \(path)", errno: err)
        }
        // The pid, for people reading the file; the lock is what counts.
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
        return InstanceLock(fd: fd)
    }

    func release() {
        _ = flock(fd, LOCK_UN)
        Posix.close(fd)
    }
}
