//! The host half of the mailbox protocol (see `ptcheck_shared::abi::mailbox`), shared by
//! every VM backend: they differ only in how the vCPU runs, not in how plans travel.

use std::mem::offset_of;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytemuck::Zeroable;
use ptcheck_shared::abi::layout::{tag, MAILBOX_PA, PLAN_PA, RESULT_PA};
use ptcheck_shared::abi::mailbox::{
    Command, Mailbox, COMMAND_OFFSET, GUEST_READY, REQUEST_SEQ_OFFSET, RESPONSE_SEQ_OFFSET,
};
use ptcheck_shared::abi::{Plan, RunResult};

use super::guest_ram::GuestRam;
use crate::POOL_POISON;

/// Why waiting for the guest stopped early.
pub enum Wait {
    /// The guest answered.
    Answered,
    /// The vCPU is gone (process exited, KVM run ended): the string says how.
    Gone(String),
}

/// Clear the mailbox before a boot, so a stale `ready` is never believed.
///
/// # Errors
/// Guest RAM access failures.
pub fn reset(ram: &GuestRam) -> anyhow::Result<()> {
    ram.write(MAILBOX_PA, &Mailbox::zeroed())
}

/// Wait until the guest says it is ready. `alive` reports a dead vCPU.
///
/// # Errors
/// The guest died or did not get ready within `timeout`.
pub fn wait_ready(ram: &GuestRam, timeout: Duration, mut alive: impl FnMut() -> Option<String>) -> anyhow::Result<()> {
    let start = Instant::now();
    while ram.load_acquire(MAILBOX_PA)? != GUEST_READY {
        if let Some(why) = alive() {
            bail!("the guest stopped before it was ready: {why}");
        }
        if start.elapsed() > timeout {
            bail!("the guest was not ready {timeout:?} after boot");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// What the booted guest image says it can do (`Mailbox::features`).
///
/// # Errors
/// Guest RAM access failures.
pub fn features(ram: &GuestRam) -> anyhow::Result<u64> {
    ram.load_acquire(MAILBOX_PA + offset_of!(Mailbox, features) as u64)
}

/// Write the plan, poison its pool, tag the probed pages in RAM.
///
/// # Errors
/// Guest RAM access failures.
pub fn prepare(ram: &GuestRam, plan: &Plan, tag_pages: &[u64]) -> anyhow::Result<()> {
    ram.write(PLAN_PA, plan)?;
    for r in plan.pool() {
        // Pool pages outside RAM cannot be poisoned; the guest will fault on them.
        if ram.contains(r.base, r.size) {
            ram.fill(r.base, r.size, POOL_POISON)?;
        }
    }
    for &pa in tag_pages {
        ram.write(pa, &tag(pa))?;
    }
    // A stale result must never pass for this plan's.
    ram.write(RESULT_PA, &0u64)?;
    Ok(())
}

/// Publish request `seq` with `command`.
///
/// # Errors
/// Guest RAM access failures.
pub fn submit(ram: &GuestRam, seq: u64, command: Command) -> anyhow::Result<()> {
    ram.store_release(MAILBOX_PA + COMMAND_OFFSET, command as u64)?;
    ram.store_release(MAILBOX_PA + REQUEST_SEQ_OFFSET, seq)
}

/// Wait for the answer to `seq`: spin briefly (a round trip is well under a
/// microsecond when both sides spin), then back off so a slow guest does not starve
/// the emulator of the host CPU it needs.
///
/// # Errors
/// Guest RAM access failures; `Ok(Wait::Gone)` when the vCPU died, `Err` on timeout.
pub fn wait_response(
    ram: &GuestRam,
    seq: u64,
    timeout: Duration,
    mut alive: impl FnMut() -> Option<String>,
) -> anyhow::Result<Wait> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if ram.load_acquire(MAILBOX_PA + RESPONSE_SEQ_OFFSET)? == seq {
            return Ok(Wait::Answered);
        }
        spins += 1;
        if spins < 2_000 {
            std::hint::spin_loop();
            continue;
        }
        if let Some(why) = alive() {
            // It may have answered just before it went.
            if ram.load_acquire(MAILBOX_PA + RESPONSE_SEQ_OFFSET)? == seq {
                return Ok(Wait::Answered);
            }
            return Ok(Wait::Gone(why));
        }
        if start.elapsed() > timeout {
            bail!("the guest did not answer within {timeout:?}");
        }
        if spins < 20_000 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Copy the result out of guest RAM: the header, then only the used part of each array.
///
/// # Errors
/// Guest RAM access failures.
pub fn read_result(ram: &GuestRam, out: &mut RunResult) -> anyhow::Result<()> {
    let header = offset_of!(RunResult, tables);
    ram.read_bytes(RESULT_PA, &mut bytemuck::bytes_of_mut(out)[..header])?;
    // Only the used part of each array (the rest is never read: the counts bound it).
    let n_tables = (out.n_tables as usize).min(out.tables.len());
    let n_faults = (out.n_faults as usize).min(out.faults.len());
    let n_probes = (out.n_probes as usize).min(out.probes.len());
    let at = |field: usize| RESULT_PA + field as u64;
    ram.read_bytes(at(header), bytemuck::cast_slice_mut(&mut out.tables[..n_tables]))?;
    ram.read_bytes(at(offset_of!(RunResult, faults)), bytemuck::cast_slice_mut(&mut out.faults[..n_faults]))?;
    ram.read_bytes(at(offset_of!(RunResult, probes)), bytemuck::cast_slice_mut(&mut out.probes[..n_probes]))?;
    Ok(())
}
