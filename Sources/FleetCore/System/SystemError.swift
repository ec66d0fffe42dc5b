#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed system call: the call, its errno and the errno's text.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    /// The call that failed, with its subject ("open /var/lib/fleet/fleet.lock").
    public var call: String
    /// The errno the call set.
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno)))"
    }
}

/// Runs a system call, retrying while it fails with EINTR.
///
/// Signal sources make blocking calls fail with EINTR on Linux: every blocking call in
/// this project goes through here. Returns the call's result, or throws with errno.
@discardableResult
public func syscall<T: BinaryInteger>(
    _ name: @autoclosure () -> String, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let err = errno
        if err == EINTR { continue }
        throw SystemError(name(), errno: err)
    }
}

/// Current errno as a `SystemError` for `call`.
public func lastError(_ call: String) -> SystemError {
    SystemError(call, errno: errno)
}
