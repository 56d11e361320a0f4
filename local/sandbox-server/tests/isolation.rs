//! Isolation checks: what a process inside a sandbox can and cannot see or do.

#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use serde_json::json;

#[tokio::test]
async fn host_files_are_invisible() {
    let server = Server::start().await;
    let marker = std::env::temp_dir().join("deno-sandbox-local-host-marker");
    std::fs::write(&marker, "host secret").unwrap();
    let (client, _) = server.create(json!({ "memory_mb": 512 })).await;

    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for path in [
        marker.to_str().unwrap(),
        manifest,
        "/root",
        "/etc/shadow",
        "/work",
    ] {
        let output = client
            .sh(&format!("test -e '{path}' && echo visible || echo hidden"))
            .await;
        assert_eq!(
            output.stdout, "hidden\n",
            "{path} is visible inside the sandbox"
        );
    }
    let listing = client.sh("ls /").await.stdout;
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "bin", "dev", "etc", "home", "lib", "lib64", "proc", "sbin", "tmp", "usr"
        ]
    );
    let _ = std::fs::remove_file(marker);
}

#[tokio::test]
async fn system_directories_are_read_only() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    for path in ["/usr/evil", "/etc/evil", "/usr/local/bin/evil"] {
        let output = client.sh(&format!("touch {path}")).await;
        assert_ne!(output.code, 0, "{path} is writable");
    }
    let output = client
        .sh("touch /home/app/ok /tmp/ok && echo written")
        .await;
    assert_eq!(output.stdout, "written\n");
}

#[tokio::test]
async fn other_sandboxes_are_invisible() {
    let server = Server::start().await;
    let (first, _) = server.create(json!({})).await;
    let (second, _) = server.create(json!({})).await;

    first
        .sh("echo mine > /home/app/first.txt; echo mine > /tmp/first.txt")
        .await;
    first
        .ok(
            "spawn",
            json!({ "command": "sleep", "args": ["300"], "stdout": "null", "stderr": "null" }),
        )
        .await;

    let output = second.sh("ls -A /home/app /tmp; ps -eo comm=").await;
    assert!(!output.stdout.contains("first.txt"), "{}", output.stdout);
    assert!(!output.stdout.contains("sleep"), "{}", output.stdout);
}

#[tokio::test]
async fn pid_namespace_hides_host_processes() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    let output = client.sh("ps -eo pid=,comm=").await;
    let processes: Vec<&str> = output.stdout.lines().map(str::trim).collect();
    // bubblewrap's init, the agent, bash and ps: nothing from the host.
    assert!(processes.len() <= 4, "{processes:?}");
    assert!(processes[0].starts_with("1 "), "{processes:?}");
    assert!(
        processes
            .iter()
            .all(|line| !line.contains("deno-sandbox-lo") || line.contains("deno-sandbox-ag"))
    );
}

#[tokio::test]
async fn processes_have_no_capabilities() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    let output = client
        .sh("grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status")
        .await;
    for line in output.stdout.lines() {
        let (name, value) = line.split_once(':').unwrap();
        let expected = if name == "NoNewPrivs" {
            "1"
        } else {
            "0000000000000000"
        };
        assert_eq!(value.trim(), expected, "{name}");
    }
    assert_eq!(output.stdout.lines().count(), 6);
    assert_eq!(
        client.sh("id -u; id -g; hostname").await.stdout,
        "1000\n1000\nsandbox\n"
    );
}

#[tokio::test]
async fn environment_is_cleared() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    let mut names: Vec<String> = client
        .sh("env | cut -d= -f1")
        .await
        .stdout
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "DENO_DEPLOY_ORGANIZATION_ID",
            "HOME",
            "LANG",
            "PATH",
            "PWD",
            "SHLVL",
            "USER",
            "_"
        ]
    );
    assert_eq!(
        client.sh("echo $HOME; pwd").await.stdout,
        "/home/app\n/home/app\n"
    );
}

#[tokio::test]
async fn network_is_isolated_by_default() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({ "allow_net": [] })).await;
    let interfaces = client
        .sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
        .await
        .stdout;
    assert_eq!(interfaces, "lo\n");
    let port = server.port;
    let output = client
        .sh(&format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && echo reached || echo refused"
        ))
        .await;
    assert_eq!(output.stdout, "refused\n");
}

#[tokio::test]
async fn deno_runs_inside() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    let output = client
        .sh("deno eval 'console.log(Deno.cwd(), 6 * 7)'")
        .await;
    assert_eq!(output.stdout, "/home/app 42\n", "stderr: {}", output.stderr);
}

#[tokio::test]
async fn pids_limit_stops_fork_bombs() {
    let server = Server::start_with(&[("DENO_LOCAL_PIDS_MAX", "24")]).await;
    let (client, id) = server.create(json!({})).await;
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/pids/deno-sandbox-local/{id}/pids.max"
    ))
    .or_else(|_| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/deno-sandbox-local/{id}/pids.max"))
    })
    .unwrap();
    assert_eq!(limit.trim(), "24");

    // The agent's spawn does not retry, unlike bash, so the first refused fork surfaces as an error.
    let mut pids = Vec::new();
    let mut refusal = None;
    for _ in 0..40 {
        let response = client
            .call(
                "spawn",
                json!({ "command": "sleep", "args": ["60"], "stdout": "null", "stderr": "null" }),
            )
            .await;
        match response["result"]["ok"]["pid"].as_u64() {
            Some(pid) => pids.push(pid),
            None => {
                refusal = Some(response["result"]["error"].clone());
                break;
            }
        }
    }
    assert!(pids.len() < 24, "spawned {} processes", pids.len());
    assert_eq!(refusal.expect("a spawn was refused")["code"], "EAGAIN");

    // The sandbox recovers once processes end.
    for pid in pids {
        client
            .ok("processKill", json!({ "pid": pid, "signal": "SIGKILL" }))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(client.sh("echo alive").await.stdout, "alive\n");
}

#[tokio::test]
async fn memory_limit_kill_reports_oom() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({ "memory_mb": 64 })).await;
    let output = client
        .sh("a=$(head -c 300000000 /dev/zero | tr '\\0' x); echo ${#a}")
        .await;
    assert_eq!(output.status["oom"], "high-confidence", "{}", output.status);
    assert_eq!(output.code, 137);
    assert_eq!(output.status["signal"], "SIGKILL");
    assert_eq!(client.sh("echo alive").await.stdout, "alive\n");
    let scores = client
        .sh("cat /proc/1/oom_score_adj /proc/2/oom_score_adj /proc/self/oom_score_adj")
        .await;
    assert_eq!(scores.stdout, "0\n0\n500\n");
}
