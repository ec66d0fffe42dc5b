#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CSQLite

/// A failed SQLite call: the extended result code, SQLite's message and the SQL (never
/// the bound values, which could hold anything).
public struct SQLiteError: Error, CustomStringConvertible {
    public var code: Int32
    public var message: String
    public var sql: String?

    public var description: String {
        var text = "sqlite error \(code): \(message)"
        if let sql { text += " (in: \(sql.prefix(120)))" }
        return text
    }
}

/// A value to bind to a statement parameter.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
}

/// Something that binds as an SQL value.
public protocol SQLBindable {
    var sqlValue: SQLValue { get }
}

extension Int: SQLBindable { public var sqlValue: SQLValue { .int(Int64(self)) } }
extension Int32: SQLBindable { public var sqlValue: SQLValue { .int(Int64(self)) } }
extension Int64: SQLBindable { public var sqlValue: SQLValue { .int(self) } }
extension UInt64: SQLBindable { public var sqlValue: SQLValue { .int(Int64(bitPattern: self)) } }
extension Double: SQLBindable { public var sqlValue: SQLValue { .double(self) } }
extension String: SQLBindable { public var sqlValue: SQLValue { .text(self) } }
extension Date: SQLBindable { public var sqlValue: SQLValue { .double(timeIntervalSince1970) } }
extension Optional: SQLBindable where Wrapped: SQLBindable {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}

/// One row of a query, read by column index.
public struct Row {
    fileprivate let stmt: OpaquePointer

    public func isNull(_ i: Int32) -> Bool { sqlite3_column_type(stmt, i) == SQLITE_NULL }
    public func int(_ i: Int32) -> Int { Int(sqlite3_column_int64(stmt, i)) }
    public func int64(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
    public func double(_ i: Int32) -> Double { sqlite3_column_double(stmt, i) }
    public func string(_ i: Int32) -> String? {
        guard let text = sqlite3_column_text(stmt, i) else { return nil }
        return String(cString: text)
    }
    public func date(_ i: Int32) -> Date? {
        isNull(i) ? nil : Date(timeIntervalSince1970: double(i))
    }
    public func optionalInt(_ i: Int32) -> Int? { isNull(i) ? nil : int(i) }
}

/// A thin SQLite connection: WAL, a busy timeout, extended result codes.
///
/// Not thread-safe by itself; `Store` serialises access.
public final class Database {
    private var handle: OpaquePointer?
    public let path: String

    /// Opens (creating unless `readOnly`) the database at `path`.
    public init(path: String, readOnly: Bool = false, busyTimeoutMs: Int32 = 5000) throws {
        self.path = path
        let flags =
            readOnly
            ? SQLITE_OPEN_READONLY
            : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            self.handle = nil
            throw SQLiteError(code: rc, message: "open \(path): \(message)", sql: nil)
        }
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, busyTimeoutMs)
        if !readOnly {
            try execute("PRAGMA journal_mode = WAL")
            try execute("PRAGMA synchronous = NORMAL")
        }
        try execute("PRAGMA foreign_keys = ON")
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// Runs SQL that returns no rows (one or more statements, no parameters).
    public func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text, sql: sql)
        }
    }

    /// Runs one statement with parameters; returns the number of changed rows.
    @discardableResult
    public func run(_ sql: String, _ params: SQLBindable...) throws -> Int {
        try query(sql, params) { _ in }
        return Int(sqlite3_changes(handle))
    }

    /// Runs a query, calling `row` for each result row.
    public func query(_ sql: String, _ params: [SQLBindable], row: (Row) throws -> Void) throws {
        var stmt: OpaquePointer?
        var rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql) }
        defer { sqlite3_finalize(stmt) }

        for (index, param) in params.enumerated() {
            let i = Int32(index + 1)
            switch param.sqlValue {
            case .null: rc = sqlite3_bind_null(stmt, i)
            case .int(let v): rc = sqlite3_bind_int64(stmt, i, v)
            case .double(let v): rc = sqlite3_bind_double(stmt, i, v)
            case .text(let v): rc = sqlite3_bind_text(stmt, i, v, -1, fleet_sqlite_transient())
            }
            guard rc == SQLITE_OK else { throw error(rc, sql) }
        }

        while true {
            rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw error(rc, sql) }
            try row(Row(stmt: stmt))
        }
    }

    /// Maps every row of a query.
    public func all<T>(_ sql: String, _ params: SQLBindable..., map: (Row) throws -> T) throws -> [T] {
        var out: [T] = []
        try query(sql, params) { out.append(try map($0)) }
        return out
    }

    /// Runs `body` in an immediate transaction; rolls back when it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    private func error(_ rc: Int32, _ sql: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }
}
