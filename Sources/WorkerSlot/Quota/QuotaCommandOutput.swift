#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// Reads the JSON a probe command prints, as the old `worker-quota-probe.sh` does:
/// `{"remaining":N,"limit":N,"pct":N,"reset_at_iso":"..."}`. Only `pct` (percent
/// remaining) is required; `reset_at_iso` may be missing, null or empty; other keys are
/// ignored. The last line that is a JSON object counts, so a script may log before it.
public enum QuotaCommandOutput {
    public static func parse(_ output: String) throws(QuotaProbeError) -> QuotaMeasure {
        let lines = output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: " \t\r") }
        guard let line = lines.last(where: { $0.hasPrefix("{") }) else {
            let shown = output.trimmingCharacters(in: " \t\n\r")
            throw .output(shown.isEmpty ? "no output" : "no JSON object in \"\(shown.prefix(120))\"")
        }
        guard let object = (try? JSONValue.decode(Data(line.utf8)))?.object else {
            throw .output("not a JSON object: \"\(line.prefix(120))\"")
        }

        guard let pctValue = object["pct"] else { throw .output("key pct is missing") }
        guard case .number(let pct) = pctValue, pct.isFinite, (0...100).contains(pct) else {
            throw .output("pct: \(text(pctValue)) is not a number from 0 to 100")
        }

        var resetsAt: Date?
        switch object["reset_at_iso"] {
        case nil, .null?:
            break
        case .string(let text)? where text.isEmpty:
            break
        case .string(let text)?:
            guard let date = Timestamp.parse(text) else {
                throw .output("reset_at_iso: \"\(text.prefix(60))\" is not an ISO-8601 time")
            }
            resetsAt = date
        case let other?:
            throw .output("reset_at_iso: \(text(other)) is not an ISO-8601 time")
        }

        // A fraction of a percent left is not a whole one: round down.
        let whole = Int(pct.rounded(.down))
        var detail = "pct \(whole)"
        if case .number(let remaining)? = object["remaining"], case .number(let limit)? = object["limit"] {
            detail = "\(Int(remaining)) of \(Int(limit)) left"
        }
        if let resetsAt { detail += " (resets \(Timestamp.iso8601(resetsAt)))" }
        return QuotaMeasure(pct: whole, resetsAt: resetsAt, detail: detail)
    }

    private static func text(_ value: JSONValue) -> String {
        String(String(decoding: value.encoded(), as: UTF8.self).prefix(60))
    }
}
