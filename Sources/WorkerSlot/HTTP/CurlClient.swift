#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CCurl
import FleetCore
import Synchronization

/// A flag another thread sets to abort a transfer in progress.
public final class CancelFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    private let waiters = Mutex<[Signal]>([])

    public init() {}

    /// Sets the flag and wakes every attached waiter.
    public func cancel() {
        flag.store(true, ordering: .relaxed)
        waiters.withLock { $0 }.forEach { $0.fire() }
    }

    public var isCancelled: Bool { flag.load(ordering: .relaxed) }

    /// Fires `signal` on cancel (at once when already cancelled), so that a waiter
    /// sleeps until its answer or its cancel instead of polling.
    public func attach(_ signal: Signal) {
        waiters.withLock { $0.append(signal) }
        if isCancelled { signal.fire() }
    }
}

/// A failed HTTP exchange, by what went wrong on the wire.
public enum HTTPClientError: Error, Equatable, CustomStringConvertible {
    case connect(String)
    case timeout
    case reset(String)
    case cancelled
    case other(String)

    public var description: String {
        switch self {
        case .connect(let why): "connect: \(why)"
        case .timeout: "timed out"
        case .reset(let why): "connection lost: \(why)"
        case .cancelled: "cancelled"
        case .other(let why): why
        }
    }
}

/// An HTTP answer: status, headers (names lower-cased) and body.
public struct HTTPAnswer: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data
}

private final class Transfer {
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    let cancel: CancelFlag?
    let limit: Int

    init(cancel: CancelFlag?, limit: Int) {
        self.cancel = cancel
        self.limit = limit
    }
}

/// HTTP POST/GET through libcurl's easy interface, one transfer per call, blocking the
/// calling thread (always a dedicated thread, never a pool thread).
public enum CurlClient {
    private static let initialized: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        return true
    }()

    /// Performs one request. `timeout` bounds the whole transfer.
    public static func perform(
        method: String, url: String, headers: [String], body: Data?, timeout: Double,
        cancel: CancelFlag? = nil, maxBody: Int = 16 << 20
    ) throws(HTTPClientError) -> HTTPAnswer {
        _ = initialized
        guard let handle = curl_easy_init() else { throw .other("curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }

        let transfer = Transfer(cancel: cancel, limit: maxBody)
        let context = Unmanaged.passUnretained(transfer).toOpaque()

        var list: UnsafeMutablePointer<curl_slist>? = nil
        for header in headers { list = curl_slist_append(list, header) }
        defer { curl_slist_free_all(list) }

        fleet_curl_setopt_str(handle, CURLOPT_URL, url)
        fleet_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        fleet_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Int(timeout * 1000))
        fleet_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(min(timeout, 10) * 1000))
        fleet_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, list)
        fleet_curl_setopt_str(handle, CURLOPT_CUSTOMREQUEST, method)
        // Never follow redirects: a bearer token must not travel to another host.
        fleet_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
        fleet_curl_setopt_str(handle, CURLOPT_PROXY, "")

        let payload = body.map { Array($0) } ?? []
        if body != nil {
            fleet_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, payload.count)
        }
        fleet_curl_setopt_writefn(handle, CURLOPT_WRITEFUNCTION) { data, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            if transfer.body.count + n > transfer.limit { return 0 }
            data.map { transfer.body.append(contentsOf: UnsafeRawBufferPointer(start: $0, count: n)) }
            return n
        }
        fleet_curl_setopt_ptr(handle, CURLOPT_WRITEDATA, context)
        fleet_curl_setopt_writefn(handle, CURLOPT_HEADERFUNCTION) { data, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            guard let data else { return n }
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
            if line.hasPrefix("HTTP/") { transfer.headers = [:] }  // a new response (100-continue)
            if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t\r\n")
                transfer.headers[name] = value
            }
            return n
        }
        fleet_curl_setopt_ptr(handle, CURLOPT_HEADERDATA, context)
        fleet_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0)
        fleet_curl_setopt_xferinfofn(handle) { context, _, _, _, _ in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            return transfer.cancel?.isCancelled == true ? 1 : 0
        }
        fleet_curl_setopt_ptr(handle, CURLOPT_XFERINFODATA, context)

        let code = payload.withUnsafeBufferPointer { buf -> CURLcode in
            if body != nil {
                fleet_curl_setopt_ptr(
                    handle, CURLOPT_POSTFIELDS,
                    UnsafeMutableRawPointer(mutating: buf.baseAddress ?? UnsafePointer(bitPattern: 1)!))
            }
            return withExtendedLifetime(transfer) { curl_easy_perform(handle) }
        }

        guard code == CURLE_OK else {
            let text = String(cString: curl_easy_strerror(code))
            switch code {
            case CURLE_ABORTED_BY_CALLBACK: throw .cancelled
            case CURLE_OPERATION_TIMEDOUT: throw .timeout
            case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST: throw .connect(text)
            case CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE:
                throw .reset(text)
            default: throw .other(text)
            }
        }
        var status = 0
        fleet_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPAnswer(status: status, headers: transfer.headers, body: Data(transfer.body))
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = String(self)[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
