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
import Synchronization

/// A slot's live session with its Scrum4Me server: the transport, the typed API, the
/// instance id of this boot, and a presence ticker that heartbeats in the background.
final class Connection: @unchecked Sendable {
    let api: Scrum4Me
    let instanceId: String
    /// The stdio server process, if any.
    let server: Child?
    private let transport: MCPTransport
    private let slot: Slot
    private let broken = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    private let stopTicker = Signal()

    private init(slot: Slot, transport: MCPTransport, server: Child?, instanceId: String) {
        self.slot = slot
        self.transport = transport
        self.server = server
        self.instanceId = instanceId
        self.api = Scrum4Me(
            client: MCPClient(transport: transport), timeout: slot.context.config.scrum4me.requestTimeout)
    }

    var isBroken: Bool {
        broken.load(ordering: .relaxed) || server?.exitStatus != nil
    }

    func markBroken() { broken.store(true, ordering: .relaxed) }

    /// Starts the server (stdio) or prepares the endpoint (HTTP), then handshakes.
    static func open(slot: Slot) throws -> Connection {
        let context = slot.context
        let spec = slot.spec
        let config = context.config
        let token = try Secrets.read(spec.tokenFile)
        slot.state.withLock { $0.tokenFingerprint = tokenFingerprint(token) }
        let instanceId = "\(config.fleet.name)-\(spec.name)-\(bootNonce())"
        let home = context.slotDir(spec.name) + "/home"
        try makeDirectories(home)
        if let root = spec.worktreeRoot { try makeDirectories(root, mode: 0o755) }

        let connection: Connection
        switch config.scrum4me.transport {
        case .stdio:
            let env = try serverEnvironment(slot: slot, token: token, instanceId: instanceId, home: home)
            // Logging degrades, supervision goes on: no log file is no reason not to run.
            try? makeDirectories(context.serverLogDir)
            let logPath = "\(context.serverLogDir)/\(spec.name).log"
            let logFD = Posix.open(logPath, O_WRONLY | O_CREAT | O_APPEND)
            if logFD < 0 { LogHealth.recordFailure() }
            defer { if logFD >= 0 { Posix.close(logFD) } }
            let request = SpawnRequest(
                executable: config.scrum4me.command[0], arguments: Array(config.scrum4me.command.dropFirst()),
                environment: env, directory: home, stderr: logFD >= 0 ? logFD : nil)
            let transport = try StdioTransport(request: request, logFD: logFD >= 0 ? logFD : nil)
            try? context.store.setServerProcess(spec.name, ProcessIdentity.of(pid: transport.child.pid))
            connection = Connection(
                slot: slot, transport: transport, server: transport.child, instanceId: instanceId)
        case .http:
            let transport = HTTPTransport(
                url: config.scrum4me.url!, token: token,
                headers: ["X-Scrum4Me-Worker-Instance: \(instanceId)"])
            connection = Connection(slot: slot, transport: transport, server: nil, instanceId: instanceId)
        }

        do {
            try connection.api.client.initialize(
                clientName: "fleet-\(spec.name)", timeout: config.scrum4me.requestTimeout)
        } catch {
            // A server that died at start: keep its exit status for the slot's status.
            if let exit = connection.server?.wait(seconds: 0.5) {
                slot.state.withLock { $0.lastExit = "\(exit)" }
            }
            connection.close(killAfter: config.fleet.killTimeout)
            if case .unauthorized = error { throw Scrum4MeError.mcp(error) }
            throw error
        }
        connection.startTicker()
        slot.logger.notice(
            "connected", ("instance", instanceId), ("transport", config.scrum4me.transport.rawValue),
            ("pid", connection.server?.pid))
        return connection
    }

    /// The stdio server's environment: the slot's identity and roots, no other secret
    /// than the token and the env file's entries.
    static func serverEnvironment(slot: Slot, token: String, instanceId: String, home: String) throws
        -> [String: String]
    {
        let context = slot.context
        let spec = slot.spec
        var env = context.childBaseEnvironment
        env["HOME"] = home
        for (key, value) in context.config.scrum4me.env { env[key] = value }
        if let file = context.config.scrum4me.envFile {
            for (key, value) in try Secrets.readEnvFile(file) { env[key] = value }
        }
        env["SCRUM4ME_TOKEN"] = token
        env["SCRUM4ME_WORKER_INSTANCE_ID"] = instanceId
        env["SCRUM4ME_WORKER_RUNTIME"] = spec.runtime ?? "CLAUDE"
        if !spec.capabilities.isEmpty {
            env["SCRUM4ME_WORKER_CAPABILITIES"] = spec.capabilities.joined(separator: ",")
        }
        if let root = spec.worktreeRoot { env["SCRUM4ME_AGENT_WORKTREE_DIR"] = root }
        for (product, root) in spec.repoRoots { env["SCRUM4ME_REPO_ROOT_\(product)"] = root }
        return env
    }

    /// Sends `worker_heartbeat` with the fleet's reading (100 without a probe).
    func heartbeat(_ reading: QuotaInfo?) throws(Scrum4MeError) {
        // No reading yet from a real probe: say nothing rather than invent 100%.
        if reading == nil && slot.context.config.quota.probe != "off" { return }
        try api.workerHeartbeat(pct: reading?.pct ?? 100, checkedAt: reading?.checkedAt)
        let now = Date()
        slot.state.withLock { $0.lastHeartbeat = now }
        try? slot.context.store.recordHeartbeat(slot.spec.name, at: now)
    }

    /// Heartbeats every interval (and on each new reading) while the connection lives,
    /// concurrently with a pending long poll (DESIGN.md, decision 6).
    private func startTicker() {
        let interval = slot.context.config.scrum4me.heartbeatInterval
        slot.context.quota.subscribe(stopTicker)
        startThread { [self] in
            defer { slot.context.quota.unsubscribe(stopTicker) }
            while !closed.load(ordering: .relaxed) {
                // Woken by a new reading (the board fires it) or by close().
                stopTicker.wait(seconds: interval)
                if closed.load(ordering: .relaxed) || isBroken { return }
                do {
                    try heartbeat(slot.context.quota.latest)
                } catch {
                    slot.logger.debug("heartbeat failed", ("error", error))
                }
            }
        }
    }

    /// Closes the session: stdin closed, then TERM and KILL if the server lingers.
    func close(killAfter: Double) {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        stopTicker.fire()
        transport.close()
        if let server {
            // A server that does not leave on EOF within half a second gets TERM (it
            // removes its presence on TERM as well), then KILL.
            if server.wait(seconds: min(0.5, killAfter)) == nil {
                server.stop(killAfter: killAfter)
            }
            try? slot.context.store.setServerProcess(slot.spec.name, nil)
        }
    }
}

/// Eight random hex digits, new on every connection (a restarted slot never reuses
/// its predecessor's instance id).
func bootNonce() -> String {
    let value = UInt32.random(in: 0...UInt32.max)
    let hex = String(value, radix: 16)
    return String(repeating: "0", count: 8 - hex.count) + hex
}
