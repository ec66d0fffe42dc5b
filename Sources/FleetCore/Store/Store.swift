#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// The fleet's durable state: slots, claimed jobs, quota readings and events.
///
/// `fleetd` is the only writer. Every state change that belongs together (a claim and
/// the slot becoming busy) is one transaction, so a crash at any point leaves either
/// both or neither. Secrets never go in.
public final class Store: @unchecked Sendable {
    private let db: Database
    private let lock = Mutex(())

    /// Named migrations, applied in order, each in its own transaction.
    static let migrations: [(String, String)] = [
        (
            "0001_initial",
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE slots (
                name TEXT PRIMARY KEY,
                desired TEXT NOT NULL,
                state TEXT NOT NULL,
                instance_id TEXT,
                job_id TEXT,
                server_pid INTEGER, server_start INTEGER,
                agent_pid INTEGER, agent_start INTEGER,
                restarts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                quota_floor INTEGER NOT NULL DEFAULT 0,
                last_heartbeat REAL,
                since REAL
            );
            CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                slot TEXT NOT NULL,
                kind TEXT NOT NULL,
                claimed_at REAL NOT NULL,
                finished_at REAL,
                outcome TEXT NOT NULL,
                error TEXT,
                agent_pid INTEGER, agent_start INTEGER,
                worktree TEXT, branch TEXT
            );
            CREATE INDEX jobs_outcome ON jobs (outcome);
            CREATE TABLE quota_readings (
                id INTEGER PRIMARY KEY,
                pct INTEGER NOT NULL,
                resets_at REAL,
                checked_at REAL NOT NULL,
                source TEXT NOT NULL
            );
            CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                slot TEXT,
                job TEXT,
                kind TEXT NOT NULL,
                detail TEXT
            );
            """
        ),
        (
            "0002_quota_probes",
            """
            ALTER TABLE quota_readings ADD COLUMN detail TEXT;
            CREATE TABLE quota_failures (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                source TEXT NOT NULL,
                error TEXT NOT NULL
            );
            """
        ),
    ]

    /// Jobs per outcome, kept up to date by the writes (nil until first read): a status
    /// call must not count the whole history, which grows with every job.
    private var counts: [String: Int]?

    /// Opens the database at `path`, migrating it forward.
    public init(path: String) throws {
        db = try Database(path: path)
        // A small page cache: the daemon's memory stays flat as the history grows.
        try db.execute("PRAGMA cache_size = -256")
        try migrate()
    }

    /// Opens an existing database read-only (for `fleetctl` when the daemon is down).
    public init(readOnlyPath path: String) throws {
        db = try Database(path: path, readOnly: true, busyTimeoutMs: 1000)
    }

    private func migrate() throws {
        try db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        let applied = Set(try db.all("SELECT name FROM schema_migrations") { $0.string(0) ?? "" })
        for (name, sql) in Store.migrations where !applied.contains(name) {
            try db.transaction {
                try db.execute(sql)
                try db.run("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", name, Date())
            }
        }
    }

    @discardableResult
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        try lock.withLock { _ in try body() }
    }

    // MARK: Meta

    /// A value of the key-value table (the persisted scale, the config's slot count).
    public func meta(_ key: String) throws -> String? {
        try locked { try db.all("SELECT value FROM meta WHERE key = ?", key) { $0.string(0) }.first ?? nil }
    }

    public func setMeta(_ key: String, _ value: String?) throws {
        try locked {
            if let value {
                try db.run(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    key, value)
            } else {
                try db.run("DELETE FROM meta WHERE key = ?", key)
            }
        }
    }

    // MARK: Slots

    /// Makes sure a row exists for each configured slot; rows of removed slots stay
    /// (their history) but are marked down.
    public func syncSlots(_ names: [String], floors: [String: Int]) throws {
        try locked {
            try db.transaction {
                for name in names {
                    try db.run(
                        """
                        INSERT INTO slots (name, desired, state, quota_floor) VALUES (?, 'up', 'stopped', ?)
                        ON CONFLICT(name) DO UPDATE SET quota_floor = excluded.quota_floor
                        """, name, floors[name] ?? 0)
                }
            }
        }
    }

    /// Records a slot's actual state, with its last error when given.
    public func setSlotState(
        _ name: String, _ state: SlotState, error: String? = nil, instanceId: String? = nil
    ) throws {
        try locked {
            try db.run(
                """
                UPDATE slots SET state = ?, since = ?,
                    last_error = COALESCE(?, last_error),
                    instance_id = COALESCE(?, instance_id)
                WHERE name = ?
                """, state.rawValue, Date(), error, instanceId, name)
        }
    }

    public func setSlotDesired(_ name: String, _ desired: SlotDesire) throws {
        try locked { try db.run("UPDATE slots SET desired = ? WHERE name = ?", desired.rawValue, name) }
    }

    public func setServerProcess(_ name: String, _ identity: ProcessIdentity?) throws {
        try locked {
            try db.run(
                "UPDATE slots SET server_pid = ?, server_start = ? WHERE name = ?",
                identity?.pid, identity?.startTime, name)
        }
    }

    public func recordHeartbeat(_ name: String, at date: Date) throws {
        try locked { try db.run("UPDATE slots SET last_heartbeat = ? WHERE name = ?", date, name) }
    }

    public func incrementRestarts(_ name: String) throws {
        try locked { try db.run("UPDATE slots SET restarts = restarts + 1 WHERE name = ?", name) }
    }

    /// Every slot row, in name order.
    public func slots() throws -> [SlotRow] {
        try locked {
            try db.all(
                """
                SELECT name, desired, state, instance_id, job_id, server_pid, server_start,
                       agent_pid, agent_start, restarts, last_error, quota_floor, last_heartbeat, since
                FROM slots ORDER BY name
                """
            ) { r in
                SlotRow(
                    name: r.string(0) ?? "", desired: SlotDesire(rawValue: r.string(1) ?? "") ?? .up,
                    state: SlotState(rawValue: r.string(2) ?? "") ?? .stopped,
                    instanceId: r.string(3), jobId: r.string(4),
                    server: r.isNull(5)
                        ? nil
                        : ProcessIdentity(pid: Int32(r.int(5)), startTime: UInt64(bitPattern: r.int64(6))),
                    agent: r.isNull(7)
                        ? nil
                        : ProcessIdentity(pid: Int32(r.int(7)), startTime: UInt64(bitPattern: r.int64(8))),
                    restarts: r.int(9), lastError: r.string(10), quotaFloor: r.int(11),
                    lastHeartbeat: r.date(12), since: r.date(13))
            }
        }
    }

    // MARK: Jobs

    /// Records a claim and the slot turning busy, atomically.
    public func recordClaim(
        slot: String, jobId: String, kind: String, worktree: String?, branch: String?, at date: Date
    ) throws {
        try locked {
            let previous = try db.transaction { () throws -> String? in
                let previous = try outcome(of: jobId)
                try db.run(
                    """
                    INSERT INTO jobs (id, slot, kind, claimed_at, outcome, worktree, branch)
                    VALUES (?, ?, ?, ?, 'running', ?, ?)
                    ON CONFLICT(id) DO UPDATE SET slot = excluded.slot, claimed_at = excluded.claimed_at,
                        outcome = 'running', finished_at = NULL, error = NULL, agent_pid = NULL, agent_start = NULL
                    """, jobId, slot, kind, date, worktree, branch)
                try db.run(
                    "UPDATE slots SET state = 'busy', job_id = ?, since = ? WHERE name = ?", jobId, date, slot
                )
                try appendEvent(slot: slot, job: jobId, kind: "job_claimed", detail: kind, at: date)
                return previous
            }
            count(from: previous, to: "running")
        }
    }

    private func outcome(of jobId: String) throws -> String? {
        try db.all("SELECT outcome FROM jobs WHERE id = ?", jobId) { $0.string(0) }.first ?? nil
    }

    /// Moves one job between outcomes in the cached counts (caller holds the lock).
    private func count(from old: String?, to new: String) {
        guard counts != nil else { return }
        if let old { counts![old, default: 1] -= 1 }
        counts![new, default: 0] += 1
    }

    /// Records the agent's process for a job (and on its slot), for reconciliation.
    public func recordAgent(slot: String, jobId: String, process: ProcessIdentity?) throws {
        try locked {
            try db.transaction {
                try db.run(
                    "UPDATE jobs SET agent_pid = ?, agent_start = ? WHERE id = ?", process?.pid,
                    process?.startTime, jobId)
                try db.run(
                    "UPDATE slots SET agent_pid = ?, agent_start = ? WHERE name = ?", process?.pid,
                    process?.startTime, slot)
            }
        }
    }

    /// Records a job's outcome and frees its slot, atomically.
    public func finishJob(
        slot: String, jobId: String, outcome: String, error: String?, at date: Date, nextState: SlotState
    ) throws {
        try locked {
            let previous = try db.transaction { () throws -> String? in
                let previous = try self.outcome(of: jobId)
                // Only this slot's claim: a job that came back and went to another slot of
                // the fleet belongs to that slot's record now.
                try db.run(
                    "UPDATE jobs SET outcome = ?, error = ?, finished_at = ? WHERE id = ? AND slot = ?",
                    outcome, error, date, jobId, slot)
                try db.run(
                    """
                    UPDATE slots SET state = ?, job_id = NULL, agent_pid = NULL, agent_start = NULL, since = ?
                    WHERE name = ? AND job_id = ?
                    """, nextState.rawValue, date, slot, jobId)
                try appendEvent(slot: slot, job: jobId, kind: "job_\(outcome)", detail: error, at: date)
                return previous
            }
            if previous != nil { count(from: previous, to: outcome) }
        }
    }

    /// The job with this id, if this fleet ever claimed it.
    public func job(_ id: String) throws -> JobRecord? {
        try jobs(whereClause: "WHERE id = ?", [id], limit: 1).first
    }

    /// Jobs, newest claim first.
    public func jobs(limit: Int = 100) throws -> [JobRecord] {
        try jobs(whereClause: "", [], limit: limit)
    }

    /// Jobs still marked running (for reconciliation after a crash).
    public func runningJobs() throws -> [JobRecord] {
        try jobs(whereClause: "WHERE outcome = 'running'", [], limit: 10_000)
    }

    private func jobs(whereClause: String, _ params: [SQLBindable], limit: Int) throws -> [JobRecord] {
        try locked {
            var out: [JobRecord] = []
            try db.query(
                """
                SELECT id, slot, kind, claimed_at, finished_at, outcome, error, agent_pid
                FROM jobs \(whereClause) ORDER BY claimed_at DESC LIMIT \(limit)
                """, params
            ) { r in
                out.append(
                    JobRecord(
                        id: r.string(0) ?? "", slot: r.string(1) ?? "", kind: r.string(2) ?? "",
                        claimedAt: r.date(3) ?? Date(timeIntervalSince1970: 0), finishedAt: r.date(4),
                        outcome: r.string(5) ?? "", error: r.string(6),
                        agentPid: r.optionalInt(7).map { Int32($0) }))
            }
            return out
        }
    }

    /// Number of jobs per outcome.
    public func jobCounts() throws -> [String: Int] {
        try locked {
            if let counts { return counts.filter { $0.value > 0 } }
            var out: [String: Int] = [:]
            try db.query("SELECT outcome, COUNT(*) FROM jobs GROUP BY outcome", []) { r in
                out[r.string(0) ?? ""] = r.int(1)
            }
            counts = out
            return out
        }
    }

    /// Per-slot counts of jobs by outcome.
    public func jobCountsBySlot() throws -> [String: [String: Int]] {
        try locked {
            var out: [String: [String: Int]] = [:]
            try db.query("SELECT slot, outcome, COUNT(*) FROM jobs GROUP BY slot, outcome", []) { r in
                out[r.string(0) ?? "", default: [:]][r.string(1) ?? ""] = r.int(2)
            }
            return out
        }
    }

    // MARK: Quota

    /// Records a probe's reading (never the credential that took it).
    public func recordQuota(_ reading: QuotaInfo) throws {
        try locked {
            try db.run(
                "INSERT INTO quota_readings (pct, resets_at, checked_at, source, detail) VALUES (?, ?, ?, ?, ?)",
                reading.pct, reading.resetsAt, reading.checkedAt, reading.source, reading.detail)
            // Keep the table small: the latest readings are all anyone reads.
            try db.run("DELETE FROM quota_readings WHERE id <= (SELECT MAX(id) FROM quota_readings) - 1000")
        }
    }

    public func latestQuota() throws -> QuotaInfo? {
        try locked {
            try db.all(
                "SELECT pct, resets_at, checked_at, source, detail FROM quota_readings ORDER BY id DESC LIMIT 1"
            ) { r in
                QuotaInfo(
                    pct: r.int(0), resetsAt: r.date(1), checkedAt: r.date(2) ?? Date(),
                    source: r.string(3) ?? "",
                    detail: r.string(4))
            }.first
        }
    }

    /// Records a failed probe: the last reading stays as it was, and ages.
    public func recordQuotaFailure(at date: Date, source: String, error: String) throws {
        try locked {
            try db.run("INSERT INTO quota_failures (at, source, error) VALUES (?, ?, ?)", date, source, error)
            try db.run("DELETE FROM quota_failures WHERE id <= (SELECT MAX(id) FROM quota_failures) - 1000")
        }
    }

    /// The last failed probe: when, and why.
    public func latestQuotaFailure() throws -> (at: Date, error: String)? {
        try locked {
            try db.all("SELECT at, error FROM quota_failures ORDER BY id DESC LIMIT 1") { r in
                (at: r.date(0) ?? Date(timeIntervalSince1970: 0), error: r.string(1) ?? "")
            }.first
        }
    }

    // MARK: Events

    /// Appends an event (inside a transaction the caller holds, or alone).
    public func event(slot: String?, job: String? = nil, kind: String, detail: String? = nil) throws {
        try locked { try appendEvent(slot: slot, job: job, kind: kind, detail: detail, at: Date()) }
    }

    private func appendEvent(slot: String?, job: String?, kind: String, detail: String?, at date: Date) throws
    {
        try db.run(
            "INSERT INTO events (at, slot, job, kind, detail) VALUES (?, ?, ?, ?, ?)", date, slot, job, kind,
            detail)
    }

    /// Events after `id`, oldest first.
    public func events(after id: Int64 = 0, limit: Int = 500) throws -> [EventRecord] {
        try locked {
            try db.all(
                "SELECT id, at, slot, job, kind, detail FROM events WHERE id > ? ORDER BY id LIMIT ?", id,
                limit
            ) { r in
                EventRecord(
                    id: r.int64(0), at: r.date(1) ?? Date(), slot: r.string(2), job: r.string(3),
                    kind: r.string(4) ?? "", detail: r.string(5))
            }
        }
    }

    /// The newest `limit` events after `id`, oldest first (one indexed read, however long
    /// the log is).
    public func latestEvents(after id: Int64 = 0, limit: Int) throws -> [EventRecord] {
        try locked {
            try db.all(
                "SELECT id, at, slot, job, kind, detail FROM events WHERE id > ? ORDER BY id DESC LIMIT ?",
                id,
                limit
            ) { r in
                EventRecord(
                    id: r.int64(0), at: r.date(1) ?? Date(), slot: r.string(2), job: r.string(3),
                    kind: r.string(4) ?? "", detail: r.string(5))
            }.reversed()
        }
    }

    /// `PRAGMA integrity_check`'s answer ("ok" when sound).
    public func integrityCheck() throws -> String {
        try locked { try db.all("PRAGMA integrity_check") { $0.string(0) ?? "" }.joined(separator: "; ") }
    }
}

/// A slot's row in the database.
public struct SlotRow: Sendable, Equatable {
    public var name: String
    public var desired: SlotDesire
    public var state: SlotState
    public var instanceId: String?
    public var jobId: String?
    public var server: ProcessIdentity?
    public var agent: ProcessIdentity?
    public var restarts: Int
    public var lastError: String?
    public var quotaFloor: Int
    public var lastHeartbeat: Date?
    public var since: Date?
}

/// One entry of the append-only event log.
public struct EventRecord: Codable, Sendable, Equatable {
    public var id: Int64
    public var at: Date
    public var slot: String?
    public var job: String?
    public var kind: String
    public var detail: String?
}
