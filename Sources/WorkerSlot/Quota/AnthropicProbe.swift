#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// The built-in probe: the smallest Messages API call (one output token) with the
/// fleet's credential, read for its rate-limit headers.
///
/// The credential travels only in a request header: never in the URL, the argv of a
/// process, a log line or an error.
public struct AnthropicProbe: Sendable {
    /// The API root, without a trailing slash.
    public var baseURL: String
    public var model: String
    /// Bounds the whole exchange.
    public var timeout: Double

    public init(baseURL: String, model: String, timeout: Double = 30) {
        self.baseURL = baseURL
        self.model = model
        self.timeout = timeout
    }

    /// The request as sent: URL, header lines and JSON body.
    public struct Request: Sendable {
        public var url: String
        public var headers: [String]
        public var body: Data
    }

    /// The request for a credential of `kind`: `x-api-key` for an API key; a bearer
    /// token and the OAuth beta flag for a subscription token, as Claude Code sends.
    public func request(credential: String, kind: CredentialKind) -> Request {
        var headers = [
            "content-type: application/json",
            "accept: application/json",
            "anthropic-version: 2023-06-01",
            "user-agent: fleetd/\(fleetVersion) (quota probe)",
        ]
        switch kind {
        case .apiKey:
            headers.append("x-api-key: \(credential)")
        case .oauth:
            headers.append("authorization: Bearer \(credential)")
            headers.append("anthropic-beta: oauth-2025-04-20")
        }
        let body: JSONValue = [
            "model": .string(model),
            "max_tokens": 1,
            "messages": [["role": "user", "content": "quota"]],
        ]
        return Request(url: baseURL + "/v1/messages", headers: headers, body: body.encoded())
    }

    /// Sends the probe and reads its answer.
    public func measure(credential: String, kind: CredentialKind) throws(QuotaProbeError) -> QuotaMeasure {
        let request = request(credential: credential, kind: kind)
        let answer: HTTPAnswer
        do {
            answer = try CurlClient.perform(
                method: "POST", url: request.url, headers: request.headers, body: request.body,
                timeout: timeout, maxBody: 1 << 20)
        } catch {
            throw .transport("POST \(request.url): \(error)")
        }
        return try Self.interpret(
            status: answer.status, headers: answer.headers, body: answer.body, kind: kind)
    }

    /// A reading from an answer. A 429 still carries the headers (often the very
    /// reading that matters); a refused credential or any other failure is an error
    /// with the API's own message.
    public static func interpret(status: Int, headers: [String: String], body: Data, kind: CredentialKind)
        throws(QuotaProbeError) -> QuotaMeasure
    {
        switch status {
        case 200..<300:
            do {
                return try QuotaHeaders.reading(headers, kind: kind)
            } catch {
                throw .headers(error)
            }
        case 429:
            do {
                return try QuotaHeaders.reading(headers, kind: kind)
            } catch {
                throw .http(status: status, message: "\(apiMessage(body)); \(error)")
            }
        case 401, 403:
            throw .rejected(
                status: status,
                message:
                    "\(apiMessage(body)) (sent as \(kind == .oauth ? "an OAuth token" : "an API key");"
                    + " [agent] credential_kind sets the kind)"
            )
        default:
            throw .http(status: status, message: apiMessage(body))
        }
    }

    /// `type: message` of an API error body, or the start of whatever came back.
    static func apiMessage(_ body: Data) -> String {
        if let value = try? JSONValue.decode(body), let error = value["error"] {
            let type = error["type"]?.string
            let message = error["message"]?.string
            switch (type, message) {
            case (let t?, let m?): return "\(t): \(m.prefix(200))"
            case (nil, let m?): return String(m.prefix(200))
            case (let t?, nil): return t
            default: break
            }
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: " \t\n\r")
        return text.isEmpty ? "empty body" : text
    }
}
