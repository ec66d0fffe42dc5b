/// One verb's help: a one-line summary, its usage, options and examples.
struct VerbHelp {
    var name: String
    var summary: String
    var usage: String
    var options: [(String, String)] = []
    var examples: [String] = []

    var text: String {
        var lines = ["fleetctl \(name): \(summary)", "", "usage: fleetctl \(usage)"]
        if !options.isEmpty {
            lines.append("\noptions:")
            let width = options.map(\.0.count).max() ?? 0
            for (flag, text) in options {
                lines.append("  " + flag + String(repeating: " ", count: width - flag.count) + "  " + text)
            }
        }
        if !examples.isEmpty {
            lines.append("\nexamples:")
            lines += examples.map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }
}

/// Every verb's help, in the order `fleetctl help` lists them.
let verbHelp: [VerbHelp] = [
    VerbHelp(
        name: "status", summary: "what every slot is doing (the default verb)",
        usage: "status [--json] [--watch [SECONDS]]",
        options: [
            ("--json", "one JSON object (the stable interface for scripts)"),
            ("--watch [SECONDS]", "redraw every SECONDS (default 2) until interrupted"),
        ],
        examples: [
            "fleetctl", "fleetctl status --json | jq '.slots[] | {name, state}'", "fleetctl status --watch",
        ]),
    VerbHelp(
        name: "drain", summary: "finish the current job, then take no new one",
        usage: "drain SLOT... | --all [--wait]",
        options: [
            ("--all", "every running slot"), ("--wait", "wait until the slots are drained, showing progress"),
        ],
        examples: ["fleetctl drain alpha", "fleetctl drain --all --wait"]),
    VerbHelp(
        name: "undrain", summary: "let drained slots claim jobs again", usage: "undrain SLOT... | --all",
        examples: ["fleetctl undrain --all"]),
    VerbHelp(
        name: "restart", summary: "restart a slot's server connection (clears a failed state)",
        usage: "restart SLOT [--now]",
        options: [("--now", "stop its agent at once; the job is released and requeued after its lease")],
        examples: ["fleetctl restart alpha", "fleetctl restart sprint-3 --now"]),
    VerbHelp(
        name: "scale", summary: "run N of the configured slots (persisted)", usage: "scale N",
        examples: [
            "fleetctl scale 6    # morning: all sprint slots",
            "fleetctl scale 1    # night: idle slots stop first, busy ones finish",
        ]),
    VerbHelp(
        name: "requeue", summary: "stop working on a job and give it back to the queue", usage: "requeue JOB",
        examples: ["fleetctl requeue cm9x0abc123"]),
    VerbHelp(
        name: "jobs", summary: "jobs this fleet claimed, newest first", usage: "jobs [--limit N] [--json]",
        examples: ["fleetctl jobs --limit 20"]),
    VerbHelp(
        name: "events", summary: "the event log; -f follows it live",
        usage: "events [-f] [--limit N] [--json]",
        options: [("-f, --follow", "stream new events until interrupted")],
        examples: ["fleetctl events -f"]),
    VerbHelp(
        name: "logs", summary: "a slot's server log or a job's agent log",
        usage: "logs SLOT|JOB [-f] [--bytes N]",
        options: [
            ("-f, --follow", "stream as the log grows"),
            ("--bytes N", "how much of the end to show (default 65536)"),
        ],
        examples: ["fleetctl logs alpha", "fleetctl logs cm9x0abc123 -f"]),
    VerbHelp(
        name: "quota", summary: "the fleet's quota reading, its probe, and each slot's floor and gate",
        usage: "quota [--probe] [--json]",
        options: [
            ("--probe", "take a reading now and wait for it (rate-limited by min_probe_gap)"),
            ("--json", "one JSON object (the stable interface for scripts)"),
        ],
        examples: [
            "fleetctl quota", "fleetctl quota --probe",
            "fleetctl quota --json | jq '.slots[] | {name, gate}'",
        ]),
    VerbHelp(
        name: "health", summary: "exit 0 when the daemon answers and no slot is failed or token_rejected",
        usage: "health [--json]", examples: ["HEALTHCHECK CMD fleetctl health"]),
    VerbHelp(name: "version", summary: "fleetctl's and fleetd's versions", usage: "version [--json]"),
    VerbHelp(
        name: "completion", summary: "shell completion script", usage: "completion bash|zsh",
        examples: ["source <(fleetctl completion bash)", "fleetctl completion zsh > ~/.zfunc/_fleetctl"]),
    VerbHelp(
        name: "help", summary: "help for one verb", usage: "help [VERB]", examples: ["fleetctl help drain"]),
]

/// `fleetctl completion bash|zsh`.
func completionScript(_ shell: String) -> String? {
    // zsh's single quotes cannot hold a quote: close, escape it, reopen.
    let zshVerbs = verbHelp.map { "'\($0.name):\($0.summary.replacing("'", with: "'\\''"))'" }
        .joined(separator: " ")
    let verbs = verbHelp.map(\.name).joined(separator: " ")
    switch shell {
    case "bash":
        return """
            _fleetctl() {
                local cur=${COMP_WORDS[COMP_CWORD]} verb="" opts=() i
                # Global options before the verb; pass --socket/--config on to fleetctl.
                for ((i = 1; i < COMP_CWORD; i++)); do
                    case "${COMP_WORDS[i]}" in
                        --socket|--config|--timeout) opts+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}"); ((i++)) ;;
                        -*) ;;
                        *) verb=${COMP_WORDS[i]}; break ;;
                    esac
                done
                if [ -z "$verb" ]; then
                    COMPREPLY=($(compgen -W "\(verbs)" -- "$cur"))
                    return
                fi
                case "$verb" in
                    drain|undrain|restart|logs)
                        local slots=$(fleetctl "${opts[@]}" __slots 2>/dev/null)
                        COMPREPLY=($(compgen -W "$slots --all --wait --now -f" -- "$cur")) ;;
                    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
                    help) COMPREPLY=($(compgen -W "\(verbs)" -- "$cur")) ;;
                    *) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
                esac
            }
            complete -F _fleetctl fleetctl
            """
    case "zsh":
        return """
            #compdef fleetctl
            _fleetctl() {
                local -a verbs
                verbs=(\(zshVerbs))
                if (( CURRENT == 2 )); then
                    _describe 'verb' verbs
                else
                    _arguments '*:argument:(--json --all --wait --now -f)'
                fi
            }
            compdef _fleetctl fleetctl
            """
    default:
        return nil
    }
}
