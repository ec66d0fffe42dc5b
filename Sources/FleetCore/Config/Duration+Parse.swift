/// Parses durations written as `250ms`, `30s`, `5m`, `2h`, `1.5s` into seconds.
public func parseDuration(_ text: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        let number = text.dropLast(suffix.count)
        // "5ms" must not parse as "5m" + "s": the number must be all digits and dots.
        guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
            let value = Double(number), value >= 0
        else { continue }
        return value * scale
    }
    return nil
}

/// Formats seconds the way the config writes them (`90s` -> `1m30s`).
public func formatDuration(_ seconds: Double) -> String {
    if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
    var rest = Int(seconds.rounded())
    var parts: [String] = []
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
        parts.append("\(rest / size)\(unit)")
        rest %= size
    }
    return parts.isEmpty ? "0s" : parts.joined()
}
