#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FleetCore

/// The verbs that change something: drain, undrain, restart, scale, requeue.
enum Actions {
    static func body<T: Encodable>(_ value: T) -> Data {
        (try? API.encoder().encode(value)) ?? Data()
    }

    static func slots(_ args: [String], verb: String) -> (SlotsRequest, Bool) {
        var names: [String] = []
        var all = false
        var wait = false
        for arg in args {
            switch arg {
            case "--all": all = true
            case "--wait": wait = true
            case let flag where flag.hasPrefix("-"): CLI.usageError("\(verb): unknown option \(flag)")
            default: names.append(arg)
            }
        }
        guard all != !names.isEmpty else { CLI.usageError("\(verb): name slots or pass --all (not both)") }
        var unique: [String] = []
        for name in names where !unique.contains(name) { unique.append(name) }
        return (SlotsRequest(slots: unique, all: all), wait)
    }

    static func drain(_ options: GlobalOptions, _ args: [String]) -> Exit {
        let (request, wait) = slots(args, verb: "drain")
        do {
            let (result, _) = try CLI.call(
                "POST", "/v1/drain", body: body(request), options, as: ActionResult.self)
            if !options.json {
                print(
                    "draining \(result.slots.joined(separator: ", ")): running jobs finish, no new ones start"
                )
            }
            guard wait else {
                if options.json { CLI.printJSON(result) }
                return .ok
            }
            // Progress while waiting: one line whenever the set of busy slots changes.
            var last = ""
            while true {
                let (status, _) = try CLI.call("GET", "/v1/status", body: nil, options, as: FleetStatus.self)
                let mine = status.slots.filter { result.slots.contains($0.name) }
                let busy = mine.filter {
                    $0.state != .drained && $0.state != .stopped && $0.state != .failed
                        && $0.state != .tokenRejected
                }
                let line =
                    busy.isEmpty
                    ? "all drained"
                    : "waiting for "
                        + busy.map { s in
                            s.job.map { "\(s.name) (job \($0.id), \(age($0.since) ?? "-"))" }
                                ?? "\(s.name) (\(s.state.rawValue))"
                        }.joined(separator: ", ")
                if line != last && !options.json { print(line) }
                last = line
                if busy.isEmpty {
                    if options.json { CLI.printJSON(mine) }
                    return .ok
                }
                usleep(500_000)
            }
        } catch {
            return CLI.report(error)
        }
    }

    static func undrain(_ options: GlobalOptions, _ args: [String]) -> Exit {
        let (request, _) = slots(args, verb: "undrain")
        do {
            let (result, _) = try CLI.call(
                "POST", "/v1/undrain", body: body(request), options, as: ActionResult.self)
            if options.json {
                CLI.printJSON(result)
            } else {
                print("undrained \(result.slots.joined(separator: ", "))")
            }
            return .ok
        } catch {
            return CLI.report(error)
        }
    }

    static func restart(_ options: GlobalOptions, _ args: [String]) -> Exit {
        let now = args.contains("--now")
        let rest = args.filter { $0 != "--now" }
        guard rest.count == 1, !rest[0].hasPrefix("-") else { CLI.usageError("restart needs one SLOT") }
        do {
            let request = RestartRequest(slot: rest[0], now: now)
            let (result, _) = try CLI.call(
                "POST", "/v1/restart", body: body(request), options, as: ActionResult.self)
            if options.json {
                CLI.printJSON(result)
            } else {
                print("\(rest[0]): \(result.message ?? "restarting")")
            }
            return .ok
        } catch {
            return CLI.report(error)
        }
    }

    static func scale(_ options: GlobalOptions, _ args: [String]) -> Exit {
        guard args.count == 1, let n = Int(args[0]), n >= 0 else {
            CLI.usageError("scale needs a number of slots")
        }
        do {
            let (result, _) = try CLI.call(
                "POST", "/v1/scale", body: body(ScaleRequest(slots: n)), options, as: ScaleResult.self)
            if options.json {
                CLI.printJSON(result)
            } else {
                print("scaled to \(result.desired) slots")
                if !result.started.isEmpty { print("started: \(result.started.joined(separator: ", "))") }
                if !result.draining.isEmpty {
                    print("stopping after their current job: \(result.draining.joined(separator: ", "))")
                }
            }
            return .ok
        } catch {
            return CLI.report(error)
        }
    }

    static func requeue(_ options: GlobalOptions, _ args: [String]) -> Exit {
        guard args.count == 1 else { CLI.usageError("requeue needs one JOB") }
        do {
            let (result, _) = try CLI.call(
                "POST", "/v1/requeue", body: body(RequeueRequest(job: args[0])), options,
                as: RequeueResult.self)
            if options.json {
                CLI.printJSON(result)
            } else {
                print("\(result.job) on \(result.slot): \(result.message)")
            }
            return .ok
        } catch {
            return CLI.report(error)
        }
    }
}

/// `fleetctl events` and `fleetctl logs`: the event log and log files, optionally live.
enum Streams {
    static func events(_ options: GlobalOptions, _ args: [String]) -> Exit {
        var follow = false
        var limit = 100
        var rest = args[...]
        while let arg = rest.popFirst() {
            switch arg {
            case "-f", "--follow": follow = true
            case "--limit":
                guard let value = rest.popFirst(), let n = Int(value), n > 0 else {
                    CLI.usageError("--limit needs a number")
                }
                limit = n
            default: CLI.usageError("events: unknown argument \(arg)")
            }
        }
        do {
            guard follow else {
                let (events, _) = try CLI.call(
                    "GET", "/v1/events?limit=\(limit)", body: nil, options, as: [EventRecord].self)
                if options.json { CLI.printJSON(events) } else { events.forEach { print(render($0)) } }
                return .ok
            }
            try CLI.client(options).stream("/v1/events?follow=1&limit=\(min(limit, 10))") { line in
                if options.json {
                    print(line)
                } else if let event = try? API.decoder().decode(EventRecord.self, from: Data(line.utf8)) {
                    print(render(event))
                }
                fflush(nil)
                return true
            }
            writeErr("fleetctl: fleetd closed the event stream\n")
            return .failed
        } catch {
            return CLI.report(error)
        }
    }

    static func render(_ e: EventRecord) -> String {
        [Timestamp.iso8601(e.at), e.kind, e.slot.map { "slot=\($0)" }, e.job.map { "job=\($0)" }, e.detail]
            .compactMap { $0 }.joined(separator: "  ")
    }

    static func logs(_ options: GlobalOptions, _ args: [String]) -> Exit {
        var follow = false
        var bytes = 65536
        var target: String?
        var rest = args[...]
        while let arg = rest.popFirst() {
            switch arg {
            case "-f", "--follow": follow = true
            case "--bytes":
                guard let value = rest.popFirst(), let n = Int(value), n >= 0 else {
                    CLI.usageError("--bytes needs a number")
                }
                bytes = n
            case let flag where flag.hasPrefix("-"): CLI.usageError("logs: unknown option \(flag)")
            default:
                guard target == nil else { CLI.usageError("logs takes one SLOT or JOB") }
                target = arg
            }
        }
        guard let target else { CLI.usageError("logs needs a SLOT or a JOB") }
        do {
            // A configured slot's name means its server log; anything else is a job id.
            let (status, _) = try CLI.call("GET", "/v1/status", body: nil, options, as: FleetStatus.self)
            let key = status.slots.contains { $0.name == target } ? "slot" : "job"
            let query = "\(key)=\(percentEncode(target))&bytes=\(bytes)"
            guard follow else {
                let response = try CLI.send("GET", "/v1/logs?\(query)", options)
                guard response.status == 200 else {
                    let error =
                        (try? API.decoder().decode(APIError.self, from: Data(response.body)))
                        ?? APIError(error: "HTTP \(response.status)")
                    throw FleetClientError.server(status: response.status, error)
                }
                if options.json {
                    // One object: which log, and its text.
                    let object: JSONValue = [
                        key: .string(target), "data": .string(String(decoding: response.body, as: UTF8.self)),
                    ]
                    print(String(decoding: object.encoded(), as: UTF8.self))
                } else {
                    FileHandleOut.write(response.body)
                }
                return .ok
            }
            try CLI.client(options).stream("/v1/logs?\(query)&follow=1") { line in
                if options.json {
                    print(line)
                    fflush(nil)
                } else if let object = try? JSONValue.decode(Data(line.utf8)),
                    let data = object["data"]?.string
                {
                    FileHandleOut.write(Array(data.utf8))
                }
                return true
            }
            return .ok
        } catch let error as FleetClientError {
            return CLI.report(error)
        } catch {
            return .failed
        }
    }
}

/// Raw bytes to stdout.
enum FileHandleOut {
    static func write(_ bytes: [UInt8]) {
        fflush(nil)
        _ = Posix.writeAll(1, bytes)
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
func percentEncode(_ value: String) -> String {
    var out = ""
    for byte in value.utf8 {
        let c = Character(Unicode.Scalar(byte))
        if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) {
            out.append(c)
        } else {
            out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }
    }
    return out
}
