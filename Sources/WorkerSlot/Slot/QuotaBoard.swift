import FleetCore
import Synchronization

/// The fleet's latest quota reading, shared by every slot (one probe per fleet).
public final class QuotaBoard: Sendable {
    private let reading = Mutex<QuotaInfo?>(nil)
    private let changed = Mutex<[Signal]>([])

    public init() {}

    public var latest: QuotaInfo? { reading.withLock { $0 } }

    /// Publishes a reading and wakes slots waiting for one.
    public func publish(_ info: QuotaInfo) {
        reading.withLock { $0 = info }
        changed.withLock { $0 }.forEach { $0.fire() }
    }

    /// Registers a signal fired on every new reading.
    public func subscribe(_ signal: Signal) {
        changed.withLock { $0.append(signal) }
    }
}
