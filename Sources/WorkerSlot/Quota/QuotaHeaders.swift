#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// Reads a quota reading from the rate-limit headers of a Messages API answer.
///
/// Pure functions over a header table (names lower-cased, as `CurlClient` gives them):
/// a reading, or an error naming the header that is missing or malformed. Nothing is
/// ever guessed: a window half present is an error, not a window.
public enum QuotaHeaders {
    static let unified = "anthropic-ratelimit-unified-"
    static let tokens = "anthropic-ratelimit-tokens-"

    /// The subscription windows, in the order they are reported.
    static let windows = ["5h", "7d"]

    /// The reading for a credential of `kind`.
    public static func reading(_ headers: [String: String], kind: CredentialKind) throws(QuotaHeaderError)
        -> QuotaMeasure
    {
        switch kind {
        case .oauth: try unifiedReading(headers)
        case .apiKey: try tokensReading(headers)
        }
    }

    /// Subscription (OAuth) credentials: the 5-hour and 7-day utilisation fractions and
    /// their resets (Unix seconds), and the status. The tighter window wins; a
    /// `rejected` status means nothing is left until the unified reset.
    static func unifiedReading(_ h: [String: String]) throws(QuotaHeaderError) -> QuotaMeasure {
        struct Window {
            var name: String
            var left: Int
            var resetsAt: Date
        }
        var found: [Window] = []
        for name in windows {
            let usedKey = "\(unified)\(name)-utilization"
            let resetKey = "\(unified)\(name)-reset"
            switch (h[usedKey], h[resetKey]) {
            case (nil, nil):
                continue
            case (nil, _):
                throw .missing(usedKey)
            case (_, nil):
                throw .missing(resetKey)
            case (let used?, let reset?):
                let fraction = try number(used, usedKey, expected: "a utilisation fraction like 0.35")
                found.append(
                    Window(
                        name: name, left: percentRemaining(used: fraction),
                        resetsAt: try unixTime(reset, resetKey)))
            }
        }
        guard !found.isEmpty else { throw .missing("\(unified)5h-utilization") }

        // The tighter window; on a tie the later reset, which binds longer.
        let tight = found.min { a, b in a.left != b.left ? a.left < b.left : a.resetsAt > b.resetsAt }!
        var pct = tight.left
        var resetsAt = tight.resetsAt
        let statusKey = "\(unified)status"
        let status = h[statusKey]
        switch status {
        case nil, "allowed", "allowed_warning":
            break
        case "rejected":
            pct = 0
            if let reset = h["\(unified)reset"] { resetsAt = try unixTime(reset, "\(unified)reset") }
        case let other?:
            throw .malformed(statusKey, value: other, expected: "one of allowed, allowed_warning, rejected")
        }

        var parts = found.map { "\($0.name) \($0.left)% left (resets \(Timestamp.iso8601($0.resetsAt)))" }
        if let status { parts.append("status \(status)") }
        return QuotaMeasure(pct: pct, resetsAt: resetsAt, detail: parts.joined(separator: ", "))
    }

    /// API keys: tokens remaining of the limit, full again at the reset (RFC 3339).
    static func tokensReading(_ h: [String: String]) throws(QuotaHeaderError) -> QuotaMeasure {
        let remainingKey = "\(tokens)remaining"
        let limitKey = "\(tokens)limit"
        let resetKey = "\(tokens)reset"
        guard let remainingText = h[remainingKey] else { throw .missing(remainingKey) }
        guard let limitText = h[limitKey] else { throw .missing(limitKey) }
        guard let resetText = h[resetKey] else { throw .missing(resetKey) }

        guard let remaining = Int(remainingText), remaining >= 0 else {
            throw .malformed(remainingKey, value: remainingText, expected: "a whole number of tokens")
        }
        guard let limit = Int(limitText), limit > 0 else {
            throw .malformed(limitKey, value: limitText, expected: "a whole number of tokens above 0")
        }
        guard let resetsAt = Timestamp.parse(resetText) else {
            throw .malformed(resetKey, value: resetText, expected: "an RFC 3339 time")
        }
        let pct = min(100, remaining * 100 / limit)
        let detail = "tokens \(remaining) of \(limit) left (full at \(Timestamp.iso8601(resetsAt)))"
        return QuotaMeasure(pct: pct, resetsAt: resetsAt, detail: detail)
    }

    private static func number(_ text: String, _ key: String, expected: String) throws(QuotaHeaderError)
        -> Double
    {
        guard let value = Double(text.trimmingCharacters(in: " ")), value.isFinite, value >= 0 else {
            throw .malformed(key, value: text, expected: expected)
        }
        return value
    }

    private static func unixTime(_ text: String, _ key: String) throws(QuotaHeaderError) -> Date {
        guard let seconds = Double(text.trimmingCharacters(in: " ")), seconds.isFinite, seconds > 0 else {
            throw .malformed(key, value: text, expected: "a Unix time in seconds")
        }
        return Date(timeIntervalSince1970: seconds)
    }
}
