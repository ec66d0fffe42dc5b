import Foundation
import Testing

@testable import FleetCore

@Suite struct StoreTests {
    func tempDB() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fleet-store-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent("fleet.db").path
    }

    @Test func claimAndFinishAreRecordedWithTheSlot() throws {
        let path = tempDB()
        let store = try Store(path: path)
        try store.syncSlots(["a", "b"], floors: ["a": 20])
        try store.recordClaim(
            slot: "a", jobId: "job1", kind: "IDEA_GRILL", worktree: nil, branch: nil, at: Date())

        var a = try #require(try store.slots().first { $0.name == "a" })
        #expect(a.state == .busy)
        #expect(a.jobId == "job1")
        #expect(a.quotaFloor == 20)
        #expect(try store.runningJobs().map(\.id) == ["job1"])

        try store.finishJob(
            slot: "a", jobId: "job1", outcome: "done", error: nil, at: Date(), nextState: .idle)
        a = try #require(try store.slots().first { $0.name == "a" })
        #expect(a.state == .idle)
        #expect(a.jobId == nil)
        #expect(try store.jobCounts() == ["done": 1])
        #expect(try store.events().map(\.kind) == ["job_claimed", "job_done"])
        #expect(try store.integrityCheck() == "ok")
    }

    @Test func reopeningMigratesOnceAndKeepsData() throws {
        let path = tempDB()
        do {
            let store = try Store(path: path)
            try store.setMeta("scale", "2")
        }
        let again = try Store(path: path)
        #expect(try again.meta("scale") == "2")
        let readOnly = try Store(readOnlyPath: path)
        #expect(try readOnly.meta("scale") == "2")
    }

    @Test func walModeIsOn() throws {
        let path = tempDB()
        let db = try Database(path: path)
        let mode = try db.all("PRAGMA journal_mode") { $0.string(0) }
        #expect(mode == ["wal"])
    }

    @Test func errorsShowTheSQLButNotTheValues() throws {
        let db = try Database(path: tempDB())
        try db.execute("CREATE TABLE t (x TEXT NOT NULL UNIQUE)")
        try db.run("INSERT INTO t VALUES (?)", "secret-value-1")
        do {
            try db.run("INSERT INTO t VALUES (?)", "secret-value-1")
            Issue.record("duplicate accepted")
        } catch let error as SQLiteError {
            #expect(error.description.contains("INSERT INTO t"))
            #expect(!error.description.contains("secret-value-1"))
        }
    }

    /// The cached counts follow claims, outcomes and re-claims exactly as a fresh count does.
    @Test func cachedJobCountsMatchTheTable() throws {
        let path = tempDB()
        let store = try Store(path: path)
        try store.syncSlots(["a"], floors: [:])
        #expect(try store.jobCounts() == [:])
        for i in 0..<5 {
            try store.recordClaim(
                slot: "a", jobId: "j\(i)", kind: "K", worktree: nil, branch: nil, at: Date())
        }
        try store.finishJob(slot: "a", jobId: "j0", outcome: "done", error: nil, at: Date(), nextState: .idle)
        try store.finishJob(
            slot: "a", jobId: "j1", outcome: "released", error: nil, at: Date(), nextState: .idle)
        try store.recordClaim(slot: "a", jobId: "j1", kind: "K", worktree: nil, branch: nil, at: Date())
        try store.finishJob(
            slot: "a", jobId: "j1", outcome: "failed", error: "x", at: Date(), nextState: .idle)
        try store.finishJob(slot: "a", jobId: "j2", outcome: "done", error: nil, at: Date(), nextState: .idle)
        let fresh = try Store(readOnlyPath: path).jobCounts()
        #expect(try store.jobCounts() == fresh)
        #expect(fresh == ["done": 2, "failed": 1, "running": 2])
    }
}
