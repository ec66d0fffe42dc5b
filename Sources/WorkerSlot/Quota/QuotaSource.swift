#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import FleetCore

/// Where the fleet's reading comes from (`[quota] probe`): the Messages API, the
/// operator's command, or nowhere (`off`: 100% remaining).
///
/// One `measure()` is one probe; the caller (fleetd's probe thread) makes sure only one
/// runs at a time for the whole fleet.
public struct QuotaSource: Sendable {
    public let mode: String
    let quota: QuotaSection
    let credentialFile: String?
    let credentialKind: String
    /// The environment a probe command gets (no secrets but the credential).
    let environment: [String: String]

    /// - Parameter environment: the base environment for a probe command (fleetd's
    ///   children's allow-list, `SlotContext.childBaseEnvironment`).
    public init(config: FleetConfig, environment: [String: String]) {
        self.mode = config.quota.probe
        self.quota = config.quota
        self.credentialFile = config.quota.credentialFile ?? config.agent.credentialFile
        self.credentialKind = config.agent.credentialKind
        self.environment = environment
    }

    /// Takes one reading.
    public func measure() throws(QuotaProbeError) -> QuotaMeasure {
        switch mode {
        case "anthropic":
            guard case let (credential?, kind) = try readCredential() else {
                throw .credential("none configured")
            }
            return try AnthropicProbe(baseURL: quota.baseURL, model: quota.model).measure(
                credential: credential, kind: kind)
        case "command":
            var env = environment
            if case let (credential?, kind) = try readCredential() {
                env[kind == .oauth ? "CLAUDE_CODE_OAUTH_TOKEN" : "ANTHROPIC_API_KEY"] = credential
            }
            return try CommandProbe(command: quota.command, environment: env).measure()
        default:
            return QuotaMeasure(pct: 100, resetsAt: nil, detail: "probe off")
        }
    }

    /// The credential and its kind; nil (command mode only) when none is configured.
    /// Read on every probe, so a rotated token is picked up.
    private func readCredential() throws(QuotaProbeError) -> (String?, CredentialKind) {
        guard let file = credentialFile else {
            if mode == "command" { return (nil, .apiKey) }
            throw .credential("no credential_file in [quota] or [agent]")
        }
        do {
            let credential = try Secrets.read(file)
            return (credential, CredentialKind.of(credential, setting: credentialKind))
        } catch {
            throw .credential("\(error)")
        }
    }
}
