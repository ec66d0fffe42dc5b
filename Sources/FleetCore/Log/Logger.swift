#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Severity of a log line, as in syslog.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug, info, notice, warning, error

    public var name: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Line format of the daemon's log.
public enum LogFormat: String, Sendable {
    case logfmt, json
}

/// One line per event: a short constant message, data as key=value fields.
///
/// Written to a descriptor (stderr by default) with a single `write` per line, so lines
/// from several threads never interleave. A failed write (full disk, closed pipe) is
/// counted, never fatal: logging degrades, supervision goes on.
public final class Logger: Sendable {
    public let level: LogLevel
    public let format: LogFormat
    private let fd: Int32
    private let base: [(String, String)]

    public init(
        level: LogLevel = .info, format: LogFormat = .logfmt, fd: Int32 = 2,
        fields: [(String, String)] = []
    ) {
        self.level = level
        self.format = format
        self.fd = fd
        self.base = fields
    }

    /// Writes that failed so far (a full disk, a closed descriptor).
    public var failedWrites: Int { LogHealth.failedWrites }

    /// A logger that adds `fields` to every line.
    public func with(_ fields: (String, String)...) -> Logger {
        Logger(level: level, format: format, fd: fd, fields: base + fields)
    }

    public func debug(_ msg: String, _ fields: (String, Any?)...) { log(.debug, msg, fields) }
    public func info(_ msg: String, _ fields: (String, Any?)...) { log(.info, msg, fields) }
    public func notice(_ msg: String, _ fields: (String, Any?)...) { log(.notice, msg, fields) }
    public func warning(_ msg: String, _ fields: (String, Any?)...) { log(.warning, msg, fields) }
    public func error(_ msg: String, _ fields: (String, Any?)...) { log(.error, msg, fields) }

    /// Writes one line when `level` is enabled.
    public func log(_ level: LogLevel, _ msg: String, _ fields: [(String, Any?)]) {
        guard level >= self.level else { return }
        var all: [(String, String)] = [
            ("ts", Timestamp.iso8601(Date())), ("level", level.name), ("msg", msg),
        ]
        all += base
        for (key, value) in fields {
            guard let value else { continue }
            all.append((key, "\(value)"))
        }
        let line = format == .json ? Logger.json(all) : Logger.logfmt(all)
        write(line + "\n")
    }

    private func write(_ line: String) {
        if !Posix.writeAll(fd, Array(line.utf8)) { LogHealth.recordFailure() }
    }

    static func logfmt(_ fields: [(String, String)]) -> String {
        fields.map { key, value in "\(key)=\(quoteLogfmt(value))" }.joined(separator: " ")
    }

    static func quoteLogfmt(_ value: String) -> String {
        let needsQuotes =
            value.isEmpty || value.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0.isNewline }
        guard needsQuotes else { return value }
        let escaped = value.replacing("\\", with: "\\\\")
            .replacing("\"", with: "\\\"")
            .replacing("\n", with: "\\n")
        return "\"\(escaped)\""
    }

    static func json(_ fields: [(String, String)]) -> String {
        "{" + fields.map { "\(jsonString($0.0)):\(jsonString($0.1))" }.joined(separator: ",") + "}"
    }
}

/// A JSON string literal for `s`.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case let c where c.value < 0x20:
            let hex = String(c.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// Process-wide count of log writes that failed (a full disk, a closed descriptor), for
/// the daemon's log and the agents' log files alike: logging degrades, never blocks.
public enum LogHealth {
    private static let failures = Atomic<Int>(0)
    private static let lastFailure = Atomic<Int>(0)

    public static func recordFailure() {
        failures.add(1, ordering: .relaxed)
        lastFailure.store(Int(monotonicSeconds()), ordering: .relaxed)
    }

    public static var failedWrites: Int { failures.load(ordering: .relaxed) }

    /// True when a write failed in the last five minutes.
    public static var isDegraded: Bool {
        let last = lastFailure.load(ordering: .relaxed)
        return last > 0 && Int(monotonicSeconds()) - last < 300
    }
}
