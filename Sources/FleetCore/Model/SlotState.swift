/// What a slot is doing now (its actual state).
public enum SlotState: String, Codable, Sendable, CaseIterable {
    /// Starting its Scrum4Me server and handshaking.
    case starting
    /// Waiting for a job.
    case idle
    /// Running an agent on a job.
    case busy
    /// Below its quota floor, heartbeating, until the quota resets.
    case standby
    /// Finishing its job; takes no new one.
    case draining
    /// Parked after a drain.
    case drained
    /// Waiting before the next restart after a failure.
    case backoff
    /// Gave up after its failure budget.
    case failed
    /// The server refused the slot's token; no claims until restarted.
    case tokenRejected = "token_rejected"
    /// Not running (scaled down, or the fleet is stopping).
    case stopped
}

/// What the operator wants of a slot (its desired state).
public enum SlotDesire: String, Codable, Sendable {
    /// Run and claim jobs.
    case up
    /// Finish the current job, then park.
    case drained
    /// Not running: scaled away or removed.
    case down
}
