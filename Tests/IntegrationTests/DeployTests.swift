import Foundation
import XCTest

/// The deployments in deploy/: fleetd started as the container's entrypoint (PID 1 in a
/// PID namespace of its own), the systemd notify protocol, the launchd plist, the unit,
/// the Dockerfile, compose, Kubernetes and Nomad files, and every example config.
final class DeployTests: XCTestCase {
    static let deploy = Paths.repo.appendingPathComponent("deploy").path

    // MARK: (a) the container's entrypoint

    /// fleetd as the image starts it (ENTRYPOINT, ENV), as PID 1 of a new PID namespace,
    /// with the NAS example config pointed at the stand-in: the health check answers,
    /// an orphaned grandchild is reaped, SIGTERM lets the running job finish and fleetd
    /// exits 0 within the grace, and no zombie is left in the namespace.
    func testEntrypointAsPID1DrainsOnSIGTERMAndReaps() throws {
        guard getuid() == 0 else { throw XCTSkip("a PID namespace (unshare --pid) needs root") }
        for tool in ["/usr/bin/unshare", "/usr/bin/nsenter"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("\(tool) missing (util-linux)")
        }
        let dockerfile = try Dockerfile(path: Self.deploy + "/docker/Dockerfile")
        let entrypoint = try XCTUnwrap(dockerfile.execForm("ENTRYPOINT"), "ENTRYPOINT in exec form")
        XCTAssertEqual(entrypoint, ["/usr/local/bin/fleetd"])
        let imageConfig = try XCTUnwrap(dockerfile.env["FLEET_CONFIG"], "the image sets FLEET_CONFIG")

        // The NAS example, pointed at this test's stand-in world.
        let world = try FleetScenario(tag: "pid1", slots: 2)
        defer { world.cleanup() }
        let example = try String(contentsOfFile: Self.deploy + "/docker/fleet.toml", encoding: .utf8)
        let config = try adaptExample(example, world: world)
        let configPath = world.dir + "/fleet.toml"
        try config.text.write(toFile: configPath, atomically: true, encoding: .utf8)
        let grace = try XCTUnwrap(config.grace)

        // argv and environment as the image has them; only the paths are this test's.
        var env = ProcessInfo.processInfo.environment
        for (key, value) in dockerfile.env { env[key] = value }
        env["FLEET_CONFIG"] = configPath
        let argv = [Paths.fleetd] + (dockerfile.execForm("CMD") ?? [])
        let logPath = world.dir + "/fleetd.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let unshare = Process()
        unshare.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        unshare.arguments = ["--pid", "--fork", "--mount-proc", "--"] + argv
        unshare.environment = env
        unshare.standardOutput = log
        unshare.standardError = log
        unshare.standardInput = FileHandle.nullDevice
        try unshare.run()
        var fleetd: pid_t = 0
        defer {
            if unshare.isRunning {
                if fleetd > 0 { kill(fleetd, SIGKILL) }  // PID 1 gone: the namespace dies
                unshare.terminate()
                unshare.waitUntilExit()
            }
        }
        func fleetdLog() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        // fleetd is unshare's child and PID 1 inside: NSpid "<host pid> 1".
        try eventually("fleetd started under unshare", timeout: 10) {
            let children =
                (try? String(
                    contentsOfFile:
                        "/proc/\(unshare.processIdentifier)/task/\(unshare.processIdentifier)/children",
                    encoding: .utf8)) ?? ""
            fleetd = children.split(separator: " ").first.flatMap { pid_t($0) } ?? 0
            return fleetd > 0
        }
        let nspid = try String(contentsOfFile: "/proc/\(fleetd)/status", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("NSpid:") }
        XCTAssertEqual(
            nspid?.split(whereSeparator: { $0 == "\t" || $0 == " " }).last, "1", "NSpid: \(nspid ?? "-")")

        // The image's HEALTHCHECK, run inside the namespace as `docker exec` would.
        let namespace = Namespace(pid: fleetd)
        try eventually("fleetctl health inside the namespace", timeout: 30) {
            guard unshare.isRunning else { throw TestFailure("fleetd exited: \(fleetdLog())") }
            let r = try namespace.run([Paths.fleetctl, "health"], env: ["FLEET_CONFIG": configPath])
            return r.status == 0 && r.stdout.contains("ok")
        }
        XCTAssertEqual(imageConfig, "/etc/fleet/fleet.toml", "the image's config path")

        // An agent leaves an orphan in a session of its own: re-parented to fleetd, reaped.
        let first = try world.standin.enqueue(
            user: world.user, kind: "TASK_IMPLEMENTATION", product: world.product,
            script: ["mode": "orphan", "seconds": 8, "new_session": true])
        _ = try world.waitTerminal(first, timeout: 60)
        let orphan = try XCTUnwrap(orphanPid(agentLog: world.agentLog), "the agent logged its orphan")
        try eventually(
            "orphan \(orphan) re-parented to fleetd, PID 1, once the agent exited", timeout: 15, interval: 0.1
        ) {
            try namespace.processes().contains { $0.pid == orphan && $0.ppid == 1 }
        }
        try eventually("orphan \(orphan) reaped, no zombie", timeout: 20, interval: 0.2) {
            let table = try namespace.processes()
            return !table.contains { $0.pid == orphan } && !table.contains { $0.state == "Z" }
        }

        // SIGTERM while a job runs: it finishes, fleetd exits 0 within the grace.
        let second = try world.standin.enqueue(
            user: world.user, kind: "TASK_IMPLEMENTATION", product: world.product,
            script: ["mode": "sleep", "seconds": 4])
        try eventually("a slot busy with \(second[0])", timeout: 30) {
            try world.standin.jobs().contains {
                $0["id"] as? String == second[0] && $0["status"] as? String != "QUEUED"
            }
        }
        let zombies = try namespace.processes().filter { $0.state == "Z" }
        XCTAssertEqual(zombies.map(\.pid), [], "zombies in the namespace while a job runs")
        let signalled = Date()
        XCTAssertEqual(kill(fleetd, SIGTERM), 0)
        while unshare.isRunning && Date().timeIntervalSince(signalled) < grace + 30 { usleep(20_000) }
        let took = Date().timeIntervalSince(signalled)
        XCTAssertFalse(unshare.isRunning, "fleetd still running \(took)s after SIGTERM")
        XCTAssertEqual(unshare.terminationStatus, 0, fleetdLog())
        XCTAssertLessThan(took, grace, "stopped after \(took)s; grace \(grace)s")

        let row = try XCTUnwrap(world.standin.jobs().first { $0["id"] as? String == second[0] })
        XCTAssertEqual(
            row["status"] as? String, "DONE",
            "the running job finished during the drain: \(row["error"] ?? "")")
        XCTAssertEqual(row["claim_count"] as? Int, 1)
        XCTAssertFalse(fleetdLog().contains("grace over"), "no job was cut off")
        XCTAssertTrue(fleetdLog().contains("fleet stopped"), fleetdLog())
    }

    // MARK: (b) systemd's notify protocol

    /// READY=1 once the control socket accepts connections, STATUS= lines, WATCHDOG=1 at
    /// about half of WATCHDOG_USEC, STOPPING=1 on SIGTERM: datagrams to a socket path.
    func testSystemdNotifyReadyWatchdogStopping() throws {
        let world = try FleetScenario(tag: "notify", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        let listener = try NotifyListener(address: world.dir + "/notify.sock", controlSocket: fleet.socket)
        defer { listener.stop() }

        try fleet.start(extraEnv: ["NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "1000000"])
        defer { fleet.stop() }
        try eventually("READY=1", timeout: 15) { listener.messages.contains { $0.lines.contains("READY=1") } }
        let ready = try XCTUnwrap(listener.messages.first { $0.lines.contains("READY=1") })
        XCTAssertEqual(
            ready.controlSocketServed, true, "READY=1 came before the control socket accepted connections")
        XCTAssertTrue(
            ready.lines.contains { $0.hasPrefix("STATUS=") && $0.contains("slots running") }, "\(ready.lines)"
        )
        XCTAssertTrue(ready.lines.contains { $0.hasPrefix("MAINPID=") }, "\(ready.lines)")

        // Watchdog: every 0.5 s; over a 4 s window, 8 pings give or take scheduling.
        let windowStart = Date()
        Thread.sleep(forTimeInterval: 4)
        let pings = listener.messages.filter {
            $0.lines == ["WATCHDOG=1"] && $0.at >= windowStart && $0.at <= windowStart + 4
        }
        XCTAssertTrue(
            (5...12).contains(pings.count), "\(pings.count) watchdog pings in 4 s at WATCHDOG_USEC=1s")
        let gaps = zip(pings.dropFirst(), pings).map { $0.at.timeIntervalSince($1.at) }.sorted()
        if !gaps.isEmpty {
            let median = gaps[gaps.count / 2]
            XCTAssertTrue((0.35...0.75).contains(median), "median gap \(median)s, want about 0.5 s")
        }

        // SIGTERM: STOPPING=1 before fleetd exits.
        let signalled = Date()
        XCTAssertEqual(fleet.stop(), 0, fleet.log())
        let stopping = listener.messages.first { $0.lines.contains("STOPPING=1") }
        XCTAssertNotNil(stopping, "no STOPPING=1; got \(listener.messages.map(\.lines))")
        if let stopping { XCTAssertGreaterThanOrEqual(stopping.at, signalled) }
    }

    /// An abstract socket (`@name`); WATCHDOG_PID naming another process turns the
    /// watchdog off, as sd_watchdog_enabled does.
    func testSystemdNotifyAbstractSocketAndForeignWatchdogPid() throws {
        let world = try FleetScenario(tag: "notify-abs", slots: 1)
        defer { world.cleanup() }
        let fleet = try world.fleet()
        let listener = try NotifyListener(
            address: "@fleet-test-\(UUID().uuidString.prefix(8))", controlSocket: fleet.socket)
        defer { listener.stop() }

        try fleet.start(extraEnv: [
            "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1",
        ])
        defer { fleet.stop() }
        try eventually("READY=1", timeout: 15) { listener.messages.contains { $0.lines.contains("READY=1") } }
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(fleet.stop(), 0, fleet.log())
        XCTAssertTrue(
            listener.messages.contains { $0.lines.contains("STOPPING=1") },
            "\(listener.messages.map(\.lines))")
        XCTAssertFalse(
            listener.messages.contains { $0.lines.contains("WATCHDOG=1") },
            "watchdog pings for WATCHDOG_PID=1")
    }

    // MARK: (c) the plist, the unit, the Dockerfile and compose, Kubernetes and Nomad

    /// The launchd agent parses as a property list and has what a drained stop needs.
    func testLaunchdPlist() throws {
        let path = Self.deploy + "/macos/local.fleet.fleetd.plist"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var format = PropertyListSerialization.PropertyListFormat.binary
        let plist = try XCTUnwrap(
            PropertyListSerialization.propertyList(from: data, options: [], format: &format) as? [String: Any]
        )
        XCTAssertEqual(format, .xml)

        XCTAssertEqual(plist["Label"] as? String, "local.fleet.fleetd")
        let args = try XCTUnwrap(plist["ProgramArguments"] as? [String])
        XCTAssertEqual(args.first, "/usr/local/bin/fleetd")
        XCTAssertTrue(args.contains("--config"), "\(args)")
        XCTAssertEqual(plist["RunAtLoad"] as? Bool, true)
        let keepAlive = try XCTUnwrap(plist["KeepAlive"] as? [String: Any], "KeepAlive as a dictionary")
        XCTAssertEqual(keepAlive["SuccessfulExit"] as? Bool, false, "restart after a crash, not a clean stop")
        let throttle = try XCTUnwrap(plist["ThrottleInterval"] as? Int)
        XCTAssertGreaterThanOrEqual(throttle, 1)
        let exitTimeOut = try XCTUnwrap(plist["ExitTimeOut"] as? Int)
        let budget = try stopBudget(Self.deploy + "/macos/fleet.toml")
        XCTAssertGreaterThan(Double(exitTimeOut), budget, "ExitTimeOut must outlast fleetd's drained stop")
        let env = try XCTUnwrap(plist["EnvironmentVariables"] as? [String: String])
        XCTAssertEqual(env["FLEET_CONFIG"], args.last, "fleetctl finds the same config")
        XCTAssertNotNil(plist["StandardErrorPath"] as? String)
    }

    /// The unit has the notify, watchdog, stop and hardening settings; systemd-analyze
    /// (where installed) finds no unknown key or bad value in it.
    func testSystemdUnit() throws {
        let path = Self.deploy + "/systemd/fleetd.service"
        let unit = try UnitFile(path: path)
        XCTAssertEqual(unit["Service", "Type"], ["notify"])
        XCTAssertEqual(unit["Service", "NotifyAccess"], ["main"])
        XCTAssertEqual(unit["Service", "KillMode"], ["mixed"])
        XCTAssertEqual(unit["Service", "KillSignal"], ["SIGTERM"])
        let exec = try XCTUnwrap(unit["Service", "ExecStart"].first)
        XCTAssertTrue(exec.hasPrefix("/usr/local/bin/fleetd --config /etc/fleet/fleet.toml"), exec)
        let watchdog = try XCTUnwrap(unit["Service", "WatchdogSec"].first.flatMap(seconds))
        XCTAssertGreaterThan(watchdog, 2)
        let stopTimeout = try XCTUnwrap(unit["Service", "TimeoutStopSec"].first.flatMap(seconds))
        XCTAssertGreaterThan(stopTimeout, try stopBudget(Self.deploy + "/systemd/fleet.toml"))
        for (key, value) in [
            ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes"),
            ("ProtectKernelModules", "yes"), ("ProtectControlGroups", "yes"),
        ] {
            XCTAssertEqual(unit["Service", key], [value], key)
        }
        XCTAssertEqual(unit["Service", "User"], ["fleet"], "not root")
        XCTAssertFalse(unit["Service", "MemoryDenyWriteExecute"] == ["yes"], "node's JIT needs W^X off")
        XCTAssertEqual(unit["Install", "WantedBy"], ["multi-user.target"])

        // Every credential the unit loads is one the example config reads.
        let config = try String(contentsOfFile: Self.deploy + "/systemd/fleet.toml", encoding: .utf8)
        for credential in unit["Service", "LoadCredential"] {
            let name = String(credential.split(separator: ":")[0])
            XCTAssertTrue(config.contains("/run/credentials/fleetd.service/\(name)\""), "\(name) unused")
        }

        // systemd's own parser: unknown keys and bad values are warnings on stderr.
        let analyze = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: analyze) else {
            print("DeployTests: systemd-analyze not installed; unit checked by keys only")
            return
        }
        let dir = try shortTempDir("unit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/fleetd", with: Paths.fleetd)
        try text.write(toFile: dir + "/fleetd.service", atomically: true, encoding: .utf8)
        let verify = try runCommand(analyze, ["verify", dir + "/fleetd.service"], timeout: 60)
        let complaints = (verify.stdout + verify.stderr).split(separator: "\n").filter {
            $0.contains("fleetd.service")
        }
        XCTAssertEqual(complaints, [], "systemd-analyze verify")
    }

    /// The Dockerfile: two build stages and a slim runtime, the non-root user, volumes,
    /// fleetd as the exec-form entrypoint without an init, SIGTERM, the health check;
    /// compose: a stop grace above fleetd's, no init, the secrets as files. Linted with
    /// dockerfile-parse and yamllint from PyPI when they can be installed.
    func testDockerfileAndCompose() throws {
        let path = Self.deploy + "/docker/Dockerfile"
        let docker = try Dockerfile(path: path)
        let froms = docker.instructions.filter { $0.keyword == "FROM" }
        XCTAssertEqual(froms.count, 3, "builder, scrum4me-mcp, runtime")
        XCTAssertTrue(docker.resolve(froms[0].value).hasPrefix("swift:6."), froms[0].value)
        XCTAssertTrue(docker.resolve(froms.last!.value).contains("bookworm-slim"), froms.last!.value)
        let runs = docker.instructions.filter { $0.keyword == "RUN" }.map(\.value)
        XCTAssertTrue(runs.contains { $0.contains("swift build -c release --static-swift-stdlib") })
        let runtime = docker.finalStage
        let runtimeRuns = runtime.filter { $0.keyword == "RUN" }.map(\.value).joined(separator: "\n")
        for package in ["libsqlite3-0", "libcurl4", "git"] {
            XCTAssertTrue(
                runtimeRuns.split(whereSeparator: \.isWhitespace).contains { $0 == package },
                "runtime installs \(package)")
        }
        XCTAssertTrue(runtimeRuns.contains("@anthropic-ai/claude-code"), "the claude CLI")
        XCTAssertTrue(
            runtime.contains { $0.keyword == "COPY" && $0.value.contains("/opt/scrum4me-mcp") },
            "the Scrum4Me server")
        XCTAssertTrue(
            runtime.contains {
                $0.keyword == "COPY" && $0.value.contains("fleetctl") && $0.value.hasSuffix("/usr/local/bin/")
            })
        let user = try XCTUnwrap(runtime.last { $0.keyword == "USER" }?.value)
        XCTAssertFalse(["root", "0", "0:0"].contains(user), "runs as \(user)")
        let volumes = runtime.filter { $0.keyword == "VOLUME" }.map(\.value).joined()
        for volume in ["/var/lib/fleet", "/data/repos", "/data/worktrees"] {
            XCTAssertTrue(volumes.contains("\"\(volume)\""), "VOLUME \(volume)")
        }
        XCTAssertEqual(docker.execForm("ENTRYPOINT"), ["/usr/local/bin/fleetd"])
        XCTAssertNil(docker.execForm("CMD"), "the config comes from FLEET_CONFIG")
        XCTAssertFalse(
            docker.instructions.contains { $0.value.contains("tini") || $0.value.contains("dumb-init") },
            "no extra init")
        XCTAssertEqual(runtime.last { $0.keyword == "STOPSIGNAL" }?.value, "SIGTERM")
        let health = try XCTUnwrap(runtime.last { $0.keyword == "HEALTHCHECK" }?.value)
        XCTAssertTrue(health.contains("CMD [\"fleetctl\", \"health\"]"), health)
        XCTAssertEqual(docker.env["FLEET_CONFIG"], "/etc/fleet/fleet.toml")
        XCTAssertTrue(
            runtime.contains {
                $0.keyword == "COPY" && $0.value == "deploy/docker/fleet.toml /etc/fleet/fleet.toml"
            })

        let composePath = Self.deploy + "/docker/compose.yaml"
        let compose = try String(contentsOfFile: composePath, encoding: .utf8)
        let budget = try stopBudget(Self.deploy + "/docker/fleet.toml")
        let stopGrace = try XCTUnwrap(
            yamlScalar(compose, "stop_grace_period").flatMap(seconds), "stop_grace_period")
        XCTAssertGreaterThan(
            stopGrace, budget, "compose kills after \(stopGrace)s; fleetd may take \(budget)s")
        XCTAssertEqual(yamlScalar(compose, "init"), "false")
        XCTAssertEqual(yamlScalar(compose, "stop_signal"), "SIGTERM")
        XCTAssertTrue(compose.contains("test: [\"CMD\", \"fleetctl\", \"health\"]"))
        XCTAssertTrue(compose.contains("./fleet.toml:/etc/fleet/fleet.toml:ro"))
        XCTAssertTrue(compose.contains("dockerfile: deploy/docker/Dockerfile"))
        let example = try String(contentsOfFile: Self.deploy + "/docker/fleet.toml", encoding: .utf8)
        for secret in try secretNames(example, under: "/run/secrets/") {
            XCTAssertTrue(compose.contains("      - \(secret)\n"), "compose mounts the secret \(secret)")
            XCTAssertTrue(
                compose.contains("  \(secret):\n    file: "), "compose defines the secret \(secret)")
        }

        guard let lint = LintTools.shared else {
            print(
                "DeployTests: linters unavailable (\(LintTools.problem ?? "?")); checked by the rules above only"
            )
            return
        }
        // dockerfile-parse reads the same instructions as the parser above.
        let parsed = try lint.python(
            """
            import json, sys
            from dockerfile_parse import DockerfileParser
            d = DockerfileParser(sys.argv[1])
            print(json.dumps([[i["instruction"], i["value"]] for i in d.structure if i["instruction"] != "COMMENT"]))
            """, [path])
        let theirs = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(parsed.utf8)) as? [[String]])
        XCTAssertEqual(theirs.map { $0[0] }, docker.instructions.map(\.keyword))
        XCTAssertEqual(theirs.map { squeeze($0[1]) }, docker.instructions.map { squeeze($0.value) })
        try lint.yamllint([composePath])
        let service = try lint.yamlJSON(composePath)["services"] as? [String: Any]
        let fleetd = try XCTUnwrap(service?["fleetd"] as? [String: Any])
        XCTAssertEqual(fleetd["init"] as? Bool, false)
        XCTAssertEqual(fleetd["stop_grace_period"] as? String, yamlScalar(compose, "stop_grace_period"))
    }

    /// Kubernetes: a StatefulSet with one fleetd per pod, PVCs, a termination grace
    /// above fleetd's, exec probes through fleetctl, secrets as files; Nomad: the same.
    func testKubernetesAndNomad() throws {
        let k8s = Self.deploy + "/kubernetes"
        let statefulset = try String(contentsOfFile: k8s + "/statefulset.yaml", encoding: .utf8)
        let budget = try stopBudget(k8s + "/fleet.toml")
        let termination = try XCTUnwrap(
            yamlScalar(statefulset, "terminationGracePeriodSeconds").flatMap(Double.init))
        XCTAssertGreaterThan(termination, budget)
        XCTAssertTrue(statefulset.contains("kind: StatefulSet"))
        XCTAssertTrue(statefulset.contains("volumeClaimTemplates:"))
        XCTAssertTrue(
            statefulset.contains("command: [\"fleetctl\", \"health\"]"), "readiness through fleetctl health")
        XCTAssertTrue(statefulset.contains("livenessProbe:"))
        XCTAssertTrue(statefulset.contains("runAsNonRoot: true"))
        XCTAssertTrue(statefulset.contains("subPathExpr: $(POD_NAME)"), "each pod mounts only its own tokens")
        let config = try String(contentsOfFile: k8s + "/fleet.toml", encoding: .utf8)
        for slot in ["alpha", "beta"] {
            XCTAssertTrue(config.contains("token_file = \"/run/secrets/slots/slot-\(slot)\""))
            for pod in ["fleet-0", "fleet-1"] {
                XCTAssertTrue(statefulset.contains("path: \(pod)/slot-\(slot)"), "\(pod) gets slot-\(slot)")
            }
        }

        let nomadPath = Self.deploy + "/nomad/fleet.nomad.hcl"
        let nomad = try String(contentsOfFile: nomadPath, encoding: .utf8)
        let killTimeout = try XCTUnwrap(hclScalar(nomad, "kill_timeout").flatMap(seconds))
        let nomadConfig = try XCTUnwrap(nomadEmbeddedConfig(nomad))
        XCTAssertGreaterThan(killTimeout, try stopBudget(text: nomadConfig))
        XCTAssertEqual(hclScalar(nomad, "kill_signal"), "SIGTERM")
        XCTAssertEqual(hclScalar(nomad, "init"), "false")
        XCTAssertTrue(nomad.contains("operator = \"distinct_hosts\""), "one fleetd per host")
        XCTAssertTrue(nomad.contains("args     = [\"health\"]"), "health check through fleetctl health")
        for secret in try secretNames(nomadConfig, under: "/secrets/") {
            XCTAssertTrue(
                nomad.contains("destination = \"secrets/\(secret)\""), "Nomad renders the secret \(secret)")
        }

        guard let lint = LintTools.shared else {
            print(
                "DeployTests: linters unavailable (\(LintTools.problem ?? "?")); checked by the rules above only"
            )
            return
        }
        let yamls = ["kustomization.yaml", "namespace.yaml", "statefulset.yaml"].map { k8s + "/" + $0 }
        try lint.yamllint(yamls)
        let documents = try lint.python(
            """
            import json, sys, yaml
            print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))
            """, [k8s + "/statefulset.yaml"])
        let objects = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(documents.utf8)) as? [[String: Any]])
        let set = try XCTUnwrap(objects.first { $0["kind"] as? String == "StatefulSet" })
        let pod = ((set["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any]
        XCTAssertEqual(pod?["terminationGracePeriodSeconds"] as? Int, Int(termination))
        let container = (pod?["containers"] as? [[String: Any]])?.first
        let readiness = (container?["readinessProbe"] as? [String: Any])?["exec"] as? [String: Any]
        XCTAssertEqual(readiness?["command"] as? [String], ["fleetctl", "health"])

        // python-hcl2 parses the job; the group runs count > 1 with the health check.
        let hcl = try lint.python(
            """
            import json, sys, hcl2
            job = hcl2.load(open(sys.argv[1]))["job"][0]
            group = list(list(job.values())[0]["group"][0].values())[0]
            task = list(group["task"][0].values())[0]
            print(json.dumps({"count": group["count"], "kill_timeout": task["kill_timeout"],
                              "checks": [c["args"] for c in task["service"][0]["check"]]}))
            """, [nomadPath])
        let job = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(hcl.utf8)) as? [String: Any])
        XCTAssertGreaterThan(job["count"] as? Int ?? 0, 1)
        XCTAssertEqual(
            (job["kill_timeout"] as? String).map {
                $0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }, "2m")
        XCTAssertTrue(
            (job["checks"] as? [[String]] ?? []).contains(["\"health\""])
                || (job["checks"] as? [[String]] ?? []).contains(["health"]))
    }

    // MARK: (d) every example config

    /// Every config under deploy/ (the .toml files and the one inside the Nomad job)
    /// passes `fleetd --check-config`; the secret files it names need not exist.
    func testEveryExampleConfigPassesCheckConfig() throws {
        var configs: [(String, String)] = []
        let walker = FileManager.default.enumerator(atPath: Self.deploy)
        while let relative = walker?.nextObject() as? String {
            guard relative.hasSuffix(".toml") else { continue }
            configs.append(
                (relative, try String(contentsOfFile: Self.deploy + "/" + relative, encoding: .utf8)))
        }
        let nomad = try String(contentsOfFile: Self.deploy + "/nomad/fleet.nomad.hcl", encoding: .utf8)
        configs.append(("nomad/fleet.nomad.hcl (template)", try XCTUnwrap(nomadEmbeddedConfig(nomad))))
        XCTAssertGreaterThanOrEqual(configs.count, 5, "\(configs.map(\.0))")

        let dir = try shortTempDir("examples")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (index, (name, text)) in configs.enumerated() {
            let path = "\(dir)/\(index).toml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let r = try runCommand(Paths.fleetd, ["--check-config", path])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stdout.hasPrefix("config ok"), "\(name): \(r.stdout)")
        }
    }
}

// MARK: - Helpers

private struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A Dockerfile's instructions: continuations joined, comments and parser directives
/// dropped, keywords upper-cased.
private struct Dockerfile {
    struct Instruction {
        var keyword: String
        var value: String
    }

    var instructions: [Instruction] = []

    init(path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var pending = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") { continue }
            if line.isEmpty && pending.isEmpty { continue }
            if line.hasSuffix("\\") {
                pending += line.dropLast() + " "
                continue
            }
            let whole = (pending + line).trimmingCharacters(in: .whitespaces)
            pending = ""
            guard !whole.isEmpty else { continue }
            let parts = whole.split(separator: " ", maxSplits: 1)
            instructions.append(
                Instruction(
                    keyword: parts[0].uppercased(),
                    value: parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""))
        }
    }

    /// The instructions of the last stage (after the last FROM).
    var finalStage: [Instruction] {
        guard let last = instructions.lastIndex(where: { $0.keyword == "FROM" }) else { return instructions }
        return Array(instructions[last...])
    }

    /// The last exec-form (JSON array) value of `keyword` in the final stage.
    func execForm(_ keyword: String) -> [String]? {
        guard let value = finalStage.last(where: { $0.keyword == keyword })?.value else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(value.utf8))) as? [String]
    }

    /// ENV of the final stage (`KEY=VALUE` form).
    var env: [String: String] {
        var out: [String: String] = [:]
        for instruction in finalStage where instruction.keyword == "ENV" {
            for pair in instruction.value.split(separator: " ") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
            }
        }
        return out
    }

    /// `${ARG}` in a FROM replaced by the ARG's default before the first FROM.
    func resolve(_ from: String) -> String {
        var image = String(from.split(separator: " ")[0])
        for instruction in instructions.prefix(while: { $0.keyword != "FROM" })
        where instruction.keyword == "ARG" {
            let kv = instruction.value.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { image = image.replacingOccurrences(of: "${\(kv[0])}", with: String(kv[1])) }
        }
        return image
    }
}

/// A systemd unit file: `[Section]` and `Key=Value` lines, repeated keys kept in order.
private struct UnitFile {
    private var entries: [String: [String]] = [:]

    init(path: String) throws {
        var section = ""
        for raw in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw TestFailure("\(path): not Key=Value: \(line)")
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            entries["\(section).\(key)", default: []].append(
                line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces))
        }
    }

    subscript(section: String, key: String) -> [String] { entries["\(section).\(key)"] ?? [] }
}

/// "30s", "2m", "2min", "120", "1h" (config, compose, systemd and Nomad spellings).
private func seconds(_ text: String) -> Double? {
    let s = text.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
    for (suffix, factor) in [("ms", 0.001), ("min", 60.0), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
    where s.hasSuffix(suffix) {
        return Double(s.dropLast(suffix.count)).map { $0 * factor }
    }
    return Double(s)
}

/// The value of the first `key = value` line in a TOML text (unquoted).
private func tomlScalar(_ text: String, _ key: String) -> String? {
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == key else { continue }
        let value = parts[1].split(separator: "#")[0].trimmingCharacters(in: .whitespaces)
        return value.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }
    return nil
}

/// The longest a drained stop of fleetd can take with this config: the grace, then
/// agents stopped (TERM, KILL) and slots waited for (Supervisor.shutdown).
private func stopBudget(_ path: String) throws -> Double {
    try stopBudget(text: String(contentsOfFile: path, encoding: .utf8))
}

private func stopBudget(text: String) throws -> Double {
    let grace = tomlScalar(text, "grace").flatMap(seconds) ?? 30
    let kill = tomlScalar(text, "kill_timeout").flatMap(seconds) ?? 10
    return grace + 2 * kill + 5
}

/// The first `key: value` in a YAML text, unquoted.
private func yamlScalar(_ text: String, _ key: String) -> String? {
    for line in text.split(separator: "\n") {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix(key + ":") else { continue }
        let value = trimmed.dropFirst(key.count + 1).split(separator: "#")[0].trimmingCharacters(
            in: .whitespaces)
        return value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
    }
    return nil
}

/// The first `key = value` in an HCL text, unquoted.
private func hclScalar(_ text: String, _ key: String) -> String? {
    tomlScalar(text, key)
}

/// The fleet.toml inside the Nomad job's template, with the allocation index rendered.
private func nomadEmbeddedConfig(_ hcl: String) -> String? {
    guard let start = hcl.range(of: "destination = \"local/fleet.toml\"") else { return nil }
    guard let open = hcl.range(of: "<<-EOT\n", range: start.upperBound..<hcl.endIndex),
        let close = hcl.range(of: "\n        EOT", range: open.upperBound..<hcl.endIndex)
    else { return nil }
    let body = hcl[open.upperBound..<close.lowerBound]
    let lines = body.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
        var s = String(line)
        if s.hasPrefix("          ") { s.removeFirst(10) }
        return s
    }
    return lines.joined(separator: "\n").replacingOccurrences(
        of: "{{ env \"NOMAD_ALLOC_INDEX\" }}", with: "0") + "\n"
}

/// Secret file names a config reads under `prefix` (token_file, env_file, ...).
private func secretNames(_ config: String, under prefix: String) throws -> [String] {
    var names: [String] = []
    for line in config.split(separator: "\n") {
        guard let range = line.range(of: "\"" + prefix) else { continue }
        let rest = line[range.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { continue }
        names.append(String(rest[..<end]))
    }
    guard !names.isEmpty else { throw TestFailure("no secret under \(prefix)") }
    return names
}

private func squeeze(_ s: String) -> String {
    s.split(whereSeparator: \.isWhitespace).joined(separator: " ")
}

/// The example config with this test's paths: the stand-in over stdio, the scripted
/// agent, the world's tokens, clones and worktree roots, secret files in the world.
/// Everything else (grace, kill_timeout, slots, log format) stays as the example has it.
private func adaptExample(_ example: String, world: FleetScenario) throws -> (text: String, grace: Double?) {
    func quoted(_ s: String) -> String { "\"\(s)\"" }
    func list(_ items: [String]) -> String { "[" + items.map(quoted).joined(separator: ", ") + "]" }
    let secrets = world.dir + "/secrets"
    try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true)
    try "DATABASE_URL=postgresql://fleet:unused@127.0.0.1:9/unused\n".write(
        toFile: secrets + "/scrum4me.env", atomically: true, encoding: .utf8)
    try "sk-ant-oat01-deploy-test\n".write(
        toFile: secrets + "/claude-oauth-token", atomically: true, encoding: .utf8)
    try "ghp_deploytest\n".write(toFile: secrets + "/github-token", atomically: true, encoding: .utf8)

    var replace: [String: String?] = [
        "fleet.state_dir": quoted(world.dir + "/state"),
        "fleet.socket": quoted(world.dir + "/run/fleetd.sock"),
        "scrum4me.command": list([
            Paths.python, Paths.standin, "serve-stdio", "--state", world.standin.state,
            "--lease-seconds", "\(world.standin.lease)", "--poll-seconds", "\(world.standin.poll)",
        ]),
        "scrum4me.env_file": quoted(secrets + "/scrum4me.env"),
        "scrum4me.wait_seconds": "2",
        "quota.probe": quoted("off"),
        "agent.command": list([Paths.python, Paths.agent]),
        "agent.credential_file": quoted(secrets + "/claude-oauth-token"),
        "agent.github_token_file": quoted(secrets + "/github-token"),
        "agent.env": "{ SCRIPTED_AGENT_LOG = \(quoted(world.agentLog)) }",
    ]
    for (index, slot) in world.slotNames.enumerated() {
        replace["slot[\(index)].token_file"] = quoted(world.tokenFile(slot))
        replace["slot[\(index)].repo_roots"] = "{ \(quoted(world.product)) = \(quoted(world.clone(slot))) }"
        replace["slot[\(index)].worktree_root"] = quoted(world.worktreeRoot(slot))
    }

    var out: [String] = []
    var section = ""
    var slotIndex = -1
    var done: Set<String> = []
    for raw in example.split(separator: "\n", omittingEmptySubsequences: false) {
        let line = String(raw)
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("[[slot]]") {
            slotIndex += 1
            section = "slot[\(slotIndex)]"
        } else if trimmed.hasPrefix("[") {
            section = String(trimmed.dropFirst().prefix { $0 != "]" })
        } else if let eq = trimmed.firstIndex(of: "="), !trimmed.hasPrefix("#") {
            let key = "\(section).\(trimmed[..<eq].trimmingCharacters(in: .whitespaces))"
            if let value = replace[key] {
                done.insert(key)
                if let value {
                    out.append("\(trimmed[..<eq].trimmingCharacters(in: .whitespaces)) = \(value)")
                }
                continue
            }
        }
        out.append(line)
    }
    let missing = Set(replace.keys).subtracting(done)
    guard missing.isEmpty else { throw TestFailure("the example lacks \(missing.sorted()); adapt the test") }
    let text = out.joined(separator: "\n")
    return (text, tomlScalar(text, "grace").flatMap(seconds))
}

/// The pid of the orphan the scripted agent left (its log's "orphan" event).
private func orphanPid(agentLog: String) -> Int32? {
    let text = (try? String(contentsOfFile: agentLog, encoding: .utf8)) ?? ""
    for line in text.split(separator: "\n") {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            object["event"] as? String == "orphan"
        else { continue }
        return (object["orphan_pid"] as? Int).map(Int32.init)
    }
    return nil
}

/// Commands run inside fleetd's PID and mount namespaces (`nsenter`), as `docker exec`.
private struct Namespace {
    let pid: pid_t

    struct Row {
        var pid: Int32
        var state: String
        var ppid: Int32
    }

    func run(_ argv: [String], env: [String: String] = [:]) throws -> CommandResult {
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in env { environment[key] = value }
        return try runCommand(
            "/usr/bin/nsenter", ["--target", "\(pid)", "--pid", "--mount", "--"] + argv,
            env: environment, timeout: 30)
    }

    /// The namespace's process table from its own /proc.
    func processes() throws -> [Row] {
        let r = try run([
            "/bin/sh", "-c", "for f in /proc/[0-9]*/stat; do cat \"$f\" 2>/dev/null; echo; done",
        ])
        var rows: [Row] = []
        for line in r.stdout.split(separator: "\n") {
            guard let close = line.lastIndex(of: ")"), let pid = Int32(line.prefix { $0 != " " }) else {
                continue
            }
            let fields = line[line.index(after: close)...].split(separator: " ")
            guard fields.count > 2, let ppid = Int32(fields[1]) else { continue }
            rows.append(Row(pid: pid, state: String(fields[0]), ppid: ppid))
        }
        guard rows.contains(where: { $0.pid == 1 }) else {
            throw TestFailure("no PID 1 in \(r.stdout) \(r.stderr)")
        }
        return rows
    }
}

/// A datagram socket standing in for systemd's notify socket: records each message with
/// its arrival time and, for READY=1, whether fleetd's control socket accepted a
/// connection at that moment.
private final class NotifyListener: @unchecked Sendable {
    struct Message {
        var at: Date
        var lines: [String]
        var controlSocketServed: Bool?
    }

    let address: String
    private let controlSocket: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [Message] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(address: String, controlSocket: String) throws {
        self.address = address
        self.controlSocket = controlSocket
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var (addr, length) = Self.address(address)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard rc == 0 else { throw TestFailure("bind \(address): errno \(errno)") }
        Thread.detachNewThread { [self] in receive() }
    }

    var messages: [Message] { lock.withLock { received } }

    func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        done.wait()
        close(fd)
        if address.hasPrefix("/") { unlink(address) }
    }

    private func receive() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !lock.withLock({ stopped }) {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { continue }
            let text = String(decoding: buffer[0..<n], as: UTF8.self)
            let lines = text.split(separator: "\n").map(String.init)
            let served = lines.contains("READY=1") ? canConnect(controlSocket) : nil
            lock.withLock { received.append(Message(at: Date(), lines: lines, controlSocketServed: served)) }
        }
        done.signal()
    }

    private func canConnect(_ path: String) -> Bool {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var (addr, length) = Self.address(path)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, length) }
        } == 0
    }

    /// A path, or `@name` for the abstract namespace (a leading NUL, no trailing one).
    static func address(_ address: String) -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(address.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 } else { bytes.append(0) }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        return (addr, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count))
    }
}

/// yamllint, dockerfile-parse and python-hcl2 from PyPI, in a venv of their own
/// (`$FLEET_LINT_VENV`, else `<repo>/.venv-lint`), created on first use. Nil, with
/// `problem` set, where they cannot be installed (no network to PyPI).
private final class LintTools: @unchecked Sendable {
    static let requirements = ["yamllint==1.38.0", "dockerfile-parse==2.0.1", "python-hcl2==8.1.4"]
    nonisolated(unsafe) static var problem: String?
    static let shared: LintTools? = {
        let venv =
            ProcessInfo.processInfo.environment["FLEET_LINT_VENV"]
            ?? Paths.repo.appendingPathComponent(".venv-lint").path
        let stamp = venv + "/.lint-requirements"
        let want = requirements.joined(separator: " ")
        if (try? String(contentsOfFile: stamp, encoding: .utf8)) == want {
            return LintTools(venv: venv)
        }
        do {
            if !FileManager.default.isExecutableFile(atPath: venv + "/bin/python") {
                let made = try runCommand("/usr/bin/env", ["python3", "-m", "venv", venv], timeout: 120)
                guard made.status == 0 else {
                    problem = "python3 -m venv: \(made.stderr)"
                    return nil
                }
                try "*\n".write(toFile: venv + "/.gitignore", atomically: true, encoding: .utf8)
            }
            let pip = try runCommand(
                venv + "/bin/python",
                ["-m", "pip", "install", "-q", "--disable-pip-version-check"] + requirements, timeout: 300)
            guard pip.status == 0 else {
                problem = "pip install: \(pip.stderr.suffix(300))"
                return nil
            }
            try want.write(toFile: stamp, atomically: true, encoding: .utf8)
            return LintTools(venv: venv)
        } catch {
            problem = "\(error)"
            return nil
        }
    }()

    let venv: String

    init(venv: String) { self.venv = venv }

    /// Runs a Python snippet with arguments; its stdout, or a thrown failure.
    func python(_ code: String, _ args: [String]) throws -> String {
        let r = try runCommand(venv + "/bin/python", ["-c", code] + args, timeout: 60)
        guard r.status == 0 else { throw TestFailure("python: \(r.stderr)") }
        return r.stdout
    }

    /// yamllint with its default rules, lines up to 100 columns (STYLE.md's width).
    func yamllint(_ paths: [String]) throws {
        let r = try runCommand(
            venv + "/bin/yamllint",
            [
                "-s", "-f", "parsable", "-d",
                "{extends: default, rules: {line-length: {max: 100}}}",
            ] + paths, timeout: 60)
        XCTAssertEqual(r.status, 0, "yamllint: \(r.stdout)\(r.stderr)")
    }

    /// A YAML document as JSON objects.
    func yamlJSON(_ path: String) throws -> [String: Any] {
        let out = try python(
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])), default=str))",
            [path])
        return (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]) ?? [:]
    }
}
