import Foundation
import Testing

@testable import FleetCore

@Suite struct HTTPParserTests {
    let limits = HTTPLimits()

    func parse(_ text: String) throws(HTTPParseError) -> HTTPRequest? {
        try HTTPParser.parseRequest(Array(text.utf8), limits: limits)
    }

    @Test func parsesARequestWithQueryAndBody() throws {
        let r = try #require(
            try parse("POST /v1/drain?slot=a%20b&wait HTTP/1.1\r\nContent-Length: 2\r\nX-A:  b \r\n\r\n{}"))
        #expect(r.method == "POST")
        #expect(r.path == "/v1/drain")
        #expect(r.query == ["slot": "a b", "wait": ""])
        #expect(r.headers["x-a"] == "b")
        #expect(r.body == Array("{}".utf8))
    }

    /// Empty keys in a query ("?=", "&=x", "&&") are skipped, never a crash.
    @Test(arguments: ["/v1/status?=", "/v1/status?a=1&=", "/v1/status?=x&&b", "/v1/status?&"])
    func emptyQueryPairsAreSkipped(target: String) throws {
        let r = try #require(try parse("GET \(target) HTTP/1.1\r\n\r\n"))
        #expect(r.path == "/v1/status")
        #expect(!r.query.keys.contains(""))
    }

    @Test func waitsForMoreBytes() throws {
        #expect(try parse("GET /v1/status HTTP/1.1\r\nHost: x\r\n") == nil)
        #expect(try parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}") == nil)
    }

    @Test(arguments: [
        ("garbage\r\n\r\n", 400),
        ("GET /v1/status\r\n\r\n", 400),
        ("get /v1/status HTTP/1.1\r\n\r\n", 400),
        ("GET v1/status HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 0\r\n\r\n{}", 400),
        ("GET /" + String(repeating: "a", count: 5000) + " HTTP/1.1\r\n\r\n", 414),
        ("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 20000) + "\r\n\r\n", 431),
    ])
    func rejectsMalformedRequests(text: String, status: Int) {
        do {
            _ = try parse(text)
            Issue.record("accepted \(text.prefix(40))")
        } catch {
            #expect(error.status == status)
        }
    }

    @Test func rejectsAnEndlessHeaderBeforeItsEnd() {
        let text = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 20000)
        #expect(throws: HTTPParseError.self) { try parse(text) }
    }

    @Test func responseRoundTrips() throws {
        let response = HTTPResponse(
            status: 404, headers: [("Content-Type", "application/json")], body: Array("{}".utf8))
        let parsed = try #require(HTTPParser.parseResponse(response.serialized()))
        #expect(parsed.status == 404)
        #expect(parsed.header("content-type") == "application/json")
        #expect(parsed.body == Array("{}".utf8))
    }
}
