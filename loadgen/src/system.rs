//! The generator's process limits: tens of thousands of connections need as many file
//! descriptors (twice as many with an embedded server, which holds the other end).

use rlimit::Resource;

/// The open-file limit after [`raise_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// Soft limit in force now.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Raise the open-file limit to at least `want` if the system allows: the soft limit up to the
/// hard one, and (with privilege, as root in CI) the hard limit itself up to `fs.nr_open`.
pub fn raise_open_files(want: u64) -> std::io::Result<OpenFiles> {
    let (soft, hard) = Resource::NOFILE.get()?;
    if want > hard {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(hard);
        let target = want.min(nr_open);
        // Unprivileged processes cannot raise the hard limit; that is not an error here.
        if target > hard && Resource::NOFILE.set(target, target).is_ok() {
            return Ok(OpenFiles {
                soft: target,
                hard: target,
            });
        }
    }
    let target = want.min(hard).max(soft);
    if target > soft {
        Resource::NOFILE.set(target, hard)?;
    }
    let (soft, hard) = Resource::NOFILE.get()?;
    Ok(OpenFiles { soft, hard })
}

/// File descriptors a run of `connections` simultaneous connections needs, with headroom for the
/// runtime, the store and the admin listener.
pub fn descriptors_for(connections: usize, embedded: bool) -> u64 {
    let per = if embedded { 2 } else { 1 };
    (connections as u64)
        .saturating_mul(per)
        .saturating_add(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_the_limit() {
        let (before, _) = Resource::NOFILE.get().expect("getrlimit");
        let after = raise_open_files(64).expect("raise");
        assert!(after.soft >= before.min(64));
        assert!(after.soft >= 64 || after.soft == after.hard);
        assert_eq!(descriptors_for(10_000, true), 21_024);
    }
}
