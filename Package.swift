// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "fleet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fleetd", targets: ["fleetd"]),
        .executable(name: "fleetctl", targets: ["fleetctl"]),
    ],
    targets: [
        // C libraries from the OS, behind thin module maps.
        .systemLibrary(
            name: "CSQLite",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),
        .systemLibrary(
            name: "CCurl",
            providers: [.apt(["libcurl4-openssl-dev"]), .brew(["curl"])]),
        // posix_spawn, peer credentials and other calls Swift cannot import.
        .target(name: "CFleetShim"),

        // Domain, config, store, processes, control API. Never links libcurl.
        .target(name: "FleetCore", dependencies: ["CSQLite", "CFleetShim"]),
        // What talks outward: MCP, HTTP (libcurl), the slot loop.
        .target(name: "WorkerSlot", dependencies: ["FleetCore", "CCurl"]),

        .executableTarget(name: "fleetd", dependencies: ["FleetCore", "WorkerSlot"]),
        .executableTarget(name: "fleetctl", dependencies: ["FleetCore"]),

        .testTarget(name: "FleetCoreTests", dependencies: ["FleetCore", "WorkerSlot"]),
        .testTarget(name: "IntegrationTests", dependencies: ["FleetCore"]),
    ]
)
