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

/// fleetctl's documented exit codes (DESIGN.md, "Exit codes").
enum Exit: Int32 {
    case ok = 0, failed = 1, usage = 2, notRunning = 3, timeout = 4
}

/// Options every verb shares.
struct GlobalOptions {
    var socket: String?
    var config: String?
    var json = false
    var timeout = 5.0
}

/// The operator's CLI: one verb per invocation, over the control socket.
enum CLI {
    static var usage: String {
        let width = verbHelp.map(\.name.count).max() ?? 0
        let verbs = verbHelp.map {
            "  " + $0.name + String(repeating: " ", count: width - $0.name.count) + "  " + $0.summary
        }
        return """
            usage: fleetctl [--socket PATH] [--config PATH] [--timeout SECONDS] VERB [--json]

            Operates a running fleetd over its control socket (also FLEET_SOCKET, FLEET_CONFIG).

            verbs:
            \(verbs.joined(separator: "\n"))

            exit codes: 0 ok, 1 failed or unhealthy, 2 usage, 3 daemon not running,
                        4 daemon did not answer in time
            """
    }

    static func main() -> Never {
        var args = Array(CommandLine.arguments.dropFirst())
        var options = GlobalOptions()
        let env = ProcessInfo.processInfo.environment
        options.socket = env["FLEET_SOCKET"]
        options.config = env["FLEET_CONFIG"]

        var rest: [String] = []
        while !args.isEmpty {
            let arg = args.removeFirst()
            switch arg {
            case "--socket", "--config", "--timeout":
                guard !args.isEmpty else { usageError("\(arg) needs a value") }
                let value = args.removeFirst()
                if arg == "--socket" { options.socket = value }
                if arg == "--config" { options.config = value }
                if arg == "--timeout" {
                    guard let t = Double(value) ?? parseDuration(value), t > 0 else {
                        usageError("--timeout needs seconds")
                    }
                    options.timeout = t
                }
            case "--json": options.json = true
            case "-h", "--help": rest.insert("help", at: 0)
            default: rest.append(arg)
            }
        }

        let verb = rest.isEmpty ? "status" : rest.removeFirst()
        let code: Exit
        switch verb {
        case "status": code = Status.run(options, rest)
        case "jobs": code = Jobs.run(options, rest)
        case "health": code = Health.run(options, rest)
        case "version": code = Version.run(options, rest)
        case "drain": code = Actions.drain(options, rest)
        case "undrain": code = Actions.undrain(options, rest)
        case "restart": code = Actions.restart(options, rest)
        case "scale": code = Actions.scale(options, rest)
        case "requeue": code = Actions.requeue(options, rest)
        case "events": code = Streams.events(options, rest)
        case "logs": code = Streams.logs(options, rest)
        case "quota": code = Quota.run(options, rest)
        case "__slots":
            // For shell completion: the configured slots' names, one a line.
            if let (status, _) = try? CLI.call("GET", "/v1/status", body: nil, options, as: FleetStatus.self)
            {
                status.slots.forEach { print($0.name) }
            }
            code = .ok
        case "completion":
            guard rest.count == 1, let script = completionScript(rest[0]) else {
                usageError("completion needs bash or zsh")
            }
            print(script)
            code = .ok
        case "help":
            if let name = rest.first {
                guard let help = verbHelp.first(where: { $0.name == name }) else {
                    usageError("no verb \(name)")
                }
                print(help.text)
            } else {
                print(usage)
            }
            code = .ok
        default: usageError("unknown verb \(verb)")
        }
        exit(code.rawValue)
    }

    static func usageError(_ message: String) -> Never {
        writeErr("fleetctl: \(message)\n\n\(usage)\n")
        exit(Exit.usage.rawValue)
    }

    /// The config named by --config or FLEET_CONFIG, if any (for its socket and state dir).
    static func loadConfig(_ options: GlobalOptions) -> FleetConfig? {
        guard let path = options.config else { return nil }
        do {
            return try FleetConfig.load(path: path)
        } catch {
            writeErr("fleetctl: \(error)\n")
            exit(Exit.usage.rawValue)
        }
    }

    /// One call, decoded; warns once when the daemon's version differs from ours.
    static func call<T: Decodable>(
        _ method: String, _ path: String, body: Data?, _ options: GlobalOptions, as type: T.Type
    ) throws(FleetClientError) -> (T, HTTPResponse) {
        let result = try client(options).call(method, path, body: body, as: type)
        checkVersion(result.1)
        return result
    }

    /// One raw call; warns once on a version mismatch.
    static func send(_ method: String, _ path: String, _ options: GlobalOptions) throws(FleetClientError)
        -> HTTPResponse
    {
        let response = try client(options).send(method, path)
        checkVersion(response)
        return response
    }

    nonisolated(unsafe) static var warnedVersion = false

    static func checkVersion(_ response: HTTPResponse) {
        guard !warnedVersion, let version = response.header("Fleet-Version"), version != fleetVersion else {
            return
        }
        warnedVersion = true
        writeErr("fleetctl: warning: fleetd is version \(version), fleetctl is \(fleetVersion)\n")
    }

    static func client(_ options: GlobalOptions) -> FleetClient {
        let socket = options.socket ?? loadConfig(options)?.fleet.socket ?? DefaultPaths.socket
        return FleetClient(socketPath: socket, timeout: options.timeout)
    }

    /// Prints a client error with a hint and returns its exit code.
    static func report(_ error: FleetClientError) -> Exit {
        switch error {
        case .notRunning:
            writeErr("fleetctl: \(error)\nhint: start it with: fleetd --config PATH\n")
            return .notRunning
        case .timeout:
            writeErr(
                "fleetctl: \(error)\nhint: the daemon may be stopped (SIGSTOP) or overloaded; check its pid and log\n"
            )
            return .timeout
        case .server(_, let api):
            writeErr("fleetctl: \(api.error)\n" + (api.hint.map { "hint: \($0)\n" } ?? ""))
            return .failed
        case .badResponse:
            writeErr("fleetctl: \(error)\n")
            return .failed
        case .denied:
            writeErr(
                "fleetctl: \(error)\nhint: run fleetctl as the daemon's user or root, or join its read_group\n"
            )
            return .failed
        }
    }

    /// Prints a value as indented JSON.
    static func printJSON<T: Encodable>(_ value: T) {
        let data = (try? API.encoder(pretty: true).encode(value)) ?? Data()
        print(String(decoding: data, as: UTF8.self))
    }
}

func writeErr(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress!, $0.count) }
}
