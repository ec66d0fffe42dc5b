import Foundation
import Testing

@testable import FleetCore
@testable import WorkerSlot

/// The gate as a table: reading, floor, age, reset, jobs cap -> open or standby (until
/// when, why, and whether a fresh reading is wanted).
@Suite struct QuotaGateTests {
    static let now = Date(timeIntervalSince1970: 1_796_400_000)
    static let policy = QuotaPolicy(isProbing: true, interval: 300, maxAge: 900, sleepCap: 3600)

    static func reading(_ pct: Int, age: Double = 10, resetIn: Double? = 1800) -> QuotaInfo {
        QuotaInfo(
            pct: pct, resetsAt: resetIn.map { now.addingTimeInterval($0) },
            checkedAt: now.addingTimeInterval(-age), source: "anthropic")
    }

    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var reading: QuotaInfo?
        var floor: Int
        var policy = QuotaGateTests.policy
        var jobs = 0
        var windowEnd: Date?
        var lastError: String?
        /// nil: open; else seconds from now until the standby ends.
        var standbyFor: Double?
        var reason: String = ""
        var fresh = false
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "above the floor", reading: reading(35), floor: 20),
        Case(name: "at the floor", reading: reading(20), floor: 20),
        Case(
            name: "below the floor: until the reset plus 5 s", reading: reading(35), floor: 50,
            standbyFor: 1805, reason: "quota 35% < floor 50% until the reset"),
        Case(
            name: "below the floor: capped by sleep_cap", reading: reading(35, resetIn: 4 * 3600), floor: 50,
            standbyFor: 3600, reason: "quota 35% < floor 50%"),
        Case(
            name: "below the floor, no reset known: look again after an interval",
            reading: reading(10, resetIn: nil), floor: 20,
            standbyFor: 300, reason: "no reset time known"),
        Case(
            name: "below the floor, reset passed: ask for a new reading",
            reading: reading(35, age: 60, resetIn: -30), floor: 50,
            standbyFor: 300, reason: "waiting for a new reading", fresh: true),
        Case(
            name: "reset passed but above the floor: open", reading: reading(35, age: 60, resetIn: -30),
            floor: 20),
        Case(
            name: "within the 5 s margin the standby goes on", reading: reading(35, resetIn: -2), floor: 50,
            standbyFor: 3, reason: "until the reset"),
        Case(name: "no reading yet", reading: nil, floor: 0, standbyFor: 300, reason: "no quota reading yet"),
        Case(
            name: "no reading yet, with the probe's error", reading: nil, floor: 0,
            lastError: "HTTP 401: bad key",
            standbyFor: 300, reason: "last probe error: HTTP 401: bad key"),
        Case(
            name: "stale reading: fail safe even above the floor", reading: reading(90, age: 901), floor: 20,
            lastError: "timed out", standbyFor: 300,
            reason: "quota reading is 15m1s old (max_age 15m); last probe error: timed out"),
        Case(name: "old but within max_age", reading: reading(90, age: 899), floor: 20),
        Case(
            name: "probe off: never stale, never below", reading: nil, floor: 90,
            policy: QuotaPolicy(isProbing: false, interval: 300, maxAge: 900, sleepCap: 3600)),
        Case(
            name: "jobs cap not reached", reading: reading(90), floor: 20,
            policy: QuotaPolicy(
                isProbing: true, interval: 300, maxAge: 900, sleepCap: 3600, jobsPerWindow: 3),
            jobs: 2, windowEnd: now.addingTimeInterval(1000)),
        Case(
            name: "jobs cap reached: until the window ends", reading: reading(90), floor: 20,
            policy: QuotaPolicy(
                isProbing: true, interval: 300, maxAge: 900, sleepCap: 3600, jobsPerWindow: 3),
            jobs: 3, windowEnd: now.addingTimeInterval(1000), standbyFor: 1005,
            reason: "3 jobs started this quota window (jobs_per_window 3)"),
        Case(
            name: "jobs cap with the probe off", reading: nil, floor: 20,
            policy: QuotaPolicy(isProbing: false, interval: 300, maxAge: 900, sleepCap: 60, jobsPerWindow: 1),
            jobs: 1, windowEnd: now.addingTimeInterval(1000), standbyFor: 60, reason: "jobs_per_window 1"),
    ]

    @Test(arguments: cases)
    func decide(_ c: Case) {
        let decision = QuotaGate.decide(
            reading: c.reading, lastError: c.lastError, floor: c.floor, jobsInWindow: c.jobs,
            windowEnd: c.windowEnd,
            policy: c.policy, now: Self.now)
        switch decision {
        case .open:
            #expect(c.standbyFor == nil, "\(c.name): open")
        case .standby(let until, let reason, let fresh):
            #expect(c.standbyFor != nil, "\(c.name): standby \(reason)")
            #expect(until.timeIntervalSince(Self.now) == c.standbyFor ?? -1, "\(c.name)")
            #expect(reason.contains(c.reason), "\(c.name): \(reason)")
            #expect(fresh == c.fresh, "\(c.name)")
        }
    }

    @Test func jobWindowEndsAtTheResetOfItsFirstJob() {
        var w = JobWindow()
        let t0 = Self.now
        #expect(w.count(at: t0) == 0)
        w.record(at: t0, resetsAt: t0.addingTimeInterval(100), length: 3600)
        w.record(at: t0.addingTimeInterval(10), resetsAt: t0.addingTimeInterval(200), length: 3600)
        #expect(w.count(at: t0.addingTimeInterval(50)) == 2)
        #expect(w.end == t0.addingTimeInterval(100))
        #expect(w.count(at: t0.addingTimeInterval(100)) == 0)

        // The next job after the end opens a new window.
        w.record(at: t0.addingTimeInterval(150), resetsAt: t0.addingTimeInterval(400), length: 3600)
        #expect(w.count(at: t0.addingTimeInterval(160)) == 1)
        #expect(w.end == t0.addingTimeInterval(400))
    }

    @Test func jobWindowWithoutAResetLastsOneLength() {
        var w = JobWindow()
        w.record(at: Self.now, resetsAt: nil, length: 60)
        #expect(w.end == Self.now.addingTimeInterval(60))
        // A reset already past is no window end either.
        var v = JobWindow()
        v.record(at: Self.now, resetsAt: Self.now.addingTimeInterval(-5), length: 60)
        #expect(v.end == Self.now.addingTimeInterval(60))
    }
}

/// The old probe script's JSON, and what is not a reading.
@Suite struct QuotaCommandOutputTests {
    @Test func theOldScriptsJSON() throws {
        let m = try QuotaCommandOutput.parse(
            #"{"remaining":35000,"limit":100000,"pct":35,"reset_at_iso":"2026-12-04T21:00:00Z"}"# + "\n")
        #expect(m.pct == 35)
        #expect(m.resetsAt == Timestamp.parse("2026-12-04T21:00:00Z"))
        #expect(m.detail.contains("35000 of 100000"))
    }

    @Test func logLinesBeforeTheJSONAndExtraKeys() throws {
        let m = try QuotaCommandOutput.parse(
            "probing...\n{\"pct\": 72.9, \"reset_at_iso\": null, \"model\": \"x\"}\n")
        #expect(m.pct == 72)
        #expect(m.resetsAt == nil)
    }

    @Test(arguments: [
        ("", "no output"),
        ("quota ok\n", "no JSON object"),
        ("{\"pct\": }", "not a JSON object"),
        ("{\"reset_at_iso\": \"2026-12-04T21:00:00Z\"}", "key pct is missing"),
        ("{\"pct\": \"35\"}", "pct: \"35\" is not a number from 0 to 100"),
        ("{\"pct\": 135}", "is not a number from 0 to 100"),
        ("{\"pct\": -1}", "is not a number from 0 to 100"),
        (
            "{\"pct\": 35, \"reset_at_iso\": \"in an hour\"}",
            "reset_at_iso: \"in an hour\" is not an ISO-8601 time"
        ),
        ("{\"pct\": 35, \"reset_at_iso\": 1796400000}", "reset_at_iso: 1796400000 is not an ISO-8601 time"),
    ])
    func notAReading(_ output: String, _ message: String) {
        #expect {
            try QuotaCommandOutput.parse(output)
        } throws: { error in
            guard case .output(let why)? = error as? QuotaProbeError else { return false }
            return why.contains(message)
        }
    }
}

/// The probe's request and how it reads an answer, without a network.
@Suite struct AnthropicProbeTests {
    let probe = AnthropicProbe(baseURL: "http://127.0.0.1:9", model: "claude-haiku-4-5")

    @Test func apiKeyGoesInXAPIKey() throws {
        let r = probe.request(credential: "sk-ant-api03-secret", kind: .apiKey)
        #expect(r.url == "http://127.0.0.1:9/v1/messages")
        #expect(r.headers.contains("x-api-key: sk-ant-api03-secret"))
        #expect(r.headers.contains("anthropic-version: 2023-06-01"))
        #expect(!r.headers.contains { $0.hasPrefix("authorization:") || $0.hasPrefix("anthropic-beta:") })
        let body = try JSONValue.decode(r.body)
        #expect(body["max_tokens"]?.int == 1)
        #expect(body["model"]?.string == "claude-haiku-4-5")
        #expect(!String(decoding: r.body, as: UTF8.self).contains("secret"))
    }

    @Test func oauthTokenGoesInBearerWithTheBetaFlag() {
        let r = probe.request(credential: "sk-ant-oat01-secret", kind: .oauth)
        #expect(r.headers.contains("authorization: Bearer sk-ant-oat01-secret"))
        #expect(r.headers.contains("anthropic-beta: oauth-2025-04-20"))
        #expect(r.headers.contains("anthropic-version: 2023-06-01"))
        #expect(!r.headers.contains { $0.hasPrefix("x-api-key:") })
        #expect(!r.url.contains("secret"))
    }

    static let error401 = Data(
        #"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#.utf8)
    static let error529 = Data(
        #"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.utf8)

    @Test func answers() throws {
        let ok = try AnthropicProbe.interpret(
            status: 200, headers: QuotaHeadersTests.apiKey, body: Data(), kind: .apiKey)
        #expect(ok.pct == 35)

        // A 429 carries the reading that matters most.
        var rejected = QuotaHeadersTests.subscription
        rejected["anthropic-ratelimit-unified-status"] = "rejected"
        #expect(
            try AnthropicProbe.interpret(status: 429, headers: rejected, body: Data(), kind: .oauth).pct == 0)

        #expect(throws: QuotaProbeError.headers(.missing("anthropic-ratelimit-tokens-remaining"))) {
            try AnthropicProbe.interpret(status: 200, headers: [:], body: Data(), kind: .apiKey)
        }
        #expect {
            try AnthropicProbe.interpret(status: 401, headers: [:], body: Self.error401, kind: .apiKey)
        } throws: { error in
            guard case .rejected(401, let message)? = error as? QuotaProbeError else { return false }
            return message.contains("authentication_error: invalid x-api-key")
                && message.contains("credential_kind")
        }
        #expect(throws: QuotaProbeError.http(status: 529, message: "overloaded_error: Overloaded")) {
            try AnthropicProbe.interpret(status: 529, headers: [:], body: Self.error529, kind: .oauth)
        }
        #expect(throws: QuotaProbeError.http(status: 502, message: "<html>bad gateway</html>")) {
            try AnthropicProbe.interpret(
                status: 502, headers: [:], body: Data("<html>bad gateway</html>\n".utf8), kind: .oauth)
        }
        #expect {
            try AnthropicProbe.interpret(status: 429, headers: [:], body: Data(), kind: .oauth)
        } throws: { error in
            guard case .http(429, let message)? = error as? QuotaProbeError else { return false }
            return message.contains("anthropic-ratelimit-unified-5h-utilization is missing")
        }
    }

    @Test func unreachableIsATransportError() {
        // Port 9 (discard) on loopback: nothing listens; the error names the URL only.
        let p = AnthropicProbe(baseURL: "http://127.0.0.1:9", model: "m", timeout: 5)
        #expect {
            try p.measure(credential: "sk-ant-api03-secret", kind: .apiKey)
        } throws: { error in
            guard case .transport(let why)? = error as? QuotaProbeError else { return false }
            return why.contains("127.0.0.1:9") && !why.contains("secret")
        }
    }
}
