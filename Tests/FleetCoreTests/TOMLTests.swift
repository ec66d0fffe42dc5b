import FleetCore
import Testing

// MARK: - Helpers

/// Looks up a value by a `/`-separated path; a number part indexes an array.
private func value(_ table: TOMLTable, _ path: String) -> TOMLValue? {
    var current = TOMLValue.table(table)
    for part in path.split(separator: "/", omittingEmptySubsequences: false) {
        switch current {
        case .table(let table):
            guard let next = table[String(part)] else { return nil }
            current = next
        case .array(let elements):
            guard let index = Int(part), elements.indices.contains(index) else { return nil }
            current = elements[index]
        default:
            return nil
        }
    }
    return current
}

/// The table at a `/`-separated path; the empty path is the root.
private func table(_ root: TOMLTable, _ path: String) -> TOMLTable? {
    guard !path.isEmpty else { return root }
    guard case .table(let table) = value(root, path) else { return nil }
    return table
}

/// The line where the last key of a `/`-separated path was defined.
private func line(_ root: TOMLTable, _ path: String) -> Int? {
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    let parent = parts.dropLast().joined(separator: "/")
    return table(root, parent)?.line(of: String(parts[parts.count - 1]))
}

/// Parses `toml`, recording the error as a test failure.
private func parse(_ toml: String) -> TOMLTable? {
    do {
        return try TOML.parse(toml)
    } catch {
        Issue.record("unexpected error: \(error)")
        return nil
    }
}

/// A document, a path into it and the value expected there.
struct TOMLValidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var toml: String
    var path: String
    var expected: TOMLValue
    /// The line the key is defined on, when the case checks it.
    var line: Int?

    init(_ name: String, _ toml: String, _ path: String, _ expected: TOMLValue, line: Int? = nil) {
        self.name = name
        self.toml = toml
        self.path = path
        self.expected = expected
        self.line = line
    }

    var testDescription: String { name }
}

/// A document that must fail, the line of the error and a fragment of its message.
struct TOMLInvalidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var toml: String
    var line: Int
    var fragment: String

    init(_ name: String, _ toml: String, line: Int, _ fragment: String) {
        self.name = name
        self.toml = toml
        self.line = line
        self.fragment = fragment
    }

    var testDescription: String { name }
}

// MARK: - Cases

private let validCases: [TOMLValidCase] = [
    // Strings
    TOMLValidCase(
        "basic escapes", #"s = "a\"b\\c\nd\te\rf\bg\fh""#, "s",
        .string("a\"b\\c\nd\te\rf\u{08}g\u{0C}h")),
    TOMLValidCase("unicode escapes", #"s = "caf\u00E9 \U0001F680""#, "s", .string("café 🚀")),
    TOMLValidCase("raw unicode", "s = \"naïve ✓ 日本語 🚀\"", "s", .string("naïve ✓ 日本語 🚀")),
    TOMLValidCase("tab in string", "s = \"a\tb\"", "s", .string("a\tb")),
    TOMLValidCase(
        "hash inside string", #"s = "a # not a comment" # a comment"#, "s",
        .string("a # not a comment")),
    TOMLValidCase("empty basic string", #"s = """#, "s", .string("")),
    TOMLValidCase(
        "literal string", #"s = 'C:\Users\fleet "x"'"#, "s",
        .string(#"C:\Users\fleet "x""#)),
    TOMLValidCase("empty literal string", "s = ''", "s", .string("")),
    TOMLValidCase(
        "multi-line basic trims first newline", "s = \"\"\"\nline1\nline2\"\"\"", "s",
        .string("line1\nline2")),
    TOMLValidCase(
        "multi-line basic keeps later newlines", "s = \"\"\"\n\na\n\"\"\"", "s",
        .string("\na\n")),
    TOMLValidCase(
        "multi-line basic on one line", #"s = """one "two" three""""#, "s",
        .string(#"one "two" three"#)),
    TOMLValidCase(
        "multi-line basic quotes before close", "s = \"\"\"a \"\"b\"\" c\"\"\"\"\"",
        "s", .string(#"a ""b"" c"""#)),
    TOMLValidCase(
        "multi-line basic line-ending backslash",
        "s = \"\"\"\nThe quick \\   \n\n    brown \\\n  fox\"\"\"", "s",
        .string("The quick brown fox")),
    TOMLValidCase(
        "multi-line basic escapes", "s = \"\"\"\ntab\\there\\u00E9\"\"\"", "s",
        .string("tab\there\u{E9}")),
    TOMLValidCase(
        "multi-line literal", "s = '''\nraw \\n here\n'''", "s",
        .string("raw \\n here\n")),
    TOMLValidCase(
        "multi-line literal quotes", "s = '''it's ''fine'''''", "s",
        .string("it's ''fine''")),
    TOMLValidCase(
        "multi-line string with CRLF", "s = \"\"\"\r\na\r\nb\"\"\"\r\n", "s",
        .string("a\nb")),

    // Integers
    TOMLValidCase("integer", "i = 42", "i", .integer(42)),
    TOMLValidCase("positive integer", "i = +17", "i", .integer(17)),
    TOMLValidCase("negative integer", "i = -17", "i", .integer(-17)),
    TOMLValidCase("zero", "i = 0", "i", .integer(0)),
    TOMLValidCase("negative zero", "i = -0", "i", .integer(0)),
    TOMLValidCase("underscores", "i = 1_000_000", "i", .integer(1_000_000)),
    TOMLValidCase("hex", "i = 0xDEAD_beef", "i", .integer(0xDEAD_BEEF)),
    TOMLValidCase("octal", "i = 0o755", "i", .integer(0o755)),
    TOMLValidCase("binary", "i = 0b1101", "i", .integer(0b1101)),
    TOMLValidCase("max integer", "i = 9223372036854775807", "i", .integer(.max)),
    TOMLValidCase("min integer", "i = -9223372036854775808", "i", .integer(.min)),

    // Floats
    TOMLValidCase("float", "f = 1.5", "f", .float(1.5)),
    TOMLValidCase("float exponent", "f = -2e3", "f", .float(-2000)),
    TOMLValidCase("float fraction and exponent", "f = 6.25e-2", "f", .float(0.0625)),
    TOMLValidCase("float capital exponent", "f = 1E+6", "f", .float(1_000_000)),
    TOMLValidCase("float sign", "f = +1.0", "f", .float(1)),
    TOMLValidCase("float underscores", "f = 3.141_5", "f", .float(3.1415)),
    TOMLValidCase("float zero", "f = -0.0", "f", .float(-0.0)),
    TOMLValidCase("inf", "f = inf", "f", .float(.infinity)),
    TOMLValidCase("negative inf", "f = -inf", "f", .float(-.infinity)),

    // Booleans
    TOMLValidCase("true", "b = true", "b", .boolean(true)),
    TOMLValidCase("false", "b = false # no", "b", .boolean(false)),

    // Arrays
    TOMLValidCase("array", "a = [1, 2, 3]", "a", .array([.integer(1), .integer(2), .integer(3)])),
    TOMLValidCase("empty array", "a = [ ]", "a", .array([])),
    TOMLValidCase(
        "nested arrays", #"a = [[1, 2], ["x"], []]"#, "a",
        .array([.array([.integer(1), .integer(2)]), .array([.string("x")]), .array([])])),
    TOMLValidCase(
        "mixed array", #"a = [1, "two", 3.0, true]"#, "a",
        .array([.integer(1), .string("two"), .float(3), .boolean(true)])),
    TOMLValidCase(
        "multi-line array with comments and trailing comma",
        "a = [ # open\n  \"x\", # first\n\n  # alone\n  \"y\",\n]\nb = 1", "a",
        .array([.string("x"), .string("y")])),
    TOMLValidCase(
        "key after multi-line array", "a = [\n  1,\n  2,\n]\nb = 1", "b", .integer(1),
        line: 5),
    TOMLValidCase("array of inline tables", "a = [{ x = 1 }, { x = 2 }]", "a/1/x", .integer(2)),

    // Inline tables
    TOMLValidCase("inline table", #"t = { a = 1, b = "x" }"#, "t/b", .string("x"), line: 1),
    TOMLValidCase("empty inline table", "t = {}", "t", .table(TOMLTable())),
    TOMLValidCase("nested inline table", "t = { a = { b = [1] } }", "t/a/b", .array([.integer(1)])),
    TOMLValidCase("dotted key in inline table", "t = { a.b = 1, a.c = 2 }", "t/a/c", .integer(2)),
    TOMLValidCase("quoted key in inline table", #"t = { "x.y" = 1 }"#, "t/x.y", .integer(1)),

    // Keys
    TOMLValidCase("quoted key", #""a b" = 1"#, "a b", .integer(1)),
    TOMLValidCase("literal key", "'a\\b' = 1", "a\\b", .integer(1)),
    TOMLValidCase("empty quoted key", #""" = 1"#, "", .integer(1)),
    TOMLValidCase("unicode quoted key", #""ʎǝʞ" = 1"#, "ʎǝʞ", .integer(1)),
    TOMLValidCase("numeric bare key", "1234 = 1", "1234", .integer(1)),
    TOMLValidCase("dash and underscore key", "key-with_dash = 1", "key-with_dash", .integer(1)),
    TOMLValidCase("dotted key", "a.b.c = 1", "a/b/c", .integer(1)),
    TOMLValidCase("dotted key with spaces", "a . b = 1", "a/b", .integer(1)),
    TOMLValidCase(
        "dotted key with quoted part", #"site."google.com" = true"#, "site/google.com",
        .boolean(true)),
    TOMLValidCase(
        "dotted keys extend each other", "a.b = 1\na.c = 2", "a/c", .integer(2),
        line: 2),

    // Headers
    TOMLValidCase("table header", "[a.b]\nc = 1", "a/b/c", .integer(1), line: 2),
    TOMLValidCase(
        "header with spaces and quotes", "[ a . \"b c\" ]\nd = 1", "a/b c/d",
        .integer(1)),
    TOMLValidCase(
        "implicit table defined later", "[a.b]\nx = 1\n[a]\ny = 2", "a/y", .integer(2),
        line: 4),
    TOMLValidCase(
        "sub-table of a dotted table",
        "[fruit]\napple.color = \"red\"\n[fruit.apple.texture]\nsmooth = true",
        "fruit/apple/texture/smooth", .boolean(true), line: 4),
    TOMLValidCase("header comment", "[a] # the a table\nx = 1", "a/x", .integer(1)),
    TOMLValidCase("array of tables", "[[p]]\nx = 1\n[[p]]\nx = 2", "p/1/x", .integer(2), line: 4),
    TOMLValidCase(
        "sub-table of last array element", "[[p]]\n[[p]]\n[p.q]\nx = 1", "p/1/q/x",
        .integer(1)),
    TOMLValidCase(
        "nested array of tables", "[[p]]\n[[p.q]]\nx = 1\n[[p.q]]\nx = 2", "p/0/q/1/x",
        .integer(2), line: 5),

    // Layout
    TOMLValidCase(
        "comment-only lines", "# head\n\n   # indented\na = 1 # tail", "a", .integer(1),
        line: 4),
    TOMLValidCase("indented keys", "  \ta = 1", "a", .integer(1)),
    TOMLValidCase("byte order mark", "\u{FEFF}a = 1", "a", .integer(1)),
    TOMLValidCase(
        "CRLF line endings", "a = 1\r\n\r\nb = \"x\" # c\r\n", "b", .string("x"),
        line: 3),
    TOMLValidCase("no trailing newline", "a = 1", "a", .integer(1), line: 1),
]

private let invalidCases: [TOMLInvalidCase] = [
    // Duplicates and redefinitions
    TOMLInvalidCase("duplicate key", "name = 1\nname = 2", line: 2, "duplicate key 'name'"),
    TOMLInvalidCase(
        "duplicate key names first line", "a = 1\n\na = 2", line: 3,
        "first defined on line 1"),
    TOMLInvalidCase(
        "duplicate quoted and bare key", "a = 1\n\"a\" = 2", line: 2,
        "duplicate key 'a'"),
    TOMLInvalidCase("duplicate dotted key", "a.b = 1\na.b = 2", line: 2, "duplicate key 'a.b'"),
    TOMLInvalidCase(
        "duplicate in inline table", "t = { a = 1, a = 2 }", line: 1,
        "duplicate key 'a'"),
    TOMLInvalidCase(
        "duplicate in array of tables element",
        "[[slot]]\nname = 'a'\n[[slot]]\nname = 'b'\nname = 'c'", line: 5,
        "duplicate key 'name'"),
    TOMLInvalidCase(
        "redefined table", "[a]\nx = 1\n\n[a]", line: 4,
        "table 'a' is already defined on line 1"),
    TOMLInvalidCase(
        "redefined dotted table by header", "[a]\nb.c = 1\n[a.b]", line: 3,
        "table 'a.b' is already defined"),
    TOMLInvalidCase(
        "dotted keys into header table", "[a.b]\nx = 1\n[a]\nb.y = 2", line: 4,
        "dotted keys cannot extend it"),
    TOMLInvalidCase(
        "key assigned where a table exists", "[a.b]\nx = 1\n[a]\nb = 2", line: 4,
        "key 'b' is already defined as a table on line 1"),
    TOMLInvalidCase(
        "key assigned where dotted table exists", "a.b = 1\na = 2", line: 2,
        "key 'a' is already defined as a table"),
    TOMLInvalidCase("table over a value", "a = 1\n[a]", line: 2, "duplicate key 'a'"),
    TOMLInvalidCase(
        "dotted key through a value", "a = 1\na.b = 2", line: 2,
        "key 'a' (line 1) is a value, not a table"),
    TOMLInvalidCase("header through a value", "a = 1\n[a.b]", line: 2, "is a value, not a table"),
    TOMLInvalidCase(
        "extend inline table with dotted key", "a = { b = 1 }\na.c = 2", line: 2,
        "inline table 'a' (line 1) cannot be extended"),
    TOMLInvalidCase(
        "extend inline table with header", "a = { b = 1 }\n[a.c]", line: 2,
        "cannot be extended"),
    TOMLInvalidCase(
        "array of tables over a table", "[a]\n[[a]]", line: 2,
        "already a table, not an array of tables"),
    TOMLInvalidCase(
        "table over an array of tables", "[[a]]\n[a]", line: 2,
        "already an array of tables"),
    TOMLInvalidCase(
        "array of tables over a static array", "a = [1]\n[[a]]", line: 2,
        "cannot append to the array 'a'"),

    // Strings
    TOMLInvalidCase("unterminated string", "a = \"abc\nb = 1", line: 1, "unterminated string"),
    TOMLInvalidCase(
        "unterminated string at end", "x = 1\na = \"abc", line: 2,
        "unterminated string"),
    TOMLInvalidCase("unterminated literal string", "a = 'abc\n", line: 1, "unterminated string"),
    TOMLInvalidCase(
        "unterminated multi-line string", "x = 1\na = \"\"\"\nabc\n", line: 2,
        "unterminated multi-line string"),
    TOMLInvalidCase(
        "unterminated multi-line literal", "a = '''\nabc''\n", line: 1,
        "unterminated multi-line string"),
    TOMLInvalidCase("invalid escape", #"a = "\q""#, line: 1, #"invalid escape '\q'"#),
    TOMLInvalidCase(
        "invalid escape in multi-line", "a = \"\"\"\nok\n\\x\"\"\"", line: 3,
        "invalid escape '\\x'"),
    TOMLInvalidCase("short unicode escape", #"a = "\u12""#, line: 1, "invalid unicode escape"),
    TOMLInvalidCase("surrogate escape", #"a = "\uD800""#, line: 1, "not a Unicode scalar value"),
    TOMLInvalidCase("control character", "a = \"x\u{01}y\"", line: 1, "control character U+0001"),
    TOMLInvalidCase("multi-line key", #""""a""" = 1"#, line: 1, "cannot be a multi-line string"),

    // Numbers and other scalars
    TOMLInvalidCase("letters after digits", "a = 12x", line: 1, "invalid number '12x'"),
    TOMLInvalidCase("double underscore", "a = 1__0", line: 1, "invalid number '1__0'"),
    TOMLInvalidCase("trailing underscore", "a = 10_", line: 1, "invalid number"),
    TOMLInvalidCase("leading zero", "a = 01", line: 1, "invalid number '01'"),
    TOMLInvalidCase("dot without fraction", "a = 1.", line: 1, "invalid number '1.'"),
    TOMLInvalidCase("dot without integer", "a = .5", line: 1, "invalid number '.5'"),
    TOMLInvalidCase("empty exponent", "a = 1e", line: 1, "invalid number"),
    TOMLInvalidCase("bad hex digit", "a = 0xZZ", line: 1, "invalid number '0xZZ'"),
    TOMLInvalidCase("bad binary digit", "a = 0b102", line: 1, "invalid number"),
    TOMLInvalidCase("signed hex", "a = -0x1", line: 1, "invalid number"),
    TOMLInvalidCase("integer overflow", "a = 9223372036854775808", line: 1, "out of range"),
    TOMLInvalidCase("hex overflow", "a = 0x8000000000000000", line: 1, "out of range"),
    TOMLInvalidCase("unquoted string", "a = hello", line: 1, "strings must be quoted"),
    TOMLInvalidCase("capitalised boolean", "a = True", line: 1, "strings must be quoted"),
    TOMLInvalidCase(
        "offset date-time", "d = 1979-05-27T07:32:00Z", line: 1,
        "dates are not supported; quote the value"),
    TOMLInvalidCase("local date", "x = 1\nd = 1979-05-27", line: 2, "dates are not supported"),
    TOMLInvalidCase(
        "date with space", "d = 1979-05-27 07:32:00", line: 1,
        "dates are not supported"),
    TOMLInvalidCase("local time", "t = 07:32:00", line: 1, "dates are not supported"),

    // Line structure
    TOMLInvalidCase(
        "two values", "a = 1 2", line: 1,
        "expected end of line after value, found '2'"),
    TOMLInvalidCase(
        "word after string", "a = \"x\" y = 2", line: 1,
        "expected end of line after value, found 'y'"),
    TOMLInvalidCase("two booleans", "a = true false", line: 1, "found 'false'"),
    TOMLInvalidCase("bracket after array", "a = [1] ]", line: 1, "found ']'"),
    TOMLInvalidCase(
        "text after header", "[a] x", line: 1,
        "expected end of line after table header, found 'x'"),
    TOMLInvalidCase("missing equals", "name \"x\"", line: 1, "missing '=' after key 'name'"),
    TOMLInvalidCase("key alone", "x = 1\nname\n", line: 2, "missing '=' after key 'name'"),
    TOMLInvalidCase(
        "missing equals after dotted key", "a.b 1", line: 1,
        "missing '=' after key 'a.b'"),
    TOMLInvalidCase("empty key", "= 1", line: 1, "empty key"),
    TOMLInvalidCase("empty dotted part", "a. = 1", line: 1, "empty key"),
    TOMLInvalidCase("double dot", "a..b = 1", line: 1, "empty key"),
    TOMLInvalidCase("empty header", "[]", line: 1, "empty key"),
    TOMLInvalidCase("invalid key character", "$a = 1", line: 1, "invalid character '$' in key"),
    TOMLInvalidCase("missing value", "a =", line: 1, "expected a value, found end of file"),
    TOMLInvalidCase(
        "missing value before comment", "a = # none", line: 1,
        "expected a value, found '#'"),
    TOMLInvalidCase(
        "missing value before newline", "a =\nb = 1", line: 1,
        "expected a value, found end of line"),
    TOMLInvalidCase("unclosed header", "[a\nx = 1", line: 1, "expected ']' to close the header"),
    TOMLInvalidCase(
        "unclosed array of tables header", "[[a]\n", line: 1,
        "expected ']]' to close the header"),

    // Arrays and inline tables
    TOMLInvalidCase("unterminated array", "a = [1, 2", line: 1, "unterminated array"),
    TOMLInvalidCase(
        "unterminated multi-line array", "x = 1\na = [\n  1,\n  2,\n", line: 2,
        "unterminated array"),
    TOMLInvalidCase(
        "missing comma in array", "a = [1 2]", line: 1,
        "expected ',' or ']' in array, found '2'"),
    TOMLInvalidCase(
        "array left open", "a = [1, 2\nb = 3", line: 2,
        "expected ',' or ']' in array opened on line 1, found 'b'"),
    TOMLInvalidCase(
        "bare carriage return", "a = 1\rb = 2", line: 1,
        "found control character U+000D"),
    TOMLInvalidCase("empty array element", "a = [1,,2]", line: 1, "expected a value, found ','"),
    TOMLInvalidCase(
        "inline table trailing comma", "t = { a = 1, }", line: 1,
        "trailing comma in inline table"),
    TOMLInvalidCase(
        "unterminated inline table", "t = { a = 1", line: 1,
        "unterminated inline table"),
    TOMLInvalidCase(
        "multi-line inline table", "t = {\n  a = 1 }", line: 1,
        "unterminated inline table"),
    TOMLInvalidCase(
        "missing comma in inline table", "t = { a = 1 b = 2 }", line: 1,
        "expected ',' or '}' in inline table, found 'b'"),

    // Lines after multi-line constructs
    TOMLInvalidCase("CRLF error line", "a = 1\r\nb = 2\r\na = 3\r\n", line: 3, "duplicate key 'a'"),
    TOMLInvalidCase(
        "error after multi-line string", "a = \"\"\"\nx\ny\"\"\"\nb = ?", line: 4,
        "expected a value, found '?'"),
    TOMLInvalidCase(
        "error after multi-line array", "a = [\n1,\n2]\nb = 1 1", line: 4,
        "expected end of line after value"),
]

// MARK: - Tests

@Suite struct TOMLTests {
    static let sample = """
        version = 1

        [fleet]
        name = "nas"                     # part of each slot's instance id
        state_dir = "/var/lib/fleet"
        grace = "30s"
        slots = 2

        [scrum4me]
        transport = "stdio"
        command = ["npx", "tsx", "/opt/scrum4me-mcp/src/index.ts"]

        [[slot]]
        name = "alpha"
        token_file = "/run/secrets/slot-alpha"
        repo_roots = { "cm8product01" = "/data/repos/alpha/webapp" }
        min_quota_pct = 20

        [[slot]]
        name = "beta-{n}"
        count = 3
        """

    @Test func sampleValuesAndLines() throws {
        let root = try TOML.parse(Self.sample)
        let expected: [(path: String, value: TOMLValue, line: Int)] = [
            ("version", .integer(1), 1),
            ("fleet/name", .string("nas"), 4),
            ("fleet/state_dir", .string("/var/lib/fleet"), 5),
            ("fleet/grace", .string("30s"), 6),
            ("fleet/slots", .integer(2), 7),
            ("scrum4me/transport", .string("stdio"), 10),
            (
                "scrum4me/command",
                .array([.string("npx"), .string("tsx"), .string("/opt/scrum4me-mcp/src/index.ts")]),
                11
            ),
            ("slot/0/name", .string("alpha"), 14),
            ("slot/0/token_file", .string("/run/secrets/slot-alpha"), 15),
            ("slot/0/repo_roots/cm8product01", .string("/data/repos/alpha/webapp"), 16),
            ("slot/0/min_quota_pct", .integer(20), 17),
            ("slot/1/name", .string("beta-{n}"), 20),
            ("slot/1/count", .integer(3), 21),
        ]
        for entry in expected {
            #expect(value(root, entry.path) == entry.value, "\(entry.path)")
            #expect(line(root, entry.path) == entry.line, "line of \(entry.path)")
        }
    }

    @Test func sampleStructure() throws {
        let root = try TOML.parse(Self.sample)

        #expect(root.line == 0)
        #expect(root.keys == ["version", "fleet", "scrum4me", "slot"])
        #expect(table(root, "fleet")?.keys == ["name", "state_dir", "grace", "slots"])
        #expect(
            table(root, "slot/0")?.keys
                == ["name", "token_file", "repo_roots", "min_quota_pct"])
        #expect(table(root, "slot/1")?.keys == ["name", "count"])
        #expect(table(root, "slot/0/repo_roots")?.keys == ["cm8product01"])
        #expect(line(root, "slot/0/repo_roots") == 16)

        #expect(table(root, "fleet")?.line == 3)
        #expect(table(root, "scrum4me")?.line == 9)
        #expect(table(root, "slot/0")?.line == 13)
        #expect(table(root, "slot/1")?.line == 19)
        #expect(table(root, "slot/0/repo_roots")?.line == 16)
        #expect(root.line(of: "fleet") == 3)
        #expect(root.line(of: "slot") == 13)
        #expect(root.line(of: "missing") == nil)
        #expect(root["missing"] == nil)

        guard case .array(let slots) = root["slot"] else {
            Issue.record("slot is not an array")
            return
        }
        #expect(slots.count == 2)
    }

    @Test func sampleWithCRLF() throws {
        let crlf = Self.sample.split(separator: "\n", omittingEmptySubsequences: false)
            .joined(separator: "\r\n")
        let root = try TOML.parse(crlf)

        #expect(root == (try TOML.parse(Self.sample)))
        #expect(value(root, "fleet/name") == .string("nas"))
        #expect(line(root, "fleet/state_dir") == 5)
        #expect(line(root, "slot/1/count") == 21)
        #expect(table(root, "slot/1")?.line == 19)
    }

    @Test(arguments: validCases) func validDocument(_ valid: TOMLValidCase) {
        guard let root = parse(valid.toml) else { return }

        #expect(value(root, valid.path) == valid.expected)
        if let expectedLine = valid.line {
            #expect(line(root, valid.path) == expectedLine)
        }
    }

    @Test(arguments: invalidCases) func invalidDocument(_ invalid: TOMLInvalidCase) {
        do {
            let root = try TOML.parse(invalid.toml)
            Issue.record("parsed without error: \(root)")
        } catch {
            #expect(error.line == invalid.line, "\(error)")
            #expect(error.message.contains(invalid.fragment), "\(error)")
        }
    }

    @Test func nestedArraysOfTablesWithInlineTables() throws {
        let toml = """
            [[slot]]
            name = "alpha"
            limits = { cpu = 2, memory = { soft = "1G", hard = "2G" } }

              [[slot.hook]]
              on = "start"
              env = { PATH = "/usr/bin", "HOME" = '/home/α' }

              [[slot.hook]]
              on = "stop"
              args = [{ flag = "-v" }, { flag = "-q" }]

            [[slot]]
            name = "beta"

              [[slot.hook]]
              on = "start"

              [slot.extra]
              ok = true
            """
        let root = try TOML.parse(toml)

        #expect(value(root, "slot/0/limits/cpu") == .integer(2))
        #expect(value(root, "slot/0/limits/memory/hard") == .string("2G"))
        #expect(value(root, "slot/0/hook/0/env/HOME") == .string("/home/α"))
        #expect(value(root, "slot/0/hook/1/args/1/flag") == .string("-q"))
        #expect(value(root, "slot/1/hook/0/on") == .string("start"))
        #expect(value(root, "slot/1/hook/1") == nil)
        #expect(value(root, "slot/1/extra/ok") == .boolean(true))

        #expect(line(root, "slot/0/limits") == 3)
        #expect(line(root, "slot/0/hook/0/env") == 7)
        #expect(line(root, "slot/0/hook/1/args") == 11)
        #expect(line(root, "slot/1/extra/ok") == 20)
        #expect(table(root, "slot/0/hook/1")?.line == 9)
        #expect(table(root, "slot/1/hook/0")?.line == 16)
        #expect(table(root, "slot/1/extra")?.line == 19)
        #expect(root.line(of: "slot") == 1)
        #expect(table(root, "slot/0")?.line(of: "hook") == 5)
        #expect(table(root, "slot/0/hook/0/env")?.keys == ["PATH", "HOME"])
    }

    @Test func linesAfterMultiLineValues() throws {
        let toml = "a = \"\"\"\none\ntwo\"\"\"\nb = '''\n\n'''\nc = [\n  1, # x\n]\nd = 4"
        let root = try TOML.parse(toml)

        #expect(root.line(of: "a") == 1)
        #expect(root.line(of: "b") == 4)
        #expect(root.line(of: "c") == 7)
        #expect(root.line(of: "d") == 10)
    }

    @Test func tableLinesForImplicitAndDottedTables() throws {
        let root = try TOML.parse("x.y = 1\n\n[a.b.c]\n[a]\nz = 1")

        #expect(table(root, "x")?.line == 1)
        #expect(table(root, "a")?.line == 4)
        #expect(root.line(of: "a") == 4)
        #expect(table(root, "a/b")?.line == 3)
        #expect(table(root, "a/b/c")?.line == 3)
        #expect(table(root, "a")?.keys == ["b", "z"])
    }

    @Test func nanFloat() throws {
        let root = try TOML.parse("a = nan\nb = -nan")
        for key in ["a", "b"] {
            guard case .float(let float) = root[key] else {
                Issue.record("\(key) is not a float")
                continue
            }
            #expect(float.isNaN)
        }
    }

    @Test func emptyDocuments() throws {
        for toml in ["", "\n\n", "# only a comment", "\r\n  # x\r\n"] {
            let root = try TOML.parse(toml)
            #expect(root.keys.isEmpty)
            #expect(root == TOMLTable())
        }
    }

    @Test func equalityIgnoresOrderAndLines() throws {
        let first = try TOML.parse("a = 1\nb = { c = 2 }")
        let second = try TOML.parse("\n\nb.c = 2\na = 1")
        let different = try TOML.parse("a = 1\nb = { c = 3 }")

        #expect(first == second)
        #expect(first != different)
    }

    @Test func errorDescription() {
        let error = TOMLError(line: 12, message: "duplicate key 'name'")
        #expect(error.description == "line 12: duplicate key 'name'")
        #expect("\(error)" == "line 12: duplicate key 'name'")
    }
}
