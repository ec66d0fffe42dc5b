#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import Synchronization

/// MCP over Streamable HTTP: each message a `POST`, the answer JSON or an SSE stream.
public final class HTTPTransport: MCPTransport, @unchecked Sendable {
    public let url: String
    private let token: String
    private let extraHeaders: [String]
    private let version = Mutex<String?>(nil)

    /// `token` goes only into the Authorization header, never into a URL or a log.
    public init(url: String, token: String, headers: [String] = []) {
        self.url = url
        self.token = token
        self.extraHeaders = headers
    }

    public func setProtocolVersion(_ version: String) {
        self.version.withLock { $0 = version }
    }

    private var headers: [String] {
        var list = [
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
            "Authorization: Bearer \(token)",
        ]
        if let version = version.withLock({ $0 }) { list.append("MCP-Protocol-Version: \(version)") }
        return list + extraHeaders
    }

    public func request(_ message: JSONValue, id: Int, timeout: Double, cancel: CancelFlag?) throws(MCPError)
        -> JSONValue
    {
        let answer = try post(message, timeout: timeout, cancel: cancel)
        let type = answer.headers["content-type"] ?? ""
        if type.hasPrefix("text/event-stream") {
            return try HTTPTransport.response(inSSE: answer.body, id: id)
        }
        guard let response = try? JSONValue.decode(answer.body), response.object != nil else {
            throw .protocolError(
                "answer is not a JSON object (HTTP \(answer.status), \(answer.body.count) bytes)")
        }
        return response
    }

    public func notify(_ message: JSONValue) throws(MCPError) {
        _ = try post(message, timeout: 30, cancel: nil)
    }

    public func close() {}

    private func post(_ message: JSONValue, timeout: Double, cancel: CancelFlag?) throws(MCPError)
        -> HTTPAnswer
    {
        let answer: HTTPAnswer
        do {
            answer = try CurlClient.perform(
                method: "POST", url: url, headers: headers, body: message.encoded(),
                timeout: timeout, cancel: cancel)
        } catch {
            switch error {
            case .timeout: throw .timeout
            case .cancelled: throw .cancelled
            default: throw .transport("\(error)")
            }
        }
        switch answer.status {
        case 200..<300:
            return answer
        case 401, 403:
            let message = (try? JSONValue.decode(answer.body))?["error"]?["message"]?.string
            throw .unauthorized(message ?? "HTTP \(answer.status)")
        case 500...:
            throw .transport("HTTP \(answer.status)")
        default:
            // A JSON-RPC error in a 4xx body is still an answer.
            if let body = try? JSONValue.decode(answer.body), body["error"] != nil { return answer }
            throw .protocolError("HTTP \(answer.status)")
        }
    }

    /// Finds the JSON-RPC response with `id` among an SSE stream's events.
    static func response(inSSE body: Data, id: Int) throws(MCPError) -> JSONValue {
        // Split on bytes: in a Swift String "\r\n" is one Character, not two.
        let lines = body.split(separator: 10, omittingEmptySubsequences: false).map { line -> Substring in
            let bytes = line.last == 13 ? line.dropLast() : line[...]
            return Substring(String(decoding: bytes, as: UTF8.self))
        }
        var data: [Substring] = []
        var found: JSONValue?
        func dispatch() {
            defer { data = [] }
            guard !data.isEmpty else { return }
            let payload = data.joined(separator: "\n")
            guard let message = try? JSONValue.decode(Data(payload.utf8)),
                message["id"]?.int == id, message["method"] == nil
            else { return }
            found = message
        }
        for line in lines {
            if line.isEmpty {
                dispatch()
            } else if line.hasPrefix("data:") {
                var value = line.dropFirst(5)
                if value.first == " " { value = value.dropFirst() }
                data.append(value)
            }
        }
        dispatch()
        guard let found else {
            throw .protocolError("SSE stream ended without the response to request \(id)")
        }
        return found
    }
}
