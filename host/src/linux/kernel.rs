//! The kernel file: an arm64 `Image` or a gzip'd one, checked whole (magic, EFI stub
//! length) before any boot, with the size its header asks for and the VA size its
//! config next to it was built with.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

/// The arm64 Image header's magic, at offset 56.
pub(crate) const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Checks that `bytes` are an arm64 kernel QEMU can boot: an `Image` (magic "ARM\x64"
/// at offset 56), or a gzip stream that unpacks, whole, to one (Debian's `vmlinuz`;
/// QEMU unpacks it itself, so a truncated one would only show as a kernel that never
/// comes up).
///
/// # Errors
/// One line naming what the file is instead and what to do.
pub fn check_kernel_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    unpacked_image(bytes).map(|_| ())
}

/// The arm64 Image in `bytes`: `None` when `bytes` is one already, else the image a
/// gzip stream unpacks to ([`check_kernel_bytes`] says what is wrong otherwise).
fn unpacked_image(bytes: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut image = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut image).map_err(|e| {
            anyhow::anyhow!("is a gzip stream that does not unpack ({e}): truncated or corrupt; fetch or copy it again")
        })?;
        if image.get(56..60) != Some(IMAGE_MAGIC) {
            bail!("is gzip'd but does not unpack to an arm64 kernel Image (no ARM\\x64 magic at offset 56)");
        }
        return Ok(Some(image));
    }
    match bytes.get(56..60) {
        Some(m) if m == IMAGE_MAGIC => check_efi_stub_whole(bytes).map(|()| None),
        _ if bytes.starts_with(b"\x7fELF") => {
            bail!("is an ELF file (vmlinux?), not an Image: give arch/arm64/boot/Image (or Image.gz)")
        }
        _ if bytes.len() < 64 => bail!("is {} bytes: too short for an arm64 kernel Image header", bytes.len()),
        _ => bail!("is not an arm64 kernel Image (no ARM\\x64 magic at offset 56, not gzip'd)"),
    }
}

/// An Image built with the EFI stub (every distribution kernel) starts with "MZ" and
/// carries a PE header whose section table says how long the file is: a shorter file
/// was truncated. An Image without the stub has nothing to compare against.
fn check_efi_stub_whole(bytes: &[u8]) -> anyhow::Result<()> {
    if !bytes.starts_with(b"MZ") {
        return Ok(());
    }
    let pe = goblin::pe::PE::parse(bytes)
        .map_err(|e| anyhow::anyhow!("has a PE (EFI stub) header that does not parse ({e}): truncated or corrupt"))?;
    let end =
        pe.sections.iter().map(|s| u64::from(s.pointer_to_raw_data) + u64::from(s.size_of_raw_data)).max().unwrap_or(0);
    if (bytes.len() as u64) < end {
        bail!("is {} bytes but its EFI stub's sections end at {end}: truncated; fetch or copy it again", bytes.len());
    }
    Ok(())
}

/// A kernel ready for QEMU's loader: the raw Image (unpacked if it was gzip'd) and the
/// size the boot protocol says it needs (`image_size` in the header, bss included).
pub struct KernelImage {
    /// The raw Image's bytes.
    pub bytes: Vec<u8>,
    /// The file, when it is the raw Image itself (QEMU's loader reads it in place;
    /// a gzip'd one is unpacked into the boot's temporary directory).
    pub raw_path: Option<PathBuf>,
    /// Bytes from the load address the kernel uses (at least the file).
    pub image_size: u64,
    /// The granule the header's flags name (12 when unstated): the tracer's until the
    /// kernel writes TCR_EL1.
    page_shift: u32,
}

impl KernelImage {
    /// The page shift the Image header states.
    pub fn page_shift(&self) -> u32 {
        self.page_shift
    }
}

/// Read and check `path` ([`check_kernel_bytes`]), unpacking a gzip'd one.
///
/// # Errors
/// Unreadable, or not a whole arm64 kernel (one line naming which).
pub fn load_kernel(path: &std::path::Path) -> anyhow::Result<KernelImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read kernel {}", path.display()))?;
    let (bytes, raw_path) =
        match unpacked_image(&bytes).map_err(|e| anyhow::anyhow!("kernel {} {e}", path.display()))? {
            Some(image) => (image, None),
            None => (bytes, Some(std::fs::canonicalize(path)?)),
        };
    // Header (Documentation/arch/arm64/booting.rst): text_offset at 8, image_size at 16.
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    if word(8) != 0 {
        bail!(
            "kernel {} has text_offset {:#x}: ptcheck loads kernels at 2 MiB boundaries (text_offset 0, Linux 5.10+)",
            path.display(),
            word(8)
        );
    }
    let image_size = word(16).max(bytes.len() as u64);
    // flags, bits [2:1]: the kernel's page size (1: 4K, 2: 16K, 3: 64K; 0: unstated).
    let page_shift = match (word(24) >> 1) & 3 {
        2 => 14,
        3 => 16,
        _ => 12,
    };
    Ok(KernelImage { bytes, raw_path, image_size, page_shift })
}

/// `CONFIG_ARM64_VA_BITS` from the kernel's config, if one sits next to it (`config`,
/// `config-*` as Debian and ptcheck's cache keep it, or `.config` of the build tree the
/// Image is in).
pub fn config_va_bits(kernel: &std::path::Path) -> Option<u32> {
    let dir = kernel.parent()?;
    let mut candidates = vec![dir.join("config"), dir.join("../../../.config")];
    if let Ok(rd) = std::fs::read_dir(dir) {
        candidates.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("config-"))),
        );
    }
    candidates.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("CONFIG_ARM64_VA_BITS=").and_then(|v| v.trim().parse().ok()))
    })
}
