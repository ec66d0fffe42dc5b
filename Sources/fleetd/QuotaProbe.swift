#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import WorkerSlot

/// The fleet's one quota probe. With `probe = "off"` every reading is 100% remaining.
///
/// XXX: the `anthropic` and `command` probes are not built yet (issue: shared quota
/// probe); until then they also publish 100 with their source named, so slots never
/// stand by on a reading nobody took.
final class QuotaProbe: Sendable {
    let config: FleetConfig
    let store: Store
    let board: QuotaBoard
    let logger: Logger

    init(config: FleetConfig, store: Store, board: QuotaBoard, logger: Logger) {
        self.config = config
        self.store = store
        self.board = board
        self.logger = logger
    }

    func start() {
        publish()
        startThread { [self] in
            let tick = Signal()
            while true {
                tick.wait(seconds: config.quota.interval)
                publish()
            }
        }
    }

    private func publish() {
        let reading = QuotaInfo(pct: 100, resetsAt: nil, checkedAt: Date(), source: config.quota.probe)
        try? store.recordQuota(reading)
        board.publish(reading)
    }
}
