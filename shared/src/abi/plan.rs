//! A plan: which regime to build, where tables may come from, what to map.

use bytemuck::{Pod, Zeroable};

use crate::config::{KernelConfig, TranslationConfig};

/// "PTCKPLAN" little-endian.
pub const PLAN_MAGIC: u64 = u64::from_le_bytes(*b"PTCKPLAN");
/// Table pool ranges per plan.
pub const MAX_POOL_RANGES: usize = 16;
/// Map operations per plan (memblock on a big server has hundreds of regions).
pub const MAX_OPS: usize = 4096;
/// VAs the guest probes with the MMU per plan.
pub const MAX_PROBES: usize = 2048;

/// A physical range the builder may take table pages from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PoolRange {
    /// Page-aligned base.
    pub base: u64,
    /// Size in bytes, a multiple of the page size.
    pub size: u64,
}

/// `Plan::builder` values: which builder runs a plan (the registry in
/// `ptcheck_guest::registry` names them).
pub mod builder_id {
    /// The Linux-policy builder after the seed's change.
    pub const LINUX: u32 = 0;
    /// The kernel's path before it (Linux 6.9).
    pub const LINUX_6_9: u32 = 1;
    /// Google's aarch64-paging crate (0.12).
    pub const AARCH64_PAGING: u32 = 2;
}

/// The kernel's `create_pgd_mapping` flags.
pub struct MapFlags;

impl MapFlags {
    /// Never use block mappings (the kernel's NO_BLOCK_MAPPINGS).
    pub const NO_BLOCK_MAPPINGS: u64 = 1 << 0;
    /// Never set the contiguous bit (NO_CONT_MAPPINGS).
    pub const NO_CONT_MAPPINGS: u64 = 1 << 1;
    /// New tables get PXNTable (NO_EXEC_MAPPINGS).
    pub const NO_EXEC_MAPPINGS: u64 = 1 << 2;
    /// Every defined flag.
    pub const ALL: u64 = Self::NO_BLOCK_MAPPINGS | Self::NO_CONT_MAPPINGS | Self::NO_EXEC_MAPPINGS;
}

/// One `create_pgd_mapping(va, pa, size, prot, flags)` call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MapOp {
    /// Kernel (TTBR1) virtual address.
    pub va: u64,
    /// Physical address.
    pub pa: u64,
    /// Bytes to map.
    pub size: u64,
    /// Leaf attribute bits ([`crate::Prot`]).
    pub prot: u64,
    /// [`MapFlags`].
    pub flags: u64,
}

/// Everything the builder needs for one run.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Plan {
    /// [`PLAN_MAGIC`].
    pub magic: u64,
    /// [`super::ABI_VERSION`].
    pub version: u32,
    /// [`KernelConfig`] discriminant.
    pub kernel_config: u32,
    /// Effective VA bits.
    pub va_bits: u32,
    /// Used entries of `pool`.
    pub n_pool: u32,
    /// Used entries of `ops`.
    pub n_ops: u32,
    /// Used entries of `probes`.
    pub n_probes: u32,
    /// Which builder variant runs: 0 the clean builder, else a bug-catalogue variant
    /// (`ptcheck_guest::mutation`), honoured only by builds with the catalogue.
    pub mutation: u32,
    /// Which builder runs the plan (`ptcheck_guest::registry`): 0 is `linux`.
    pub builder: u32,
    /// Caller's identifier, echoed in the result (persistent mode matches on it).
    pub plan_id: u64,
    /// Table pool.
    pub pool: [PoolRange; MAX_POOL_RANGES],
    /// Map operations, applied in order.
    pub ops: [MapOp; MAX_OPS],
    /// VAs to translate with the MMU after the build (hardware backends only).
    pub probes: [u64; MAX_PROBES],
}

impl Plan {
    /// An empty plan for `cfg`.
    pub fn new(cfg: TranslationConfig) -> Plan {
        let mut p = Plan::zeroed();
        p.magic = PLAN_MAGIC;
        p.version = super::ABI_VERSION;
        p.kernel_config = cfg.kernel as u32;
        p.va_bits = cfg.va_bits;
        p
    }

    /// The regime, or `None` when the header is not a valid plan of this version.
    pub fn config(&self) -> Option<TranslationConfig> {
        if self.magic != PLAN_MAGIC || self.version != super::ABI_VERSION {
            return None;
        }
        TranslationConfig::new(KernelConfig::from_u32(self.kernel_config)?, self.va_bits).ok()
    }

    /// Whether magic, version, config and counts are all in range.
    pub fn is_well_formed(&self) -> bool {
        self.config().is_some()
            && self.n_pool as usize <= MAX_POOL_RANGES
            && self.n_ops as usize <= MAX_OPS
            && self.n_probes as usize <= MAX_PROBES
    }

    /// The used pool ranges (empty if the count is corrupt).
    pub fn pool(&self) -> &[PoolRange] {
        self.pool.get(..self.n_pool as usize).unwrap_or(&[])
    }

    /// The used operations (empty if the count is corrupt).
    pub fn ops(&self) -> &[MapOp] {
        self.ops.get(..self.n_ops as usize).unwrap_or(&[])
    }

    /// The used probe VAs (empty if the count is corrupt).
    pub fn probes(&self) -> &[u64] {
        self.probes.get(..self.n_probes as usize).unwrap_or(&[])
    }

    /// Append a pool range; `false` when full.
    pub fn push_pool(&mut self, base: u64, size: u64) -> bool {
        let n = self.n_pool as usize;
        if n >= MAX_POOL_RANGES {
            return false;
        }
        self.pool[n] = PoolRange { base, size };
        self.n_pool += 1;
        true
    }

    /// Append an operation; `false` when full.
    pub fn push_op(&mut self, op: MapOp) -> bool {
        let n = self.n_ops as usize;
        if n >= MAX_OPS {
            return false;
        }
        self.ops[n] = op;
        self.n_ops += 1;
        true
    }

    /// Append a probe VA; `false` when full.
    pub fn push_probe(&mut self, va: u64) -> bool {
        let n = self.n_probes as usize;
        if n >= MAX_PROBES {
            return false;
        }
        self.probes[n] = va;
        self.n_probes += 1;
        true
    }
}
