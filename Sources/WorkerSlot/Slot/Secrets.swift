#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why a secret could not be read. Names the file, never the content.
public struct SecretError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "secret file \(path): \(reason)" }
}

/// Reading secrets from files: trimmed, never logged.
public enum Secrets {
    /// The first line of `path`, trimmed; an error when missing or empty.
    public static func read(_ path: String) throws(SecretError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SecretError(path: path, reason: "cannot be read")
        }
        let text = String(decoding: data, as: UTF8.self)
        let value =
            text.split(whereSeparator: \.isNewline).first.map(String.init)?
            .trimmingCharacters(in: " \t\r") ?? ""
        guard !value.isEmpty else { throw SecretError(path: path, reason: "is empty") }
        return value
    }

    /// `KEY=VALUE` lines (comments, blank lines, `export` and quotes allowed).
    public static func readEnvFile(_ path: String) throws(SecretError) -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SecretError(path: path, reason: "cannot be read")
        }
        var env: [String: String] = [:]
        for (index, raw) in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .enumerated()
        {
            var line = raw.trimmingCharacters(in: " \t\r")
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)) }
            guard let eq = line.firstIndex(of: "="), eq != line.startIndex else {
                throw SecretError(path: path, reason: "line \(index + 1) is not KEY=VALUE")
            }
            var value = String(line[line.index(after: eq)...])
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q {
                value = String(value.dropFirst().dropLast())
            }
            env[String(line[..<eq])] = value
        }
        return env
    }
}

/// The environment variable a model credential goes in (never both).
public func credentialVariable(for credential: String, kind: String) -> String {
    switch kind {
    case "oauth": return "CLAUDE_CODE_OAUTH_TOKEN"
    case "api_key": return "ANTHROPIC_API_KEY"
    default:
        // Subscription tokens start sk-ant-oat; API keys sk-ant-api.
        return credential.hasPrefix("sk-ant-oat") ? "CLAUDE_CODE_OAUTH_TOKEN" : "ANTHROPIC_API_KEY"
    }
}
