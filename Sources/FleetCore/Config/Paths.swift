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

/// Default locations that work without flags, per DESIGN.md.
public enum DefaultPaths {
    /// The control socket's default path for this user.
    public static var socket: String {
        if getuid() == 0 { return "/run/fleet/fleetd.sock" }
        #if os(macOS)
        return appSupport + "/fleetd.sock"
        #else
        let env = ProcessInfo.processInfo.environment
        if let runtime = env["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return runtime + "/fleet/fleetd.sock"
        }
        return "/tmp/fleet-\(getuid())/fleetd.sock"
        #endif
    }

    /// The state directory's default path for this user.
    public static var stateDir: String {
        if getuid() == 0 { return "/var/lib/fleet" }
        #if os(macOS)
        return appSupport
        #else
        let env = ProcessInfo.processInfo.environment
        if let state = env["XDG_STATE_HOME"], !state.isEmpty { return state + "/fleet" }
        return home + "/.local/state/fleet"
        #endif
    }

    static var home: String {
        ProcessInfo.processInfo.environment["HOME"] ?? "/tmp"
    }

    #if os(macOS)
    static var appSupport: String { home + "/Library/Application Support/fleet" }
    #endif
}
