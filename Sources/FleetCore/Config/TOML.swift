#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// A small TOML reader for fleet's configuration file.
//
// It covers the part of TOML 1.0 a config file needs: comments, bare, quoted and dotted keys,
// the four kinds of string, integers, floats, booleans, arrays, inline tables, `[table]` and
// `[[array.of.tables]]` headers. Dates and times are rejected with a hint to quote them.
// Every value keeps the line it was defined on, so the config loader can point at it.

// MARK: - Public types

/// A parse error with the 1-based line it was found on.
public struct TOMLError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The 1-based line of the problem.
    public var line: Int
    /// What is wrong, without the line number.
    public var message: String

    /// Creates an error for `line` with `message`.
    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    /// The error as `line 12: <message>`.
    public var description: String { "line \(line): \(message)" }
}

/// A TOML value. The line where it was defined is kept by the table holding it; see
/// ``TOMLTable/line(of:)``.
public indirect enum TOMLValue: Equatable, Sendable {
    /// A string of any of the four TOML kinds, escapes resolved.
    case string(String)
    /// A 64-bit signed integer, written in decimal, hex, octal or binary.
    case integer(Int64)
    /// A 64-bit float, including `inf` and `nan`.
    case float(Double)
    /// `true` or `false`.
    case boolean(Bool)
    /// An array; an array of tables holds `.table` elements.
    case array([TOMLValue])
    /// A table from a `[header]`, dotted keys or an inline table.
    case table(TOMLTable)
}

/// A table keeping its keys in file order and the line of each key.
///
/// Two tables are equal when they hold the same keys with equal values, as in TOML itself:
/// key order and line numbers are not compared.
public struct TOMLTable: Equatable, Sendable {
    /// The keys in the order they were first defined.
    public private(set) var keys: [String] = []
    /// The 1-based line of the header that opened the table, or the line of the key or `{`
    /// that created it; 0 for the root table.
    public var line: Int = 0

    private var values: [String: TOMLValue] = [:]
    private var lines: [String: Int] = [:]

    /// Creates an empty table.
    public init() {}

    /// The value stored under `key`, or nil.
    public subscript(key: String) -> TOMLValue? { values[key] }

    /// The 1-based line where `key` was defined, or nil when the table does not hold it.
    public func line(of key: String) -> Int? { lines[key] }

    /// Stores `value` under `key`, defined on `line`; a new key goes last.
    mutating func set(_ key: String, to value: TOMLValue, line: Int) {
        if values.updateValue(value, forKey: key) == nil {
            keys.append(key)
        }
        lines[key] = line
    }

    /// Whether both tables hold the same keys with equal values.
    public static func == (lhs: TOMLTable, rhs: TOMLTable) -> Bool {
        lhs.values == rhs.values
    }
}

/// The TOML reader.
public enum TOML {
    /// Parses a document into its root table.
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(text)
        return try parser.parseDocument()
    }
}

// MARK: - Tables while parsing

/// A table under construction. TOML's rules on which tables may be reopened depend on how a
/// table came to be, so the parser builds these and turns them into `TOMLTable` at the end.
private final class TableNode {
    /// How a table was created.
    enum Origin {
        /// Named on the way to a deeper header (`a` in `[a.b]`); may be defined once later.
        case implicit
        /// Opened by its own `[header]` or `[[header]]`, or the root.
        case header
        /// Created by a dotted key (`a.b = 1`) or an inline table.
        case dotted
    }

    /// What a key holds.
    enum Entry {
        case value(TOMLValue)
        case table(TableNode)
        case tableArray([TableNode])
    }

    var origin: Origin
    var line: Int
    private(set) var keys: [String] = []
    private var entries: [String: (entry: Entry, line: Int)] = [:]

    init(origin: Origin, line: Int) {
        self.origin = origin
        self.line = line
    }

    subscript(key: String) -> Entry? { entries[key]?.entry }

    func line(of key: String) -> Int? { entries[key]?.line }

    /// Stores `entry` under `key`; a new key goes last, an existing one keeps its place.
    func set(_ key: String, to entry: Entry, line: Int) {
        if entries[key] == nil {
            keys.append(key)
        }
        entries[key] = (entry, line)
    }

    /// The finished table.
    func table() -> TOMLTable {
        var result = TOMLTable()
        result.line = line
        for key in keys {
            guard let (entry, line) = entries[key] else { continue }
            switch entry {
            case .value(let value):
                result.set(key, to: value, line: line)
            case .table(let node):
                result.set(key, to: .table(node.table()), line: line)
            case .tableArray(let nodes):
                result.set(key, to: .array(nodes.map { .table($0.table()) }), line: line)
            }
        }
        return result
    }
}

// MARK: - Parser

/// The bytes the grammar cares about.
private enum ASCII {
    static let tab = UInt8(ascii: "\t")
    static let newline = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let quote = UInt8(ascii: "\"")
    static let apostrophe = UInt8(ascii: "'")
    static let hash = UInt8(ascii: "#")
    static let comma = UInt8(ascii: ",")
    static let dot = UInt8(ascii: ".")
    static let equals = UInt8(ascii: "=")
    static let backslash = UInt8(ascii: "\\")
    static let underscore = UInt8(ascii: "_")
    static let plus = UInt8(ascii: "+")
    static let minus = UInt8(ascii: "-")
    static let colon = UInt8(ascii: ":")
    static let leftBracket = UInt8(ascii: "[")
    static let rightBracket = UInt8(ascii: "]")
    static let leftBrace = UInt8(ascii: "{")
    static let rightBrace = UInt8(ascii: "}")

    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }

    /// The value of a hex digit (either case), or nil.
    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: return Int(byte - 0x30)
        case 0x41...0x46: return Int(byte - 0x41 + 10)
        case 0x61...0x66: return Int(byte - 0x61 + 10)
        default: return nil
        }
    }

    static func isSign(_ byte: UInt8) -> Bool { byte == plus || byte == minus }

    static func isExponent(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
    }

    static func isBareKey(_ byte: UInt8) -> Bool {
        isLetter(byte) || isDigit(byte) || byte == underscore || byte == minus
    }

    /// Control characters a string may not hold unescaped (tab is allowed).
    static func isControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != tab) || byte == 0x7F
    }
}

/// A recursive-descent parser over the UTF-8 bytes of a document.
private struct TOMLParser {
    private var bytes: [UInt8]
    private var position = 0
    private var line = 1
    private let root = TableNode(origin: .header, line: 0)
    /// The table that key/value lines go into: the root or the last header's table.
    private var current: TableNode

    init(_ text: String) {
        bytes = Self.normalizingNewlines(Array(text.utf8))
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            bytes.removeFirst(3)
        }
        current = root
    }

    /// Turns every CRLF into LF, so the rest of the parser only sees `\n`.
    private static func normalizingNewlines(_ bytes: [UInt8]) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        for index in bytes.indices {
            let isCRLF =
                bytes[index] == ASCII.carriageReturn
                && index + 1 < bytes.count && bytes[index + 1] == ASCII.newline
            if !isCRLF {
                result.append(bytes[index])
            }
        }
        return result
    }

    // MARK: Document structure

    mutating func parseDocument() throws(TOMLError) -> TOMLTable {
        while true {
            skipSpaces()
            guard let byte = peek() else { break }

            switch byte {
            case ASCII.newline:
                advance()
            case ASCII.hash:
                skipComment()
            case ASCII.leftBracket:
                try parseHeader()
                try expectEndOfLine(after: "table header")
            default:
                try parseKeyValue(into: current)
                try expectEndOfLine(after: "value")
            }
        }
        return root.table()
    }

    /// Parses `key = value` and stores it in `table`.
    private mutating func parseKeyValue(into table: TableNode) throws(TOMLError) {
        let keyLine = line
        let path = try parseKeyPath()

        skipSpaces()
        guard peek() == ASCII.equals else {
            throw failure("missing '=' after key '\(display(path))', found \(foundText())")
        }
        advance()
        skipSpaces()

        let value = try parseValue()
        try assign(value, to: path, in: table, line: keyLine)
    }

    /// Parses `[a.b]` or `[[a.b]]` and makes its table the current one.
    private mutating func parseHeader() throws(TOMLError) {
        let headerLine = line
        advance()
        let isArray = peek() == ASCII.leftBracket
        if isArray {
            advance()
        }

        let path = try parseKeyPath()
        let closing = isArray ? "]]" : "]"
        for _ in closing.utf8 {
            guard peek() == ASCII.rightBracket else {
                throw failure("expected '\(closing)' to close the header, found \(foundText())")
            }
            advance()
        }

        if isArray {
            current = try openArrayTable(at: path, line: headerLine)
        } else {
            current = try openTable(at: path, line: headerLine)
        }
    }

    /// After a value or header only a comment may follow on the line.
    private mutating func expectEndOfLine(after what: String) throws(TOMLError) {
        skipSpaces()
        if peek() == ASCII.hash {
            skipComment()
        }
        guard let byte = peek() else { return }
        guard byte == ASCII.newline else {
            throw failure("expected end of line after \(what), found \(foundText())")
        }
        advance()
    }

    // MARK: Building tables

    /// Stores a key/value line's value under a (possibly dotted) key path in `table`.
    private func assign(
        _ value: TOMLValue, to path: [String], in table: TableNode, line: Int
    ) throws(TOMLError) {
        var node = table
        for index in path.indices.dropLast() {
            node = try dottedTable(in: node, at: path[...index], line: line)
        }

        let key = path[path.count - 1]
        if let existing = node[key] {
            let earlier = node.line(of: key) ?? line
            throw duplicate(existing, path: path[...], earlier: earlier, line: line)
        }
        node.set(key, to: .value(value), line: line)
    }

    /// The table a dotted key walks into, created when missing. Only tables that dotted keys
    /// created may be extended this way.
    private func dottedTable(
        in node: TableNode, at path: ArraySlice<String>, line: Int
    ) throws(TOMLError) -> TableNode {
        let key = path[path.endIndex - 1]
        guard let existing = node[key] else {
            let child = TableNode(origin: .dotted, line: line)
            node.set(key, to: .table(child), line: line)
            return child
        }

        if case .table(let child) = existing, child.origin == .dotted {
            return child
        }
        let earlier = node.line(of: key) ?? line
        switch existing {
        case .table, .tableArray:
            throw TOMLError(
                line: line,
                message: "table '\(display(path))' is already defined on line \(earlier); "
                    + "dotted keys cannot extend it")
        case .value(let value):
            throw notATable(value, path: path, earlier: earlier, line: line)
        }
    }

    /// The table for a `[header]`, created or promoted from implicit.
    private func openTable(at path: [String], line: Int) throws(TOMLError) -> TableNode {
        let parent = try headerParent(of: path, line: line)
        let key = path[path.count - 1]

        switch parent[key] {
        case nil:
            let table = TableNode(origin: .header, line: line)
            parent.set(key, to: .table(table), line: line)
            return table
        case .table(let table) where table.origin == .implicit:
            table.origin = .header
            table.line = line
            parent.set(key, to: .table(table), line: line)
            return table
        case .table:
            let earlier = parent.line(of: key) ?? line
            throw TOMLError(
                line: line,
                message: "table '\(display(path))' is already defined on line \(earlier)")
        case .tableArray:
            throw TOMLError(
                line: line,
                message: "'\(display(path))' is already an array of tables; use [[...]]")
        case .value(let value):
            let earlier = parent.line(of: key) ?? line
            throw duplicate(.value(value), path: path[...], earlier: earlier, line: line)
        }
    }

    /// A new element appended to the array of tables for a `[[header]]`.
    private func openArrayTable(at path: [String], line: Int) throws(TOMLError) -> TableNode {
        let parent = try headerParent(of: path, line: line)
        let key = path[path.count - 1]
        let element = TableNode(origin: .header, line: line)

        switch parent[key] {
        case nil:
            parent.set(key, to: .tableArray([element]), line: line)
            return element
        case .tableArray(let elements):
            let earlier = parent.line(of: key) ?? line
            parent.set(key, to: .tableArray(elements + [element]), line: earlier)
            return element
        case .table:
            throw TOMLError(
                line: line,
                message: "'\(display(path))' is already a table, not an array of tables")
        case .value(.array):
            throw TOMLError(
                line: line,
                message: "cannot append to the array '\(display(path))' with [[...]]")
        case .value(let value):
            let earlier = parent.line(of: key) ?? line
            throw duplicate(.value(value), path: path[...], earlier: earlier, line: line)
        }
    }

    /// Walks from the root to the table that will hold a header's last key. Missing tables
    /// are created implicitly; an array of tables leads into its last element.
    private func headerParent(of path: [String], line: Int) throws(TOMLError) -> TableNode {
        var node = root
        for index in path.indices.dropLast() {
            let key = path[index]
            switch node[key] {
            case nil:
                let child = TableNode(origin: .implicit, line: line)
                node.set(key, to: .table(child), line: line)
                node = child
            case .table(let child):
                node = child
            case .tableArray(let elements):
                node = elements[elements.count - 1]
            case .value(let value):
                let earlier = node.line(of: key) ?? line
                throw notATable(value, path: path[...index], earlier: earlier, line: line)
            }
        }
        return node
    }

    /// The error for defining `path` again when it already holds `existing`.
    private func duplicate(
        _ existing: TableNode.Entry, path: ArraySlice<String>, earlier: Int, line: Int
    ) -> TOMLError {
        let name = display(path)
        switch existing {
        case .value:
            return TOMLError(
                line: line, message: "duplicate key '\(name)' (first defined on line \(earlier))")
        case .table, .tableArray:
            return TOMLError(
                line: line,
                message: "key '\(name)' is already defined as a table on line \(earlier)")
        }
    }

    /// The error for using `path` as a table on the way to a deeper key when it holds a value.
    private func notATable(
        _ value: TOMLValue, path: ArraySlice<String>, earlier: Int, line: Int
    ) -> TOMLError {
        let name = display(path)
        if case .table = value {
            return TOMLError(
                line: line,
                message: "inline table '\(name)' (line \(earlier)) cannot be extended")
        }
        return TOMLError(
            line: line, message: "key '\(name)' (line \(earlier)) is a value, not a table")
    }

    // MARK: Keys

    /// Parses `a`, `"a b"`, `'a'` or a dotted path of them; stops after trailing spaces.
    private mutating func parseKeyPath() throws(TOMLError) -> [String] {
        var path: [String] = []
        while true {
            skipSpaces()
            path.append(try parseKey())
            skipSpaces()

            guard peek() == ASCII.dot else { return path }
            advance()
        }
    }

    /// Parses one key part.
    private mutating func parseKey() throws(TOMLError) -> String {
        switch peek() {
        case ASCII.quote:
            guard !atTriple(ASCII.quote) else {
                throw failure("a key cannot be a multi-line string")
            }
            return try parseBasicString()
        case ASCII.apostrophe:
            guard !atTriple(ASCII.apostrophe) else {
                throw failure("a key cannot be a multi-line string")
            }
            return try parseLiteralString()
        default:
            break
        }

        let start = position
        while let byte = peek(), ASCII.isBareKey(byte) {
            advance()
        }
        guard position > start else {
            switch peek() {
            case nil, ASCII.newline, ASCII.equals, ASCII.dot, ASCII.rightBracket, ASCII.hash:
                throw failure("empty key")
            default:
                throw failure("invalid character \(foundText(maxLength: 1)) in key")
            }
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    /// A key path as it would be written, for messages.
    private func display(_ path: some Collection<String>) -> String {
        let parts = path.map { key in
            let isBare = !key.isEmpty && key.utf8.allSatisfy(ASCII.isBareKey)
            return isBare ? key : "\"\(key)\""
        }
        return parts.joined(separator: ".")
    }

    // MARK: Values

    /// Parses the value starting at the current byte.
    private mutating func parseValue() throws(TOMLError) -> TOMLValue {
        switch peek() {
        case ASCII.quote:
            return .string(try atTriple(ASCII.quote) ? parseMultiLineBasic() : parseBasicString())
        case ASCII.apostrophe:
            let isMultiLine = atTriple(ASCII.apostrophe)
            return .string(try isMultiLine ? parseMultiLineLiteral() : parseLiteralString())
        case ASCII.leftBracket:
            return try parseArray()
        case ASCII.leftBrace:
            return try parseInlineTable()
        default:
            return try parseScalar()
        }
    }

    /// Parses `[ v, v, ]`, which may span lines and hold comments.
    private mutating func parseArray() throws(TOMLError) -> TOMLValue {
        let startLine = line
        advance()
        var elements: [TOMLValue] = []

        while true {
            skipBlankLinesAndComments()
            guard let byte = peek() else {
                throw TOMLError(line: startLine, message: "unterminated array")
            }
            if byte == ASCII.rightBracket {
                advance()
                return .array(elements)
            }

            elements.append(try parseValue())

            skipBlankLinesAndComments()
            switch peek() {
            case ASCII.comma:
                advance()
            case ASCII.rightBracket:
                advance()
                return .array(elements)
            case nil:
                throw TOMLError(line: startLine, message: "unterminated array")
            default:
                let opened = line == startLine ? "" : " opened on line \(startLine)"
                throw failure("expected ',' or ']' in array\(opened), found \(foundText())")
            }
        }
    }

    /// Parses `{ k = v, k = v }` on one line.
    private mutating func parseInlineTable() throws(TOMLError) -> TOMLValue {
        let table = TableNode(origin: .dotted, line: line)
        advance()
        skipSpaces()
        if peek() == ASCII.rightBrace {
            advance()
            return .table(table.table())
        }

        while true {
            skipSpaces()
            try expectInlineTableContinues()
            if peek() == ASCII.rightBrace {
                throw failure("trailing comma in inline table")
            }
            try parseKeyValue(into: table)

            skipSpaces()
            try expectInlineTableContinues()
            switch peek() {
            case ASCII.comma:
                advance()
            case ASCII.rightBrace:
                advance()
                return .table(table.table())
            default:
                throw failure("expected ',' or '}' in inline table, found \(foundText())")
            }
        }
    }

    /// Inline tables must close on the line they open.
    private func expectInlineTableContinues() throws(TOMLError) {
        switch peek() {
        case nil, ASCII.newline, ASCII.hash:
            throw failure("unterminated inline table; it must close on the same line")
        default:
            break
        }
    }

    /// Parses a boolean or number, or rejects a date or an unquoted word.
    private mutating func parseScalar() throws(TOMLError) -> TOMLValue {
        let start = position
        while let byte = peek(), Self.isScalarByte(byte) {
            advance()
        }
        guard position > start else {
            throw failure("expected a value, found \(foundText())")
        }
        let token = Array(bytes[start..<position])
        let text = String(decoding: token, as: UTF8.self)

        switch text {
        case "true":
            return .boolean(true)
        case "false":
            return .boolean(false)
        default:
            break
        }
        if Self.looksLikeDate(token) {
            throw failure("dates are not supported; quote the value")
        }
        if let first = token.first, ASCII.isLetter(first), !["inf", "nan"].contains(text) {
            throw failure("invalid value '\(text)'; strings must be quoted")
        }
        return try parseNumber(token, text: text)
    }

    private static func isScalarByte(_ byte: UInt8) -> Bool {
        ASCII.isBareKey(byte) || byte == ASCII.plus || byte == ASCII.dot || byte == ASCII.colon
    }

    /// `1979-05-27...` or `07:32:00...`.
    private static func looksLikeDate(_ token: [UInt8]) -> Bool {
        func digits(_ range: Range<Int>) -> Bool {
            range.upperBound <= token.count && token[range].allSatisfy(ASCII.isDigit)
        }
        let isDate = digits(0..<4) && token.count > 4 && token[4] == ASCII.minus
        let isTime = digits(0..<2) && token.count > 2 && token[2] == ASCII.colon
        return isDate || isTime
    }

    // MARK: Numbers

    /// Parses an integer (decimal, `0x`, `0o`, `0b`) or a float.
    private func parseNumber(_ token: [UInt8], text: String) throws(TOMLError) -> TOMLValue {
        if let special = Self.specialFloat(text) {
            return .float(special)
        }
        if token.count > 2, token[0] == UInt8(ascii: "0"), let radix = Self.radix(token[1]) {
            return try parseRadixInteger(token, radix: radix, text: text)
        }

        guard let isFloat = Self.scanDecimal(token) else {
            throw failure("invalid number '\(text)'")
        }
        let digits = String(decoding: token.filter { $0 != ASCII.underscore }, as: UTF8.self)
        if isFloat {
            guard let value = Double(digits) else { throw failure("invalid number '\(text)'") }
            return .float(value)
        }
        guard let value = Int64(digits) else {
            throw failure("integer '\(text)' is out of range")
        }
        return .integer(value)
    }

    private static func specialFloat(_ text: String) -> Double? {
        switch text {
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        case "nan", "+nan", "-nan": return .nan
        default: return nil
        }
    }

    private static func radix(_ prefix: UInt8) -> Int? {
        switch prefix {
        case UInt8(ascii: "x"): return 16
        case UInt8(ascii: "o"): return 8
        case UInt8(ascii: "b"): return 2
        default: return nil
        }
    }

    /// Parses `0x…`, `0o…` or `0b…` with `_` separators.
    private func parseRadixInteger(
        _ token: [UInt8], radix: Int, text: String
    ) throws(TOMLError) -> TOMLValue {
        let body = Array(token.dropFirst(2))
        var index = 0
        let isDigit: (UInt8) -> Bool = { byte in
            guard let value = ASCII.hexValue(byte) else { return false }
            return value < radix
        }
        guard Self.scanDigits(body, at: &index, isDigit), index == body.count else {
            throw failure("invalid number '\(text)'")
        }

        let digits = String(decoding: body.filter { $0 != ASCII.underscore }, as: UTF8.self)
        guard let value = Int64(digits, radix: radix) else {
            throw failure("integer '\(text)' is out of range")
        }
        return .integer(value)
    }

    /// Checks a decimal integer or float: sign, integer part without leading zeros, optional
    /// fraction and exponent. Returns whether it is a float, or nil when malformed.
    private static func scanDecimal(_ token: [UInt8]) -> Bool? {
        var index = 0
        if index < token.count, ASCII.isSign(token[index]) {
            index += 1
        }

        let integerStart = index
        guard scanDigits(token, at: &index, ASCII.isDigit) else { return nil }
        if token[integerStart] == UInt8(ascii: "0") && index - integerStart > 1 {
            return nil
        }

        var isFloat = false
        if index < token.count, token[index] == ASCII.dot {
            index += 1
            isFloat = true
            guard scanDigits(token, at: &index, ASCII.isDigit) else { return nil }
        }
        if index < token.count, ASCII.isExponent(token[index]) {
            index += 1
            isFloat = true
            if index < token.count, ASCII.isSign(token[index]) {
                index += 1
            }
            guard scanDigits(token, at: &index, ASCII.isDigit) else { return nil }
        }
        return index == token.count ? isFloat : nil
    }

    /// Consumes digits with single `_` between them; false when none or a `_` is misplaced.
    private static func scanDigits(
        _ token: [UInt8], at index: inout Int, _ isDigit: (UInt8) -> Bool
    ) -> Bool {
        guard index < token.count, isDigit(token[index]) else { return false }
        index += 1

        while index < token.count {
            if isDigit(token[index]) {
                index += 1
            } else if token[index] == ASCII.underscore {
                guard index + 1 < token.count, isDigit(token[index + 1]) else { return false }
                index += 2
            } else {
                break
            }
        }
        return true
    }

    // MARK: Strings

    /// Parses `"..."` with escapes.
    private mutating func parseBasicString() throws(TOMLError) -> String {
        advance()
        var result: [UInt8] = []

        while true {
            guard let byte = peek(), byte != ASCII.newline else {
                throw failure("unterminated string")
            }
            switch byte {
            case ASCII.quote:
                advance()
                return String(decoding: result, as: UTF8.self)
            case ASCII.backslash:
                advance()
                try appendEscape(to: &result)
            default:
                try appendStringByte(to: &result)
            }
        }
    }

    /// Parses `"""..."""`; a newline right after the opening quotes is dropped.
    private mutating func parseMultiLineBasic() throws(TOMLError) -> String {
        let startLine = line
        advance(by: 3)
        if peek() == ASCII.newline {
            advance()
        }
        var result: [UInt8] = []

        while true {
            guard let byte = peek() else {
                throw TOMLError(line: startLine, message: "unterminated multi-line string")
            }
            switch byte {
            case ASCII.quote:
                if closeMultiLine(ASCII.quote, into: &result) {
                    return String(decoding: result, as: UTF8.self)
                }
            case ASCII.backslash:
                advance()
                if atLineEndingBackslash() {
                    skipBlankLinesAndSpaces()
                } else {
                    try appendEscape(to: &result)
                }
            case ASCII.newline:
                result.append(byte)
                advance()
            default:
                try appendStringByte(to: &result)
            }
        }
    }

    /// Parses `'...'`, taken as written.
    private mutating func parseLiteralString() throws(TOMLError) -> String {
        advance()
        var result: [UInt8] = []

        while true {
            guard let byte = peek(), byte != ASCII.newline else {
                throw failure("unterminated string")
            }
            if byte == ASCII.apostrophe {
                advance()
                return String(decoding: result, as: UTF8.self)
            }
            try appendStringByte(to: &result)
        }
    }

    /// Parses `'''...'''`; a newline right after the opening quotes is dropped.
    private mutating func parseMultiLineLiteral() throws(TOMLError) -> String {
        let startLine = line
        advance(by: 3)
        if peek() == ASCII.newline {
            advance()
        }
        var result: [UInt8] = []

        while true {
            guard let byte = peek() else {
                throw TOMLError(line: startLine, message: "unterminated multi-line string")
            }
            if byte == ASCII.apostrophe {
                if closeMultiLine(ASCII.apostrophe, into: &result) {
                    return String(decoding: result, as: UTF8.self)
                }
            } else if byte == ASCII.newline {
                result.append(byte)
                advance()
            } else {
                try appendStringByte(to: &result)
            }
        }
    }

    /// At a run of `quote` bytes inside a multi-line string: three or more close it, with up
    /// to two extra quotes belonging to the content. Fewer are content.
    private mutating func closeMultiLine(_ quote: UInt8, into result: inout [UInt8]) -> Bool {
        var count = 0
        while position + count < bytes.count, bytes[position + count] == quote, count < 5 {
            count += 1
        }
        advance(by: count)

        guard count >= 3 else {
            result.append(contentsOf: repeatElement(quote, count: count))
            return false
        }
        result.append(contentsOf: repeatElement(quote, count: count - 3))
        return true
    }

    /// Copies one byte of string content, refusing control characters.
    private mutating func appendStringByte(to result: inout [UInt8]) throws(TOMLError) {
        guard let byte = peek() else { return }
        if ASCII.isControl(byte) {
            throw failure("\(Self.describeControl(byte)) in a string must be escaped")
        }
        result.append(byte)
        advance()
    }

    /// Resolves the escape after a backslash.
    private mutating func appendEscape(to result: inout [UInt8]) throws(TOMLError) {
        guard let byte = peek(), byte != ASCII.newline else {
            throw failure("unterminated string")
        }

        let simple: UInt8?
        switch byte {
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "t"): simple = ASCII.tab
        case UInt8(ascii: "n"): simple = ASCII.newline
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "r"): simple = ASCII.carriageReturn
        case UInt8(ascii: "e"): simple = 0x1B
        case ASCII.quote: simple = ASCII.quote
        case ASCII.backslash: simple = ASCII.backslash
        default: simple = nil
        }
        if let simple {
            result.append(simple)
            advance()
            return
        }

        switch byte {
        case UInt8(ascii: "u"):
            try appendUnicodeEscape(digits: 4, to: &result)
        case UInt8(ascii: "U"):
            try appendUnicodeEscape(digits: 8, to: &result)
        default:
            throw failure("invalid escape '\\\(character(at: position))'")
        }
    }

    /// Resolves `\uXXXX` or `\UXXXXXXXX`; the current byte is the `u`.
    private mutating func appendUnicodeEscape(
        digits: Int, to result: inout [UInt8]
    ) throws(TOMLError) {
        let start = position
        advance()
        var code: UInt32 = 0
        for _ in 0..<digits {
            guard let byte = peek(), let digit = ASCII.hexValue(byte) else {
                let written = String(decoding: bytes[start..<position], as: UTF8.self)
                throw failure(
                    "invalid unicode escape '\\\(written)'; expected \(digits) hex digits")
            }
            code = code << 4 | UInt32(digit)
            advance()
        }

        guard let scalar = Unicode.Scalar(code) else {
            let written = String(decoding: bytes[start..<position], as: UTF8.self)
            throw failure("invalid unicode escape '\\\(written)'; not a Unicode scalar value")
        }
        result.append(contentsOf: Array(String(Character(scalar)).utf8))
    }

    /// After a backslash in a multi-line basic string: whether only spaces follow up to the
    /// end of the line, which makes the backslash trim the line break and leading space.
    private func atLineEndingBackslash() -> Bool {
        var index = position
        while index < bytes.count, bytes[index] == ASCII.space || bytes[index] == ASCII.tab {
            index += 1
        }
        return index < bytes.count && bytes[index] == ASCII.newline
    }

    // MARK: Cursor

    private func peek() -> UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private func atTriple(_ quote: UInt8) -> Bool {
        position + 2 < bytes.count
            && bytes[position] == quote && bytes[position + 1] == quote
            && bytes[position + 2] == quote
    }

    /// Moves past `count` bytes, counting lines.
    private mutating func advance(by count: Int = 1) {
        for _ in 0..<count where position < bytes.count {
            if bytes[position] == ASCII.newline {
                line += 1
            }
            position += 1
        }
    }

    private mutating func skipSpaces() {
        while let byte = peek(), byte == ASCII.space || byte == ASCII.tab {
            advance()
        }
    }

    private mutating func skipBlankLinesAndSpaces() {
        while let byte = peek(), byte == ASCII.space || byte == ASCII.tab || byte == ASCII.newline {
            advance()
        }
    }

    private mutating func skipBlankLinesAndComments() {
        while true {
            skipBlankLinesAndSpaces()
            guard peek() == ASCII.hash else { return }
            skipComment()
        }
    }

    /// Skips from `#` up to, not including, the line break.
    private mutating func skipComment() {
        while let byte = peek(), byte != ASCII.newline {
            advance()
        }
    }

    // MARK: Messages

    private func failure(_ message: String) -> TOMLError {
        TOMLError(line: line, message: message)
    }

    /// The word or punctuation character at the cursor, quoted, for "found ..." in messages.
    private func foundText(maxLength: Int = 20) -> String {
        guard let byte = peek() else { return "end of file" }
        if byte == ASCII.newline { return "end of line" }

        if ASCII.isControl(byte) { return Self.describeControl(byte) }
        let isWordByte = { (byte: UInt8) in Self.isScalarByte(byte) || byte >= 0x80 }
        guard isWordByte(byte) else { return "'\(character(at: position))'" }

        var end = position
        var count = 0
        while end < bytes.count, count < maxLength, isWordByte(bytes[end]) {
            end += Self.scalarLength(lead: bytes[end])
            count += 1
        }
        return "'" + String(decoding: bytes[position..<min(end, bytes.count)], as: UTF8.self) + "'"
    }

    /// The whole character starting at `index`, for messages.
    private func character(at index: Int) -> String {
        let end = min(index + Self.scalarLength(lead: bytes[index]), bytes.count)
        return String(decoding: bytes[index..<end], as: UTF8.self)
    }

    /// `control character U+000D`.
    private static func describeControl(_ byte: UInt8) -> String {
        let code = String(byte, radix: 16, uppercase: true)
        return "control character U+" + String(repeating: "0", count: 4 - code.count) + code
    }

    private static func scalarLength(lead: UInt8) -> Int {
        switch lead {
        case 0xF0...: return 4
        case 0xE0...: return 3
        case 0xC0...: return 2
        default: return 1
        }
    }
}
