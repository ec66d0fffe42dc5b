extension TableReader {
    /// Reads `[quota]` after its `probe` key: every other key, checked, with the key and
    /// the value named in each error. Defaults are `QuotaSection`'s.
    mutating func readQuotaKeys(into quota: inout QuotaSection) throws(ConfigError) {
        if let url = try string("base_url") {
            guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.count > 8 else {
                throw error("base_url", "\"\(url)\" is not an http:// or https:// URL")
            }
            quota.baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        }
        quota.model = try string("model") ?? quota.model
        try check("model", quota.model, "must name a model") { !$0.isEmpty }
        quota.credentialFile = try path("credential_file")

        quota.command = try stringArray("command") ?? []
        if quota.probe == "command" && quota.command.first?.isEmpty != false {
            throw error(
                "command",
                "is required with probe = \"command\""
                    + " (argv of a program printing {\"pct\":N,\"reset_at_iso\":\"...\"})"
            )
        }

        quota.interval = try duration("interval") ?? quota.interval
        guard quota.interval > 0 else { throw error("interval", "\"0s\" must be longer than 0s") }
        if let maxAge = try duration("max_age") {
            guard maxAge > quota.interval else {
                throw error(
                    "max_age",
                    "\"\(formatDuration(maxAge))\" must be longer than interval"
                        + " (\(formatDuration(quota.interval)))"
                )
            }
            quota.maxAge = maxAge
        } else {
            quota.maxAge = 3 * quota.interval
        }
        quota.sleepCap = try duration("sleep_cap") ?? quota.sleepCap
        guard quota.sleepCap > 0 else { throw error("sleep_cap", "\"0s\" must be longer than 0s") }
        quota.minProbeGap = try duration("min_probe_gap") ?? quota.minProbeGap

        quota.jobsPerWindow = try int("jobs_per_window")
        if let cap = quota.jobsPerWindow {
            try check("jobs_per_window", cap, "must be at least 1") { $0 >= 1 }
        }
    }
}
