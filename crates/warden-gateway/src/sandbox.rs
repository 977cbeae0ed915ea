//! Sandboxes for the stdio MCP servers the gateway launches. A server with a
//! `[upstream.sandbox]` is started through `warden sandbox-exec`, which
//! confines its own (single-threaded, fresh) process and then `exec`s the
//! server, so the confinement is inherited and cannot be undone:
//!
//! - rlimits: CPU seconds, address space, open files, no core dumps;
//! - Landlock: the filesystem outside the listed read and write paths is
//!   out of reach (reads, writes, execution);
//! - no network (unless `network = true`): Landlock denies TCP bind and
//!   connect, and a seccomp filter refuses every socket that is not a Unix
//!   socket (and io_uring, which could open one) with `EACCES`;
//! - `no_new_privs`, so no setuid program can shed any of it.
//!
//! If the kernel cannot enforce Landlock, the server is not started: a
//! sandbox that silently does nothing is worse than none.
//!
//! This is the one module of the workspace with `unsafe` code (the workspace
//! denies `unsafe_code`): `setrlimit` and `prctl` have no safe wrapper in
//! `libc`, and pulling in a crate for two calls would trade two audited
//! lines for a dependency. Each function that needs it says so with an
//! `#[expect(unsafe_code)]`, each block with a `SAFETY` comment.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[upstream.sandbox]` of a stdio upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Readable (and executable) trees; default: the system directories a
    /// program needs to run.
    pub read: Vec<PathBuf>,
    /// Readable and writable trees (the server's working data).
    pub write: Vec<PathBuf>,
    /// Allow network sockets.
    pub network: bool,
    pub cpu_secs: u64,
    pub memory_mb: u64,
    pub open_files: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            read: ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"].iter().map(PathBuf::from).collect(),
            write: Vec::new(),
            network: false,
            cpu_secs: 300,
            memory_mb: 2048,
            open_files: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: {0}")]
    Setup(String),
    #[error("sandbox: this kernel cannot enforce Landlock filesystem rules ({0}); refusing to start the server unconfined")]
    Unsupported(String),
}

/// Devices a program commonly opens; readable and writable as files.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];

impl SandboxConfig {
    /// Confine the current process (then `exec` the server). Paths that do
    /// not exist are skipped for the default read list and refused when
    /// configured explicitly.
    #[cfg(target_os = "linux")]
    pub fn apply(&self) -> Result<(), SandboxError> {
        self.rlimits()?;
        self.landlock()?;
        if !self.network {
            seccomp_deny_sockets()?;
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub fn apply(&self) -> Result<(), SandboxError> {
        Err(SandboxError::Unsupported("not Linux".into()))
    }

    #[cfg(target_os = "linux")]
    #[expect(unsafe_code, reason = "setrlimit(2) has no safe wrapper in libc")]
    fn rlimits(&self) -> Result<(), SandboxError> {
        let set = |what: &str, resource: libc::__rlimit_resource_t, value: u64| {
            let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
            // SAFETY: setrlimit reads a valid, initialized struct.
            if unsafe { libc::setrlimit(resource, &lim) } != 0 {
                return Err(SandboxError::Setup(format!("setting the {what} limit: {}", std::io::Error::last_os_error())));
            }
            Ok(())
        };
        set("CPU", libc::RLIMIT_CPU, self.cpu_secs)?;
        set("memory", libc::RLIMIT_AS, self.memory_mb.saturating_mul(1 << 20))?;
        set("open files", libc::RLIMIT_NOFILE, self.open_files)?;
        set("core dump", libc::RLIMIT_CORE, 0)
    }

    #[cfg(target_os = "linux")]
    fn landlock(&self) -> Result<(), SandboxError> {
        use landlock::{ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus};
        let abi = ABI::V5;
        let err = |e: landlock::RulesetError| SandboxError::Setup(e.to_string());
        let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(abi)).map_err(err)?;
        if !self.network {
            ruleset = ruleset.handle_access(AccessNet::from_all(ABI::V4)).map_err(err)?;
        }
        let mut created = ruleset.create().map_err(err)?;
        let defaults = SandboxConfig::default().read;
        let rules = self
            .read
            .iter()
            .map(|p| (p.as_path(), AccessFs::from_read(abi), defaults.contains(p)))
            .chain(self.write.iter().map(|p| (p.as_path(), AccessFs::from_all(abi), false)))
            .chain(DEVICES.iter().map(|d| (std::path::Path::new(d), AccessFs::from_file(abi), true)));
        for (path, access, optional) in rules {
            let fd = match PathFd::new(path) {
                Ok(fd) => fd,
                Err(_) if optional => continue,
                Err(e) => return Err(SandboxError::Setup(format!("{}: {e}", path.display()))),
            };
            let access = if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) { access & AccessFs::from_file(abi) } else { access };
            created = created.add_rule(PathBeneath::new(fd, access)).map_err(err)?;
        }
        let status = created.restrict_self().map_err(err)?;
        match status.ruleset {
            RulesetStatus::NotEnforced => Err(SandboxError::Unsupported(format!("{:?}", status.landlock))),
            RulesetStatus::PartiallyEnforced | RulesetStatus::FullyEnforced => Ok(()),
        }
    }
}

/// A seccomp filter: sockets other than Unix sockets and io_uring fail with
/// `EACCES`; calls through another syscall ABI (x32, or a foreign
/// architecture) kill the process.
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "prctl(2) installs the seccomp filter; libc has no safe wrapper")]
fn seccomp_deny_sockets() -> Result<(), SandboxError> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    compile_error!("the seccomp filter knows x86_64 and aarch64");
    const LD_W_ABS: u16 = 0x20;
    const JEQ: u16 = 0x15;
    const JGE: u16 = 0x35;
    const RET: u16 = 0x06;
    const ALLOW: u32 = 0x7fff_0000;
    const KILL_PROCESS: u32 = 0x8000_0000;
    const ERRNO: u32 = 0x0005_0000;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half on a
    // little-endian machine; socket's domain is an int).
    let filter = [
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ, 0, 9, ARCH),                            // 1: foreign arch -> 11
        op(LD_W_ABS, 0, 0, 0),                          // 2: syscall number
        op(JGE, 7, 0, 0x4000_0000),                     // 3: x32 -> 11
        op(JEQ, 2, 0, libc::SYS_socket as u32),         // 4: socket -> 7
        op(JEQ, 4, 0, libc::SYS_io_uring_setup as u32), // 5: io_uring -> 10
        op(RET, 0, 0, ALLOW),                           // 6
        op(LD_W_ABS, 0, 0, 16),                         // 7: domain
        op(JEQ, 0, 1, libc::AF_UNIX as u32),            // 8: AF_UNIX -> 9, else 10
        op(RET, 0, 0, ALLOW),                           // 9
        op(RET, 0, 0, ERRNO | libc::EACCES as u32),     // 10
        op(RET, 0, 0, KILL_PROCESS),                    // 11
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // SAFETY: prctl with valid arguments; the program outlives the call
    // (the kernel copies it).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
        {
            return Err(SandboxError::Setup(format!("installing the seccomp filter: {}", std::io::Error::last_os_error())));
        }
    }
    Ok(())
}
