#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Size limits for one request on the control socket.
public struct HTTPLimits: Sendable {
    public var requestLine = 4096
    public var headerBytes = 16384
    public var headerCount = 64
    public var body = 65536

    public init() {}
}

/// A parsed HTTP/1.1 request.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    public var query: [String: String]
    /// Header names lower-cased.
    public var headers: [String: String]
    public var body: [UInt8]

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:],
        body: [UInt8] = []
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }
}

/// An HTTP response about to be written, or just read by the client.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// A streamed body: called with a writer after the head is sent; the writer returns
    /// false once the client is gone. The stream ends (and the connection closes) when
    /// the closure returns.
    public var stream: (@Sendable (_ write: ([UInt8]) -> Bool) -> Void)?

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A streamed answer (no Content-Length; the body ends when the connection closes).
    public init(
        streaming contentType: String, _ stream: @escaping @Sendable (_ write: ([UInt8]) -> Bool) -> Void
    ) {
        self.status = 200
        self.headers = [("Content-Type", contentType), ("Cache-Control", "no-store")]
        self.body = []
        self.stream = stream
    }

    /// A header's value (case-insensitive name).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// The bytes on the wire: status line, headers (with Content-Length), body.
    public func serialized() -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(HTTPResponse.reason(status))\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if stream == nil { head += "Content-Length: \(body.count)\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 202: "Accepted"
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// Why a request could not be parsed, with the status to answer.
public struct HTTPParseError: Error, Equatable, Sendable {
    public var status: Int
    public var message: String
}

/// Incremental request parsing over a growing byte buffer.
public enum HTTPParser {
    /// Parses `buffer`; nil when more bytes are needed, a request when complete.
    public static func parseRequest(_ buffer: [UInt8], limits: HTTPLimits) throws(HTTPParseError)
        -> HTTPRequest?
    {
        guard let headEnd = find(crlfcrlf, in: buffer) else {
            if let lineEnd = find(crlf, in: buffer) {
                if lineEnd > limits.requestLine {
                    throw HTTPParseError(status: 414, message: "request line too long")
                }
            } else if buffer.count > limits.requestLine {
                throw HTTPParseError(status: 414, message: "request line too long")
            }
            if buffer.count > limits.headerBytes {
                throw HTTPParseError(status: 431, message: "headers too large")
            }
            return nil
        }
        guard headEnd <= limits.headerBytes else {
            throw HTTPParseError(status: 431, message: "headers too large")
        }
        guard let head = String(validating: buffer[0..<headEnd], as: UTF8.self) else {
            throw HTTPParseError(status: 400, message: "request head is not UTF-8")
        }
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines[0]
        guard requestLine.utf8.count <= limits.requestLine else {
            throw HTTPParseError(status: 414, message: "request line too long")
        }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isUppercase }),
            parts[1].hasPrefix("/"), parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0"
        else { throw HTTPParseError(status: 400, message: "malformed request line") }

        var headers: [String: String] = [:]
        guard lines.count - 1 <= limits.headerCount else {
            throw HTTPParseError(status: 431, message: "too many headers")
        }
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw HTTPParseError(status: 400, message: "malformed header line")
            }
            let name = line[..<colon].lowercased()
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw HTTPParseError(status: 400, message: "malformed header name")
            }
            if name == "content-length" && headers[name] != nil {
                throw HTTPParseError(status: 400, message: "more than one Content-Length")
            }
            headers[name] = line[line.index(after: colon)...].trimmingSpaces()
        }

        if headers["transfer-encoding"] != nil {
            throw HTTPParseError(
                status: 501, message: "chunked request bodies are not supported; send Content-Length")
        }
        var length = 0
        if let value = headers["content-length"] {
            guard let n = Int(value), n >= 0 else {
                throw HTTPParseError(status: 400, message: "bad Content-Length")
            }
            guard n <= limits.body else {
                throw HTTPParseError(status: 413, message: "body over \(limits.body) bytes")
            }
            length = n
        }
        let bodyStart = headEnd + 4
        guard buffer.count >= bodyStart + length else { return nil }

        let target = String(parts[1])
        let (path, query) = splitTarget(target)
        return HTTPRequest(
            method: String(parts[0]), path: path, query: query, headers: headers,
            body: Array(buffer[bodyStart..<(bodyStart + length)]))
    }

    /// Parses a complete response (the server closes after it).
    public static func parseResponse(_ buffer: [UInt8]) -> HTTPResponse? {
        guard let headEnd = find(crlfcrlf, in: buffer),
            let head = String(validating: buffer[0..<headEnd], as: UTF8.self)
        else { return nil }
        let lines = head.split(separator: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingSpaces()))
        }
        var body = Array(buffer[(headEnd + 4)...])
        let response = HTTPResponse(status: status, headers: headers, body: [])
        if let length = response.header("content-length").flatMap(Int.init) {
            guard body.count >= length else { return nil }
            body = Array(body[0..<length])
        }
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    static func splitTarget(_ target: String) -> (String, [String: String]) {
        guard let mark = target.firstIndex(of: "?") else { return (percentDecode(target), [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            // "=1" or "=" has no key: split keeps the empty side, so kv is never empty.
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = percentDecode(String(kv[0]))
            guard !key.isEmpty else { continue }
            query[key] = kv.count > 1 ? percentDecode(String(kv[1])) : ""
        }
        return (percentDecode(String(target[..<mark])), query)
    }

    static func percentDecode(_ s: String) -> String {
        guard s.contains("%") || s.contains("+") else { return s }
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == UInt8(ascii: "%"), it.count >= 2,
                let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(v)
                it = it.dropFirst(2)
            } else if c == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static let crlf: [UInt8] = [13, 10]
    static let crlfcrlf: [UInt8] = [13, 10, 13, 10]

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = 0
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == needle[0] {
                var match = true
                for j in 1..<needle.count where hay[i + j] != needle[j] {
                    match = false
                    break
                }
                if match { return i }
            }
            i += 1
        }
        return nil
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces and tabs.
    func trimmingSpaces() -> String {
        var s = String(self)[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
