#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore
import Synchronization

/// A tool's answer: success with a JSON object, or `isError` with a message.
public struct ToolResult: Sendable, Equatable {
    public var isError: Bool
    /// The text of the first text item (the message of a failure).
    public var text: String
    /// `structuredContent`, else the text parsed as JSON, else nil.
    public var object: JSONValue?

    /// The code a failure's message starts with (`JOB_CANCELLED`), if any.
    public var errorCode: String? {
        guard isError, let colon = text.firstIndex(of: ":") else { return nil }
        let code = text[..<colon]
        guard !code.isEmpty, code.allSatisfy({ $0.isUppercase || $0 == "_" }) else { return nil }
        return String(code)
    }
}

/// An MCP client: JSON-RPC 2.0 over a transport, with the handshake and `tools/call`.
public final class MCPClient: Sendable {
    /// The protocol version we ask for, and the older ones we accept.
    public static let protocolVersion = "2025-11-25"
    public static let acceptedVersions: Set<String> = ["2025-11-25", "2025-06-18", "2025-03-26"]

    public let transport: MCPTransport
    private let nextID = Atomic<Int>(1)

    public init(transport: MCPTransport) {
        self.transport = transport
    }

    /// `initialize` then `notifications/initialized`; returns the negotiated version.
    @discardableResult
    public func initialize(clientName: String, timeout: Double) throws(MCPError) -> String {
        let result = try call(
            "initialize",
            params: [
                "protocolVersion": .string(MCPClient.protocolVersion),
                "capabilities": [:],
                "clientInfo": ["name": .string(clientName), "version": .string(fleetVersion)],
            ], timeout: timeout)
        guard let version = result["protocolVersion"]?.string else {
            throw .protocolError("initialize answer has no protocolVersion")
        }
        guard MCPClient.acceptedVersions.contains(version) else {
            throw .protocolError(
                "server speaks protocol \(version), not one of \(MCPClient.acceptedVersions.sorted())")
        }
        transport.setProtocolVersion(version)
        try transport.notify(["jsonrpc": "2.0", "method": "notifications/initialized"])
        return version
    }

    /// Calls a tool; a tool's own failure comes back as `isError`, not as a throw.
    public func callTool(
        _ name: String, arguments: [String: JSONValue], timeout: Double, cancel: CancelFlag? = nil
    ) throws(MCPError) -> ToolResult {
        let result = try call(
            "tools/call",
            params: [
                "name": .string(name), "arguments": .object(arguments),
            ], timeout: timeout, cancel: cancel)
        let isError = result["isError"]?.bool ?? false
        var text = ""
        for item in result["content"]?.array ?? [] where item["type"]?.string == "text" {
            text = item["text"]?.string ?? ""
            break
        }
        var object = result["structuredContent"]
        if object == nil || object == .null, !isError {
            object = try? JSONValue.decode(Data(text.utf8))
        }
        return ToolResult(isError: isError, text: text, object: object)
    }

    /// One JSON-RPC request; returns its `result` or throws its `error`.
    public func call(_ method: String, params: JSONValue, timeout: Double, cancel: CancelFlag? = nil)
        throws(MCPError) -> JSONValue
    {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        let message: JSONValue = [
            "jsonrpc": "2.0", "id": .number(Double(id)), "method": .string(method), "params": params,
        ]
        let response = try transport.request(message, id: id, timeout: timeout, cancel: cancel)
        if let error = response["error"] {
            let code = error["code"]?.int ?? 0
            let text = error["message"]?.string ?? "unknown error"
            if code == -32001 { throw .unauthorized(text) }
            throw .rpc(code: code, message: text)
        }
        guard let result = response["result"] else {
            throw .protocolError("response to \(method) has neither result nor error")
        }
        return result
    }

    public func close() { transport.close() }
}
