# fleet on Nomad: one fleetd per client host (distinct_hosts), two slots each.
#
# Before `nomad job run fleet.nomad.hcl`:
# - each client that may run it defines three host volumes (client config):
#     host_volume "fleet-state"     { path = "/srv/fleet/state" }
#     host_volume "fleet-repos"     { path = "/srv/fleet/repos" }
#     host_volume "fleet-worktrees" { path = "/srv/fleet/worktrees" }
#   owned by uid 10001, and raises the client's cap on kill_timeout (default 30s):
#     client { max_kill_timeout = "3m" }
# - the secrets are Nomad Variables at nomad/jobs/fleet (this job reads its own path):
#     nomad var put nomad/jobs/fleet \
#       scrum4me_env=@scrum4me.env claude_oauth_token=@claude-oauth-token \
#       github_token=@github-token \
#       alloc0_slot_alpha=@tok-a0 alloc0_slot_beta=@tok-b0 \
#       alloc1_slot_alpha=@tok-a1 alloc1_slot_beta=@tok-b1
#   Each allocation (NOMAD_ALLOC_INDEX) takes only its own slot tokens.
# - the script checks need Consul (Nomad's own service provider has no script checks).
job "fleet" {
  type = "service"

  group "fleetd" {
    count = 2

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    volume "state" {
      type   = "host"
      source = "fleet-state"
    }
    volume "repos" {
      type   = "host"
      source = "fleet-repos"
    }
    volume "worktrees" {
      type   = "host"
      source = "fleet-worktrees"
    }

    # One allocation at a time; the next waits for the health check.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "30s"
      healthy_deadline = "5m"
    }

    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    task "fleetd" {
      driver = "docker"

      # SIGTERM drains for grace (60s), then agents are stopped (25s at most): Nomad's
      # SIGKILL must come later.
      kill_signal  = "SIGTERM"
      kill_timeout = "2m"

      config {
        image = "registry.example.com/fleet:1.0.0"
        # The image's ENTRYPOINT is fleetd, as PID 1: no docker-init.
        init = false
      }

      env {
        FLEET_CONFIG = "/local/fleet.toml"
      }

      volume_mount {
        volume      = "state"
        destination = "/var/lib/fleet"
      }
      volume_mount {
        volume      = "repos"
        destination = "/data/repos"
      }
      volume_mount {
        volume      = "worktrees"
        destination = "/data/worktrees"
      }

      template {
        destination = "local/fleet.toml"
        change_mode = "restart"
        data        = <<-EOT
          # fleet on Nomad: the config of allocation {{ env "NOMAD_ALLOC_INDEX" }}.
          version = 1

          [fleet]
          name = "nomad-{{ env "NOMAD_ALLOC_INDEX" }}"
          state_dir = "/var/lib/fleet"
          socket = "/run/fleet/fleetd.sock"
          grace = "60s"
          kill_timeout = "10s"
          slots = 2

          [scrum4me]
          transport = "stdio"
          command = ["/opt/scrum4me-mcp/node_modules/.bin/tsx", "--tsconfig", "/opt/scrum4me-mcp/tsconfig.json", "/opt/scrum4me-mcp/src/index.ts"]
          env_file = "/secrets/scrum4me.env"

          [quota]
          probe = "anthropic"

          [agent]
          command = ["claude"]
          timeout = "2h"
          credential_file = "/secrets/claude-oauth-token"
          github_token_file = "/secrets/github-token"

          [[slot]]
          name = "alpha"
          token_file = "/secrets/slot-alpha"
          repo_roots = { "cm8product01" = "/data/repos/alpha/webapp" }
          worktree_root = "/data/worktrees/alpha"
          min_quota_pct = 20

          [[slot]]
          name = "beta"
          token_file = "/secrets/slot-beta"
          repo_roots = { "cm8product01" = "/data/repos/beta/webapp" }
          worktree_root = "/data/worktrees/beta"
          min_quota_pct = 40
        EOT
      }

      # Secrets as files in the task's secrets/ directory (/secrets in the container),
      # readable by the image's user only.
      template {
        destination = "secrets/scrum4me.env"
        perms       = "0400"
        uid         = 10001
        gid         = 10001
        change_mode = "restart"
        data        = "{{ with nomadVar \"nomad/jobs/fleet\" }}{{ .scrum4me_env }}{{ end }}"
      }
      template {
        destination = "secrets/claude-oauth-token"
        perms       = "0400"
        uid         = 10001
        gid         = 10001
        change_mode = "restart"
        data        = "{{ with nomadVar \"nomad/jobs/fleet\" }}{{ .claude_oauth_token }}{{ end }}"
      }
      template {
        destination = "secrets/github-token"
        perms       = "0400"
        uid         = 10001
        gid         = 10001
        change_mode = "restart"
        data        = "{{ with nomadVar \"nomad/jobs/fleet\" }}{{ .github_token }}{{ end }}"
      }
      template {
        destination = "secrets/slot-alpha"
        perms       = "0400"
        uid         = 10001
        gid         = 10001
        change_mode = "restart"
        data        = <<-EOT
          {{- $want := printf "alloc%s_slot_alpha" (env "NOMAD_ALLOC_INDEX") -}}
          {{- range $k, $v := nomadVar "nomad/jobs/fleet" }}{{ if eq $k $want }}{{ $v }}{{ end }}{{ end -}}
        EOT
      }
      template {
        destination = "secrets/slot-beta"
        perms       = "0400"
        uid         = 10001
        gid         = 10001
        change_mode = "restart"
        data        = <<-EOT
          {{- $want := printf "alloc%s_slot_beta" (env "NOMAD_ALLOC_INDEX") -}}
          {{- range $k, $v := nomadVar "nomad/jobs/fleet" }}{{ if eq $k $want }}{{ $v }}{{ end }}{{ end -}}
        EOT
      }

      resources {
        cpu    = 2000
        memory = 4096
      }

      service {
        name     = "fleetd"
        provider = "consul"

        # Healthy: the daemon answers and no slot is failed or token_rejected. Gates
        # deployments (update.health_check) but restarts nothing.
        check {
          name     = "fleetctl health"
          type     = "script"
          command  = "/usr/local/bin/fleetctl"
          args     = ["health"]
          interval = "30s"
          timeout  = "10s"
        }

        # Alive: the daemon answers at all. A hung fleetd is restarted.
        check {
          name      = "fleetctl status"
          type      = "script"
          command   = "/usr/local/bin/fleetctl"
          args      = ["status", "--json"]
          interval  = "30s"
          timeout   = "10s"
          on_update = "ignore"

          check_restart {
            limit = 4
            grace = "2m"
          }
        }
      }
    }
  }
}
