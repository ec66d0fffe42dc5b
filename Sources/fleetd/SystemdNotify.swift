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
import Synchronization

/// systemd's notify protocol, spoken without libsystemd: one datagram per message to
/// the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
/// namespace).
///
/// `READY=1` goes out once the control socket serves, `STATUS=` whenever the one-line
/// summary changes, `STOPPING=1` on the first SIGTERM, and `WATCHDOG=1` every half of
/// `$WATCHDOG_USEC` while the supervisor still answers. Sends never block and never
/// fail fleetd: a lost datagram is logged at debug and forgotten.
final class SystemdNotify: Sendable {
    /// The socket address as given (`/run/systemd/notify` or `@name`).
    let address: String
    /// Seconds between watchdog pings (half of `WATCHDOG_USEC`), when the watchdog is on.
    let watchdogInterval: Double?

    private let fd: Int32
    private let addressBytes: [UInt8]
    private let logger: Logger
    private let lastStatus = Mutex<String?>(nil)
    private let stop = Signal()
    private let stopped = Atomic<Bool>(false)

    /// The notifier `$NOTIFY_SOCKET` asks for, or nil when fleetd does not run under
    /// systemd (or the address is not a Unix socket, e.g. `vsock:`).
    static func fromEnvironment(
        _ env: [String: String] = ProcessInfo.processInfo.environment, logger: Logger
    ) -> SystemdNotify? {
        guard let address = env["NOTIFY_SOCKET"], !address.isEmpty else { return nil }
        guard address.hasPrefix("/") || address.hasPrefix("@") else {
            logger.warning("NOTIFY_SOCKET is not a Unix socket; not notifying", ("address", address))
            return nil
        }
        #if os(Linux)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            logger.warning("cannot open a socket for systemd notifications", ("error", errnoText(errno)))
            return nil
        }
        return SystemdNotify(
            address: address, fd: fd, watchdogInterval: watchdogInterval(env), logger: logger)
        #else
        logger.warning("NOTIFY_SOCKET is set but systemd notifications exist on Linux only")
        return nil
        #endif
    }

    /// Half of `WATCHDOG_USEC`, when it is set for this process (`WATCHDOG_PID` unset
    /// or ours), as `sd_watchdog_enabled` decides.
    static func watchdogInterval(_ env: [String: String]) -> Double? {
        guard let text = env["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        if let pid = env["WATCHDOG_PID"], !pid.isEmpty, pid != "\(getpid())" { return nil }
        return Double(usec) / 2_000_000
    }

    private init(address: String, fd: Int32, watchdogInterval: Double?, logger: Logger) {
        self.address = address
        self.fd = fd
        self.watchdogInterval = watchdogInterval
        self.logger = logger

        // sun_path: the path with its NUL, or a NUL and the abstract name without one.
        var path = Array(address.utf8)
        if path.first == UInt8(ascii: "@") {
            path[0] = 0
        } else {
            path.append(0)
        }
        self.addressBytes = path
    }

    deinit { close(fd) }

    /// The service is up: the control socket serves and the slots have started.
    func ready(status: String) {
        lastStatus.withLock { $0 = status }
        send("READY=1\nSTATUS=\(status)\nMAINPID=\(getpid())")
        logger.debug("told systemd we are ready", ("socket", address))
    }

    /// The service is stopping: draining, then stopping agents.
    func stopping(status: String) {
        lastStatus.withLock { $0 = status }
        send("STOPPING=1\nSTATUS=\(status)")
    }

    /// Sends `STATUS=` when the text differs from the last one sent.
    func status(_ text: String) {
        let changed = lastStatus.withLock { last -> Bool in
            defer { last = text }
            return last != text
        }
        if changed { send("STATUS=\(text)") }
    }

    /// Pings the watchdog every `watchdogInterval` after `isAlive` returns; a hung
    /// supervisor blocks `isAlive`, the pings stop and systemd restarts fleetd.
    /// Also polls `summary` every second and sends it as `STATUS=` when it changes.
    func watch(isAlive: @escaping @Sendable () -> Void, summary: @escaping @Sendable () -> String) {
        if let interval = watchdogInterval {
            startThread { [self] in
                while !stop.wait(seconds: interval) && !stopped.load(ordering: .relaxed) {
                    isAlive()
                    send("WATCHDOG=1")
                }
            }
            logger.info("systemd watchdog on", ("interval", formatDuration(interval)))
        }
        startThread { [self] in
            while !stop.wait(seconds: 1) && !stopped.load(ordering: .relaxed) {
                status(summary())
            }
        }
    }

    /// Ends the watchdog and status threads (fleetd is exiting).
    func stopWatching() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        // Two threads wait on the same signal; fire once for each.
        stop.fire()
        stop.fire()
    }

    /// One datagram, never blocking: systemd reads them at its own pace.
    func send(_ message: String) {
        #if os(Linux)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard addressBytes.count <= capacity else {
            logger.warning("NOTIFY_SOCKET path too long", ("address", address))
            return
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: addressBytes) }
        let length = MemoryLayout<sa_family_t>.size + addressBytes.count
        let bytes = Array(message.utf8)
        let sent = bytes.withUnsafeBytes { body in
            withUnsafePointer(to: &addr) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(
                        fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), $0,
                        socklen_t(length))
                }
            }
        }
        if sent < 0 {
            logger.debug("systemd notification not sent", ("socket", address), ("error", errnoText(errno)))
        }
        #endif
    }
}

extension FleetStatus {
    /// One line for `systemctl status`: slots running and busy, jobs done and failed.
    var summaryLine: String {
        let busy = slots.filter { $0.job != nil }.count
        let standby = slots.filter { $0.state == .standby }.count
        var line = "\(fleet.runningSlots) of \(fleet.configuredSlots) slots running, \(busy) busy"
        if standby > 0 { line += ", \(standby) in standby" }
        return line + "; jobs done \(fleet.jobsDone), failed \(fleet.jobsFailed)"
    }
}

private func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
