#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

private final class ThreadBody: @unchecked Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Starts a detached OS thread for work that blocks (long polls, child waits).
///
/// Blocking calls must never run on Dispatch's global queues or Swift concurrency's
/// executor: on Linux both share one pool, and a blocked pool starves every other task.
public func startThread(_ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    #if canImport(Glibc)
    var thread = pthread_t()
    #else
    var thread: pthread_t? = nil
    #endif
    let rc = pthread_create(
        &thread, &attr,
        { raw in
            #if canImport(Glibc)
            let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            #else
            let body = Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue()
            #endif
            body.run()
            return nil
        }, box)
    pthread_attr_destroy(&attr)
    precondition(rc == 0, "pthread_create failed: \(rc)")
}

/// A one-shot or repeatable event a thread can wait on with a timeout.
public final class Signal: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)

    public init() {}

    /// Wakes one waiter (or the next one to wait).
    public func fire() { semaphore.signal() }

    /// Waits up to `seconds`; true when fired, false on timeout.
    @discardableResult
    public func wait(seconds: Double) -> Bool {
        semaphore.wait(timeout: .now() + seconds) == .success
    }

    /// Waits until fired.
    public func wait() { semaphore.wait() }
}

/// Seconds on the monotonic clock, for intervals and deadlines.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Nanoseconds since the epoch on the realtime clock (comparable across processes).
public func realtimeNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
