//! The allowed-roots rule (DESIGN.md §7): work directories and repositories must
//! lie under one of the server's configured roots (`--allowed-root`).
//!
//! Pure: the caller canonicalizes first (symlinks and `..` resolved), so a path
//! cannot escape a root through a link; this module only compares components.

use std::path::{Path, PathBuf};

/// True when `path` is one of `roots` or lies below one. Comparison is by whole
/// components (`/srv/app` is not under `/srv/ap`). Both sides must be canonical.
pub fn under_any_root(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| path.starts_with(root))
}

/// The roots as one line for messages: `/srv, /home/me`.
pub fn describe_roots(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .map(|root| root.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_root_are_allowed() {
        let roots = vec![PathBuf::from("/srv/app"), PathBuf::from("/home/me")];
        assert!(under_any_root(Path::new("/srv/app"), &roots));
        assert!(under_any_root(Path::new("/srv/app/src"), &roots));
        assert!(under_any_root(Path::new("/home/me/x/y"), &roots));
        assert!(!under_any_root(Path::new("/srv/apple"), &roots));
        assert!(!under_any_root(Path::new("/srv"), &roots));
        assert!(!under_any_root(Path::new("/etc"), &roots));
    }

    #[test]
    fn the_filesystem_root_allows_everything() {
        let roots = vec![PathBuf::from("/")];
        assert!(under_any_root(Path::new("/etc/passwd"), &roots));
        assert!(under_any_root(Path::new("/"), &roots));
    }

    #[test]
    fn no_roots_allow_nothing() {
        assert!(!under_any_root(Path::new("/tmp"), &[]));
    }

    #[test]
    fn roots_are_listed_for_messages() {
        let roots = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        assert_eq!(describe_roots(&roots), "/a, /b");
    }
}
