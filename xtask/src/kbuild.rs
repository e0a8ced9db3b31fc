//! Small kernels built from source, one per regime: `cargo xtask linux --build
//! <regimes|all> [--source DIR | --debian 6.1|6.12]`.
//!
//! The source is Debian's `linux-source-<version>` (unpacked once under
//! target/linux/src) or the user's own tree, which is never written to: every build is
//! out of tree (`O=`) under target/linux/build/<source id>/<regime>, keyed by the
//! source id, the regime and the config fragment (a changed fragment is a new
//! directory). The config is tinyconfig plus a fragment: what the boot and the checks
//! need (console, initramfs, ELF, /proc, kallsyms with data symbols, PAN) and the
//! regime's page size, VA size and PA size. Every option is checked after
//! `olddefconfig`; one Kconfig refused is named. Compiles go through ccache
//! (target/linux/ccache), so a config seen before takes seconds.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{ensure, sh, target_dir, Need};

/// The ten regimes a kernel can be built for: (name, page-size option, VA-size option,
/// PA-size option).
pub const REGIMES: &[(&str, &str, &str, &str)] = &[
    ("4k-39", "ARM64_4K_PAGES", "ARM64_VA_BITS_39", "ARM64_PA_BITS_48"),
    ("4k-48", "ARM64_4K_PAGES", "ARM64_VA_BITS_48", "ARM64_PA_BITS_48"),
    ("4k-52", "ARM64_4K_PAGES", "ARM64_VA_BITS_52", "ARM64_PA_BITS_52"),
    ("16k-36", "ARM64_16K_PAGES", "ARM64_VA_BITS_36", "ARM64_PA_BITS_48"),
    ("16k-47", "ARM64_16K_PAGES", "ARM64_VA_BITS_47", "ARM64_PA_BITS_48"),
    ("16k-48", "ARM64_16K_PAGES", "ARM64_VA_BITS_48", "ARM64_PA_BITS_48"),
    ("16k-52", "ARM64_16K_PAGES", "ARM64_VA_BITS_52", "ARM64_PA_BITS_52"),
    ("64k-42", "ARM64_64K_PAGES", "ARM64_VA_BITS_42", "ARM64_PA_BITS_48"),
    ("64k-48", "ARM64_64K_PAGES", "ARM64_VA_BITS_48", "ARM64_PA_BITS_48"),
    ("64k-52", "ARM64_64K_PAGES", "ARM64_VA_BITS_52", "ARM64_PA_BITS_52"),
];

/// What every small kernel needs on top of tinyconfig: a console on the PL011, an
/// initramfs whose /init is a static ELF, /proc (kallsyms with data symbols, iomem,
/// osrelease), devtmpfs, futexes for Rust's std, PAN (52-bit VAs need it).
const COMMON: &[&str] = &[
    "EXPERT",
    "PRINTK",
    "PRINTK_TIME",
    "TTY",
    "SERIAL_AMBA_PL011",
    "SERIAL_AMBA_PL011_CONSOLE",
    "BLK_DEV_INITRD",
    "BINFMT_ELF",
    "BINFMT_SCRIPT",
    "PROC_FS",
    "PROC_SYSCTL",
    "SYSFS",
    "DEVTMPFS",
    "FUTEX",
    "KALLSYMS",
    "KALLSYMS_ALL",
    "ARM64_PAN",
];

/// A source tree to build from.
pub struct Source {
    /// The tree (only read).
    pub dir: PathBuf,
    /// Names its builds: `debian-<version>` or `tree-<hash of the path>`.
    pub id: String,
}

/// Where every build lives: target/linux/build/<source id>/{src,<regime>-<hash>}.
/// (Canonical: kbuild resolves the tree's path, and ccache's base_dir must match it.)
fn build_root() -> PathBuf {
    let root = target_dir().join("linux").join("build");
    let _ = std::fs::create_dir_all(&root);
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// A source ready to build: its mirror, synced now (`mirror.rs`: the same relative
/// paths for every copy of a tree, so ccache hits across copies).
pub struct Mirrored {
    /// The tree as the user named it (for messages).
    pub tree: PathBuf,
    /// Its mirror, what make reads: build_root()/<id>/src.
    pub dir: PathBuf,
    /// As `Source::id`.
    pub id: String,
}

/// Sync `source`'s mirror.
///
/// # Errors
/// The mirror could not be made (one line naming the file).
pub fn mirror(source: &Source) -> Result<Mirrored, String> {
    let started = std::time::Instant::now();
    let dir = build_root().join(&source.id).join("src");
    let s = crate::mirror::sync(&source.dir, &dir)?;
    println!(
        "mirrored {} ({} files; {} linked, {} removed) in {:.1}s: {}",
        source.dir.display(),
        s.files,
        s.linked,
        s.removed,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(Mirrored { tree: source.dir.clone(), dir, id: source.id.clone() })
}

/// The tools a kernel build needs, installed where we can.
pub fn ensure_toolchain() -> Result<(), String> {
    ensure(&[
        Need { what: "aarch64-linux-gnu-gcc", present: "bin:aarch64-linux-gnu-gcc", package: "gcc-aarch64-linux-gnu" },
        Need { what: "make", present: "bin:make", package: "make" },
        Need { what: "flex", present: "bin:flex", package: "flex" },
        Need { what: "bison", present: "bin:bison", package: "bison" },
        Need { what: "bc", present: "bin:bc", package: "bc" },
        Need { what: "ccache", present: "bin:ccache", package: "ccache" },
        Need { what: "libelf headers", present: "/usr/include/libelf.h", package: "libelf-dev" },
        Need { what: "OpenSSL headers", present: "/usr/include/openssl/ssl.h", package: "libssl-dev" },
        Need { what: "xz", present: "bin:xz", package: "xz-utils" },
    ])
}

/// Debian's source for `version` ("6.1": bookworm, "6.12": trixie).
pub fn debian_source(version: &str) -> Result<Source, String> {
    let suite = match version {
        "6.1" => "bookworm",
        "6.12" => "trixie",
        v => return Err(format!("--debian {v}: ptcheck builds Debian's 6.1 (bookworm) and 6.12 (trixie) sources")),
    };
    let (dir, id) = crate::debian::fetch_source(&target_dir().join("linux").join("src").join(suite), suite, version)?;
    Ok(Source { dir, id })
}

/// The user's tree at `dir`.
pub fn user_source(dir: &Path) -> Result<Source, String> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| format!("--source {}: {e}: give the top of a Linux source tree", dir.display()))?;
    if !dir.is_dir() {
        return Err(format!("--source {}: not a directory; give the top of a Linux source tree", dir.display()));
    }
    if !["Makefile", "Kconfig", "scripts/kconfig/merge_config.sh"].iter().all(|f| dir.join(f).is_file()) {
        return Err(format!(
            "--source {}: not a Linux source tree (no top-level Makefile, Kconfig and scripts/kconfig): give the top \
             of a kernel tree",
            dir.display()
        ));
    }
    if !dir.join("arch/arm64/mm/mmu.c").is_file() {
        let mut arches: Vec<String> = std::fs::read_dir(dir.join("arch"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        arches.sort();
        if arches.len() > 4 {
            let more = arches.len() - 3;
            arches.truncate(3);
            arches.push(format!("{more} more"));
        }
        return Err(format!(
            "--source {}: a Linux tree without arm64 (no arch/arm64/mm/mmu.c; it has {}): ptcheck builds arm64 \
             kernels; give a full tree",
            dir.display(),
            if arches.is_empty() { "no arch/ at all".to_string() } else { format!("arch/ {}", arches.join(", ")) }
        ));
    }
    // Out-of-tree builds need a clean tree; say so before make does, in one line.
    if dir.join(".config").exists() || dir.join("include/config").exists() {
        return Err(format!(
            "--source {}: the tree has been configured in place (.config): ptcheck builds out of tree (O=) and never \
             writes to your tree; run `make mrproper` there, or give a clean copy",
            dir.display()
        ));
    }
    let mut h = DefaultHasher::new();
    dir.hash(&mut h);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Source { dir, id: format!("tree-{name}-{:08x}", h.finish() as u32) })
}

/// The regimes `sel` names ("all", or a comma-separated list).
pub fn regimes(sel: &str) -> Result<Vec<&'static str>, String> {
    let names: Vec<&str> = REGIMES.iter().map(|r| r.0).collect();
    if sel == "all" {
        return Ok(names);
    }
    let mut out: Vec<&'static str> = Vec::new();
    for s in sel.split(',').map(str::trim) {
        if s.is_empty() {
            return Err(format!("--build '{sel}': an empty regime; use all or some of {}", names.join(",")));
        }
        let r = REGIMES
            .iter()
            .find(|r| r.0 == s)
            .map(|r| r.0)
            .ok_or_else(|| format!("--build {s}: not a regime; use all or some of {}", names.join(",")))?;
        // Each regime once, in the order first named.
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

/// The fragment for `regime`: every option and the value it must end with.
fn fragment(regime: &str) -> Vec<(String, bool)> {
    let &(_, page, va, pa) = REGIMES.iter().find(|r| r.0 == regime).expect("a known regime");
    let mut out: Vec<(String, bool)> = COMMON.iter().map(|o| (o.to_string(), true)).collect();
    for (group, chosen) in [
        (&["ARM64_4K_PAGES", "ARM64_16K_PAGES", "ARM64_64K_PAGES"][..], page),
        (
            &[
                "ARM64_VA_BITS_36",
                "ARM64_VA_BITS_39",
                "ARM64_VA_BITS_42",
                "ARM64_VA_BITS_47",
                "ARM64_VA_BITS_48",
                "ARM64_VA_BITS_52",
            ][..],
            va,
        ),
        (&["ARM64_PA_BITS_48", "ARM64_PA_BITS_52"][..], pa),
    ] {
        for o in group {
            out.push((o.to_string(), *o == chosen));
        }
    }
    out
}

/// Whether compiles go through ccache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cache {
    /// Through ccache (target/linux/ccache), paths relative to the build root.
    On,
    /// ccache disabled: what a cold build costs (`bench --patch-loop` compares).
    Off,
}

/// What a build left: the Image, or why there is none.
pub enum Built {
    /// arch/arm64/boot/Image of the build directory.
    Image(PathBuf),
    /// Kconfig would not take the regime (this version does not offer it).
    NotOffered(String),
    /// The compile or link failed: the first error, as `file:line: error: …` with the
    /// file relative to the tree, and where the whole log is.
    Failed(String),
}

/// The first error in a build's log, the file relative to the tree (`prefixes` are
/// the paths the compiler was given the tree by: the mirror, relative or absolute).
fn first_error(log: &str, prefixes: &[String]) -> Option<String> {
    let strip = |l: &str| {
        let l = l.trim();
        prefixes.iter().find_map(|p| l.strip_prefix(p.as_str())).unwrap_or(l).to_string()
    };
    // The compiler's `file:line:col: error: what`, else the linker's or make's own.
    log.lines()
        .find(|l| l.contains(": error: ") || l.contains(": fatal error: "))
        .or_else(|| log.lines().find(|l| l.contains("undefined reference to") || l.contains("multiple definition of")))
        .or_else(|| log.lines().find(|l| l.starts_with("make") && l.contains("Error")))
        .map(strip)
}

/// Build `source` for `regime`, reusing the build directory (make is incremental;
/// ccache makes a config seen before quick).
///
/// # Errors
/// A tool or make failed.
pub fn build(source: &Mirrored, regime: &str, cache: Cache) -> Result<Built, String> {
    let frag = fragment(regime);
    let text: String = frag
        .iter()
        .map(|(o, on)| if *on { format!("CONFIG_{o}=y\n") } else { format!("# CONFIG_{o} is not set\n") })
        .collect();
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    let root = build_root();
    let out = root.join(&source.id).join(format!("{regime}-{:08x}", h.finish() as u32));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let image = out.join("arch/arm64/boot/Image");
    let frag_path = out.join("ptcheck.config");
    std::fs::write(&frag_path, &text).map_err(|e| format!("cannot write {}: {e}", frag_path.display()))?;
    let ccache = target_dir().join("linux").join("ccache");
    let make = |targets: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C")
            .arg(&source.dir)
            .arg(format!("O={}", out.display()))
            .args(["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "CC=ccache aarch64-linux-gnu-gcc", "-s"])
            .arg(format!("-j{}", std::thread::available_parallelism().map_or(2, |n| n.get())))
            .args(targets)
            .env("CCACHE_DIR", &ccache)
            // Paths below the build root become relative to the build directory
            // (`../src/…`, the same for every tree: mirror.rs); the working directory
            // is not hashed (there is no debug info to point at it).
            .env("CCACHE_BASEDIR", &root)
            .env("CCACHE_NOHASHDIR", "1")
            .env("KBUILD_BUILD_TIMESTAMP", "2026-01-01 00:00:00 UTC")
            .env("KBUILD_BUILD_USER", "ptcheck")
            .env("KBUILD_BUILD_HOST", "ptcheck");
        match cache {
            Cache::Off => c.env("CCACHE_DISABLE", "1"),
            Cache::On => c.env_remove("CCACHE_DISABLE"),
        };
        c
    };
    if !out.join(".config").is_file() {
        sh(&mut make(&["tinyconfig"]))?;
        let merge = source.dir.join("scripts/kconfig/merge_config.sh");
        sh(Command::new("sh")
            .arg(&merge)
            .args(["-m", "-O"])
            .arg(&out)
            .arg(out.join(".config"))
            .arg(&frag_path)
            .current_dir(&source.dir)
            .env("ARCH", "arm64"))?;
        sh(&mut make(&["olddefconfig"]))?;
    }
    let config =
        std::fs::read_to_string(out.join(".config")).map_err(|e| format!("no .config in {}: {e}", out.display()))?;
    let refused: Vec<String> = frag
        .iter()
        .filter(|(o, on)| config.lines().any(|l| l == format!("CONFIG_{o}=y")) != *on)
        .map(|(o, on)| format!("CONFIG_{o}={}", if *on { "y" } else { "n" }))
        .collect();
    if !refused.is_empty() {
        // Start afresh next time (the fragment may be fixed, or the tree changed).
        let _ = std::fs::remove_file(out.join(".config"));
        let regime_opts = ["ARM64_4K", "ARM64_16K", "ARM64_64K", "ARM64_VA_BITS", "ARM64_PA_BITS"];
        // Name what was asked for and not given first; what Kconfig chose instead after.
        let (asked, instead): (Vec<&String>, Vec<&String>) = refused.iter().partition(|r| r.ends_with("=y"));
        let what = format!(
            "{}{}",
            asked.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            if instead.is_empty() {
                String::new()
            } else {
                let chose: Vec<String> = instead.iter().map(|r| r.replace("=n", "=y")).collect();
                format!(" (it chose {})", chose.join(", "))
            }
        );
        if refused.iter().all(|r| regime_opts.iter().any(|p| r.contains(p))) {
            return Ok(Built::NotOffered(format!("Kconfig refused {what}")));
        }
        return Err(format!("{regime}: Kconfig refused {what} (see {})", out.join(".config").display()));
    }
    let log_path = out.join("build.log");
    println!("building {regime} from {} (make Image; log: {})", source.id, log_path.display());
    let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let mut cmd = make(&["Image"]);
    cmd.stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
    let status = cmd.status().map_err(|e| format!("cannot run make: {e}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let prefixes = ["../src/".to_string(), format!("{}/", source.dir.display())];
        let first = first_error(&text, &prefixes).unwrap_or_else(|| format!("make failed ({status}), no error line"));
        return Ok(Built::Failed(format!("{first} (log: {})", log_path.display())));
    }
    if !image.is_file() {
        return Err(format!("{regime}: make left no {}", image.display()));
    }
    Ok(Built::Image(image))
}

/// Kernel plants: a tree derived from a clean one with one deliberate ordering bug, for
/// proving the tracer's checks (`--plant-tree NAME`). Each is (name, what it breaks,
/// the file, the text it expects there, what replaces it).
pub const TREE_PLANTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "no-clear-barrier",
        "init_clear_pgtable() without its dsb(ishst): ordered_link must fail",
        "arch/arm64/mm/mmu.c",
        "\tclear_page(table);\n\n\t/* Ensure the zeroing is observed by page table walks. */\n\tdsb(ishst);\n",
        "\tclear_page(table);\n",
    ),
    (
        "link-before-clear",
        "alloc_init_cont_pte() populates the PMD entry before clearing the new PTE table: zeroed_at_link must fail",
        "arch/arm64/mm/mmu.c",
        "\t\tinit_clear_pgtable(ptep);\n\t\tptep += pte_index(addr);\n\t\t__pmd_populate(pmdp, pte_phys, pmdval);\n",
        "\t\t__pmd_populate(pmdp, pte_phys, pmdval);\n\t\tinit_clear_pgtable(ptep);\n\t\tptep += pte_index(addr);\n",
    ),
    (
        "seed-v1",
        "the seed's first version (\"all compiles, but doesn't boot\"): alloc_init_pud()'s map branch takes \
         pud_set_fixmap(p4d_page_paddr(p4d)), which is NULL wherever the PUD is folded (at build time: 4k-39, 16k-36, \
         16k-47, 64k-*; at run time: 16k-52 without LPA2)",
        "arch/arm64/mm/mmu.c",
        "\t} else {\n\t\tBUG_ON(p4d_bad(p4d));\n\t\tpudp = pud_set_fixmap_offset(p4dp, addr);\n\t}\n",
        "\t} else {\n\t\tBUG_ON(p4d_bad(p4d));\n\t\tpudp = pud_set_fixmap(p4d_page_paddr(p4d));\n\t\tpudp += pud_index(addr);\n\t}\n",
    ),
    (
        "open-coded-fixmap-offset",
        "alloc_init_pud()'s map branch open-codes pud_set_fixmap_offset() (right where it builds), but with \
         p4d_to_folded_pud(), which only 4- and 5-level configurations define: NOT BUILT where the PUD is folded at \
         build time",
        "arch/arm64/mm/mmu.c",
        "\t} else {\n\t\tBUG_ON(p4d_bad(p4d));\n\t\tpudp = pud_set_fixmap_offset(p4dp, addr);\n\t}\n",
        "\t} else {\n\t\tBUG_ON(p4d_bad(p4d));\n\t\tpudp = pgtable_l4_enabled() ? pud_set_fixmap(pud_offset_phys(p4dp, addr))\n\t\t\t\t\t    : p4d_to_folded_pud(p4dp, addr);\n\t}\n",
    ),
    (
        "fixmap-no-flush",
        "__set_fixmap() clears a fixmap slot without flush_tlb_kernel_range(): tlbi (and bbm) must fail",
        "arch/arm64/mm/fixmap.c",
        "\t\t__pte_clear(&init_mm, addr, ptep);\n\t\tflush_tlb_kernel_range(addr, addr+PAGE_SIZE);\n",
        "\t\t__pte_clear(&init_mm, addr, ptep);\n",
    ),
];

/// `base` with the plant `name`, under target/linux/src/planted/ (hard links to the
/// clean tree, the planted file rewritten as a file of its own, so `base` is never
/// written).
///
/// # Errors
/// An unknown plant, or a tree whose mmu.c lacks the text it changes (not 6.10+).
pub fn planted_source(base: &Source, name: &str) -> Result<Source, String> {
    let names: Vec<&str> = TREE_PLANTS.iter().map(|p| p.0).collect();
    let &(_, breaks, file, from, to) =
        TREE_PLANTS.iter().find(|p| p.0 == name).ok_or(format!("--plant-tree {name}: one of {}", names.join(", ")))?;
    let id = format!("{}-plant-{name}", base.id);
    let dir = target_dir().join("linux").join("src").join("planted").join(&id);
    let planted = dir.join(file);
    if !dir.join(".ptcheck-planted").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.parent().expect("has a parent")).map_err(|e| e.to_string())?;
        sh(Command::new("cp").arg("-al").arg(&base.dir).arg(&dir))?;
        let text = std::fs::read_to_string(&planted).map_err(|e| format!("{}: {e}", planted.display()))?;
        if !text.contains(from) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "--plant-tree {name}: {}'s {file} does not have the code this plant changes (a 6.10+ tree after the \
                 seed's change)",
                base.id
            ));
        }
        // A new file, not a write through the hard link into the clean tree.
        std::fs::remove_file(&planted).map_err(|e| e.to_string())?;
        std::fs::write(&planted, text.replacen(from, to, 1)).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(".ptcheck-planted"), breaks).map_err(|e| e.to_string())?;
    }
    println!("planted tree {}: {breaks}", dir.display());
    Ok(Source { dir, id })
}

/// Remove every build directory of `source` (its mirror stays): the next build is as
/// a first one, cold unless ccache has it.
///
/// # Errors
/// A directory could not be removed.
pub fn forget_builds(source: &Mirrored) -> Result<(), String> {
    let dir = build_root().join(&source.id);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    for e in entries.flatten() {
        if e.file_name() != "src" {
            std::fs::remove_dir_all(e.path()).map_err(|err| format!("cannot remove {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regimes_are_named_once_and_bad_names_said() {
        assert_eq!(regimes("4k-48, 64k-52,4k-48").unwrap(), ["4k-48", "64k-52"]);
        assert_eq!(regimes("all").unwrap().len(), 10);
        assert!(regimes("").unwrap_err().contains("an empty regime"));
        assert!(regimes("4k-48,").unwrap_err().contains("an empty regime"));
        assert!(regimes("5k-48").unwrap_err().starts_with("--build 5k-48: not a regime"));
    }

    #[test]
    fn the_first_error_is_named_relative_to_the_tree() {
        let prefixes = ["../src/".to_string(), "/work/t/".to_string()];
        let log = "../src/arch/arm64/mm/mmu.c:12:5: warning: unused variable 'x'\n\
                   In file included from ../src/include/linux/build_bug.h:5,\n\
                   ../src/arch/arm64/mm/mmu.c:349:17: error: call to '__compiletime_assert_1' declared with attribute error: BUILD_BUG failed\n\
                   ../src/arch/arm64/mm/mmu.c:400:1: error: a second one\n\
                   make[4]: *** [../src/scripts/Makefile.build:229: arch/arm64/mm/mmu.o] Error 1\n";
        assert_eq!(
            first_error(log, &prefixes).as_deref(),
            Some(
                "arch/arm64/mm/mmu.c:349:17: error: call to '__compiletime_assert_1' declared with attribute error: \
                 BUILD_BUG failed"
            )
        );
        let link = "aarch64-linux-gnu-ld: arch/arm64/mm/mmu.o: in function `f':\n\
                    /work/t/arch/arm64/mm/mmu.c:10: undefined reference to `g'\n";
        assert_eq!(first_error(link, &prefixes).as_deref(), Some("arch/arm64/mm/mmu.c:10: undefined reference to `g'"));
        assert_eq!(
            first_error("make: *** [Makefile:224: __sub-make] Error 2\n", &prefixes).as_deref(),
            Some("make: *** [Makefile:224: __sub-make] Error 2")
        );
        assert_eq!(first_error("all fine\n", &prefixes), None);
    }
}
