//! Who is running airlock, from where, and whether another process on this host is still alive.

use airlock_core::Actor;

/// The version of airlock stamped on every record.
pub const AIRLOCK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// This process: OS user, host name, pid, airlock version.
pub fn current() -> Actor {
    let os_user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".to_owned());
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".to_owned());
    Actor { os_user, host, pid: std::process::id(), airlock_version: AIRLOCK_VERSION.to_owned() }
}

/// The name of this process's real uid, from /proc and /etc/passwd (where they exist).
fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// Where a process runs, as written in the lease: `name#boot#pidns`. The boot
/// id tells machines (or a machine before and after a reboot) apart when they
/// share a host name; the pid namespace tells containers apart that share a
/// host name and a kernel but cannot see each other's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity<'a> {
    /// The host name.
    pub name: &'a str,
    /// First characters of the kernel's boot id, when known.
    pub boot: Option<&'a str>,
    /// The pid namespace's inode, when known.
    pub pidns: Option<&'a str>,
}

impl<'a> HostIdentity<'a> {
    /// Reads `name#boot#pidns` (older or partial forms have fewer parts).
    pub fn parse(text: &'a str) -> HostIdentity<'a> {
        let mut parts = text.split('#');
        let name = parts.next().unwrap_or_default();
        let boot = parts.next().filter(|s| !s.is_empty());
        let pidns = parts.next().filter(|s| !s.is_empty());
        HostIdentity { name, boot, pidns }
    }
}

/// This process's host identity, for the lease.
pub fn host_identity(host: &str) -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().chars().take(8).collect::<String>())
        .unwrap_or_default();
    let pidns = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let text = link.to_string_lossy().into_owned();
            let inode = text.trim_start_matches("pid:[").trim_end_matches(']').to_owned();
            (!inode.is_empty()).then_some(inode)
        })
        .unwrap_or_default();
    format!("{host}#{boot}#{pidns}")
}

/// The host name part of a lease's host identity, for messages.
pub fn host_name(identity: &str) -> &str {
    HostIdentity::parse(identity).name
}

/// Whether a process of this host is alive. Where that cannot be told (no
/// `/proc`), it is assumed alive, so a lease is only ever taken over by its age.
pub fn process_alive(pid: u32) -> bool {
    let proc_dir = std::path::Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")) {
        // The state follows the parenthesized command name; `Z` is a zombie: dead.
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_one_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn names_the_user_even_without_user_variables() {
        assert_ne!(user_from_uid().as_deref(), Some(""));
        assert_ne!(current().os_user, "");
    }

    #[test]
    fn host_identity_keeps_the_name_readable() {
        let id = host_identity("web-1");
        assert_eq!(host_name(&id), "web-1");
        let parsed = HostIdentity::parse(&id);
        assert!(parsed.boot.is_some() && parsed.pidns.is_some(), "{id}");
        assert_eq!(HostIdentity::parse("old-style").boot, None);
    }
}
