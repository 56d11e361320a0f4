//! Bubblewrap command lines, cgroup limits and the startup checks that refuse to run unisolated.
//!
//! Decision: each sandbox is one bubblewrap instance whose command is this binary in agent mode.
//! It runs as an unprivileged host uid with new user, PID, IPC and UTS namespaces (plus a network
//! namespace when networking is denied), no capabilities and `no_new_privs`. The agent forks every
//! process, so they inherit all of it, and killing bubblewrap kills the whole PID namespace.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Path of the agent binary inside sandboxes.
pub const AGENT_PATH: &str = "/usr/local/libexec/deno-sandbox-agent";
/// Path of the `deno` binary inside sandboxes.
pub const DENO_PATH: &str = "/usr/local/bin/deno";
/// uid and gid of the sandbox user as processes inside the sandbox see them.
pub const SANDBOX_UID: u32 = 1000;
/// `PATH` of sandbox processes.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Entries of the host `/etc` that sandboxes see read-only; everything else in `/etc` is hidden.
const ETC_ENTRIES: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "host.conf",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "profile",
    "profile.d",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "terminfo",
    "timezone",
];

/// Failure of a startup check, naming what to install or change.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "{program} not found; install the Debian package {package} (apt-get install {package})"
    )]
    MissingProgram {
        program: &'static str,
        package: &'static str,
    },
    #[error("the {controller} cgroup controller is not available ({detail}); {hint}")]
    MissingController {
        controller: &'static str,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "the server must run as root, because it creates cgroups and starts sandboxes as another uid"
    )]
    NotRoot,
    #[error("failed to prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Host programs the server runs, with the Debian package that ships each.
const REQUIRED_PROGRAMS: &[(&str, &str)] = &[
    ("/usr/bin/bwrap", "bubblewrap"),
    ("/usr/bin/setpriv", "util-linux"),
    ("/usr/bin/kill", "procps"),
    ("/bin/sh", "dash"),
];

/// Version of the cgroup hierarchy the host mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP_GROUP: &str = "deno-sandbox-local";

/// Checks programs and cgroup controllers, and creates the server's parent cgroups.
///
/// # Errors
/// Names the missing Debian package or cgroup controller.
pub fn preflight() -> Result<CgroupVersion, PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if uid != Some("0") {
        return Err(PreflightError::NotRoot);
    }
    for (program, package) in REQUIRED_PROGRAMS {
        if !Path::new(program).is_file() {
            return Err(PreflightError::MissingProgram { program, package });
        }
    }

    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").is_file() {
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        for controller in ["memory", "pids"] {
            if !controllers
                .split_whitespace()
                .any(|name| name == controller)
            {
                return Err(PreflightError::MissingController {
                    controller: if controller == "memory" {
                        "memory"
                    } else {
                        "pids"
                    },
                    detail: format!("not listed in {CGROUP_ROOT}/cgroup.controllers"),
                    hint: "enable it in the host's cgroup v2 hierarchy",
                });
            }
        }
        let parent = root.join(CGROUP_GROUP);
        create_dir(&parent)?;
        // Child groups only get memory.max and pids.max when the parent delegates both controllers.
        write(&root.join("cgroup.subtree_control"), "+memory +pids")?;
        write(&parent.join("cgroup.subtree_control"), "+memory +pids")?;
        remove_stale_groups(&parent);
        return Ok(CgroupVersion::V2);
    }

    for controller in ["memory", "pids"] {
        let mount = root.join(controller);
        let limit_file = if controller == "memory" {
            "memory.limit_in_bytes"
        } else {
            "pids.max"
        };
        let probe = if controller == "memory" {
            mount.join(limit_file)
        } else {
            mount.join("pids.current")
        };
        if !mount.is_dir() || !(probe.is_file() || mount.join("tasks").is_file()) {
            return Err(PreflightError::MissingController {
                controller: if controller == "memory" {
                    "memory"
                } else {
                    "pids"
                },
                detail: format!("{} is not a mounted cgroup v1 hierarchy", mount.display()),
                hint: "mount it (mount -t cgroup -o <controller> cgroup /sys/fs/cgroup/<controller>) or use a cgroup v2 host",
            });
        }
        create_dir(&mount.join(CGROUP_GROUP))?;
    }
    // Memory directories change their timestamps while the kernel updates them, so the age test
    // uses the pids groups, and a memory group goes once its pids group is gone.
    let pids_parent = root.join("pids").join(CGROUP_GROUP);
    remove_stale_groups(&pids_parent);
    if let Ok(entries) = std::fs::read_dir(root.join("memory").join(CGROUP_GROUP)) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("sbx_") && !pids_parent.join(&name).exists() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    Ok(CgroupVersion::V1)
}

/// Age after which an empty sandbox cgroup counts as left behind by a stopped server. Younger ones
/// may belong to a sandbox that another server on this host is starting right now.
const STALE_GROUP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes empty sandbox cgroups older than [`STALE_GROUP_AGE`]. The kernel refuses to remove a
/// cgroup that still has processes, so running sandboxes of other servers keep theirs.
fn remove_stale_groups(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_GROUP_AGE);
        if stale && entry.file_name().to_string_lossy().starts_with("sbx_") {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

fn create_dir(path: &Path) -> Result<(), PreflightError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(PreflightError::Prepare {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write(path: &Path, content: &str) -> Result<(), PreflightError> {
    std::fs::write(path, content).map_err(|source| PreflightError::Prepare {
        path: path.to_path_buf(),
        source,
    })
}

/// Memory and process-count limits of one sandbox.
#[derive(Debug)]
pub struct Cgroup {
    version: CgroupVersion,
    id: String,
}

impl Cgroup {
    /// Creates the sandbox's cgroups and writes the limits.
    ///
    /// # Errors
    /// Fails when a cgroup directory or limit file cannot be written.
    pub fn create(
        version: CgroupVersion,
        id: &str,
        memory_bytes: u64,
        pids_max: u32,
    ) -> std::io::Result<Self> {
        let cgroup = Self {
            version,
            id: id.to_string(),
        };
        match version {
            CgroupVersion::V1 => {
                // The pids group comes first: startup cleanup removes memory groups without one.
                let pids = cgroup.pids_dir();
                std::fs::create_dir(&pids)?;
                std::fs::write(pids.join("pids.max"), pids_max.to_string())?;
                let memory = cgroup.memory_dir();
                std::fs::create_dir(&memory)?;
                std::fs::write(
                    memory.join("memory.limit_in_bytes"),
                    memory_bytes.to_string(),
                )?;
                // Swap counts against the same limit where the kernel accounts it.
                let _ = std::fs::write(
                    memory.join("memory.memsw.limit_in_bytes"),
                    memory_bytes.to_string(),
                );
            }
            CgroupVersion::V2 => {
                let dir = cgroup.memory_dir();
                std::fs::create_dir(&dir)?;
                std::fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                std::fs::write(dir.join("pids.max"), pids_max.to_string())?;
            }
        }
        Ok(cgroup)
    }

    fn memory_dir(&self) -> PathBuf {
        match self.version {
            CgroupVersion::V1 => Path::new(CGROUP_ROOT)
                .join("memory")
                .join(CGROUP_GROUP)
                .join(&self.id),
            CgroupVersion::V2 => Path::new(CGROUP_ROOT).join(CGROUP_GROUP).join(&self.id),
        }
    }

    fn pids_dir(&self) -> PathBuf {
        match self.version {
            CgroupVersion::V1 => Path::new(CGROUP_ROOT)
                .join("pids")
                .join(CGROUP_GROUP)
                .join(&self.id),
            CgroupVersion::V2 => self.memory_dir(),
        }
    }

    /// `cgroup.procs` files a new process must join, in order.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V1 => vec![
                self.memory_dir().join("cgroup.procs"),
                self.pids_dir().join("cgroup.procs"),
            ],
            CgroupVersion::V2 => vec![self.memory_dir().join("cgroup.procs")],
        }
    }

    /// Finds the host pid of the sandbox process whose pid inside the sandbox is `inner_pid`, by
    /// reading the innermost `NSpid` entry of every process in the cgroup.
    pub fn host_pid(&self, inner_pid: u64) -> Option<u64> {
        let procs = std::fs::read_to_string(self.pids_dir().join("cgroup.procs")).ok()?;
        procs
            .lines()
            .filter_map(|line| line.trim().parse::<u64>().ok())
            .find(|host_pid| {
                let status =
                    std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("NSpid:"))
                    .and_then(|pids| pids.split_whitespace().last())
                    .and_then(|pid| pid.parse::<u64>().ok())
                    == Some(inner_pid)
            })
    }

    /// Returns how many processes the kernel OOM killer has killed in this sandbox so far.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        let text = std::fs::read_to_string(self.memory_dir().join(file)).unwrap_or_default();
        text.lines()
            .filter_map(|line| line.strip_prefix("oom_kill "))
            .find_map(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Removes the cgroup directories; retries while the kernel still counts exiting tasks.
    pub async fn remove(&self) {
        let mut dirs = vec![self.memory_dir()];
        if self.version == CgroupVersion::V1 {
            dirs.push(self.pids_dir());
        }
        for dir in dirs {
            for _ in 0..50 {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(40)).await,
                }
            }
        }
    }
}

/// Host-side paths of one sandbox.
#[derive(Debug)]
pub struct SandboxDirs {
    pub root: PathBuf,
    pub workspace: PathBuf,
    pub tmp: PathBuf,
}

impl SandboxDirs {
    /// Creates `<state>/<id>/{workspace,tmp}` owned by the sandbox's host uid.
    ///
    /// # Errors
    /// Fails when a directory cannot be created or handed to the sandbox uid.
    pub fn create(state_dir: &Path, id: &str, host_uid: u32) -> std::io::Result<Self> {
        let root = state_dir.join(id);
        let workspace = root.join("workspace");
        let tmp = root.join("tmp");
        std::fs::create_dir(&root)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir(&workspace)?;
        std::fs::create_dir(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
        for dir in [&root, &workspace, &tmp] {
            chown(dir, Some(host_uid), Some(host_uid))?;
        }
        Ok(Self {
            root,
            workspace,
            tmp,
        })
    }
}

/// Writes the sandbox `/etc/passwd` and `/etc/group` once per server into the state directory.
///
/// # Errors
/// Fails when the state directory is not writable.
pub fn prepare_state(config: &Config) -> Result<(), PreflightError> {
    let state = &config.state_dir;
    std::fs::create_dir_all(state).map_err(|source| PreflightError::Prepare {
        path: state.clone(),
        source,
    })?;
    // The sandbox uid must traverse the state directory to reach its own workspace, but not list it.
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o711)).map_err(|source| {
        PreflightError::Prepare {
            path: state.clone(),
            source,
        }
    })?;
    // Sandbox directories left by a server that was killed belong to no running sandbox.
    if let Ok(entries) = std::fs::read_dir(state) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("sbx_") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let home = &config.workspace_path;
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:{SANDBOX_UID}:{SANDBOX_UID}:app:{home}:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let group = format!("root:x:0:\napp:x:{SANDBOX_UID}:\nnogroup:x:65534:\n");
    for (name, content) in [("passwd", passwd), ("group", group)] {
        let path = state.join(name);
        std::fs::write(&path, content).map_err(|source| PreflightError::Prepare {
            path: path.clone(),
            source,
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|source| PreflightError::Prepare { path, source })?;
    }
    Ok(())
}

/// Builds the command that joins the cgroups, drops to the sandbox uid and starts bubblewrap
/// with the agent inside.
pub fn sandbox_command(
    config: &Config,
    dirs: &SandboxDirs,
    cgroup: &Cgroup,
    agent_binary: &Path,
    isolate_network: bool,
) -> tokio::process::Command {
    // The shell joins the cgroups as root before anything forks, so no process escapes the limits.
    // Then setpriv drops to the unprivileged host uid that owns the user namespace.
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("for f in $CGROUP_PROCS; do echo $$ > \"$f\" || exit 111; done; exec \"$@\"");
    command.arg("sh");
    let procs: Vec<String> = cgroup
        .procs_files()
        .iter()
        .map(|path| path.to_string_lossy().into_owned())
        .collect();
    command.env_clear().env("CGROUP_PROCS", procs.join(" "));

    let uid = config.host_uid.to_string();
    command.args([
        "/usr/bin/setpriv",
        "--reuid",
        &uid,
        "--regid",
        &uid,
        "--clear-groups",
        "--",
        "/usr/bin/bwrap",
    ]);
    command.args(bwrap_args(config, dirs, agent_binary, isolate_network));
    command.args(["--", AGENT_PATH, "agent"]);
    command.kill_on_drop(true);
    command
}

fn bwrap_args(
    config: &Config,
    dirs: &SandboxDirs,
    agent_binary: &Path,
    isolate_network: bool,
) -> Vec<String> {
    let home = config.workspace_path.as_str();
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|item| item.to_string()));

    push(&[
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]);
    if isolate_network {
        push(&["--unshare-net"]);
    }
    push(&["--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
    push(&["--uid", "1000", "--gid", "1000", "--hostname", "sandbox"]);
    push(&[
        "--clearenv",
        "--setenv",
        "PATH",
        SANDBOX_PATH,
        "--setenv",
        "HOME",
        home,
    ]);
    push(&["--setenv", "USER", "app", "--setenv", "LANG", "C.UTF-8"]);

    // System directories: /usr read-only, and the merged-/usr links or directories beside it.
    push(&["--ro-bind", "/usr", "/usr"]);
    for top in ["/bin", "/lib", "/lib64", "/sbin"] {
        match std::fs::read_link(top) {
            Ok(target) => push(&["--symlink", &target.to_string_lossy(), top]),
            Err(_) if Path::new(top).is_dir() => push(&["--ro-bind", top, top]),
            Err(_) => {}
        }
    }
    push(&[
        "--tmpfs",
        "/usr/local",
        "--ro-bind",
        &agent_binary.to_string_lossy(),
        AGENT_PATH,
    ]);
    if let Some(deno) = &config.deno_bin {
        push(&["--ro-bind", &deno.to_string_lossy(), DENO_PATH]);
    }
    push(&["--remount-ro", "/usr/local"]);

    push(&["--dir", "/etc"]);
    for entry in ETC_ENTRIES {
        let path = format!("/etc/{entry}");
        push(&["--ro-bind-try", &path, &path]);
    }
    let passwd = config.state_dir.join("passwd");
    let group = config.state_dir.join("group");
    push(&["--ro-bind", &passwd.to_string_lossy(), "/etc/passwd"]);
    push(&["--ro-bind", &group.to_string_lossy(), "/etc/group"]);

    push(&["--proc", "/proc", "--dev", "/dev"]);
    push(&["--bind", &dirs.workspace.to_string_lossy(), home]);
    push(&["--bind", &dirs.tmp.to_string_lossy(), "/tmp"]);
    // The root tmpfs (with /etc and mount points) becomes read-only; the binds above stay writable.
    push(&["--remount-ro", "/", "--chdir", home]);
    args
}
