#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension FleetConfig {
    /// The config version this build reads.
    public static let currentVersion = 1

    /// Reads and validates the config at `path`.
    public static func load(path: String) throws(ConfigError) -> FleetConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(path: path, line: nil, key: nil, message: "cannot read file")
        }
        return try parse(text, path: path)
    }

    /// Validates config text; `path` names it in errors and anchors relative paths.
    ///
    /// A key of `[fleet]`, `[scrum4me]`, `[quota]` or `[agent]` may be overridden by an
    /// environment variable `FLEET_<SECTION>_<KEY>` (`FLEET_FLEET_GRACE=45s`,
    /// `FLEET_SCRUM4ME_URL=...`), for containers; the value is read as a TOML value, or
    /// as a string when it is not one.
    public static func parse(
        _ text: String, path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigError) -> FleetConfig {
        let root: TOMLTable
        do {
            root = try TOML.parse(text)
        } catch {
            throw ConfigError(path: path, line: error.line, key: nil, message: error.message)
        }
        let base = directoryOf(path)
        var top = TableReader(root, prefix: "", file: path, base: base)
        top.environment = environment.filter { $0.key.hasPrefix("FLEET_") }

        let version = try top.int("version", required: true) ?? 0
        guard version == currentVersion else {
            throw top.error("version", "unsupported version \(version); this fleetd reads \(currentVersion)")
        }

        var fleetR = try top.table("fleet")
        var fleet = FleetSection(stateDir: DefaultPaths.stateDir, socket: DefaultPaths.socket)
        fleet.name = try fleetR.string("name") ?? fleet.name
        try fleetR.check("name", fleet.name, "must be letters, digits, '-' or '_'") { isName($0) }
        fleet.stateDir = try fleetR.path("state_dir") ?? fleet.stateDir
        fleet.socket = try fleetR.path("socket") ?? fleet.socket
        #if os(Linux)
        let socketLimit = 107
        #else
        let socketLimit = 103
        #endif
        try fleetR.check("socket", fleet.socket, "is over \(socketLimit) bytes, too long for a Unix socket") {
            $0.utf8.count <= socketLimit
        }
        fleet.logDir = try fleetR.path("log_dir") ?? fleet.stateDir + "/logs"
        fleet.grace = try fleetR.duration("grace") ?? fleet.grace
        fleet.killTimeout = try fleetR.duration("kill_timeout", positive: true) ?? fleet.killTimeout
        fleet.slots = try fleetR.int("slots")
        fleet.restartBudget = try fleetR.int("restart_budget") ?? fleet.restartBudget
        try fleetR.check("restart_budget", fleet.restartBudget, "must be at least 1") { $0 >= 1 }
        fleet.restartWindow = try fleetR.duration("restart_window", positive: true) ?? fleet.restartWindow
        fleet.readGroup = try fleetR.string("read_group")
        if let level = try fleetR.string("log_level") {
            guard let parsed = LogLevel.allCases.first(where: { $0.name == level }) else {
                throw fleetR.error(
                    "log_level", "\"\(level)\" is not one of debug, info, notice, warning, error")
            }
            fleet.logLevel = parsed
        }
        if let format = try fleetR.string("log_format") {
            guard let parsed = LogFormat(rawValue: format) else {
                throw fleetR.error("log_format", "\"\(format)\" is not one of logfmt, json")
            }
            fleet.logFormat = parsed
        }
        try fleetR.finish()

        var s4mR = try top.table("scrum4me")
        var s4m = Scrum4MeSection()
        if let transport = try s4mR.string("transport") {
            guard let parsed = Transport(rawValue: transport) else {
                throw s4mR.error("transport", "\"\(transport)\" is not one of stdio, http")
            }
            s4m.transport = parsed
        }
        s4m.command = try s4mR.stringArray("command") ?? []
        s4m.envFile = try s4mR.path("env_file")
        s4m.env = try s4mR.stringTable("env") ?? [:]
        s4m.url = try s4mR.string("url")
        s4m.waitSeconds = try s4mR.int("wait_seconds") ?? s4m.waitSeconds
        try s4mR.check("wait_seconds", s4m.waitSeconds, "must be between 1 and 600") {
            (1...600).contains($0)
        }
        s4m.heartbeatInterval =
            try s4mR.duration("heartbeat_interval", positive: true) ?? s4m.heartbeatInterval
        s4m.leaseInterval = try s4mR.duration("lease_interval", positive: true) ?? s4m.leaseInterval
        s4m.requestTimeout = try s4mR.duration("request_timeout", positive: true) ?? s4m.requestTimeout
        s4m.backoffMin = try s4mR.duration("backoff_min") ?? s4m.backoffMin
        s4m.backoffMax = try s4mR.duration("backoff_max", positive: true) ?? s4m.backoffMax
        if s4m.backoffMin > s4m.backoffMax {
            throw s4mR.error(
                "backoff_min",
                "\(formatDuration(s4m.backoffMin)) is longer than backoff_max (\(formatDuration(s4m.backoffMax)))"
            )
        }
        switch s4m.transport {
        case .stdio where s4m.command.isEmpty:
            throw s4mR.error("command", "is required with transport = \"stdio\"")
        case .http where s4m.url == nil:
            throw s4mR.error("url", "is required with transport = \"http\"")
        case .http:
            let url = s4m.url!
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw s4mR.error("url", "\"\(url)\" is not an http:// or https:// URL")
            }
        default: break
        }
        try s4mR.finish()

        var quotaR = try top.table("quota")
        var quota = QuotaSection()
        quota.probe = try quotaR.string("probe") ?? quota.probe
        try quotaR.check("probe", quota.probe, "is not one of off, anthropic, command") {
            ["off", "anthropic", "command"].contains($0)
        }
        try quotaR.readQuotaKeys(into: &quota)
        try quotaR.finish()

        var agentR = try top.table("agent")
        var agent = AgentSection()
        agent.command = try agentR.stringArray("command") ?? agent.command
        if agent.command.isEmpty { throw agentR.error("command", "must name a program") }
        agent.timeout = try agentR.duration("timeout", positive: true) ?? agent.timeout
        agent.logCap = try agentR.int("log_cap") ?? agent.logCap
        try agentR.check("log_cap", agent.logCap, "must be 0 or more bytes") { $0 >= 0 }
        agent.env = try agentR.stringTable("env") ?? [:]
        agent.args = try agentR.stringArray("args") ?? []
        agent.credentialFile = try agentR.path("credential_file")
        agent.credentialKind = try agentR.string("credential_kind") ?? agent.credentialKind
        try agentR.check("credential_kind", agent.credentialKind, "is not one of auto, oauth, api_key") {
            ["auto", "oauth", "api_key"].contains($0)
        }
        agent.githubTokenFile = try agentR.path("github_token_file")
        agent.promptDir = try agentR.path("prompt_dir")
        agent.memoryLimit = try agentR.size("memory_limit") ?? 0
        let openFiles = try agentR.int("open_files") ?? 0
        try agentR.check("open_files", openFiles, "must be 0 (no limit) or more") { $0 >= 0 }
        agent.openFiles = UInt64(openFiles)
        agent.cpuLimit = UInt64(try agentR.duration("cpu_limit") ?? 0)
        agent.user = try agentR.string("user")
        agent.logRetention = try agentR.int("log_retention") ?? agent.logRetention
        try agentR.check("log_retention", agent.logRetention, "must be at least 1") { $0 >= 1 }
        agent.logMaxAge = try agentR.duration("log_max_age") ?? agent.logMaxAge
        try agentR.finish()
        if quota.probe == "anthropic" && quota.credentialFile == nil && agent.credentialFile == nil {
            throw quotaR.error(
                "credential_file", "is required with probe = \"anthropic\" (or set agent.credential_file)")
        }

        let slots = try top.slots(base: base)
        try checkNothingShared(slots, path: path)
        if let wanted = fleet.slots, wanted < 0 || wanted > slots.count {
            throw fleetR.error("slots", "\(wanted) is outside 0...\(slots.count) (the configured slots)")
        }
        try top.finish()
        return FleetConfig(
            path: path, fleet: fleet, scrum4me: s4m, quota: quota, agent: agent, slots: slots)
    }
}

/// No two slots may share a token (they could finish each other's jobs), a clone
/// (incident 3: a stale local branch broke the later push) or a worktree root.
func checkNothingShared(_ slots: [SlotSpec], path: String) throws(ConfigError) {
    var tokens: [String: String] = [:]
    var roots: [String: String] = [:]
    var worktrees: [String: String] = [:]
    for slot in slots {
        if let other = tokens.updateValue(slot.name, forKey: slot.tokenFile) {
            throw ConfigError(
                path: path, line: nil, key: "slot \(slot.name).token_file",
                message: "\"\(slot.tokenFile)\" is also slot \(other)'s; each slot needs its own token")
        }
        for root in Set(slot.repoRoots.values) {
            if let other = roots.updateValue(slot.name, forKey: root) {
                throw ConfigError(
                    path: path, line: nil, key: "slot \(slot.name).repo_roots",
                    message: "\"\(root)\" is also slot \(other)'s clone; each slot needs its own clone")
            }
        }
        if let wt = slot.worktreeRoot {
            for root in slot.repoRoots.values
            where wt == root || wt.hasPrefix(root + "/") || root.hasPrefix(wt + "/") {
                throw ConfigError(
                    path: path, line: nil, key: "slot \(slot.name).worktree_root",
                    message: "\"\(wt)\" overlaps the clone \"\(root)\"; keep worktrees apart from clones")
            }
            for (other, name) in worktrees where wt.hasPrefix(other + "/") || other.hasPrefix(wt + "/") {
                throw ConfigError(
                    path: path, line: nil, key: "slot \(slot.name).worktree_root",
                    message: "\"\(wt)\" is nested with slot \(name)'s \"\(other)\"")
            }
        }
        if let wt = slot.worktreeRoot, let other = worktrees.updateValue(slot.name, forKey: wt) {
            throw ConfigError(
                path: path, line: nil, key: "slot \(slot.name).worktree_root",
                message: "\"\(wt)\" is also slot \(other)'s; each slot needs its own worktree root")
        }
    }
}

/// True for names usable in instance ids and file names.
func isName(_ s: String) -> Bool {
    !s.isEmpty && s.count <= 64
        && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
}

/// An absolute path without `.`, `..`, empty or trailing components, so that two
/// spellings of one directory compare equal.
public func normalizePath(_ path: String) -> String {
    var parts: [Substring] = []
    for part in path.split(separator: "/") {
        switch part {
        case ".": continue
        case "..": _ = parts.popLast()
        default: parts.append(part)
        }
    }
    return "/" + parts.joined(separator: "/")
}

/// The directory part of a path, without NSString.
public func directoryOf(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// Reads typed keys from one table, remembering which keys were read so that any
/// other key is reported as unknown.
struct TableReader {
    let source: TOMLTable
    let prefix: String
    let file: String
    let base: String
    var used: Set<String> = []

    init(_ table: TOMLTable, prefix: String, file: String, base: String) {
        self.source = table
        self.prefix = prefix
        self.file = file
        self.base = base
    }

    func keyPath(_ key: String) -> String {
        let path = prefix.isEmpty ? key : "\(prefix).\(key)"
        return fromEnvironment[key].map { "\(path) (from \($0))" } ?? path
    }

    func error(_ key: String, _ message: String) -> ConfigError {
        let line =
            fromEnvironment[key] != nil ? nil : source.line(of: key) ?? (source.line > 0 ? source.line : nil)
        return ConfigError(path: file, line: line, key: keyPath(key), message: message)
    }

    func check<T>(_ key: String, _ value: T, _ message: String, _ ok: (T) -> Bool) throws(ConfigError) {
        if !ok(value) { throw error(key, "\(describe(value)) \(message)") }
    }

    private func describe<T>(_ value: T) -> String {
        if let s = value as? String { return "\"\(s)\"" }
        return "\(value)"
    }

    /// `FLEET_*` variables that may override this table's keys.
    var environment: [String: String] = [:]
    /// Keys whose value came from the environment, with the variable's name.
    var fromEnvironment: [String: String] = [:]

    mutating func value(_ key: String) -> TOMLValue? {
        used.insert(key)
        let sections = ["fleet", "scrum4me", "quota", "agent"]
        if sections.contains(prefix) {
            let name = "FLEET_\(prefix)_\(key)".uppercased()
            if let raw = environment[name] {
                fromEnvironment[key] = name
                if let parsed = try? TOML.parse("v = \(raw)"), let value = parsed["v"] { return value }
                return .string(raw)
            }
        }
        return source[key]
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else { throw error(key, "\(render(v)) is not a string") }
        return s
    }

    mutating func path(_ key: String) throws(ConfigError) -> String? {
        guard let s = try string(key) else { return nil }
        if s.isEmpty { throw error(key, "must not be empty") }
        return normalizePath(s.hasPrefix("/") ? s : "\(base)/\(s)")
    }

    mutating func int(_ key: String, required: Bool = false) throws(ConfigError) -> Int? {
        guard let v = value(key) else {
            if required { throw error(key, "is required") }
            return nil
        }
        guard case .integer(let n) = v else { throw error(key, "\(render(v)) is not an integer") }
        return Int(n)
    }

    /// Bytes, written as an integer or with a unit: "512M", "4G", "1T".
    mutating func size(_ key: String) throws(ConfigError) -> UInt64? {
        guard let v = value(key) else { return nil }
        if case .integer(let n) = v, n >= 0 { return UInt64(n) }
        if case .integer(let n) = v { throw error(key, "\(n) must be 0 (no limit) or more") }
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        if case .string(let s) = v, let unit = s.last.flatMap({ units[Character($0.uppercased())] }),
            let n = UInt64(s.dropLast())
        {
            let (bytes, overflow) = n.multipliedReportingOverflow(by: unit)
            guard !overflow, bytes <= 1 << 50 else { throw error(key, "\(render(v)) is too large") }
            return bytes
        }
        throw error(key, "\(render(v)) is not a size like 4294967296, \"512M\" or \"4G\"")
    }

    mutating func duration(_ key: String, positive: Bool = false) throws(ConfigError) -> Double? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v, let seconds = parseDuration(s) else {
            throw error(key, "\(render(v)) is not a duration like \"250ms\", \"30s\", \"5m\" or \"2h\"")
        }
        // Nothing here needs more than a year; larger values would overflow conversions.
        guard seconds <= 366 * 86400 else { throw error(key, "\(render(v)) is longer than a year") }
        if positive && seconds <= 0 { throw error(key, "\(render(v)) must be longer than 0") }
        return seconds
    }

    mutating func stringArray(_ key: String) throws(ConfigError) -> [String]? {
        guard let v = value(key) else { return nil }
        guard case .array(let items) = v else { throw error(key, "\(render(v)) is not an array of strings") }
        var out: [String] = []
        for item in items {
            guard case .string(let s) = item else {
                throw error(key, "\(render(item)) is not a string")
            }
            out.append(s)
        }
        return out
    }

    mutating func stringTable(_ key: String) throws(ConfigError) -> [String: String]? {
        guard let v = value(key) else { return nil }
        guard case .table(let t) = v else { throw error(key, "\(render(v)) is not a table") }
        var out: [String: String] = [:]
        for k in t.keys {
            guard case .string(let s) = t[k]! else {
                throw ConfigError(
                    path: file, line: t.line(of: k), key: "\(keyPath(key)).\(k)",
                    message: "\(render(t[k]!)) is not a string")
            }
            out[k] = s
        }
        return out
    }

    mutating func table(_ key: String) throws(ConfigError) -> TableReader {
        var reader: TableReader
        if let v = value(key) {
            guard case .table(let t) = v else { throw error(key, "is not a table; write [\(keyPath(key))]") }
            reader = TableReader(t, prefix: keyPath(key), file: file, base: base)
        } else {
            reader = TableReader(TOMLTable(), prefix: keyPath(key), file: file, base: base)
        }
        reader.environment = environment
        return reader
    }

    /// Expands `[[slot]]` entries, including templates with `count` and `{n}`.
    mutating func slots(base: String) throws(ConfigError) -> [SlotSpec] {
        guard let v = value("slot") else { return [] }
        guard case .array(let entries) = v else {
            throw error("slot", "is not an array of tables; write [[slot]]")
        }
        var specs: [SlotSpec] = []
        var seen: [String: String] = [:]
        for (index, entry) in entries.enumerated() {
            guard case .table(let t) = entry else { throw error("slot", "entry \(index + 1) is not a table") }
            var r = TableReader(t, prefix: "slot[\(index)]", file: file, base: base)
            let name = try r.string("name") ?? ""
            let tokenFile = try r.string("token_file")
            let count = try r.int("count") ?? 1
            try r.check("count", count, "must be between 1 and 256") { (1...256).contains($0) }
            if count > 1 && !name.contains("{n}") {
                throw r.error("name", "\"\(name)\" needs {n} when count = \(count)")
            }
            guard let tokenFile else { throw r.error("token_file", "is required") }
            let roots = try r.stringTable("repo_roots") ?? [:]
            let urls = try r.stringTable("repo_urls") ?? [:]
            for product in urls.keys where roots[product] == nil {
                throw r.error("repo_urls", "\"\(product)\" has a URL but no entry in repo_roots")
            }
            let worktreeRoot = try r.string("worktree_root")
            let minQuota = try r.int("min_quota_pct") ?? 0
            try r.check("min_quota_pct", minQuota, "must be between 0 and 100") { (0...100).contains($0) }
            let tier = try r.string("tier")
            if let tier, !["HIGH_P", "MEDIUM_P", "LOW_P"].contains(tier) {
                throw r.error("tier", "\"\(tier)\" is not one of HIGH_P, MEDIUM_P, LOW_P")
            }
            let product = try r.string("product")
            let runtime = try r.string("runtime")
            let capabilities = try r.stringArray("capabilities") ?? []
            try r.finish()

            for n in 1...count {
                let sub = { (s: String) in s.replacing("{n}", with: "\(n)") }
                let slotName = sub(name)
                guard isName(slotName) else {
                    throw r.error("name", "\"\(slotName)\" must be letters, digits, '-' or '_'")
                }
                if let other = seen[slotName] {
                    throw r.error("name", "\"\(slotName)\" is already the name of \(other)")
                }
                seen[slotName] = "slot[\(index)]"
                specs.append(
                    SlotSpec(
                        name: slotName, tokenFile: absolute(sub(tokenFile)),
                        repoRoots: roots.mapValues { absolute(sub($0)) }, repoURLs: urls.mapValues(sub),
                        worktreeRoot: worktreeRoot.map { absolute(sub($0)) }, minQuotaPct: minQuota,
                        tier: tier, product: product, runtime: runtime, capabilities: capabilities))
            }
        }
        return specs
    }

    func absolute(_ p: String) -> String { normalizePath(p.hasPrefix("/") ? p : "\(base)/\(p)") }

    /// Fails on the first key that was never read.
    func finish() throws(ConfigError) {
        for key in source.keys where !used.contains(key) {
            throw error(key, "unknown key")
        }
        // A misspelled override must not be ignored silently.
        let envPrefix = "FLEET_\(prefix.uppercased())_"
        if ["fleet", "scrum4me", "quota", "agent"].contains(prefix) {
            for name in environment.keys.sorted() where name.hasPrefix(envPrefix) {
                let key = String(name.dropFirst(envPrefix.count)).lowercased()
                if !used.contains(key) {
                    throw ConfigError(
                        path: file, line: nil, key: "\(prefix).\(key) (from \(name))", message: "unknown key")
                }
            }
        }
    }

    private func render(_ v: TOMLValue) -> String {
        switch v {
        case .string(let s): "\"\(s)\""
        case .integer(let n): "\(n)"
        case .float(let f): "\(f)"
        case .boolean(let b): "\(b)"
        case .array: "an array"
        case .table: "a table"
        }
    }
}
