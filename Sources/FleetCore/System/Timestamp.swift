#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Machine timestamps: ISO-8601 in UTC, whole seconds.
public enum Timestamp {
    /// `2026-12-04T15:45:20Z`.
    public static func iso8601(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// Parses ISO-8601 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        return try? Date(text, strategy: fractional)
    }
}
