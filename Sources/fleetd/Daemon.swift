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
import Dispatch
import FleetCore
import Synchronization
import WorkerSlot

/// fleetd's life: parse flags, load config, lock, reconcile, serve, run, shut down.
enum Daemon {
    static let usage = """
        usage: fleetd [--config PATH] [--log-format logfmt|json] [--log-level LEVEL]
               fleetd --check-config PATH
               fleetd --version

        Runs a fleet of Scrum4Me worker slots. The config path may also come from
        FLEET_CONFIG. Exit codes: 0 clean stop, 1 runtime failure, 2 usage or config error.
        """

    static func main() -> Never {
        var args = Array(CommandLine.arguments.dropFirst())
        var configPath = ProcessInfo.processInfo.environment["FLEET_CONFIG"]
        var checkOnly = false
        var logFormat: LogFormat?
        var logLevel: LogLevel?

        while !args.isEmpty {
            let arg = args.removeFirst()
            switch arg {
            case "--config", "-c", "--check-config":
                guard !args.isEmpty else { fail(usage: "\(arg) needs a path") }
                configPath = args.removeFirst()
                checkOnly = checkOnly || arg == "--check-config"
            case "--log-format":
                guard let value = args.first, let format = LogFormat(rawValue: value) else {
                    fail(usage: "--log-format needs logfmt or json")
                }
                args.removeFirst()
                logFormat = format
            case "--log-level":
                guard let value = args.first, let level = LogLevel.allCases.first(where: { $0.name == value })
                else {
                    fail(usage: "--log-level needs debug, info, notice, warning or error")
                }
                args.removeFirst()
                logLevel = level
            case "--version":
                print("fleetd \(fleetVersion)")
                exit(0)
            case "--help", "-h":
                print(usage)
                exit(0)
            default:
                fail(usage: "unknown argument \(arg)")
            }
        }
        guard let configPath else { fail(usage: "no config: pass --config PATH or set FLEET_CONFIG") }

        // Config: strict, with the key and value named in any error.
        let absolute =
            configPath.hasPrefix("/")
            ? configPath : FileManager.default.currentDirectoryPath + "/" + configPath
        var config: FleetConfig
        do {
            config = try FleetConfig.load(path: absolute)
        } catch {
            writeStderr("fleetd: config error: \(error)\n")
            exit(2)
        }
        if checkOnly {
            print("config ok: \(config.slots.count) slots, transport \(config.scrum4me.transport.rawValue)")
            exit(0)
        }
        if let logFormat { config.fleet.logFormat = logFormat }
        if let logLevel { config.fleet.logLevel = logLevel }
        let logger = Logger(level: config.fleet.logLevel, format: config.fleet.logFormat)

        signal(SIGPIPE, SIG_IGN)
        Posix.limitMallocArenas(2)
        do {
            try run(config, logger)
        } catch {
            logger.error("fleetd cannot start", ("error", error))
            writeStderr("fleetd: \(error)\n")
            exit(1)
        }
    }

    static func run(_ config: FleetConfig, _ logger: Logger) throws -> Never {
        // State directory and the single-instance lock, before touching the socket.
        let stateDir = config.fleet.stateDir
        try FileManager.default.createDirectory(
            atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let lock = try InstanceLock.acquire(path: stateDir + "/fleetd.lock")

        // Ours alone: an existing directory (a volume, a tmpfs) is tightened too.
        _ = chmod(stateDir, 0o700)
        let store = try Store(path: stateDir + "/fleet.db")
        for suffix in ["", "-wal", "-shm"] { _ = chmod(stateDir + "/fleet.db" + suffix, 0o600) }
        Reaper.shared.start(subreaper: true)

        let quota = QuotaBoard()
        let context = SlotContext(
            config: config, store: store, logger: logger, quota: quota,
            baseEnvironment: ProcessInfo.processInfo.environment)
        let supervisor = Supervisor(context: context)
        supervisor.reconcile()
        let probe = QuotaProbe(config: config, store: store, board: quota, logger: logger)
        probe.start()

        // The control socket: serving before the slots start, so status works at once.
        let routes = Routes(supervisor: supervisor)
        var readGroup: gid_t?
        if let name = config.fleet.readGroup {
            guard let group = getgrnam(name) else {
                throw ConfigError(
                    path: config.path, line: nil, key: "fleet.read_group",
                    message: "no group named \"\(name)\"")
            }
            readGroup = group.pointee.gr_gid
        }
        let server = ControlServer(path: config.fleet.socket, logger: logger, readGroup: readGroup) {
            request, peer in
            routes.handle(request, peer)
        }
        try server.start()
        logger.notice(
            "fleetd started", ("version", fleetVersion), ("pid", getpid()),
            ("socket", config.fleet.socket), ("state_dir", stateDir))
        supervisor.start()
        supervisor.startHousekeeping()

        // systemd (Type=notify): ready now that the socket serves; status and watchdog.
        let notify = SystemdNotify.fromEnvironment(logger: logger)
        notify?.ready(status: supervisor.status().summaryLine)
        notify?.watch(isAlive: { _ = supervisor.status() }, summary: { supervisor.status().summaryLine })

        // Signals: the first TERM/INT drains and stops; a second one escalates.
        let escalate = Signal()
        let shutdownStarted = Mutex(false)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            source.setEventHandler {
                let first = shutdownStarted.withLock { started -> Bool in
                    defer { started = true }
                    return !started
                }
                guard first else {
                    escalate.fire()
                    return
                }
                logger.notice("signal received", ("signal", sig == SIGTERM ? "TERM" : "INT"))
                notify?.stopping(status: "draining: no new jobs; stopping within the grace period")
                startThread {
                    supervisor.shutdown(escalate: escalate)
                    server.stop()
                    lock.release()
                    exit(0)
                }
            }
            source.resume()
            sources.append(source)
        }
        // SIGHUP: reload the config (and secret files); an invalid one is refused and
        // the running config kept.
        signal(SIGHUP, SIG_IGN)
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .main)
        hup.setEventHandler {
            guard !shutdownStarted.withLock({ $0 }) else { return }
            do {
                var next = try FleetConfig.load(path: config.path)
                next.fleet.logLevel = config.fleet.logLevel
                next.fleet.logFormat = config.fleet.logFormat
                let reloaded = next
                startThread { supervisor.reload(reloaded) }
            } catch {
                logger.error("config reload refused; keeping the running config", ("error", error))
                try? store.event(slot: nil, kind: "config_reload_refused", detail: "\(error)")
            }
        }
        hup.resume()
        sources.append(hup)
        withExtendedLifetime(sources) { dispatchMain() }
    }

    static func fail(usage message: String) -> Never {
        writeStderr("fleetd: \(message)\n\n\(usage)\n")
        exit(2)
    }
}

func writeStderr(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress!, $0.count) }
}
