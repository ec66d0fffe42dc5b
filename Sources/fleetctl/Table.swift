#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Aligned columns, two spaces apart, `-` for an empty cell (so `awk` works).
struct Table {
    var header: [String]
    var rows: [[String]] = []

    mutating func add(_ cells: [String?]) {
        rows.append(cells.map { ($0?.isEmpty ?? true) ? "-" : $0! })
    }

    func render() -> String {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], cell.count)
            }
        }
        return all.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// "3s", "5m", "2h" ago, relative to now.
func age(_ date: Date?, now: Date = Date()) -> String? {
    guard let date else { return nil }
    let seconds = max(0, now.timeIntervalSince(date))
    switch seconds {
    case ..<60: return "\(Int(seconds))s"
    case ..<3600: return "\(Int(seconds / 60))m"
    case ..<86400: return "\(Int(seconds / 3600))h"
    default: return "\(Int(seconds / 86400))d"
    }
}
