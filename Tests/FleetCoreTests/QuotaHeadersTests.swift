import Foundation
import Testing

@testable import WorkerSlot

/// Header parsing on real header sets (as the API sends them, lower-cased by the
/// client), for both credential kinds, including missing, malformed and partial ones.
@Suite struct QuotaHeadersTests {
    /// A subscription answer as observed: both windows, the overage family, the claim.
    static let subscription: [String: String] = [
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-5h-status": "allowed",
        "anthropic-ratelimit-unified-5h-reset": "1789414200",
        "anthropic-ratelimit-unified-5h-utilization": "0.26",
        "anthropic-ratelimit-unified-7d-status": "allowed",
        "anthropic-ratelimit-unified-7d-reset": "1789542000",
        "anthropic-ratelimit-unified-7d-utilization": "0.06",
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-fallback-percentage": "0.5",
        "anthropic-ratelimit-unified-reset": "1789414200",
        "anthropic-ratelimit-unified-overage-status": "rejected",
        "anthropic-ratelimit-unified-overage-disabled-reason": "org_level_disabled",
        "request-id": "req_011CUZ2xyz",
        "content-type": "application/json",
    ]

    /// An API-key answer as observed: requests, tokens and the input/output split.
    static let apiKey: [String: String] = [
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-12-04T16:20:00Z",
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "14000",
        "anthropic-ratelimit-tokens-reset": "2026-12-04T16:20:01Z",
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "4000",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-04T16:20:01Z",
        "anthropic-ratelimit-output-tokens-limit": "10000",
        "anthropic-ratelimit-output-tokens-remaining": "10000",
        "anthropic-ratelimit-output-tokens-reset": "2026-12-04T16:20:00Z",
        "request-id": "req_011CUZ2abc",
    ]

    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var kind: CredentialKind
        var headers: [String: String]
        /// The expected reading (pct, reset as Unix seconds), or the expected error.
        var pct: Int?
        var reset: Double?
        var error: QuotaHeaderError?
        var description: String { name }
    }

    static func unified(_ changes: [String: String?]) -> [String: String] {
        var h = subscription
        for (k, v) in changes { h["anthropic-ratelimit-unified-" + k] = v }
        return h
    }

    static func tokens(_ changes: [String: String?]) -> [String: String] {
        var h = apiKey
        for (k, v) in changes { h["anthropic-ratelimit-tokens-" + k] = v }
        return h
    }

    static let cases: [Case] = [
        // Subscription: the tighter window wins.
        Case(
            name: "oauth: real set, 5h binds", kind: .oauth, headers: subscription, pct: 74, reset: 1789414200
        ),
        Case(
            name: "oauth: 7d tighter", kind: .oauth,
            headers: unified(["5h-utilization": "0.10", "7d-utilization": "0.80"]), pct: 20, reset: 1789542000
        ),
        Case(
            name: "oauth: 35% left", kind: .oauth, headers: unified(["5h-utilization": "0.65"]), pct: 35,
            reset: 1789414200),
        Case(
            name: "oauth: float noise never costs a point", kind: .oauth,
            headers: unified(["5h-utilization": "0.29", "7d-utilization": "0.0"]), pct: 71, reset: 1789414200),
        Case(
            name: "oauth: a fraction of a point used is a point", kind: .oauth,
            headers: unified(["5h-utilization": "0.651"]), pct: 34, reset: 1789414200),
        Case(
            name: "oauth: tie takes the later reset", kind: .oauth,
            headers: unified(["5h-utilization": "0.5", "7d-utilization": "0.5"]), pct: 50, reset: 1789542000),
        Case(
            name: "oauth: over the limit is 0", kind: .oauth,
            headers: unified(["5h-utilization": "1.07", "status": "allowed_warning"]), pct: 0,
            reset: 1789414200),
        Case(
            name: "oauth: rejected is 0 until the unified reset", kind: .oauth,
            headers: unified(["5h-utilization": "0.98", "status": "rejected", "reset": "1789415000"]), pct: 0,
            reset: 1789415000),
        Case(
            name: "oauth: only a 7d window", kind: .oauth,
            headers: unified(["5h-utilization": nil, "5h-reset": nil, "5h-status": nil]), pct: 94,
            reset: 1789542000),
        Case(
            name: "oauth: no status header", kind: .oauth, headers: unified(["status": nil]), pct: 74,
            reset: 1789414200),
        Case(
            name: "oauth: fractional reset seconds", kind: .oauth,
            headers: unified(["5h-reset": "1789414200.5"]), pct: 74, reset: 1789414200.5),

        // Subscription: partial, missing, malformed.
        Case(
            name: "oauth: 5h utilisation without its reset", kind: .oauth,
            headers: unified(["5h-reset": nil]),
            error: .missing("anthropic-ratelimit-unified-5h-reset")),
        Case(
            name: "oauth: 7d reset without its utilisation", kind: .oauth,
            headers: unified(["7d-utilization": nil]),
            error: .missing("anthropic-ratelimit-unified-7d-utilization")),
        Case(
            name: "oauth: no windows at all", kind: .oauth,
            headers: ["anthropic-ratelimit-unified-status": "allowed", "request-id": "req_1"],
            error: .missing("anthropic-ratelimit-unified-5h-utilization")),
        Case(
            name: "oauth: API-key headers only", kind: .oauth, headers: apiKey,
            error: .missing("anthropic-ratelimit-unified-5h-utilization")),
        Case(
            name: "oauth: utilisation not a number", kind: .oauth,
            headers: unified(["5h-utilization": "26%"]),
            error: .malformed(
                "anthropic-ratelimit-unified-5h-utilization", value: "26%",
                expected: "a utilisation fraction like 0.35")),
        Case(
            name: "oauth: negative utilisation", kind: .oauth, headers: unified(["7d-utilization": "-0.1"]),
            error: .malformed(
                "anthropic-ratelimit-unified-7d-utilization", value: "-0.1",
                expected: "a utilisation fraction like 0.35")),
        Case(
            name: "oauth: NaN utilisation", kind: .oauth, headers: unified(["5h-utilization": "nan"]),
            error: .malformed(
                "anthropic-ratelimit-unified-5h-utilization", value: "nan",
                expected: "a utilisation fraction like 0.35")),
        Case(
            name: "oauth: reset as a date, not Unix seconds", kind: .oauth,
            headers: unified(["5h-reset": "2026-12-04T20:00:00Z"]),
            error: .malformed(
                "anthropic-ratelimit-unified-5h-reset", value: "2026-12-04T20:00:00Z",
                expected: "a Unix time in seconds")),
        Case(
            name: "oauth: reset zero", kind: .oauth, headers: unified(["7d-reset": "0"]),
            error: .malformed(
                "anthropic-ratelimit-unified-7d-reset", value: "0", expected: "a Unix time in seconds")),
        Case(
            name: "oauth: unknown status", kind: .oauth, headers: unified(["status": "throttled"]),
            error: .malformed(
                "anthropic-ratelimit-unified-status", value: "throttled",
                expected: "one of allowed, allowed_warning, rejected")),
        Case(
            name: "oauth: rejected with a bad unified reset", kind: .oauth,
            headers: unified(["status": "rejected", "reset": "later"]),
            error: .malformed(
                "anthropic-ratelimit-unified-reset", value: "later", expected: "a Unix time in seconds")),

        // API keys.
        Case(name: "api key: real set", kind: .apiKey, headers: apiKey, pct: 35, reset: 1796401201),
        Case(
            name: "api key: full", kind: .apiKey, headers: tokens(["remaining": "40000"]), pct: 100,
            reset: 1796401201),
        Case(
            name: "api key: empty", kind: .apiKey, headers: tokens(["remaining": "0"]), pct: 0,
            reset: 1796401201),
        Case(
            name: "api key: rounds down", kind: .apiKey, headers: tokens(["remaining": "39999"]), pct: 99,
            reset: 1796401201),
        Case(
            name: "api key: more than the limit is 100", kind: .apiKey,
            headers: tokens(["remaining": "50000"]), pct: 100, reset: 1796401201),
        Case(
            name: "api key: fractional-second reset", kind: .apiKey,
            headers: tokens(["reset": "2026-12-04T16:20:01.250Z"]), pct: 35, reset: 1796401201.25),
        Case(
            name: "api key: missing remaining", kind: .apiKey, headers: tokens(["remaining": nil]),
            error: .missing("anthropic-ratelimit-tokens-remaining")),
        Case(
            name: "api key: missing limit", kind: .apiKey, headers: tokens(["limit": nil]),
            error: .missing("anthropic-ratelimit-tokens-limit")),
        Case(
            name: "api key: missing reset", kind: .apiKey, headers: tokens(["reset": nil]),
            error: .missing("anthropic-ratelimit-tokens-reset")),
        Case(
            name: "api key: subscription headers only", kind: .apiKey, headers: subscription,
            error: .missing("anthropic-ratelimit-tokens-remaining")),
        Case(
            name: "api key: rounded remaining", kind: .apiKey, headers: tokens(["remaining": "14k"]),
            error: .malformed(
                "anthropic-ratelimit-tokens-remaining", value: "14k", expected: "a whole number of tokens")),
        Case(
            name: "api key: zero limit", kind: .apiKey, headers: tokens(["limit": "0"]),
            error: .malformed(
                "anthropic-ratelimit-tokens-limit", value: "0", expected: "a whole number of tokens above 0")),
        Case(
            name: "api key: reset in Unix seconds", kind: .apiKey, headers: tokens(["reset": "1796401201"]),
            error: .malformed(
                "anthropic-ratelimit-tokens-reset", value: "1796401201", expected: "an RFC 3339 time")),
    ]

    @Test(arguments: cases)
    func reading(_ c: Case) {
        do {
            let m = try QuotaHeaders.reading(c.headers, kind: c.kind)
            #expect(c.error == nil, "expected \(c.error.map { "\($0)" } ?? "") but read \(m)")
            #expect(m.pct == c.pct)
            #expect(m.resetsAt?.timeIntervalSince1970 == c.reset)
            #expect(!m.detail.isEmpty)
        } catch {
            #expect(error == c.error, "\(c.name): \(error)")
        }
    }

    @Test func errorsNameTheHeader() {
        #expect(
            "\(QuotaHeaderError.missing("anthropic-ratelimit-unified-5h-reset"))"
                == "header anthropic-ratelimit-unified-5h-reset is missing")
        let e = QuotaHeaderError.malformed(
            "anthropic-ratelimit-tokens-limit", value: "0", expected: "a whole number of tokens above 0")
        #expect(
            "\(e)" == "header anthropic-ratelimit-tokens-limit: \"0\" is not a whole number of tokens above 0"
        )
    }

    @Test func detailShowsEveryWindow() throws {
        let m = try QuotaHeaders.reading(Self.subscription, kind: .oauth)
        #expect(m.detail.contains("5h 74% left"))
        #expect(m.detail.contains("7d 94% left"))
        #expect(m.detail.contains("status allowed"))
    }

    @Test func credentialKindByPrefixOrSetting() {
        #expect(CredentialKind.of("sk-ant-oat01-abc", setting: "auto") == .oauth)
        #expect(CredentialKind.of("sk-ant-api03-abc", setting: "auto") == .apiKey)
        #expect(CredentialKind.of("proxy-token", setting: "oauth") == .oauth)
        #expect(CredentialKind.of("sk-ant-oat01-abc", setting: "api_key") == .apiKey)
    }
}
