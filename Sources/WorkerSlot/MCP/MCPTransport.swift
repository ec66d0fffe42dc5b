import FleetCore

/// A way to exchange JSON-RPC messages with an MCP server.
public protocol MCPTransport: AnyObject, Sendable {
    /// Sends a request (a full JSON-RPC object with `id`) and waits for its response.
    func request(_ message: JSONValue, id: Int, timeout: Double, cancel: CancelFlag?) throws(MCPError)
        -> JSONValue
    /// Sends a notification (no answer expected).
    func notify(_ message: JSONValue) throws(MCPError)
    /// The negotiated protocol version, once known (HTTP sends it as a header).
    func setProtocolVersion(_ version: String)
    /// Ends the session (closes the server's stdin, or does nothing over HTTP).
    func close()
}
