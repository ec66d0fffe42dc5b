import Foundation
import XCTest

/// The module split of DESIGN.md, checked on the built binaries: fleetctl never links
/// libcurl, and neither executable links full Foundation (or its ICU data).
final class BinaryTests: XCTestCase {
    func libraries(_ binary: String) throws -> String {
        let r = try runCommand("/usr/bin/ldd", [binary])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout
    }

    func testFleetctlLinksNoLibcurl() throws {
        let libs = try libraries(Paths.fleetctl)
        XCTAssertFalse(libs.contains("libcurl"), libs)
        XCTAssertTrue(libs.contains("libsqlite3"), "offline status reads the database")
    }

    func testExecutablesUseFoundationEssentialsOnly() throws {
        for binary in [Paths.fleetd, Paths.fleetctl] {
            let libs = try libraries(binary)
            XCTAssertFalse(libs.contains("libFoundation.so"), "\(binary) links full Foundation")
            XCTAssertFalse(libs.contains("FoundationNetworking"), binary)
            XCTAssertFalse(libs.contains("_FoundationICU"), binary)
        }
    }
}
