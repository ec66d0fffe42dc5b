#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What one probe measured: percent remaining of the tightest window and when that
/// window resets.
public struct QuotaMeasure: Sendable, Equatable {
    /// Percent remaining, 0-100.
    public var pct: Int
    /// When the window that set `pct` resets, if the source says.
    public var resetsAt: Date?
    /// Every window read, for people (`5h 35% left (resets ...), 7d 88% left; allowed`).
    public var detail: String

    public init(pct: Int, resetsAt: Date?, detail: String) {
        self.pct = pct
        self.resetsAt = resetsAt
        self.detail = detail
    }
}

/// A header set that holds no reading: which header, and what is wrong with it.
public enum QuotaHeaderError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case malformed(String, value: String, expected: String)

    public var description: String {
        switch self {
        case .missing(let name): "header \(name) is missing"
        case .malformed(let name, let value, let expected):
            "header \(name): \"\(value.prefix(80))\" is not \(expected)"
        }
    }
}

/// Why a probe has no reading. Never carries the credential.
public enum QuotaProbeError: Error, Equatable, CustomStringConvertible {
    /// The credential file could not be read.
    case credential(String)
    /// The request did not complete (connect, timeout, reset).
    case transport(String)
    /// The API refused the credential (401, 403).
    case rejected(status: Int, message: String)
    /// Any other answer without a reading.
    case http(status: Int, message: String)
    /// The answer's rate-limit headers hold no reading.
    case headers(QuotaHeaderError)
    /// The probe command failed or did not finish.
    case command(String)
    /// The probe command's output holds no reading.
    case output(String)

    public var description: String {
        switch self {
        case .credential(let why): "credential: \(why)"
        case .transport(let why): why
        case .rejected(let status, let message): "credential rejected (HTTP \(status)): \(message)"
        case .http(let status, let message): "HTTP \(status): \(message)"
        case .headers(let error): "no reading in the answer: \(error)"
        case .command(let why): "probe command: \(why)"
        case .output(let why): "probe command output: \(why)"
        }
    }
}

/// The kind of a model credential, which decides the probe's headers and what they say.
public enum CredentialKind: String, Sendable, Equatable {
    /// A subscription OAuth token (`sk-ant-oat...`): `anthropic-ratelimit-unified-*`.
    case oauth
    /// An API key (`sk-ant-api...`): `anthropic-ratelimit-tokens-*`.
    case apiKey = "api_key"

    /// The kind `setting` names (`oauth`, `api_key`), or by the credential's prefix
    /// for `auto`, as the agent's environment does (DESIGN.md, decision 8).
    public static func of(_ credential: String, setting: String) -> CredentialKind {
        credentialVariable(for: credential, kind: setting) == "CLAUDE_CODE_OAUTH_TOKEN" ? .oauth : .apiKey
    }
}

/// Percent remaining for a used fraction, rounded against the fleet: 0.651 used is 34
/// left, and floating-point noise (0.29 * 100 = 28.999...) never costs a point.
func percentRemaining(used fraction: Double) -> Int {
    let usedPct = Int((fraction * 100 - 1e-6).rounded(.up))
    return min(100, max(0, 100 - usedPct))
}
