//! A tree's mirror beside its build directories, so that every copy of a tree compiles
//! with the same relative paths and ccache hits across copies.
//!
//! kbuild compiles an out-of-tree build (`O=`) with the source's absolute path in
//! every command line (`-I/path/to/tree/include`, the file itself). ccache's
//! `base_dir` rewrites absolute paths below it into paths relative to the compiler's
//! working directory, the build directory: for `<root>/<id>/<regime>` building a tree
//! mirrored at `<root>/<id>/src`, every path becomes `../src/…`, the same for every
//! tree. So a second copy of a tree (or a planted one, or yours after `git worktree
//! add`) compiles from the cache, and only the files that differ are compiled.
//!
//! The mirror is made of hard links (a copy where the tree is on another file system),
//! so making it costs a walk, not a copy, and an edit made in place is seen at once.
//! Every run re-syncs it: a file replaced (an editor's rename, `git checkout`), added
//! or removed in the tree is relinked, linked or removed in the mirror. Nothing is
//! ever written into the tree itself.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use walkdir::WalkDir;

/// What a sync changed.
#[derive(Default, Debug)]
pub struct Synced {
    /// Files linked or copied (new or replaced in the tree).
    pub linked: u64,
    /// Files removed from the mirror (gone from the tree).
    pub removed: u64,
    /// Files in the tree.
    pub files: u64,
}

/// Whether `rel` (relative to the tree) stays out of the mirror: version control and
/// editor state, which no build reads.
fn skipped(rel: &Path) -> bool {
    rel.components().next().is_some_and(|c| matches!(c.as_os_str().to_str(), Some(".git" | ".hg" | ".svn" | ".pc")))
}

/// Whether `m` (in the mirror) already stands for `t` (in the tree): the same inode,
/// or, for a copy, the same size and modification time.
fn same(t: &std::fs::Metadata, m: &std::fs::Metadata) -> bool {
    (t.dev() == m.dev() && t.ino() == m.ino())
        || (t.file_type() == m.file_type()
            && t.len() == m.len()
            && t.mtime() == m.mtime()
            && t.mtime_nsec() == m.mtime_nsec())
}

/// Put `from` (a file of the tree) at `to` (in the mirror): a hard link, else a copy
/// keeping the modification time (make decides from it).
fn place(from: &Path, meta: &std::fs::Metadata, to: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| format!("mirror: cannot place {} at {}: {e}", from.display(), to.display());
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(err)?;
        return std::os::unix::fs::symlink(target, to).map_err(err);
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(err)?;
    let modified = meta.modified().map_err(err)?;
    std::fs::File::options().write(true).open(to).and_then(|f| f.set_modified(modified)).map_err(err)
}

/// Make `mirror` hold what `tree` holds now (see the module's comment).
///
/// # Errors
/// A file could not be read, linked, copied or removed: one line naming it.
pub fn sync(tree: &Path, mirror: &Path) -> Result<Synced, String> {
    let mut out = Synced::default();
    std::fs::create_dir_all(mirror).map_err(|e| format!("mirror: cannot create {}: {e}", mirror.display()))?;
    let walk = |root: &Path| WalkDir::new(root).min_depth(1).follow_links(false).into_iter();
    let mut it = walk(tree);
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| format!("mirror: cannot read {}: {e}", tree.display()))?;
        let rel = entry.path().strip_prefix(tree).expect("walkdir stays under its root");
        if skipped(rel) {
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let to = mirror.join(rel);
        let meta = entry.path().symlink_metadata().map_err(|e| format!("mirror: {}: {e}", entry.path().display()))?;
        if meta.is_dir() {
            if !to.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_file(&to);
                std::fs::create_dir_all(&to).map_err(|e| format!("mirror: cannot create {}: {e}", to.display()))?;
            }
            continue;
        }
        out.files += 1;
        match to.symlink_metadata() {
            Ok(m) if same(&meta, &m) => continue,
            // A symlink is remade, so never the same inode: the same target is enough.
            Ok(m)
                if m.file_type().is_symlink()
                    && meta.file_type().is_symlink()
                    && std::fs::read_link(&to).ok() == std::fs::read_link(entry.path()).ok() =>
            {
                continue
            }
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&to),
            Ok(_) => std::fs::remove_file(&to),
            Err(_) => Ok(()),
        }
        .map_err(|e| format!("mirror: cannot replace {}: {e}", to.display()))?;
        place(entry.path(), &meta, &to)?;
        out.linked += 1;
    }
    // What the tree no longer has.
    let mut it = walk(mirror);
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| format!("mirror: cannot read {}: {e}", mirror.display()))?;
        let rel = entry.path().strip_prefix(mirror).expect("walkdir stays under its root");
        if tree.join(rel).symlink_metadata().is_ok() && !skipped(rel) {
            continue;
        }
        let gone = if entry.file_type().is_dir() {
            it.skip_current_dir();
            std::fs::remove_dir_all(entry.path())
        } else {
            out.removed += 1;
            std::fs::remove_file(entry.path())
        };
        gone.map_err(|e| format!("mirror: cannot remove {}: {e}", entry.path().display()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_follows_edits_replacements_additions_and_removals() {
        let base = std::env::temp_dir().join(format!("ptcheck-mirror-{}", std::process::id()));
        let (tree, mirror) = (base.join("tree"), base.join("mirror"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(tree.join("arch/arm64/mm")).unwrap();
        std::fs::create_dir_all(tree.join(".git")).unwrap();
        std::fs::write(tree.join("arch/arm64/mm/mmu.c"), "one").unwrap();
        std::fs::write(tree.join("Makefile"), "all:").unwrap();
        std::fs::write(tree.join(".git/HEAD"), "ref").unwrap();
        std::os::unix::fs::symlink("mm/mmu.c", tree.join("arch/arm64/link")).unwrap();
        let first = sync(&tree, &mirror).unwrap();
        assert_eq!((first.files, first.linked, first.removed), (3, 3, 0));
        assert_eq!(std::fs::read_link(mirror.join("arch/arm64/link")).unwrap(), Path::new("mm/mmu.c"));
        assert!(!mirror.join(".git").exists(), "version control stays out");
        // An edit in place is seen through the link; nothing to relink.
        std::fs::write(tree.join("arch/arm64/mm/mmu.c"), "two").unwrap();
        assert_eq!(sync(&tree, &mirror).unwrap().linked, 0);
        assert_eq!(std::fs::read_to_string(mirror.join("arch/arm64/mm/mmu.c")).unwrap(), "two");
        // A replaced file (new inode), a new one and a removed one.
        std::fs::remove_file(tree.join("arch/arm64/mm/mmu.c")).unwrap();
        std::fs::write(tree.join("arch/arm64/mm/mmu.c"), "three").unwrap();
        std::fs::write(tree.join("arch/arm64/mm/new.c"), "new").unwrap();
        std::fs::remove_file(tree.join("Makefile")).unwrap();
        let s = sync(&tree, &mirror).unwrap();
        assert_eq!((s.files, s.linked, s.removed), (3, 2, 1));
        assert_eq!(std::fs::read_to_string(mirror.join("arch/arm64/mm/mmu.c")).unwrap(), "three");
        assert!(mirror.join("arch/arm64/mm/new.c").is_file() && !mirror.join("Makefile").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
