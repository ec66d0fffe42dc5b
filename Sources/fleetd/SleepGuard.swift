#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FleetCore
import Synchronization

/// Keeps the host awake while any slot is busy, so that a Mac's idle sleep does not
/// let a job's lease lapse and the job run twice.
///
/// On macOS the assertion is `caffeinate -i -w <fleetd pid>`, started through the
/// reaper while a slot is busy and stopped when all are idle; `-w` ends it with fleetd
/// even when fleetd dies without stopping it. Elsewhere there is nothing to hold and
/// the guard does nothing. A lid closed on battery still sleeps: `-i` covers idle
/// sleep only (deploy/macos/README.md says what to do about it).
final class SleepGuard: Sendable {
    /// The assertion command on this platform; nil where there is none.
    static var defaultCommand: [String]? {
        #if os(macOS)
        return ["/usr/bin/caffeinate", "-i", "-w", "\(getpid())"]
        #else
        return nil
        #endif
    }

    private let command: [String]?
    private let logger: Logger
    private let held = Mutex<Child?>(nil)
    private let stop = Signal()
    private let stopped = Atomic<Bool>(false)
    private let gaveUp = Atomic<Bool>(false)

    init(command: [String]? = SleepGuard.defaultCommand, logger: Logger) {
        self.command = command
        self.logger = logger
    }

    /// Looks at `isBusy` every `interval` seconds on a thread of its own and holds the
    /// assertion while it is true. Does nothing where there is no assertion command.
    func watch(every interval: Double = 1, isBusy: @escaping @Sendable () -> Bool) {
        guard command != nil else { return }
        startThread { [self] in
            while !stop.wait(seconds: interval) && !stopped.load(ordering: .relaxed) {
                update(isBusy: isBusy())
            }
            update(isBusy: false)
        }
    }

    /// Starts the assertion when busy and none runs (again, if it died), and stops it
    /// when idle. After a failed start it gives up, with one warning.
    func update(isBusy: Bool) {
        guard let command, !gaveUp.load(ordering: .relaxed) else { return }
        if isBusy {
            let isHeld = held.withLock { $0 != nil && $0?.exitStatus == nil }
            guard !isHeld else { return }
            do {
                let child = try Reaper.shared.spawn(
                    SpawnRequest(
                        executable: command[0], arguments: Array(command.dropFirst()),
                        environment: ["PATH": "/usr/bin:/bin:/usr/sbin:/sbin"]))
                held.withLock { $0 = child }
                logger.info("holding a power assertion while slots are busy", ("pid", child.pid))
            } catch {
                gaveUp.store(true, ordering: .relaxed)
                logger.warning(
                    "cannot hold a power assertion; the host may sleep during jobs",
                    ("command", command[0]), ("error", error))
            }
        } else {
            let taken = held.withLock { child -> Child? in
                defer { child = nil }
                return child
            }
            guard let taken else { return }
            if taken.exitStatus == nil { taken.stop(killAfter: 2) }
            logger.info("power assertion released: no slot is busy")
        }
    }

    /// Stops watching and releases the assertion (fleetd is exiting).
    func release() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        stop.fire()
        update(isBusy: false)
    }
}
