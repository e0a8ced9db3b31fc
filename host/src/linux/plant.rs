//! Planted faults (test only): one entry of a booted kernel's tables corrupted before
//! the checks, so the check that owns that fault must fail.

use anyhow::Context as _;
use ptcheck_shared::Prot;

use super::check;
use super::inspection::Inspection;
use super::layout::Layout;
use crate::backend::guest_ram::GuestRam;

/// A fault planted in the kernel's tables (test only): proves a check is real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Plant {
    /// An empty entry of a reachable table becomes non-zero but invalid (zeroing).
    Zeroing,
    /// A linear-map page points one page off (translation).
    Translation,
    /// A read-only page of the kernel image becomes writable (image).
    Image,
    /// A read-only, never-executable leaf becomes writable and executable (image: W+X).
    Wx,
    /// A table under the linear map loses PXNTable (table_bits).
    TableBits,
    /// A linear-map page gains the contiguous bit (policy: a shape the model does not predict).
    Policy,
}

/// Plant `p` in the tables `i` walked (test only).
pub(crate) fn plant(i: &Inspection, layout: &Layout, ram: &GuestRam, p: Plant) -> anyhow::Result<()> {
    use crate::backend::PhysMemory as _;
    use ptcheck_shared::Descriptor;
    let (cfg, w) = (&i.cfg, &i.walk);
    let (lo, hi) = (check::page_offset(cfg), check::linear_end(cfg));
    let linear_page = || {
        w.runs
            .iter()
            .find(|r| r.level == ptcheck_shared::Level::LEAF && r.va >= lo && r.va < hi && !r.desc.is_contiguous())
    };
    let rewrite = |va: u64, level: ptcheck_shared::Level, f: &dyn Fn(u64) -> u64| -> anyhow::Result<()> {
        let pa = w.entry_pa(cfg, level, va).context("no table holds it")?;
        let desc = ram.read_u64(pa).context("unreadable entry")?;
        ram.write(pa, &f(desc))
    };
    let page = cfg.page_size();
    match p {
        Plant::Zeroing => {
            // The first empty entry of the last table reached.
            let t = w.tables.last().context("no table to plant in")?;
            let n = cfg.entries(t.level) as u64;
            let pa = (0..n).map(|i| t.pa + 8 * i).find(|&pa| ram.read_u64(pa) == Some(0)).context("no empty entry")?;
            ram.write(pa, &0xdead_0000u64)
        }
        Plant::Translation => {
            let r = linear_page().context("no linear-map page")?;
            rewrite(r.va, r.level, &|d| d ^ page)
        }
        Plant::Image => {
            // The first page of rodata (however the checks find it) becomes writable.
            let ctx = check::Ctx::new(i, layout, &i.facts, ram);
            let va = ctx.sections().map_err(anyhow::Error::msg)?.rodata.next_multiple_of(page);
            rewrite(va, w.run_at(cfg, va).context("rodata unmapped")?.level, &|d| d & !Prot::RDONLY)
        }
        Plant::Wx => {
            // The first read-only, never-executable page: make it RW and executable.
            let r = w
                .runs
                .iter()
                .find(|r| r.level == ptcheck_shared::Level::LEAF && r.prot(cfg).0 & Prot::RDONLY != 0)
                .context("no read-only page")?;
            rewrite(r.va, r.level, &|d| d & !(Prot::RDONLY | Prot::PXN))
        }
        Plant::TableBits => {
            let t = w
                .tables
                .iter()
                .skip(1)
                .find(|t| t.va >= lo && t.va < hi && t.parent_desc.0 & Descriptor::PXN_TABLE != 0)
                .context("no table under the linear map")?;
            rewrite(t.va, ptcheck_shared::Level(t.level.0 - 1), &|d| d & !Descriptor::PXN_TABLE)
        }
        Plant::Policy => {
            let r = linear_page().context("no linear-map page")?;
            rewrite(r.va, r.level, &|d| d | Descriptor::CONT)
        }
    }
}
