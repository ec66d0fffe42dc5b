/// Why an MCP exchange failed (transport level; a tool's own failure is a `ToolResult`).
public enum MCPError: Error, Equatable, CustomStringConvertible {
    /// The server refused our token (HTTP 401, JSON-RPC -32001).
    case unauthorized(String)
    /// The stdio server exited or closed its output.
    case serverExited(String)
    /// No answer within the call's timeout.
    case timeout
    /// The caller cancelled the call (drain, shutdown).
    case cancelled
    /// Network trouble: connect failure, reset, HTTP 5xx.
    case transport(String)
    /// The peer broke the protocol: unparsable JSON, a response without result.
    case protocolError(String)
    /// A JSON-RPC error answer.
    case rpc(code: Int, message: String)

    public var description: String {
        switch self {
        case .unauthorized(let why): "token rejected: \(why)"
        case .serverExited(let why): "server exited: \(why)"
        case .timeout: "no answer in time"
        case .cancelled: "cancelled"
        case .transport(let why): why
        case .protocolError(let why): "protocol error: \(why)"
        case .rpc(let code, let message): "JSON-RPC error \(code): \(message)"
        }
    }

    /// Errors after which the connection should be rebuilt with backoff.
    public var needsReconnect: Bool {
        switch self {
        case .serverExited, .timeout, .transport, .protocolError: true
        case .unauthorized, .cancelled, .rpc: false
        }
    }
}
