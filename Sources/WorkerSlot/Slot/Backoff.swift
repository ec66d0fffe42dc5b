/// Exponential backoff with jitter: `min` doubling to `max`, plus up to 25% random.
///
/// The jitter only adds: jitter around the base would be clamped by the floor at the
/// first attempts, and slots that failed together would restart in lockstep.
public struct Backoff: Sendable, Equatable {
    public var min: Double
    public var max: Double
    public var jitter: Double = 0.25
    public var floor: Double = 1
    public private(set) var failures = 0

    public init(min: Double, max: Double, floor: Double = 1) {
        self.min = min
        self.max = max
        self.floor = Swift.min(floor, min)
    }

    /// The delay before the next attempt, counting one more failure.
    public mutating func next(random: Double = Double.random(in: 0..<1)) -> Double {
        let base = Swift.min(max, min * Double(1 << Swift.min(failures, 30)))
        failures += 1
        return Swift.max(floor, base * (1 + jitter * random))
    }

    /// Back to the first delay after a success.
    public mutating func reset() { failures = 0 }
}
