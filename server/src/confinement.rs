//! Confinement: where sessions may work and what terminal workers may run.
//!
//! **Allowed roots** (`--allowed-root`, repeatable, default `/`). A work dir is
//! accepted only if it lies inside a root twice over:
//! 1. *lexically*, after `.` and `..` are resolved as text, against the roots as
//!    given and as resolved — so a path that is plainly outside is refused with
//!    PERMISSION_DENIED before the file system is consulted, and nobody can probe
//!    which paths outside the roots exist;
//! 2. *really*, after `canonicalize` resolved every symlink and `..`, against the
//!    canonical roots — so a symlink inside a root that points outside is refused
//!    too.
//!
//! The check runs when a session is created and again before each process is
//! spawned (a directory can be replaced by a symlink in between).
//!
//! **Terminal commands** (`--terminal-commands any|shell|list`). Under `shell`,
//! terminal workers run only the server's shell; under `list`, only programs given
//! with `--allowed-command` (matched exactly against the first word, the shell
//! included for workers without a command), and they cannot set environment
//! variables: `LD_PRELOAD` or `PATH` would change what the allowed program runs.
//! Agent commands never come from clients: they come from server-side profiles.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::config::TerminalCommands;
use crate::domain::names;
use crate::error::{Error, Result};

/// Longest path accepted, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;

/// One allowed root: as configured (lexically normalised) and as resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Root {
    given: PathBuf,
    canonical: PathBuf,
}

/// The directories sessions may work in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedRoots {
    roots: Vec<Root>,
}

/// `path` with `.` removed and `..` applied to the text (no symlinks followed);
/// `None` for a relative path.
pub fn normalize_lexically(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
        }
    }
    Some(out)
}

impl AllowedRoots {
    /// Resolves the configured roots (at start-up).
    ///
    /// Errors, in words: a relative root, or one that does not exist or is not a
    /// directory.
    pub fn new(roots: &[PathBuf]) -> std::result::Result<Self, String> {
        if roots.is_empty() {
            return Err("--allowed-root: at least one directory is needed".into());
        }
        let mut resolved = Vec::with_capacity(roots.len());
        for root in roots {
            let given = normalize_lexically(root).ok_or_else(|| {
                format!(
                    "--allowed-root {}: must be an absolute path",
                    root.display()
                )
            })?;
            let canonical = std::fs::canonicalize(root)
                .map_err(|e| format!("--allowed-root {}: {e}", root.display()))?;
            if !canonical.is_dir() {
                return Err(format!(
                    "--allowed-root {}: not a directory",
                    root.display()
                ));
            }
            resolved.push(Root { given, canonical });
        }
        Ok(AllowedRoots { roots: resolved })
    }

    /// The roots as given, without touching the file system (used only when
    /// [`AllowedRoots::new`] failed, which configuration validation prevents).
    pub fn unresolved(roots: &[PathBuf]) -> Self {
        AllowedRoots {
            roots: roots
                .iter()
                .filter_map(|root| normalize_lexically(root))
                .map(|given| Root {
                    canonical: given.clone(),
                    given,
                })
                .collect(),
        }
    }

    /// The canonical roots, for messages (`/srv, /home/me`).
    pub fn describe(&self) -> String {
        self.roots
            .iter()
            .map(|r| r.canonical.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn lexically_inside(&self, normalized: &Path) -> bool {
        self.roots
            .iter()
            .any(|r| normalized.starts_with(&r.given) || normalized.starts_with(&r.canonical))
    }

    /// Whether a canonical path lies inside a canonical root.
    pub fn contains(&self, canonical: &Path) -> bool {
        self.roots
            .iter()
            .any(|r| canonical.starts_with(&r.canonical))
    }

    fn outside(&self, field: &str, path: &str) -> Error {
        Error::PermissionDenied {
            message: format!(
                "{field}: {path:?} is outside the allowed roots ({}); the server's --allowed-root decides where sessions may work",
                self.describe()
            ),
        }
    }

    /// Checks a directory a client names in `field`: text (at most
    /// [`MAX_PATH_BYTES`], no NUL), absolute, inside the roots lexically, existing,
    /// a directory, and inside the roots once every symlink is resolved. Returns
    /// its canonical path.
    ///
    /// Errors: INVALID_ARGUMENT (malformed, missing, not a directory),
    /// PERMISSION_DENIED (outside the roots).
    pub async fn resolve_dir(&self, field: &str, path: &str) -> Result<PathBuf> {
        if path.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        names::validate_text(field, path, MAX_PATH_BYTES)?;
        let normalized = normalize_lexically(Path::new(path))
            .ok_or_else(|| Error::invalid(field, format!("{path:?} is not an absolute path")))?;
        if !self.lexically_inside(&normalized) {
            return Err(self.outside(field, path));
        }
        let canonical = tokio::fs::canonicalize(path).await.map_err(|err| {
            Error::invalid(
                field,
                match err.kind() {
                    std::io::ErrorKind::NotFound => format!("{path:?} does not exist"),
                    _ => format!("{path:?}: {err}"),
                },
            )
        })?;
        if !self.contains(&canonical) {
            return Err(self.outside(field, path));
        }
        let is_dir = tokio::fs::metadata(&canonical)
            .await
            .is_ok_and(|m| m.is_dir());
        if !is_dir {
            return Err(Error::invalid(
                field,
                format!("{path:?} is not a directory"),
            ));
        }
        Ok(canonical)
    }
}

/// What terminal workers may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandPolicy {
    mode: TerminalCommands,
    allowed: Vec<String>,
    shell: PathBuf,
}

impl CommandPolicy {
    /// A policy: `mode`, the programs of `--allowed-command`, and the server's shell
    /// (what a worker without a command runs).
    pub fn new(mode: TerminalCommands, allowed: &[String], shell: PathBuf) -> Self {
        CommandPolicy {
            mode,
            allowed: allowed.to_vec(),
            shell,
        }
    }

    /// Any command, as before there was a policy.
    pub fn any(shell: PathBuf) -> Self {
        CommandPolicy::new(TerminalCommands::Any, &[], shell)
    }

    /// Checks a terminal worker's `command` (empty: the shell) and extra `env`.
    ///
    /// Errors: PERMISSION_DENIED naming the policy and what it allows.
    pub fn check(&self, command: &[String], env: &BTreeMap<String, String>) -> Result<()> {
        match self.mode {
            TerminalCommands::Any => Ok(()),
            TerminalCommands::Shell if command.is_empty() => Ok(()),
            TerminalCommands::Shell => Err(Error::PermissionDenied {
                message: format!(
                    "worker.terminal.command: {:?} is refused: this server runs only its shell in terminal workers (--terminal-commands shell); leave the command empty",
                    command.join(" ")
                ),
            }),
            TerminalCommands::List => {
                let shell = self.shell.display().to_string();
                let program = command.first().unwrap_or(&shell);
                if !self.allowed.iter().any(|allowed| allowed == program) {
                    return Err(Error::PermissionDenied {
                        message: format!(
                            "worker.terminal.command: {program:?} is not an allowed program (--terminal-commands list allows {})",
                            self.allowed.join(", ")
                        ),
                    });
                }
                if let Some(name) = env.keys().next() {
                    return Err(Error::PermissionDenied {
                        message: format!(
                            "worker.terminal.env.{name}: terminal workers cannot set environment variables under --terminal-commands list (they could change what the allowed program runs)"
                        ),
                    });
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn lexical_normalization_applies_dot_dot_as_text() {
        let n = |p: &str| normalize_lexically(Path::new(p));
        assert_eq!(n("/a/b/../c/./d"), Some("/a/c/d".into()));
        assert_eq!(n("/../../etc"), Some("/etc".into()));
        assert_eq!(n("/"), Some("/".into()));
        assert_eq!(n("relative/x"), None);
    }

    #[tokio::test]
    async fn work_dirs_must_resolve_inside_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("project")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        let roots = AllowedRoots::new(std::slice::from_ref(&root)).unwrap();
        let code = |r: Result<PathBuf>| r.map_err(|e| e.code());
        let p = |path: &Path| path.display().to_string();

        let inside = roots
            .resolve_dir("w", &p(&root.join("project")))
            .await
            .unwrap();
        assert_eq!(inside, std::fs::canonicalize(root.join("project")).unwrap());
        for refused in [
            p(&outside),
            p(&root.join("escape")),
            p(&root.join("project/../../outside")),
            "/etc".into(),
            format!("{}/../../../../etc", p(&root)),
        ] {
            assert_eq!(
                code(roots.resolve_dir("w", &refused).await),
                Err(Code::PermissionDenied),
                "{refused}"
            );
        }
        // Outside the roots and missing: PERMISSION_DENIED, not "does not exist".
        assert_eq!(
            code(roots.resolve_dir("w", "/no/such/dir").await),
            Err(Code::PermissionDenied)
        );
        for invalid in [
            String::new(),
            "relative".into(),
            p(&root.join("missing")),
            p(&root.join("file")),
            format!("{}\0x", p(&root)),
        ] {
            assert_eq!(
                code(roots.resolve_dir("w", &invalid).await),
                Err(Code::InvalidArgument),
                "{invalid:?}"
            );
        }
    }

    #[test]
    fn roots_must_exist() {
        assert!(AllowedRoots::new(&["/no/such/root".into()]).is_err());
        assert!(AllowedRoots::new(&["relative".into()]).is_err());
        assert!(AllowedRoots::new(&[]).is_err());
        assert!(
            AllowedRoots::new(&["/".into()])
                .unwrap()
                .contains(Path::new("/etc"))
        );
    }

    #[test]
    fn command_policies() {
        let empty = BTreeMap::new();
        let mut env = BTreeMap::new();
        env.insert("LD_PRELOAD".to_string(), "/tmp/x.so".to_string());
        let tail = vec![
            "tail".to_string(),
            "-f".to_string(),
            "/var/log/syslog".to_string(),
        ];

        let any = CommandPolicy::any("/bin/sh".into());
        assert!(any.check(&tail, &env).is_ok());

        let shell = CommandPolicy::new(TerminalCommands::Shell, &[], "/bin/sh".into());
        assert!(shell.check(&[], &env).is_ok());
        let refusal = shell.check(&tail, &empty).unwrap_err();
        assert_eq!(refusal.code(), Code::PermissionDenied);
        assert!(refusal.to_string().contains("--terminal-commands shell"));

        let list = CommandPolicy::new(
            TerminalCommands::List,
            &["tail".to_string(), "/bin/sh".to_string()],
            "/bin/sh".into(),
        );
        assert!(list.check(&tail, &empty).is_ok());
        assert!(list.check(&[], &empty).is_ok(), "the shell is listed");
        let refusal = list.check(&["vim".to_string()], &empty).unwrap_err();
        assert!(refusal.to_string().contains("tail, /bin/sh"), "{refusal}");
        let refusal = list.check(&tail, &env).unwrap_err();
        assert!(refusal.to_string().contains("LD_PRELOAD"), "{refusal}");
        let unlisted_shell =
            CommandPolicy::new(TerminalCommands::List, &["tail".into()], "/bin/sh".into());
        assert!(unlisted_shell.check(&[], &empty).is_err());
    }
}
